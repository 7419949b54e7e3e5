//! A blocking client of the admin API (API.md section 6) and the health endpoints (section 8).

use std::time::{Duration, SystemTime};

use nexus_api::dead_letters::{Deleted, Enqueued, IdsSelection, Redriven, Reset};
use nexus_api::envelope::ListMeta;
use nexus_event::Event;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::Error;
use crate::http::{Http, base_url};

mod event_types;

pub use event_types::Declaration;

/// One page of a list and the cursor of the next (`None` on the last page).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Pass it back as `cursor` for the next page.
    pub next_cursor: Option<String>,
}

/// Where a list starts and how long a page is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// Items per page, 1 to 1000. Default: the server's (100).
    pub limit: Option<u32>,
    /// The cursor a previous page gave.
    pub cursor: Option<String>,
}

/// A circuit breaker of one target, and where it is.
pub use nexus_api::breakers::{Breaker, BreakerState};
/// A dead letter: a delivery that kept failing (nexus-api's type, so client and server
/// cannot drift).
pub use nexus_api::dead_letters::DeadLetter;
/// The retry queue's figures: `{pending, deadLetters, oldestRetry, inFlight}`.
pub use nexus_api::dead_letters::RetryStats;
/// What a test send answered: `{status, error, durationMs}`.
pub use nexus_api::deliveries::TestSend;
/// One delivery of an event with its attempts, where it stands, and one attempt of it.
pub use nexus_api::deliveries::{Attempt, Delivery, DeliveryState};
/// A declared event type of the catalogue (API.md section 11): `{name, description, schema |
/// null, examples, deprecated, createdAt, updatedAt}` (nexus-api's `EventType`, not the
/// event model's type name).
pub use nexus_api::event_types::EventType as DeclaredType;
/// The body of `PUT /api/event-types/{name}`: `{description?, schema?, examples?,
/// deprecated?}`; it replaces the whole declaration.
pub use nexus_api::event_types::EventTypePut as DeclaredTypePut;
/// A live server instance on the store: `{id, host, startedAt, lastSeenAt, version}`.
pub use nexus_api::instances::Instance;
/// What a replay enqueues again: `after` (exclusive), `until` (inclusive), `types`, and a
/// subscription id or `reactors` as `target`.
pub use nexus_api::log::Replay;
/// A configured publishing node and its webhook mapping (never its secret).
pub use nexus_api::nodes::{Node, NodeWebhook};
/// A configured reactor and the call it makes (never its secret).
pub use nexus_api::reactors::{Reactor, ReactorCall};
/// A new webhook subscription (`secret: None` lets the server generate one).
pub use nexus_api::subscriptions::NewSubscription;
/// A webhook subscription; `secret` only in the answer to its creation.
pub use nexus_api::subscriptions::Subscription;
/// Changes to a subscription; `None` leaves a field as it is, and `filter: Some(None)` removes
/// the filter.
pub use nexus_api::subscriptions::SubscriptionPatch as SubscriptionUpdate;
/// A subscription's filter: conditions on the payload, in the same language as a reactor's
/// `when` (API.md section 12). Parse one with `When::from_value` to check it before sending.
pub use nexus_event::When;
/// Why a filter was refused, naming the key inside it.
pub use nexus_event::WhenError;

/// A subscription's counts over the last 24 h: `{delivered, failed, pending, dead}`.
pub use nexus_api::subscriptions::SubscriptionStats;

/// Filters of a subscription's delivery listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryQuery {
    /// Only deliveries in this state.
    pub state: Option<DeliveryState>,
    /// Only deliveries of events after this sequence (exclusive).
    pub after: Option<u64>,
    /// The page.
    pub page: PageRequest,
}

/// Which dead letters an operation takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every one.
    All,
    /// These ids (unknown ids are no error; they are not counted).
    Ids(Vec<i64>),
}

impl Selection {
    fn body(&self) -> IdsSelection {
        match self {
            Selection::All => IdsSelection::all(),
            Selection::Ids(ids) => IdsSelection::ids(ids.iter().copied()),
        }
    }
}

/// Which way the event log lists: oldest first (the default) or newest first.
pub use nexus_api::log::EventOrder;

/// Filters of the event log listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventQuery {
    /// A type glob.
    pub event_type: Option<String>,
    /// Events after this sequence (exclusive).
    pub after: Option<u64>,
    /// Events up to this sequence (inclusive).
    pub until: Option<u64>,
    /// Oldest first (`None` or [`EventOrder::Asc`]) or newest first ([`EventOrder::Desc`]);
    /// a page's `next_cursor` goes on in the same direction.
    pub order: Option<EventOrder>,
    /// The page.
    pub page: PageRequest,
}

/// A blocking client of the admin API, authenticated with the admin token.
///
/// ```no_run
/// use nexus_client::{Admin, PageRequest};
/// let admin = Admin::new("http://127.0.0.1:3000", "the-admin-token")?;
/// for sub in admin.subscriptions(&PageRequest::default())?.items {
///     println!("{} {} {:?}", sub.id, sub.url, sub.events);
/// }
/// # Ok::<(), nexus_client::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Admin {
    http: Http,
    authorization: String,
}

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

impl Admin {
    /// A client of the server at `url` with the admin `token`; 10 s per request.
    pub fn new(url: &str, token: &str) -> Result<Admin, Error> {
        Admin::with_timeout(url, token, Duration::from_secs(10))
    }

    /// A client with its own time limit per request.
    pub fn with_timeout(url: &str, token: &str, timeout: Duration) -> Result<Admin, Error> {
        let base = base_url(url)?;
        if token.is_empty() {
            return Err(Error::invalid("admin token", "it is empty"));
        }
        if token.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
            return Err(Error::invalid(
                "admin token",
                "it must be visible ASCII without spaces",
            ));
        }
        if timeout.is_zero() {
            return Err(Error::invalid("timeout", "it must not be zero"));
        }
        Ok(Admin {
            http: Http::new(base, timeout),
            authorization: format!("Bearer {token}"),
        })
    }

    /// The server's base URL.
    pub fn url(&self) -> &str {
        self.http.base()
    }

    fn send<B: Serialize>(
        &self,
        method: &str,
        path: &str,
        body: Option<&B>,
    ) -> Result<crate::http::Answer, Error> {
        let bytes = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| Error::invalid("request body", e.to_string()))?;
        self.http.send(
            method,
            path,
            &[("authorization", self.authorization.as_str())],
            bytes.as_deref(),
            SystemTime::now(),
        )
    }

    fn call<B: Serialize>(
        &self,
        method: &str,
        path: &str,
        body: Option<&B>,
    ) -> Result<(Value, Option<ListMeta>), Error> {
        self.send(method, path, body)?.data()
    }

    /// Like `call`, with the success status (for the calls whose 200 and 201 differ).
    fn call_with_status<B: Serialize>(
        &self,
        method: &str,
        path: &str,
        body: Option<&B>,
    ) -> Result<(u16, Value), Error> {
        let answer = self.send(method, path, body)?;
        let status = answer.status;
        Ok((status, answer.data()?.0))
    }

    fn typed<T: DeserializeOwned>(&self, path: &str, value: Value) -> Result<T, Error> {
        serde_json::from_value(value).map_err(|e| Error::Protocol {
            url: format!("{}{path}", self.http.base()),
            reason: format!("unexpected data: {e}"),
        })
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        let (data, _) = self.call::<()>("GET", path, None)?;
        self.typed(path, data)
    }

    fn page<T: DeserializeOwned>(&self, path: &str) -> Result<Page<T>, Error> {
        let (data, meta) = self.call::<()>("GET", path, None)?;
        Ok(Page {
            items: self.typed(path, data)?,
            next_cursor: meta.and_then(|m| m.next_cursor),
        })
    }

    /// A call answered with one of the count bodies (`Deleted`, `Redriven`, ...).
    fn count<B: Serialize, C: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&B>,
    ) -> Result<C, Error> {
        let (data, _) = self.call(method, path, body)?;
        self.typed(path, data)
    }

    fn page_query(page: &PageRequest) -> Vec<(&'static str, Option<String>)> {
        vec![
            ("limit", page.limit.map(|l| l.to_string())),
            ("cursor", page.cursor.clone()),
        ]
    }

    /// `GET /health/detailed`: status, version, uptime, database, retry queue, breakers,
    /// WebSocket connections and memory, as the server gives them (no envelope, no token).
    ///
    /// Kept as JSON rather than [`nexus_api::health::HealthDetailed`]: the body grows with the
    /// server (API.md section 13 adds `store` and `instances`), and an operator tool shows all
    /// of it; read it into the typed body with `serde_json::from_value` where that suits.
    pub fn health(&self) -> Result<Value, Error> {
        self.http
            .send("GET", "/health/detailed", &[], None, SystemTime::now())?
            .value()
    }

    /// `GET /health/ready`: `Ok(true)` when ready, `Ok(false)` on a 503 (starting, draining).
    pub fn ready(&self) -> Result<bool, Error> {
        let answer = self
            .http
            .send("GET", "/health/ready", &[], None, SystemTime::now())?;
        match answer.status {
            200 => Ok(true),
            503 => Ok(false),
            _ => Err(Error::Api(Box::new(answer.api_error()))),
        }
    }

    /// `GET /api/events`: the log in ascending sequence order, or newest first.
    pub fn events(&self, q: &EventQuery) -> Result<Page<Event>, Error> {
        let mut pairs = vec![
            ("type", q.event_type.clone()),
            ("after", q.after.map(|a| a.to_string())),
            ("until", q.until.map(|u| u.to_string())),
            (
                "order",
                q.order.map(|o| {
                    match o {
                        EventOrder::Asc => "asc",
                        EventOrder::Desc => "desc",
                    }
                    .to_owned()
                }),
            ),
        ];
        pairs.extend(Self::page_query(&q.page));
        self.page(&format!("/api/events{}", query(&pairs)))
    }

    /// `GET /api/events/{id}`.
    pub fn event(&self, id: &str) -> Result<Event, Error> {
        self.get(&format!("/api/events/{}", encode(id)))
    }

    /// `GET /api/retry/stats`.
    pub fn retry_stats(&self) -> Result<RetryStats, Error> {
        self.get("/api/retry/stats")
    }

    /// `GET /api/retry/dead-letters`, newest first.
    pub fn dead_letters(&self, page: &PageRequest) -> Result<Page<DeadLetter>, Error> {
        self.page(&format!(
            "/api/retry/dead-letters{}",
            query(&Self::page_query(page))
        ))
    }

    /// `POST /api/retry/dead-letters/redrive`: back to the queue; the count redriven.
    pub fn redrive(&self, which: &Selection) -> Result<u64, Error> {
        let counted: Redriven = self.count(
            "POST",
            "/api/retry/dead-letters/redrive",
            Some(&which.body()),
        )?;
        Ok(counted.redriven)
    }

    /// `DELETE /api/retry/dead-letters`: the count deleted.
    pub fn purge(&self, which: &Selection) -> Result<u64, Error> {
        let counted: Deleted =
            self.count("DELETE", "/api/retry/dead-letters", Some(&which.body()))?;
        Ok(counted.deleted)
    }

    /// `GET /api/breakers`.
    pub fn breakers(&self, page: &PageRequest) -> Result<Page<Breaker>, Error> {
        self.page(&format!("/api/breakers{}", query(&Self::page_query(page))))
    }

    /// `POST /api/breakers/{target}/reset` for an origin such as `http://127.0.0.1:4000`.
    pub fn reset_breaker(&self, target: &str) -> Result<u64, Error> {
        let counted: Reset = self.count::<(), _>(
            "POST",
            &format!("/api/breakers/{}/reset", encode(target)),
            None,
        )?;
        Ok(counted.reset)
    }

    /// `GET /api/instances`: the live server instances, earliest started first.
    pub fn instances(&self, page: &PageRequest) -> Result<Page<Instance>, Error> {
        self.page(&format!("/api/instances{}", query(&Self::page_query(page))))
    }

    /// `GET /api/subscriptions`.
    pub fn subscriptions(&self, page: &PageRequest) -> Result<Page<Subscription>, Error> {
        self.page(&format!(
            "/api/subscriptions{}",
            query(&Self::page_query(page))
        ))
    }

    /// `GET /api/subscriptions/{id}`.
    pub fn subscription(&self, id: &str) -> Result<Subscription, Error> {
        self.get(&format!("/api/subscriptions/{}", encode(id)))
    }

    /// `POST /api/subscriptions`; the answer holds the secret, shown this once.
    pub fn create_subscription(&self, new: &NewSubscription) -> Result<Subscription, Error> {
        let (data, _) = self.call("POST", "/api/subscriptions", Some(new))?;
        self.typed("/api/subscriptions", data)
    }

    /// `PATCH /api/subscriptions/{id}`.
    pub fn update_subscription(
        &self,
        id: &str,
        update: &SubscriptionUpdate,
    ) -> Result<Subscription, Error> {
        if update.is_empty() {
            return Err(Error::invalid("subscription update", "nothing to change"));
        }
        let path = format!("/api/subscriptions/{}", encode(id));
        let (data, _) = self.call("PATCH", &path, Some(update))?;
        self.typed(&path, data)
    }

    /// `DELETE /api/subscriptions/{id}`.
    pub fn delete_subscription(&self, id: &str) -> Result<u64, Error> {
        let counted: Deleted = self.count::<(), _>(
            "DELETE",
            &format!("/api/subscriptions/{}", encode(id)),
            None,
        )?;
        Ok(counted.deleted)
    }

    /// `POST /api/replay`: the count of deliveries enqueued.
    pub fn replay(&self, replay: &Replay) -> Result<u64, Error> {
        let counted: Enqueued = self.count("POST", "/api/replay", Some(replay))?;
        Ok(counted.enqueued)
    }

    /// `GET /api/events/{id}/deliveries`: every delivery of the event with its attempts.
    pub fn event_deliveries(&self, event_id: &str) -> Result<Vec<Delivery>, Error> {
        self.get(&format!("/api/events/{}/deliveries", encode(event_id)))
    }

    /// `GET /api/subscriptions/{id}/deliveries`: the subscription's deliveries, newest first.
    pub fn subscription_deliveries(
        &self,
        id: &str,
        q: &DeliveryQuery,
    ) -> Result<Page<Delivery>, Error> {
        let mut pairs = vec![
            ("state", q.state.map(|s| s.as_str().to_owned())),
            ("after", q.after.map(|a| a.to_string())),
        ];
        pairs.extend(Self::page_query(&q.page));
        self.page(&format!(
            "/api/subscriptions/{}/deliveries{}",
            encode(id),
            query(&pairs)
        ))
    }

    /// `POST /api/subscriptions/{id}/test`: sends a signed `nexus.test` event to the
    /// subscription now and answers what its receiver said (a receiver's failure is an answer,
    /// not an error).
    pub fn test_subscription(&self, id: &str) -> Result<TestSend, Error> {
        let path = format!("/api/subscriptions/{}/test", encode(id));
        let (data, _) = self.call::<()>("POST", &path, None)?;
        self.typed(&path, data)
    }

    /// `GET /api/nodes`: the configured nodes and their permissions.
    pub fn nodes(&self, page: &PageRequest) -> Result<Page<Node>, Error> {
        self.page(&format!("/api/nodes{}", query(&Self::page_query(page))))
    }

    /// `GET /api/reactors`: the configured reactors (never their secrets).
    pub fn reactors(&self, page: &PageRequest) -> Result<Page<Reactor>, Error> {
        self.page(&format!("/api/reactors{}", query(&Self::page_query(page))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_and_query_parts_are_percent_encoded() {
        assert_eq!(
            encode("http://127.0.0.1:4000"),
            "http%3A%2F%2F127.0.0.1%3A4000"
        );
        assert_eq!(
            query(&[
                ("type", Some("MINT_*".into())),
                ("after", None),
                ("limit", Some("5".into()))
            ]),
            "?type=MINT_%2A&limit=5"
        );
        assert_eq!(query(&[("cursor", None)]), "");
    }

    #[test]
    fn bad_tokens_and_empty_updates_are_refused_before_sending() {
        let e = Admin::new("http://h", "").expect_err("empty");
        assert!(e.to_string().contains("invalid admin token"), "{e}");
        let e = Admin::new("http://h", "two words").expect_err("space");
        assert!(e.to_string().contains("visible ASCII"), "{e}");
        let admin = Admin::new("http://127.0.0.1:9", "t").expect("valid");
        let e = admin
            .update_subscription("s", &SubscriptionUpdate::default())
            .expect_err("nothing");
        assert!(e.to_string().contains("nothing to change"), "{e}");
        let body = |s: &Selection| serde_json::to_value(s.body()).expect("ser");
        assert_eq!(body(&Selection::All), serde_json::json!({}));
        assert_eq!(
            body(&Selection::Ids(vec![3, 4])),
            serde_json::json!({"ids": [3, 4]})
        );
    }
}
