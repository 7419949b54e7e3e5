//! A reactor: IF an event matches (type glob and `when`) THEN an action THEN emit an event.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use nexus_api::signature::Secret;
use nexus_event::{Event, EventType, Pattern, valid_node_name};
use nexus_outbound::Method;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::ReactorError;
use nexus_event::When;

/// Why an in-process reactor failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ReactFailure {
    /// What went wrong, for operators (it ends up in the dead letter).
    pub message: String,
    /// It can never succeed: dead-letter at once instead of retrying.
    pub permanent: bool,
}

impl ReactFailure {
    /// A failure worth retrying.
    pub fn retry(message: impl Into<String>) -> Self {
        ReactFailure {
            message: message.into(),
            permanent: false,
        }
    }

    /// A failure that retrying cannot fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        ReactFailure {
            message: message.into(),
            permanent: true,
        }
    }
}

/// An in-process reactor: what an embedding Rust service registers instead of an HTTP call.
///
/// ```
/// use nexus_event::Event;
/// use nexus_reactors::{ReactFailure, Reactor};
/// use serde_json::{Value, json};
///
/// struct Doubler;
///
/// #[async_trait::async_trait]
/// impl Reactor for Doubler {
///     async fn react(&self, event: &Event) -> Result<Option<Value>, ReactFailure> {
///         let amount = event.payload["amount"]
///             .as_i64()
///             .ok_or_else(|| ReactFailure::permanent("no amount"))?;
///         Ok(Some(json!({ "doubled": amount * 2 })))
///     }
/// }
/// ```
#[async_trait]
pub trait Reactor: Send + Sync + 'static {
    /// Reacts to one event. `Some(payload)` is the payload of the `emit_on_success` event
    /// (`None`: an empty object).
    async fn react(&self, event: &Event) -> Result<Option<Value>, ReactFailure>;
}

/// An HTTP call: the triggering event as the body, signed like a webhook delivery.
#[derive(Debug, Clone)]
pub struct HttpAction {
    /// `POST` (default), `PUT` or `PATCH`.
    pub method: Method,
    /// The absolute `http`/`https` URL.
    pub url: String,
    /// Its origin, which the circuit breaker guards.
    pub target: String,
    /// The signing secret.
    pub secret: Secret,
    /// How long a call may take; `None` is the client's default (10 s).
    pub timeout: Option<Duration>,
}

impl HttpAction {
    /// A `POST` to `url`, signed with `secret`.
    pub fn post(url: &str, secret: Secret) -> Result<Self, ReactorError> {
        let target = nexus_store::target_origin(url)
            .map_err(|e| ReactorError::invalid("http.url", e.to_string()))?;
        Ok(HttpAction {
            method: Method::POST,
            url: url.to_owned(),
            target,
            secret,
            timeout: None,
        })
    }
}

/// What a reactor does when it fires.
#[derive(Clone)]
pub enum Action {
    /// Calls a service.
    Http(HttpAction),
    /// Runs Rust code in the process.
    InProcess(Arc<dyn Reactor>),
}

impl std::fmt::Debug for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Http(h) => f.debug_tuple("Http").field(h).finish(),
            Action::InProcess(_) => f.write_str("InProcess(..)"),
        }
    }
}

/// One reactor rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Unique name: the delivery's consumer, a metrics label.
    pub name: String,
    /// Which event types fire it.
    pub on: Pattern,
    /// Conditions on the payload.
    pub when: When,
    /// What it does.
    pub action: Action,
    /// Emitted after a successful action, with its answer as the payload.
    pub emit_on_success: Option<EventType>,
    /// Emitted once the action is dead-lettered.
    pub emit_on_failure: Option<EventType>,
}

impl Rule {
    /// A rule with no conditions and no emits.
    pub fn new(name: &str, on: Pattern, action: Action) -> Result<Self, ReactorError> {
        if !valid_node_name(name) {
            return Err(ReactorError::invalid(
                "name",
                format!("{name:?} must be 1 to 64 characters of letters, digits, '_', '.' or '-'"),
            ));
        }
        Ok(Rule {
            name: name.to_owned(),
            on,
            when: When::default(),
            action,
            emit_on_success: None,
            emit_on_failure: None,
        })
    }

    /// Sets the conditions.
    pub fn when(mut self, when: When) -> Self {
        self.when = when;
        self
    }

    /// Sets the event emitted on success.
    pub fn emit_on_success(mut self, event_type: EventType) -> Self {
        self.emit_on_success = Some(event_type);
        self
    }

    /// Sets the event emitted once dead-lettered.
    pub fn emit_on_failure(mut self, event_type: EventType) -> Self {
        self.emit_on_failure = Some(event_type);
        self
    }

    /// Whether `event` fires this rule.
    pub fn fires_on(&self, event: &Event) -> bool {
        self.on.matches_type(&event.event_type) && self.when.holds(&event.payload)
    }

    /// The breaker target of this rule's deliveries: the URL's origin, or `reactor:<name>` for
    /// an in-process reactor.
    pub fn target(&self) -> String {
        match &self.action {
            Action::Http(h) => h.target.clone(),
            Action::InProcess(_) => format!("reactor:{}", self.name),
        }
    }
}

/// A `[[reactors]]` entry of the config file (API.md section 10), before secrets are resolved.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReactorConfig {
    /// Unique name.
    pub name: String,
    /// A type glob.
    pub on: String,
    /// Conditions: JSON pointer to a table of tests.
    #[serde(default)]
    pub when: Map<String, Value>,
    /// The HTTP call.
    pub http: HttpConfig,
    /// The type emitted after a successful call.
    #[serde(default)]
    pub emit_on_success: Option<String>,
    /// The type emitted once the call is dead-lettered.
    #[serde(default)]
    pub emit_on_failure: Option<String>,
}

/// The `http` table of a `[[reactors]]` entry. Its `Debug` hides `secret`.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// `POST` (default), `PUT` or `PATCH`.
    #[serde(default)]
    pub method: Option<String>,
    /// The URL.
    pub url: String,
    /// The variable holding the signing secret.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// The signing secret itself (refused in production by the server).
    #[serde(default)]
    pub secret: Option<String>,
    /// The call's timeout in milliseconds, at least 1; default the client's (10000). It must end
    /// within the retry worker's lease (`WorkerConfig::lease_for`), or another lease could run the
    /// call again while it is still going: the server checks it against `[retry] lease_ms`.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConfig")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("secret_env", &self.secret_env)
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

impl ReactorConfig {
    /// Builds the rule, signing with `secret` (resolved by the caller from `http.secret_env`,
    /// `http.secret` or the server's default). Errors name the key.
    pub fn build(&self, secret: &str) -> Result<Rule, ReactorError> {
        let on = Pattern::new(&self.on).map_err(|e| ReactorError::invalid("on", e.to_string()))?;
        let method = match self.http.method.as_deref().map(str::to_ascii_uppercase) {
            None => Method::POST,
            Some(m) if m == "POST" => Method::POST,
            Some(m) if m == "PUT" => Method::PUT,
            Some(m) if m == "PATCH" => Method::PATCH,
            Some(m) => {
                return Err(ReactorError::invalid(
                    "http.method",
                    format!("{m:?} is not allowed; use POST, PUT or PATCH (the event is the body)"),
                ));
            }
        };
        let secret = Secret::parse(secret)
            .map_err(|e| ReactorError::invalid("http.secret", e.to_string()))?;
        let mut http = HttpAction::post(&self.http.url, secret)?;
        http.method = method;
        http.timeout = match self.http.timeout_ms {
            None => None,
            Some(0) => {
                return Err(ReactorError::invalid(
                    "http.timeout_ms",
                    "must be at least 1, got 0",
                ));
            }
            Some(ms) => Some(Duration::from_millis(ms)),
        };
        let event_type = |field: &str, t: &Option<String>| {
            t.as_deref()
                .map(EventType::new)
                .transpose()
                .map_err(|e| ReactorError::invalid(field, e.to_string()))
        };
        let mut rule = Rule::new(&self.name, on, Action::Http(http))?.when(
            When::parse(&self.when)
                .map_err(|e| ReactorError::invalid(e.field_under("when"), e.reason()))?,
        );
        rule.emit_on_success = event_type("emit_on_success", &self.emit_on_success)?;
        rule.emit_on_failure = event_type("emit_on_failure", &self.emit_on_failure)?;
        Ok(rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_builds_a_rule() {
        let cfg: ReactorConfig = serde_json::from_value(serde_json::json!({
            "name": "mint-on-payment",
            "on": "PAYMENT_RECEIVED",
            "when": {"/amount": {"gte": 1}},
            "http": {"url": "http://127.0.0.1:4000/mint", "timeout_ms": 2500, "method": "put"},
            "emit_on_success": "MINT_REQUESTED",
            "emit_on_failure": "MINT_FAILED"
        }))
        .expect("parses");
        let rule = cfg.build("s3cret").expect("builds");
        assert_eq!(rule.name, "mint-on-payment");
        assert_eq!(rule.target(), "http://127.0.0.1:4000");
        assert_eq!(
            rule.emit_on_success.as_ref().map(|t| t.as_str()),
            Some("MINT_REQUESTED")
        );
        assert_eq!(
            rule.emit_on_failure.as_ref().map(|t| t.as_str()),
            Some("MINT_FAILED")
        );
        let Action::Http(h) = &rule.action else {
            panic!("an HTTP action")
        };
        assert_eq!(
            (h.method.clone(), h.timeout),
            (Method::PUT, Some(Duration::from_millis(2500)))
        );
        let fires = |t: &str, amount: i64| {
            rule.fires_on(
                &nexus_event::NewEvent::new(EventType::new(t).expect("type"), "flowpay")
                    .payload(serde_json::json!({ "amount": amount }))
                    .into_event(1),
            )
        };
        assert!(fires("PAYMENT_RECEIVED", 5));
        assert!(!fires("PAYMENT_RECEIVED", 0));
        assert!(!fires("PAYMENT_FAILED", 5));
    }

    #[test]
    fn debug_output_hides_secrets() {
        let cfg: ReactorConfig = serde_json::from_value(serde_json::json!({
            "name": "r",
            "on": "PAYMENT_*",
            "http": {"url": "http://127.0.0.1:4000/mint", "secret": "hunter2-inline", "secret_env": "MINT_SECRET"}
        }))
        .expect("parses");
        let printed = format!("{cfg:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(
            printed.contains("MINT_SECRET") && printed.contains("***"),
            "{printed}"
        );
        let rule = cfg.build("hunter2-resolved").expect("builds");
        let printed = format!("{rule:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("Secret(***)"), "{printed}");
    }

    #[test]
    fn bad_configs_name_the_key() {
        let base = serde_json::json!({
            "name": "r", "on": "PAYMENT_*", "http": {"url": "http://127.0.0.1:4000/mint"}
        });
        let with = |path: &[&str], v: Value| {
            let mut c = base.clone();
            let mut slot = &mut c;
            for p in &path[..path.len() - 1] {
                slot = &mut slot[*p];
            }
            slot[path[path.len() - 1]] = v;
            c
        };
        let cases = [
            (with(&["name"], Value::from("bad name")), "name:"),
            (with(&["on"], Value::from("")), "on:"),
            (with(&["http", "url"], Value::from("ftp://x/")), "http.url:"),
            (
                with(&["http", "method"], Value::from("DELETE")),
                "http.method:",
            ),
            (
                with(&["http", "timeout_ms"], Value::from(0)),
                "http.timeout_ms:",
            ),
            (
                with(&["emit_on_success"], Value::from("bad type")),
                "emit_on_success:",
            ),
            (
                with(&["when"], serde_json::json!({"/a": {"near": 1}})),
                "when.\"/a\".near:",
            ),
        ];
        for (cfg, needle) in cases {
            let parsed: ReactorConfig = serde_json::from_value(cfg.clone()).expect("shape");
            match parsed.build("secret") {
                Ok(_) => panic!("{cfg} should be refused"),
                Err(e) => assert!(e.to_string().starts_with(needle), "{cfg}: {e}"),
            }
        }
        let unknown = with(&["http", "verb"], Value::from("POST"));
        assert!(serde_json::from_value::<ReactorConfig>(unknown).is_err());
    }
}
