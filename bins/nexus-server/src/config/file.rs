//! The config file named by `NEXUS_CONFIG` (API.md section 10): parsed, then checked key by key
//! with its secrets resolved; an error names the key.

use std::collections::HashSet;
use std::time::Duration;

use nexus_event::{EventType, Pattern, TypeFilter, When};
use nexus_resilience::{BreakerConfig, Schedule};
use serde::Deserialize;

use super::secrets::{FileSecret, Resolved, SecretText, Use};
use super::{ConfigError, Mode, err};

/// The config file, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    #[serde(default)]
    pub(crate) nodes: Vec<NodeEntry>,
    #[serde(default)]
    pub(crate) webhooks: Vec<WebhookEntry>,
    #[serde(default)]
    pub(crate) subscriptions: Vec<SubscriptionEntry>,
    #[serde(default)]
    pub(crate) reactors: Vec<nexus_reactors::ReactorConfig>,
    pub(crate) retry: Option<RetryEntry>,
    pub(crate) breaker: Option<BreakerEntry>,
    #[serde(default)]
    pub(crate) ws_tokens: Vec<WsTokenEntry>,
    pub(crate) store: Option<StoreEntry>,
    #[serde(default)]
    pub(crate) event_types: Vec<super::event_types::EventTypeEntry>,
    /// The directory schema paths are relative to (the config file's); not a key of the file.
    #[serde(skip)]
    pub(crate) base_dir: std::path::PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StoreEntry {
    /// A `postgres://` URL; `DATABASE_URL` wins over it.
    pub(crate) url: Option<SecretText>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NodeEntry {
    pub(crate) name: String,
    pub(crate) secret_env: Option<String>,
    pub(crate) secret: Option<SecretText>,
    pub(crate) publish: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebhookEntry {
    pub(crate) node: String,
    pub(crate) event_type: String,
    pub(crate) id_pointer: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubscriptionEntry {
    pub(crate) url: String,
    pub(crate) events: Vec<String>,
    pub(crate) secret_env: Option<String>,
    #[serde(default)]
    pub(crate) ordered: bool,
    /// Conditions on the payload (API.md section 12), checked as `nexus_event::When`.
    pub(crate) filter: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetryEntry {
    pub(crate) schedule_ms: Option<Vec<u64>>,
    pub(crate) jitter: Option<f64>,
    pub(crate) lease_ms: Option<u64>,
    pub(crate) history_retention_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BreakerEntry {
    pub(crate) failure_threshold: Option<u32>,
    pub(crate) success_threshold: Option<u32>,
    pub(crate) reset_timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WsTokenEntry {
    pub(crate) token_env: String,
    pub(crate) events: Vec<String>,
}

/// A node with its secret resolved.
#[derive(Debug, Clone)]
pub(crate) struct NodeSpec {
    pub(crate) name: String,
    /// `None`: signed with `NEXUS_SECRET`.
    pub(crate) secret: Option<SecretText>,
    pub(crate) publish: TypeFilter,
}

/// A subscription of the file, its secret resolved.
#[derive(Debug, Clone)]
pub(crate) struct SubscriptionSpec {
    pub(crate) url: String,
    pub(crate) events: Vec<Pattern>,
    pub(crate) secret: Option<SecretText>,
    pub(crate) ordered: bool,
    /// `None` when the entry has no `filter`; the sync then removes one set through the API.
    pub(crate) filter: Option<When>,
}

/// The checked file.
#[derive(Debug, Clone)]
pub(crate) struct Checked {
    pub(crate) nodes: Vec<NodeSpec>,
    pub(crate) webhooks: Vec<nexus_transport::WebhookMapping>,
    pub(crate) subscriptions: Vec<SubscriptionSpec>,
    pub(crate) schedule: Schedule,
    /// `[retry] lease_ms`: how long one attempt may hold a delivery. Default 60 s.
    pub(crate) lease: Duration,
    /// `[retry] history_retention_ms`: how long a delivered or dead delivery stays in the
    /// delivery history. Default (and least) 24 h, the window of a subscription's stats.
    pub(crate) history_retention: Duration,
    pub(crate) breaker: BreakerConfig,
    /// (token, scope)
    pub(crate) ws_tokens: Vec<(SecretText, TypeFilter)>,
    pub(crate) reactors: Vec<ReactorSpec>,
    /// `[store] url`: PostgreSQL unless `DATABASE_URL` names another.
    pub(crate) store_url: Option<SecretText>,
    /// `[[event_types]]`, checked: synced into the store's catalogue at start.
    pub(crate) event_types: Vec<super::event_types::Declaration>,
}

impl Default for Checked {
    fn default() -> Checked {
        Checked {
            nodes: Vec::new(),
            webhooks: Vec::new(),
            subscriptions: Vec::new(),
            schedule: Schedule::default(),
            lease: nexus_resilience::WorkerConfig::default().lease_for,
            history_retention: Duration::from_millis(MIN_HISTORY_RETENTION_MS),
            breaker: BreakerConfig::default(),
            ws_tokens: Vec::new(),
            reactors: Vec::new(),
            store_url: None,
            event_types: Vec::new(),
        }
    }
}

/// What an attempt needs beyond its HTTP call's timeout within one lease (subscription lookup,
/// signing, for reactors the depth walk and the emit).
const LEASE_MARGIN_MS: u64 = 5_000;

/// The longest lease: a day. Far beyond any sane attempt, and it keeps lease expiry times
/// inside what the store can write.
const MAX_LEASE_MS: u64 = 86_400_000;

/// The shortest (and default) history retention: a day, the window of a subscription's stats,
/// which count finished deliveries from the history.
const MIN_HISTORY_RETENTION_MS: u64 = 86_400_000;

/// The longest history retention: a year, far beyond what the history is for, and it keeps the
/// pruning cut-off in range.
const MAX_HISTORY_RETENTION_MS: u64 = 366 * 86_400_000;

/// The timeout of a webhook delivery, which must end within a lease.
fn webhook_timeout() -> Duration {
    nexus_outbound::OutboundConfig::default().timeout
}

/// A reactor of the file, checked, its secret resolved.
#[derive(Debug, Clone)]
pub(crate) struct ReactorSpec {
    pub(crate) config: nexus_reactors::ReactorConfig,
    /// `None`: signed with `NEXUS_SECRET`.
    pub(crate) secret: Option<Resolved>,
}

impl ReactorSpec {
    /// How `GET /api/reactors` shows it: no secret, no credentials in the URL, the timeout the
    /// call really gets.
    pub(crate) fn describe(&self) -> nexus_api::reactors::Reactor {
        let c = &self.config;
        nexus_api::reactors::Reactor {
            name: c.name.clone(),
            on: c.on.clone(),
            when: c.when.clone(),
            call: nexus_api::reactors::ReactorCall {
                method: c
                    .http
                    .method
                    .as_deref()
                    .unwrap_or("POST")
                    .to_ascii_uppercase(),
                url: nexus_api::reactors::without_userinfo(&c.http.url),
                timeout_ms: c
                    .http
                    .timeout_ms
                    .unwrap_or_else(|| webhook_timeout().as_millis() as u64),
            },
            emit_on_success: c.emit_on_success.clone(),
            emit_on_failure: c.emit_on_failure.clone(),
        }
    }

    /// The rule, signing with its own secret or else `shared`.
    pub(crate) fn rule(
        &self,
        i: usize,
        shared: Option<&str>,
    ) -> Result<nexus_reactors::Rule, ConfigError> {
        let secret = self
            .secret
            .as_ref()
            .map(|r| r.value.expose())
            .or(shared)
            .unwrap_or_default();
        self.config.build(secret).map_err(|e| match e {
            nexus_reactors::ReactorError::Invalid { field, message } if field == "http.secret" => {
                let name = self
                    .secret
                    .as_ref()
                    .map_or_else(|| "NEXUS_SECRET".into(), |r| r.name.clone());
                err(name, message)
            }
            nexus_reactors::ReactorError::Invalid { field, message } => {
                err(format!("reactors[{i}].{field}"), message)
            }
            other => err(format!("reactors[{i}]"), other.to_string()),
        })
    }
}

fn globs(name: &str, globs: &[String]) -> Result<TypeFilter, ConfigError> {
    if globs.is_empty() {
        return Err(err(name, "needs at least one type glob"));
    }
    TypeFilter::parse(globs).map_err(|e| err(name, e.to_string()))
}

impl FileConfig {
    /// Parses the file. A syntax error, an unknown key or a bad value names the key by its path
    /// (`breaker.failure_threshold`, `reactors[0].http.timeout_ms`; `NEXUS_CONFIG` for a syntax
    /// error), beside the file's line.
    pub(crate) fn parse(text: &str) -> Result<FileConfig, ConfigError> {
        let at_line = |e: &toml::de::Error| {
            let line = e.span().map(|s| {
                let line = text.get(..s.start).unwrap_or(text).matches('\n').count() + 1;
                format!(" (line {line})")
            });
            format!("{}{}", e.message(), line.unwrap_or_default())
        };
        let deserializer =
            toml::Deserializer::parse(text).map_err(|e| err("NEXUS_CONFIG", at_line(&e)))?;
        serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let path = e.path().to_string();
            let name = if path.is_empty() || path == "." {
                "NEXUS_CONFIG".to_owned()
            } else {
                path
            };
            err(name, at_line(e.inner()))
        })
    }

    /// Reads schema paths of `[[event_types]]` relative to `dir` (the config file's directory).
    pub(crate) fn relative_to(mut self, dir: &std::path::Path) -> FileConfig {
        self.base_dir = dir.to_path_buf();
        self
    }

    /// Resolves secrets from the environment and checks every value.
    pub(crate) fn check(
        self,
        mode: Mode,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Checked, ConfigError> {
        let mut checked = Checked::default();
        let mut names = HashSet::new();
        for (i, n) in self.nodes.into_iter().enumerate() {
            let key = |field: &str| format!("nodes[{i}].{field}");
            if n.name == nexus_event::NEXUS_SOURCE {
                return Err(err(
                    key("name"),
                    "\"nexus\" is reserved: it is the source of the events reactors emit",
                ));
            }
            if !nexus_transport::auth::valid_node_name(&n.name) {
                return Err(err(
                    key("name"),
                    format!(
                        "{:?} is not a node name (1 to 64 of A-Z a-z 0-9 _ . -)",
                        n.name
                    ),
                ));
            }
            if !names.insert(n.name.clone()) {
                return Err(err(
                    key("name"),
                    format!("node {:?} is named twice", n.name),
                ));
            }
            let secret = FileSecret {
                at: format!("nodes[{i}]"),
                env_field: "secret_env",
                env: n.secret_env.as_deref(),
                inline: n.secret.as_ref().map(SecretText::expose),
                usage: Use::Signing,
            }
            .resolve(mode, &get)?;
            checked.nodes.push(NodeSpec {
                name: n.name,
                secret: secret.map(|r| r.value),
                publish: globs(&key("publish"), &n.publish)?,
            });
        }
        for (i, w) in self.webhooks.into_iter().enumerate() {
            let key = |field: &str| format!("webhooks[{i}].{field}");
            if !names.contains(&w.node) {
                return Err(err(
                    key("node"),
                    format!("{:?} is not a configured node", w.node),
                ));
            }
            let event_type =
                EventType::new(&w.event_type).map_err(|e| err(key("event_type"), e.to_string()))?;
            let allowed = checked
                .nodes
                .iter()
                .find(|n| n.name == w.node)
                .is_some_and(|n| n.publish.matches(&event_type));
            if !allowed {
                return Err(err(
                    key("event_type"),
                    format!(
                        "node {:?} may not publish {event_type} (its publish globs)",
                        w.node
                    ),
                ));
            }
            if let Some(p) = &w.id_pointer
                && !p.starts_with('/')
            {
                return Err(err(key("id_pointer"), "a JSON pointer starts with /"));
            }
            checked.webhooks.push(nexus_transport::WebhookMapping {
                node: w.node,
                event_type,
                id_pointer: w.id_pointer,
            });
        }
        for (i, s) in self.subscriptions.into_iter().enumerate() {
            let key = |field: &str| format!("subscriptions[{i}].{field}");
            nexus_store::target_origin(&s.url).map_err(|e| err(key("url"), e.to_string()))?;
            let events = globs(&key("events"), &s.events)?.patterns().to_vec();
            let events = if events.is_empty() {
                vec![Pattern::new("*").map_err(|e| err(key("events"), e.to_string()))?]
            } else {
                events
            };
            let secret = FileSecret {
                at: format!("subscriptions[{i}]"),
                env_field: "secret_env",
                env: s.secret_env.as_deref(),
                inline: None,
                usage: Use::Signing,
            }
            .resolve(mode, &get)?;
            // A subscription's key has a floor in every environment, as through the API.
            if let Some(r) = &secret {
                nexus_transport::auth::Secret::parse_at_least(
                    r.value.expose(),
                    nexus_api::signature::MIN_SUBSCRIPTION_SECRET_BYTES,
                )
                .map_err(|e| err(&r.name, e.to_string()))?;
            }
            let secret = secret.map(|r| r.value);
            let filter = s
                .filter
                .as_ref()
                .map(When::from_value)
                .transpose()
                .map_err(|e| err(e.field_under(&key("filter")), e.reason()))?;
            checked.subscriptions.push(SubscriptionSpec {
                url: s.url,
                events,
                secret,
                ordered: s.ordered,
                filter,
            });
        }
        if let Some(r) = self.retry {
            let steps = r
                .schedule_ms
                .unwrap_or_else(|| nexus_resilience::DEFAULT_STEPS_MS.to_vec())
                .into_iter()
                .map(Duration::from_millis)
                .collect();
            checked.schedule =
                Schedule::new(steps, r.jitter.unwrap_or(nexus_resilience::DEFAULT_JITTER))
                    .map_err(|e| err("retry", e.to_string()))?;
            if let Some(ms) = r.lease_ms {
                // An attempt is more than its HTTP call (lookup, signing, for reactors the depth
                // walk and the emit): the lease keeps a margin above the timeout.
                let least = webhook_timeout().as_millis() + u128::from(LEASE_MARGIN_MS);
                if u128::from(ms) < least {
                    return Err(err(
                        "retry.lease_ms",
                        format!(
                            "must be at least the webhook timeout plus {LEASE_MARGIN_MS} ms ({least} ms): an attempt must end within its lease, got {ms}"
                        ),
                    ));
                }
                if ms > MAX_LEASE_MS {
                    return Err(err(
                        "retry.lease_ms",
                        format!("must be at most {MAX_LEASE_MS} (a day), got {ms}"),
                    ));
                }
                checked.lease = Duration::from_millis(ms);
            }
            if let Some(ms) = r.history_retention_ms {
                if !(MIN_HISTORY_RETENTION_MS..=MAX_HISTORY_RETENTION_MS).contains(&ms) {
                    return Err(err(
                        "retry.history_retention_ms",
                        format!(
                            "must be {MIN_HISTORY_RETENTION_MS} (a day, the window of subscription stats) to {MAX_HISTORY_RETENTION_MS} (a year), got {ms}"
                        ),
                    ));
                }
                checked.history_retention = Duration::from_millis(ms);
            }
        }
        if let Some(b) = self.breaker {
            let d = BreakerConfig::default();
            checked.breaker = BreakerConfig {
                failure_threshold: b.failure_threshold.unwrap_or(d.failure_threshold),
                success_threshold: b.success_threshold.unwrap_or(d.success_threshold),
                reset_timeout: b
                    .reset_timeout_ms
                    .map_or(d.reset_timeout, Duration::from_millis),
            };
            checked
                .breaker
                .validate()
                .map_err(|e| err("breaker", e.to_string()))?;
        }
        let mut reactor_names = HashSet::new();
        for (i, r) in self.reactors.into_iter().enumerate() {
            let key = |field: &str| format!("reactors[{i}].{field}");
            if !reactor_names.insert(r.name.clone()) {
                return Err(err(
                    key("name"),
                    format!("reactor {:?} is named twice", r.name),
                ));
            }
            let secret = FileSecret {
                at: format!("reactors[{i}].http"),
                env_field: "secret_env",
                env: r.http.secret_env.as_deref(),
                inline: r.http.secret.as_deref(),
                usage: Use::Signing,
            }
            .resolve(mode, &get)?;
            if let Some(ms) = r.http.timeout_ms
                && Duration::from_millis(ms.saturating_add(LEASE_MARGIN_MS)) > checked.lease
            {
                return Err(err(
                    key("http.timeout_ms"),
                    format!(
                        "must be at most retry.lease_ms ({} ms) less {LEASE_MARGIN_MS} ms: a call must end within its lease, or another worker could run it again while it is still going; got {ms}",
                        checked.lease.as_millis()
                    ),
                ));
            }
            let spec = ReactorSpec { config: r, secret };
            // Every field is checked now; the shared secret is only known later.
            spec.rule(i, Some("unused-for-the-check"))?;
            checked.reactors.push(spec);
        }
        for (i, t) in self.ws_tokens.into_iter().enumerate() {
            let key = |field: &str| format!("ws_tokens[{i}].{field}");
            let token = FileSecret {
                at: format!("ws_tokens[{i}]"),
                env_field: "token_env",
                env: Some(&t.token_env),
                inline: None,
                usage: Use::Token,
            }
            .resolve(mode, &get)?
            .map(|r| r.value)
            .unwrap_or_default();
            checked
                .ws_tokens
                .push((token, globs(&key("events"), &t.events)?));
        }
        if let Some(url) = self.store.and_then(|s| s.url) {
            super::env::check_database_url(url.expose()).map_err(|m| err("store.url", m))?;
            checked.store_url = Some(url);
        }
        checked.event_types = super::event_types::check(self.event_types, &self.base_dir)?;
        Ok(checked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_env as env;

    #[test]
    fn the_file_is_checked_key_by_key() {
        let text = r#"
            [[nodes]]
            name = "flowpay"
            secret_env = "FLOWPAY_SECRET"
            publish = ["PAYMENT_*"]

            [[webhooks]]
            node = "flowpay"
            event_type = "PAYMENT_RECEIVED"
            id_pointer = "/payment_id"

            [[subscriptions]]
            url = "https://crm.example/hooks"
            events = ["MINT_*"]
            ordered = true
            filter = { "/amount" = { gte = 10000 }, "/currency" = { eq = "EUR" } }

            [retry]
            schedule_ms = [1000, 2000]
            jitter = 0.0

            [breaker]
            failure_threshold = 3
        "#;
        let c = FileConfig::parse(text)
            .expect("parses")
            .check(Mode::Development, env(&[("FLOWPAY_SECRET", "s")]))
            .expect("valid");
        assert_eq!(
            c.nodes[0].secret.as_ref().map(SecretText::expose),
            Some("s")
        );
        assert_eq!(c.schedule.max_attempts(), 3);
        assert_eq!(c.breaker.failure_threshold, 3);
        assert!(c.subscriptions[0].ordered);
        let filter = c.subscriptions[0].filter.as_ref().expect("a filter");
        assert!(filter.holds(&serde_json::json!({"amount": 10000, "currency": "EUR"})));
        assert!(!filter.holds(&serde_json::json!({"amount": 9999, "currency": "EUR"})));

        let missing = FileConfig::parse(text)
            .expect("parses")
            .check(Mode::Development, env(&[]))
            .expect_err("no secret");
        assert_eq!(missing.name, "nodes[0].secret_env");
        let unknown =
            FileConfig::parse("[[nodes]]\nname = \"a\"\npublish = [\"*\"]\ncolour = \"red\"\n")
                .expect_err("unknown key");
        assert!(
            unknown.message.contains("colour") && unknown.message.contains("line"),
            "{unknown}"
        );
        let bad_glob = FileConfig::parse("[[nodes]]\nname = \"a\"\npublish = [\"a b\"]\n")
            .expect("parses")
            .check(Mode::Development, env(&[]))
            .expect_err("bad glob");
        assert_eq!(bad_glob.name, "nodes[0].publish");
        let prod_inline =
            FileConfig::parse("[[nodes]]\nname = \"a\"\nsecret = \"x\"\npublish = [\"*\"]\n")
                .expect("parses")
                .check(Mode::Production, env(&[]))
                .expect_err("inline secret in production");
        assert_eq!(prod_inline.name, "nodes[0].secret");
        let bad_retry = FileConfig::parse("[retry]\nschedule_ms = []\n")
            .expect("parses")
            .check(Mode::Development, env(&[]));
        assert_eq!(bad_retry.expect_err("empty schedule").name, "retry");
    }

    #[test]
    fn the_store_section_is_checked() {
        let check =
            |text: &str| FileConfig::parse(text).and_then(|f| f.check(Mode::Development, env(&[])));
        let url = check("[store]\nurl = \"postgres://nexus:pw@db:5432/nexus\"\n").expect("valid");
        assert_eq!(
            url.store_url.as_ref().map(SecretText::expose),
            Some("postgres://nexus:pw@db:5432/nexus")
        );
        assert!(check("[store]\n").expect("empty").store_url.is_none());
        assert!(check("").expect("none").store_url.is_none());
        let e = check("[store]\nurl = \"sqlite:///data\"\n").expect_err("not postgres");
        assert_eq!(e.name, "store.url", "{e}");
        let e = check("[store]\nurl = \"postgres://db/n\"\npool = 4\n").expect_err("unknown key");
        assert_eq!(e.name, "store.pool", "{e}");
    }

    #[test]
    fn mappings_and_subscription_secrets_are_checked() {
        let text = "[[nodes]]\nname = \"flowpay\"\nsecret = \"s\"\npublish = [\"PAYMENT_*\"]\n\n[[webhooks]]\nnode = \"flowpay\"\nevent_type = \"MINT_CONFIRMED\"\n";
        let e = FileConfig::parse(text)
            .expect("parses")
            .check(Mode::Development, env(&[]))
            .expect_err("not permitted");
        assert_eq!(e.name, "webhooks[0].event_type");
        let sub = "[[subscriptions]]\nurl = \"https://x.example/h\"\nevents = [\"*\"]\nsecret_env = \"S\"\n";
        let e = FileConfig::parse(sub)
            .expect("parses")
            .check(Mode::Development, env(&[("S", "whsec_!!")]))
            .expect_err("bad secret");
        assert_eq!(e.name, "S");
        for short in ["whsec_AAAA", "fifteen-bytes!!"] {
            let e = FileConfig::parse(sub)
                .expect("parses")
                .check(Mode::Development, env(&[("S", short)]))
                .expect_err("a subscription secret under 16 bytes");
            assert_eq!(e.name, "S", "{short}");
        }
        FileConfig::parse(sub)
            .expect("parses")
            .check(Mode::Development, env(&[("S", "sixteen-bytes-ok")]))
            .expect("16 bytes are enough outside production");
    }

    #[test]
    fn subscription_filters_are_checked_key_by_key() {
        let sub = |filter: &str| {
            FileConfig::parse(&format!(
                "[[subscriptions]]\nurl = \"https://x.example/h\"\nevents = [\"*\"]\nfilter = {filter}\n"
            ))
            .and_then(|f| f.check(Mode::Development, env(&[])))
        };
        assert!(sub(r#"{ "/a" = { exists = true } }"#).is_ok());
        for (filter, name) in [
            ("[1]", "subscriptions[0].filter"),
            ("\"x\"", "subscriptions[0].filter"),
            (
                r#"{ amount = { eq = 1 } }"#,
                r#"subscriptions[0].filter."amount""#,
            ),
            (r#"{ "/a" = 1 }"#, r#"subscriptions[0].filter."/a""#),
            (r#"{ "/a" = {} }"#, r#"subscriptions[0].filter."/a""#),
            (
                r#"{ "/a" = { near = 1 } }"#,
                r#"subscriptions[0].filter."/a".near"#,
            ),
            (
                r#"{ "/a" = { gt = [1] } }"#,
                r#"subscriptions[0].filter."/a".gt"#,
            ),
            (
                r#"{ "/a" = { exists = "yes" } }"#,
                r#"subscriptions[0].filter."/a".exists"#,
            ),
        ] {
            let e = sub(filter).expect_err(filter);
            assert_eq!(e.name, name, "{filter}: {e}");
        }
    }

    #[test]
    fn reactors_are_checked_key_by_key() {
        let text = r#"
            [[reactors]]
            name = "mint-on-payment"
            on = "PAYMENT_RECEIVED"
            when = { "/amount" = { gte = 1 } }
            http = { method = "POST", url = "http://127.0.0.1:4000/mint", secret_env = "FACTORY_HOOK_SECRET", timeout_ms = 10000 }
            emit_on_success = "MINT_REQUESTED"
            emit_on_failure = "MINT_FAILED"
        "#;
        let get = env(&[("FACTORY_HOOK_SECRET", "factory-secret")]);
        let checked = FileConfig::parse(text)
            .expect("parses")
            .check(Mode::Development, &get)
            .expect("valid");
        let rule = checked.reactors[0].rule(0, None).expect("rule");
        assert_eq!(
            (rule.name.as_str(), rule.target().as_str()),
            ("mint-on-payment", "http://127.0.0.1:4000")
        );
        let shown = serde_json::to_value(checked.reactors[0].describe()).expect("ser");
        assert_eq!(
            shown,
            serde_json::json!({"name": "mint-on-payment", "on": "PAYMENT_RECEIVED",
                "when": {"/amount": {"gte": 1}},
                "call": {"method": "POST", "url": "http://127.0.0.1:4000/mint", "timeoutMs": 10000},
                "emitOnSuccess": "MINT_REQUESTED", "emitOnFailure": "MINT_FAILED"}),
            "what GET /api/reactors lists, without the secret"
        );
        let bare = text
            .replace("method = \"POST\", ", "")
            .replace(", timeout_ms = 10000", "");
        let bare = FileConfig::parse(&bare)
            .expect("parses")
            .check(Mode::Development, &get)
            .expect("valid");
        let call = bare.reactors[0].describe().call;
        assert_eq!(
            (call.method.as_str(), call.url.as_str(), call.timeout_ms),
            ("POST", "http://127.0.0.1:4000/mint", 10_000),
            "the defaults the call gets"
        );
        let bad = |from: &str, to: &str| {
            let text = text.replace(from, to);
            match FileConfig::parse(&text).and_then(|f| f.check(Mode::Development, &get)) {
                Ok(_) => panic!("{to:?} should be refused"),
                Err(e) => e,
            }
        };
        assert_eq!(
            bad("gte = 1", "near = 1").name,
            "reactors[0].when.\"/amount\".near"
        );
        assert_eq!(bad("\"POST\"", "\"GET\"").name, "reactors[0].http.method");
        assert_eq!(bad("http://127", "ftp://127").name, "reactors[0].http.url");
        assert_eq!(
            bad("\"MINT_FAILED\"", "\"\"").name,
            "reactors[0].emit_on_failure"
        );
        assert_eq!(
            bad("FACTORY_HOOK_SECRET\"", "UNSET_VAR\"").name,
            "reactors[0].http.secret_env"
        );
        let bad_b64 = env(&[("FACTORY_HOOK_SECRET", "whsec_not base64!")]);
        let e = FileConfig::parse(text)
            .and_then(|f| f.check(Mode::Development, &bad_b64))
            .expect_err("bad secret");
        assert_eq!(e.name, "FACTORY_HOOK_SECRET", "{e}");
        let unknown = bad("emit_on_failure", "emit_on_error");
        assert_eq!(unknown.name, "reactors[0].emit_on_error");
        assert!(unknown.message.contains("emit_on_error"), "{unknown}");
        let nexus = FileConfig::parse("[[nodes]]\nname = \"nexus\"\npublish = [\"*\"]\n")
            .and_then(|f| f.check(Mode::Development, &get))
            .expect_err("reserved");
        assert_eq!(nexus.name, "nodes[0].name");
        let twice = format!("{text}\n{text}");
        let e = FileConfig::parse(&twice)
            .and_then(|f| f.check(Mode::Development, &get))
            .expect_err("named twice");
        assert_eq!(e.name, "reactors[1].name");
        let in_file = text.replace("secret_env = \"FACTORY_HOOK_SECRET\"", "secret = \"x\"");
        let e = FileConfig::parse(&in_file)
            .and_then(|f| f.check(Mode::Production, &get))
            .expect_err("file secret in production");
        assert_eq!(e.name, "reactors[0].http.secret");
    }

    #[test]
    fn a_bad_value_names_its_key_by_path_and_line() {
        let name_and_message = |text: &str| match FileConfig::parse(text) {
            Ok(_) => panic!("{text:?} should be refused"),
            Err(e) => (e.name, e.message),
        };
        let cases = [
            (
                "# comment\n[breaker]\nfailure_threshold = \"five\"\n",
                "breaker.failure_threshold",
                "invalid type: string \"five\", expected u32 (line 3)",
            ),
            (
                "[retry]\nschedule_ms = [1, 2, \"x\"]\n",
                "retry.schedule_ms[2]",
                "invalid type: string \"x\", expected u64 (line 2)",
            ),
            (
                "[[reactors]]\nname = \"a\"\non = \"*\"\nhttp = { url = \"http://x\", timeout_ms = \"slow\" }\n",
                "reactors[0].http.timeout_ms",
                "invalid type: string \"slow\", expected u64 (line 4)",
            ),
            (
                "[[nodes]]\nname = \"a\"\npublish = [\"*\"]\n\n[[nodes]]\nname = 5\n",
                "nodes[1].name",
                "invalid type: integer `5`, expected a string (line 6)",
            ),
        ];
        for (text, name, message) in cases {
            assert_eq!(
                name_and_message(text),
                (name.to_owned(), message.to_owned())
            );
        }
        let (name, message) =
            name_and_message("[[nodes]]\nname = \"a\"\npublish = [\"*\"]\ncolour = \"red\"\n");
        assert_eq!(name, "nodes[0].colour");
        assert!(
            message.starts_with("unknown field `colour`") && message.ends_with("(line 4)"),
            "{message}"
        );
        let (name, message) = name_and_message("[retry\n");
        assert_eq!(name, "NEXUS_CONFIG", "a syntax error has no key: {message}");
        assert!(message.ends_with("(line 1)"), "{message}");
    }

    #[test]
    fn the_history_retention_is_a_day_at_least() {
        let retention = |text: &str| {
            FileConfig::parse(text)
                .and_then(|f| f.check(Mode::Development, env(&[])))
                .map(|c| c.history_retention)
        };
        assert_eq!(
            retention(""),
            Ok(Duration::from_secs(86_400)),
            "the default"
        );
        assert_eq!(
            retention("[retry]\nhistory_retention_ms = 604800000\n"),
            Ok(Duration::from_secs(604_800))
        );
        for bad in ["0", "86399999", "31708800001"] {
            let e = retention(&format!("[retry]\nhistory_retention_ms = {bad}\n")).expect_err(bad);
            assert_eq!(e.name, "retry.history_retention_ms", "{e}");
        }
    }

    #[test]
    fn the_lease_is_set_and_bounds_the_timeouts() {
        let check =
            |text: &str| FileConfig::parse(text).and_then(|f| f.check(Mode::Development, env(&[])));
        let lease = |text: &str| check(text).map(|c| c.lease);
        assert_eq!(lease(""), Ok(Duration::from_secs(60)), "the default");
        assert_eq!(
            lease("[retry]\nlease_ms = 90000\n"),
            Ok(Duration::from_secs(90))
        );
        for bad in ["0", "10000", "14999", "86400001", "1000000000000000"] {
            let e = lease(&format!("[retry]\nlease_ms = {bad}\n")).expect_err(bad);
            assert_eq!(e.name, "retry.lease_ms", "{e}");
        }
        let e = lease("[retry]\nlease_ms = -1\n").expect_err("negative");
        assert_eq!(e.name, "retry.lease_ms", "{e}");
        let reactor = |timeout: u64, lease: u64| {
            check(&format!(
                "[retry]\nlease_ms = {lease}\n\n[[reactors]]\nname = \"r\"\non = \"*\"\nhttp = {{ url = \"http://127.0.0.1:9/\", secret = \"s\", timeout_ms = {timeout} }}\n"
            ))
            .map(|c| c.reactors.len())
        };
        assert_eq!(reactor(55_000, 60_000), Ok(1));
        assert_eq!(
            lease("[retry]\nlease_ms = 15000\n"),
            Ok(Duration::from_secs(15))
        );
        assert_eq!(reactor(90_000, 120_000), Ok(1), "beyond the old fixed cap");
        for (timeout, lease) in [
            (55_001, 60_000),
            (60_000, 60_000),
            (70_000, 60_000),
            (30_000, 20_000),
        ] {
            let e = reactor(timeout, lease).expect_err("not within the lease");
            assert_eq!(e.name, "reactors[0].http.timeout_ms", "{e}");
        }
        assert_eq!(
            reactor(0, 60_000).map_err(|e| e.name),
            Err("reactors[0].http.timeout_ms".to_owned())
        );
    }

    #[test]
    fn debug_shows_no_secret() {
        let secrets = [
            "inline-node-secret-0123456789abcdef",
            "env-node-secret-0123456789abcdef",
            "subscription-secret-0123456789abcdef",
            "inline-reactor-secret-0123456789abcdef",
            "ws-token-0123456789abcdef",
            "shared-secret-0123456789abcdef",
            "admin-token-0123456789abcdef",
        ];
        let text = format!(
            r#"
            [[nodes]]
            name = "a"
            secret = "{}"
            publish = ["*"]

            [[nodes]]
            name = "b"
            secret_env = "B_SECRET"
            publish = ["*"]

            [[subscriptions]]
            url = "https://crm.example/hooks"
            events = ["*"]
            secret_env = "SUB_SECRET"

            [[reactors]]
            name = "r"
            on = "*"
            http = {{ url = "http://127.0.0.1:9/", secret = "{}" }}

            [[ws_tokens]]
            token_env = "WS_TOKEN"
            events = ["*"]
            "#,
            secrets[0], secrets[3]
        );
        let get = env(&[
            ("B_SECRET", secrets[1]),
            ("SUB_SECRET", secrets[2]),
            ("WS_TOKEN", secrets[4]),
            ("NEXUS_SECRET", secrets[5]),
            ("NEXUS_ADMIN_TOKEN", secrets[6]),
        ]);
        let file = FileConfig::parse(&text).expect("parses");
        let file_debug = format!("{file:?}");
        let checked = file.check(Mode::Development, &get).expect("valid");
        let settings = crate::config::Settings::from_env(&get).expect("settings");
        for debug in [
            file_debug,
            format!("{checked:?}"),
            format!("{settings:?}"),
            format!("{:#?}", (&checked, &settings)),
        ] {
            assert!(debug.contains("***"), "{debug}");
            for secret in secrets {
                assert!(!debug.contains(secret), "{secret} in {debug}");
            }
        }
    }
}
