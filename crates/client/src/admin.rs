//! A blocking client of the admin API (API.md section 6) and the health endpoints (section 8).

use std::time::{Duration, SystemTime};

use nexus_event::Event;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Error;
use crate::http::{Http, base_url};

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

/// A dead letter: a delivery that kept failing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct DeadLetter {
    /// Its id (for redrive and purge).
    pub id: i64,
    /// The event's id.
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// The target's origin.
    pub target: String,
    /// The subscription it was for, if any.
    pub subscription_id: Option<String>,
    /// The reactor it was for, if any.
    pub reactor: Option<String>,
    /// Attempts made.
    pub attempts: u32,
    /// The last failure.
    pub last_error: String,
    /// The last HTTP status, if the target answered.
    pub last_status: Option<u16>,
    /// When the delivery was enqueued (RFC 3339).
    pub created_at: String,
    /// When it became a dead letter (RFC 3339).
    pub failed_at: String,
    /// The event's payload.
    #[serde(default)]
    pub payload: Value,
}

/// A circuit breaker of one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Breaker {
    /// The target's origin, `scheme://host:port`.
    pub target: String,
    /// `closed`, `open` or `half_open`.
    pub state: String,
    /// Failures in a row.
    pub consecutive_failures: u32,
    /// Moves to `open` so far.
    pub trips: u64,
    /// When it last opened (RFC 3339).
    pub opened_at: Option<String>,
    /// When the next trial may go through (RFC 3339).
    pub next_trial_at: Option<String>,
}

/// A webhook subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Subscription {
    /// Its id.
    pub id: String,
    /// Where events go.
    pub url: String,
    /// The type globs it takes.
    pub events: Vec<String>,
    /// Strict sequence order.
    pub ordered: bool,
    /// `false` after a 410 until re-enabled.
    pub enabled: bool,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// Its signing secret: only in the answer to its creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// A new webhook subscription.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NewSubscription {
    /// Where events go.
    pub url: String,
    /// The type globs it takes (at least one).
    pub events: Vec<String>,
    /// Its signing secret; the server generates a `whsec_` one when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Strict sequence order. Default `false`.
    pub ordered: bool,
}

/// Changes to a subscription; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SubscriptionUpdate {
    /// A new URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// New type globs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
    /// A new secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Ordered or not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ordered: Option<bool>,
    /// Enabled or not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// The retry queue's figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct RetryStats {
    /// Deliveries waiting.
    pub pending: u64,
    /// Dead letters.
    pub dead_letters: u64,
    /// When the oldest delivery that failed at least once was enqueued (RFC 3339).
    pub oldest_retry: Option<String>,
    /// Deliveries being attempted.
    pub in_flight: u64,
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
    fn body(&self) -> Value {
        match self {
            Selection::All => json!({}),
            Selection::Ids(ids) => json!({ "ids": ids }),
        }
    }
}

/// What a replay enqueues again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    /// Events after this sequence (exclusive).
    pub after: u64,
    /// Up to this sequence (inclusive); `None` for the head.
    pub until: Option<u64>,
    /// Only these type globs; `None` for every type.
    pub types: Option<Vec<String>>,
    /// A subscription id, or `reactors`.
    pub target: String,
}

/// Filters of the event log listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventQuery {
    /// A type glob.
    pub event_type: Option<String>,
    /// Events after this sequence (exclusive).
    pub after: Option<u64>,
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

    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(Value, Value), Error> {
        let bytes = body.map(|b| b.to_string().into_bytes());
        self.http
            .send(
                method,
                path,
                &[("authorization", self.authorization.as_str())],
                bytes.as_deref(),
                SystemTime::now(),
            )?
            .data()
    }

    fn typed<T: DeserializeOwned>(&self, path: &str, value: Value) -> Result<T, Error> {
        serde_json::from_value(value).map_err(|e| Error::Protocol {
            url: format!("{}{path}", self.http.base()),
            reason: format!("unexpected data: {e}"),
        })
    }

    fn page<T: DeserializeOwned>(&self, path: &str) -> Result<Page<T>, Error> {
        let (data, meta) = self.call("GET", path, None)?;
        Ok(Page {
            items: self.typed(path, data)?,
            next_cursor: meta
                .get("nextCursor")
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
    }

    fn count(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        key: &str,
    ) -> Result<u64, Error> {
        let (data, _) = self.call(method, path, body)?;
        data.get(key)
            .and_then(Value::as_u64)
            .ok_or_else(|| Error::Protocol {
                url: format!("{}{path}", self.http.base()),
                reason: format!("the answer has no {key} count"),
            })
    }

    fn page_query(page: &PageRequest) -> Vec<(&'static str, Option<String>)> {
        vec![
            ("limit", page.limit.map(|l| l.to_string())),
            ("cursor", page.cursor.clone()),
        ]
    }

    /// `GET /health/detailed`: status, version, uptime, database, retry queue, breakers,
    /// WebSocket connections and memory, as the server gives them (no envelope, no token).
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

    /// `GET /api/events`: the log in ascending sequence order.
    pub fn events(&self, q: &EventQuery) -> Result<Page<Event>, Error> {
        let mut pairs = vec![
            ("type", q.event_type.clone()),
            ("after", q.after.map(|a| a.to_string())),
        ];
        pairs.extend(Self::page_query(&q.page));
        self.page(&format!("/api/events{}", query(&pairs)))
    }

    /// `GET /api/events/{id}`.
    pub fn event(&self, id: &str) -> Result<Event, Error> {
        let path = format!("/api/events/{}", encode(id));
        let (data, _) = self.call("GET", &path, None)?;
        self.typed(&path, data)
    }

    /// `GET /api/retry/stats`.
    pub fn retry_stats(&self) -> Result<RetryStats, Error> {
        let (data, _) = self.call("GET", "/api/retry/stats", None)?;
        self.typed("/api/retry/stats", data)
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
        self.count(
            "POST",
            "/api/retry/dead-letters/redrive",
            Some(&which.body()),
            "redriven",
        )
    }

    /// `DELETE /api/retry/dead-letters`: the count deleted.
    pub fn purge(&self, which: &Selection) -> Result<u64, Error> {
        self.count(
            "DELETE",
            "/api/retry/dead-letters",
            Some(&which.body()),
            "deleted",
        )
    }

    /// `GET /api/breakers`.
    pub fn breakers(&self, page: &PageRequest) -> Result<Page<Breaker>, Error> {
        self.page(&format!("/api/breakers{}", query(&Self::page_query(page))))
    }

    /// `POST /api/breakers/{target}/reset` for an origin such as `http://127.0.0.1:4000`.
    pub fn reset_breaker(&self, target: &str) -> Result<u64, Error> {
        self.count(
            "POST",
            &format!("/api/breakers/{}/reset", encode(target)),
            None,
            "reset",
        )
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
        let path = format!("/api/subscriptions/{}", encode(id));
        let (data, _) = self.call("GET", &path, None)?;
        self.typed(&path, data)
    }

    /// `POST /api/subscriptions`; the answer holds the secret, shown this once.
    pub fn create_subscription(&self, new: &NewSubscription) -> Result<Subscription, Error> {
        let body =
            serde_json::to_value(new).map_err(|e| Error::invalid("subscription", e.to_string()))?;
        let (data, _) = self.call("POST", "/api/subscriptions", Some(&body))?;
        self.typed("/api/subscriptions", data)
    }

    /// `PATCH /api/subscriptions/{id}`.
    pub fn update_subscription(
        &self,
        id: &str,
        update: &SubscriptionUpdate,
    ) -> Result<Subscription, Error> {
        if *update == SubscriptionUpdate::default() {
            return Err(Error::invalid("subscription update", "nothing to change"));
        }
        let path = format!("/api/subscriptions/{}", encode(id));
        let body = serde_json::to_value(update)
            .map_err(|e| Error::invalid("subscription", e.to_string()))?;
        let (data, _) = self.call("PATCH", &path, Some(&body))?;
        self.typed(&path, data)
    }

    /// `DELETE /api/subscriptions/{id}`.
    pub fn delete_subscription(&self, id: &str) -> Result<u64, Error> {
        self.count(
            "DELETE",
            &format!("/api/subscriptions/{}", encode(id)),
            None,
            "deleted",
        )
    }

    /// `POST /api/replay`: the count of deliveries enqueued.
    pub fn replay(&self, replay: &Replay) -> Result<u64, Error> {
        let mut body = json!({ "after": replay.after, "target": replay.target });
        if let Some(until) = replay.until {
            body["until"] = json!(until);
        }
        if let Some(types) = &replay.types {
            body["types"] = json!(types);
        }
        self.count("POST", "/api/replay", Some(&body), "enqueued")
    }

    /// `GET /api/nodes`: the configured nodes and their permissions.
    pub fn nodes(&self, page: &PageRequest) -> Result<Page<Value>, Error> {
        self.page(&format!("/api/nodes{}", query(&Self::page_query(page))))
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
        assert_eq!(Selection::All.body(), json!({}));
        assert_eq!(Selection::Ids(vec![3, 4]).body(), json!({"ids": [3, 4]}));
    }
}
