//! Configuration: the environment (and `.env`), validated at start, and the TOML file named by
//! `NEXUS_CONFIG` (API.md sections 9 and 10). Every error names the variable or key.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use nexus_event::{EventType, Pattern, TypeFilter};
use nexus_resilience::{BreakerConfig, Schedule};
use serde::Deserialize;

/// A setting that stops the start, with the variable or key it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigError {
    /// The variable (`PORT`) or key (`nodes[0].publish`).
    pub(crate) name: String,
    /// What is wrong.
    pub(crate) message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.name, self.message)
    }
}

impl std::error::Error for ConfigError {}

fn err(name: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        name: name.into(),
        message: message.into(),
    }
}

/// `NEXUS_ENV`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Generated secrets, pretty logs.
    Development,
    /// Strict secrets, JSON logs, no private targets.
    Production,
    /// As development, for test runs.
    Test,
}

/// `LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable.
    Pretty,
}

/// Everything read from the environment.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) host: IpAddr,
    pub(crate) port: u16,
    pub(crate) data_dir: PathBuf,
    pub(crate) mode: Mode,
    pub(crate) config_path: Option<PathBuf>,
    pub(crate) secret: Option<String>,
    pub(crate) admin_token: Option<String>,
    pub(crate) allowed_origins: Vec<String>,
    pub(crate) rate_window: Duration,
    pub(crate) rate_max: u32,
    pub(crate) max_body_bytes: usize,
    pub(crate) ws_buffer: usize,
    pub(crate) reactor_max_depth: usize,
    pub(crate) allow_private_targets: bool,
    pub(crate) log_level: tracing::Level,
    pub(crate) log_format: LogFormat,
}

/// Placeholders shipped in `.env.example`; in production a secret equal to one is refused.
pub(crate) const PLACEHOLDERS: &[&str] = &[
    "change-me-to-a-random-secret-of-32-bytes-or-more",
    "change-me-to-a-random-admin-token-of-32-bytes-or-more",
    "change-me-to-a-random-dashboard-token-of-32-bytes",
];

fn number<T: std::str::FromStr>(
    name: &str,
    value: Option<String>,
    default: T,
    what: &str,
) -> Result<T, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| err(name, format!("must be {what}, got {v:?}"))),
    }
}

fn boolean(name: &str, value: Option<String>) -> Result<bool, ConfigError> {
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(false),
        Some("true" | "1" | "yes") => Ok(true),
        Some("false" | "0" | "no") => Ok(false),
        Some(other) => Err(err(name, format!("must be true or false, got {other:?}"))),
    }
}

/// `ALLOWED_ORIGINS`: `*` for any origin, or `scheme://host[:port]` entries, comma separated.
fn origins(value: Option<String>) -> Result<Vec<String>, ConfigError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let list: Vec<String> = value
        .split(',')
        .map(|o| o.trim().to_owned())
        .filter(|o| !o.is_empty())
        .collect();
    for o in &list {
        if o == "*" {
            if list.len() > 1 {
                return Err(err(
                    "ALLOWED_ORIGINS",
                    "* allows every origin and cannot be mixed with others",
                ));
            }
            continue;
        }
        let ok = (o.starts_with("http://") || o.starts_with("https://"))
            && !o.ends_with('/')
            && o.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            return Err(err(
                "ALLOWED_ORIGINS",
                format!("{o:?} is not an origin (scheme://host[:port], no path)"),
            ));
        }
    }
    Ok(list)
}

impl Settings {
    /// Reads and checks every variable; `get` is the environment (a map in tests).
    pub(crate) fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
        let non_empty = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let mode = match non_empty("NEXUS_ENV").as_deref() {
            None | Some("development") => Mode::Development,
            Some("production") => Mode::Production,
            Some("test") => Mode::Test,
            Some(other) => {
                return Err(err(
                    "NEXUS_ENV",
                    format!("must be development, production or test, got {other:?}"),
                ));
            }
        };
        let host: IpAddr = number(
            "HOST",
            non_empty("HOST"),
            IpAddr::from([127, 0, 0, 1]),
            "an IP address",
        )?;
        let port: u16 = number(
            "PORT",
            non_empty("PORT"),
            3000,
            "a port number (0 to 65535)",
        )?;
        let rate_window_ms: u64 = number(
            "RATE_LIMIT_WINDOW_MS",
            non_empty("RATE_LIMIT_WINDOW_MS"),
            1000,
            "milliseconds",
        )?;
        if rate_window_ms == 0 {
            return Err(err("RATE_LIMIT_WINDOW_MS", "must be more than 0"));
        }
        let max_body_bytes: usize = number(
            "NEXUS_MAX_BODY_BYTES",
            non_empty("NEXUS_MAX_BODY_BYTES"),
            262_144,
            "a number of bytes",
        )?;
        if max_body_bytes < 1024 {
            return Err(err("NEXUS_MAX_BODY_BYTES", "must be at least 1024"));
        }
        let ws_buffer: usize = number(
            "NEXUS_WS_BUFFER",
            non_empty("NEXUS_WS_BUFFER"),
            1024,
            "a number of frames",
        )?;
        if ws_buffer == 0 {
            return Err(err("NEXUS_WS_BUFFER", "must be at least 1"));
        }
        let reactor_max_depth: usize = number(
            "NEXUS_REACTOR_MAX_DEPTH",
            non_empty("NEXUS_REACTOR_MAX_DEPTH"),
            nexus_reactors::DEFAULT_MAX_DEPTH,
            "a number of events",
        )?;
        if reactor_max_depth == 0 {
            return Err(err("NEXUS_REACTOR_MAX_DEPTH", "must be at least 1"));
        }
        let log_level = match non_empty("LOG_LEVEL").as_deref() {
            None | Some("info") => tracing::Level::INFO,
            Some("error") => tracing::Level::ERROR,
            Some("warn") => tracing::Level::WARN,
            Some("debug") => tracing::Level::DEBUG,
            Some("trace") => tracing::Level::TRACE,
            Some(other) => {
                return Err(err(
                    "LOG_LEVEL",
                    format!("must be error, warn, info, debug or trace, got {other:?}"),
                ));
            }
        };
        let log_format = match non_empty("LOG_FORMAT").as_deref() {
            None if mode == Mode::Development => LogFormat::Pretty,
            None => LogFormat::Json,
            Some("json") => LogFormat::Json,
            Some("pretty") => LogFormat::Pretty,
            Some(other) => {
                return Err(err(
                    "LOG_FORMAT",
                    format!("must be json or pretty, got {other:?}"),
                ));
            }
        };
        Ok(Settings {
            host,
            port,
            data_dir: non_empty("DATA_DIR").map_or_else(|| PathBuf::from("./data"), PathBuf::from),
            mode,
            config_path: non_empty("NEXUS_CONFIG").map(PathBuf::from),
            secret: non_empty("NEXUS_SECRET"),
            admin_token: non_empty("NEXUS_ADMIN_TOKEN"),
            allowed_origins: origins(non_empty("ALLOWED_ORIGINS"))?,
            rate_window: Duration::from_millis(rate_window_ms),
            rate_max: number(
                "RATE_LIMIT_MAX_REQUESTS",
                non_empty("RATE_LIMIT_MAX_REQUESTS"),
                1000,
                "a number of requests",
            )?,
            max_body_bytes,
            ws_buffer,
            reactor_max_depth,
            allow_private_targets: boolean(
                "NEXUS_ALLOW_PRIVATE_TARGETS",
                get("NEXUS_ALLOW_PRIVATE_TARGETS"),
            )?,
            log_level,
            log_format,
        })
    }
}

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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NodeEntry {
    pub(crate) name: String,
    pub(crate) secret_env: Option<String>,
    pub(crate) secret: Option<String>,
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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetryEntry {
    pub(crate) schedule_ms: Option<Vec<u64>>,
    pub(crate) jitter: Option<f64>,
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
    pub(crate) secret: Option<String>,
    pub(crate) publish: TypeFilter,
}

/// A subscription of the file, its secret resolved.
#[derive(Debug, Clone)]
pub(crate) struct SubscriptionSpec {
    pub(crate) url: String,
    pub(crate) events: Vec<Pattern>,
    pub(crate) secret: Option<String>,
    pub(crate) ordered: bool,
}

/// The checked file.
#[derive(Debug, Clone, Default)]
pub(crate) struct Checked {
    pub(crate) nodes: Vec<NodeSpec>,
    pub(crate) webhooks: Vec<nexus_transport::WebhookMapping>,
    pub(crate) subscriptions: Vec<SubscriptionSpec>,
    pub(crate) schedule: Schedule,
    pub(crate) breaker: BreakerConfig,
    /// (token, scope)
    pub(crate) ws_tokens: Vec<(String, TypeFilter)>,
    pub(crate) reactors: Vec<ReactorSpec>,
}

/// A reactor of the file, checked, its secret resolved.
#[derive(Debug, Clone)]
pub(crate) struct ReactorSpec {
    pub(crate) config: nexus_reactors::ReactorConfig,
    /// `None`: signed with `NEXUS_SECRET`.
    pub(crate) secret: Option<String>,
    /// Where the secret came from, for errors: its variable, or its key in the file.
    pub(crate) secret_name: Option<String>,
}

impl ReactorSpec {
    /// The rule, signing with its own secret or else `shared`.
    pub(crate) fn rule(
        &self,
        i: usize,
        shared: Option<&str>,
    ) -> Result<nexus_reactors::Rule, ConfigError> {
        let secret = self.secret.as_deref().or(shared).unwrap_or_default();
        self.config.build(secret).map_err(|e| match e {
            nexus_reactors::ReactorError::Invalid { field, message } if field == "http.secret" => {
                let name = self
                    .secret_name
                    .clone()
                    .unwrap_or_else(|| "NEXUS_SECRET".into());
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
    /// Parses the file; a syntax error, an unknown key or a wrong type names it.
    pub(crate) fn parse(text: &str) -> Result<FileConfig, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let message = e.message().to_owned();
            let span = e.span().map(|s| {
                let line = text[..s.start.min(text.len())].lines().count().max(1);
                format!(" (line {line})")
            });
            err(
                "NEXUS_CONFIG",
                format!("{message}{}", span.unwrap_or_default()),
            )
        })
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
            let secret = match (n.secret_env, n.secret) {
                (Some(_), Some(_)) => {
                    return Err(err(key("secret"), "give secret_env or secret, not both"));
                }
                (Some(var), None) => {
                    Some(get(&var).filter(|v| !v.is_empty()).ok_or_else(|| {
                        err(key("secret_env"), format!("the variable {var} is not set"))
                    })?)
                }
                (None, Some(_)) if mode == Mode::Production => {
                    return Err(err(
                        key("secret"),
                        "a secret in the file is refused in production; use secret_env",
                    ));
                }
                (None, Some(s)) => Some(s),
                (None, None) => None,
            };
            checked.nodes.push(NodeSpec {
                name: n.name,
                secret,
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
            let secret = match s.secret_env {
                Some(var) => {
                    let value = get(&var).filter(|v| !v.is_empty()).ok_or_else(|| {
                        err(key("secret_env"), format!("the variable {var} is not set"))
                    })?;
                    nexus_transport::auth::Secret::parse(&value)
                        .map_err(|e| err(&var, e.to_string()))?;
                    if mode == Mode::Production {
                        strong(&var, &value)?;
                    }
                    Some(value)
                }
                None => None,
            };
            checked.subscriptions.push(SubscriptionSpec {
                url: s.url,
                events,
                secret,
                ordered: s.ordered,
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
            let secret_name = match (&r.http.secret_env, &r.http.secret) {
                (Some(var), _) => Some(var.clone()),
                (None, Some(_)) => Some(key("http.secret")),
                (None, None) => None,
            };
            let secret = match (&r.http.secret_env, &r.http.secret) {
                (Some(_), Some(_)) => {
                    return Err(err(
                        key("http.secret"),
                        "give secret_env or secret, not both",
                    ));
                }
                (Some(var), None) => {
                    let value = get(var).filter(|v| !v.is_empty()).ok_or_else(|| {
                        err(
                            key("http.secret_env"),
                            format!("the variable {var} is not set"),
                        )
                    })?;
                    if mode == Mode::Production {
                        strong(var, &value)?;
                    }
                    Some(value)
                }
                (None, Some(_)) if mode == Mode::Production => {
                    return Err(err(
                        key("http.secret"),
                        "a secret in the file is refused in production; use secret_env",
                    ));
                }
                (None, Some(s)) => Some(s.clone()),
                (None, None) => None,
            };
            let spec = ReactorSpec {
                config: r,
                secret,
                secret_name,
            };
            // Every field is checked now; the shared secret is only known later.
            spec.rule(i, Some("unused-for-the-check"))?;
            checked.reactors.push(spec);
        }
        for (i, t) in self.ws_tokens.into_iter().enumerate() {
            let key = |field: &str| format!("ws_tokens[{i}].{field}");
            let token = get(&t.token_env).filter(|v| !v.is_empty()).ok_or_else(|| {
                err(
                    key("token_env"),
                    format!("the variable {} is not set", t.token_env),
                )
            })?;
            if mode == Mode::Production {
                strong(&t.token_env, &token)?;
            }
            checked
                .ws_tokens
                .push((token, globs(&key("events"), &t.events)?));
        }
        Ok(checked)
    }
}

/// Production rule for secrets: at least 32 bytes (decoded for `whsec_`), not a placeholder.
pub(crate) fn strong(name: &str, secret: &str) -> Result<(), ConfigError> {
    if PLACEHOLDERS.contains(&secret) {
        return Err(err(
            name,
            "is the placeholder from .env.example; set a real secret",
        ));
    }
    let bytes =
        nexus_transport::auth::Secret::parse(secret).map_err(|e| err(name, e.to_string()))?;
    if bytes.bytes().len() < 32 {
        return Err(err(
            name,
            format!(
                "must be at least 32 bytes in production, got {}",
                bytes.bytes().len()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults_and_bad_values() {
        let s = Settings::from_env(env(&[])).expect("defaults");
        assert_eq!(
            (s.port, s.mode, s.log_format),
            (3000, Mode::Development, LogFormat::Pretty)
        );
        assert_eq!(s.data_dir, PathBuf::from("./data"));
        for (var, value) in [
            ("PORT", "http"),
            ("PORT", "70000"),
            ("HOST", "localhost:3"),
            ("NEXUS_ENV", "prod"),
            ("LOG_LEVEL", "loud"),
            ("LOG_FORMAT", "xml"),
            ("RATE_LIMIT_WINDOW_MS", "0"),
            ("NEXUS_MAX_BODY_BYTES", "-1"),
            ("NEXUS_ALLOW_PRIVATE_TARGETS", "maybe"),
            ("NEXUS_REACTOR_MAX_DEPTH", "0"),
        ] {
            let e = Settings::from_env(env(&[(var, value)])).expect_err(var);
            assert_eq!(e.name, var, "{e}");
        }
        let p = Settings::from_env(env(&[("NEXUS_ENV", "production")])).expect("production");
        assert_eq!(p.log_format, LogFormat::Json);
    }

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
        assert_eq!(c.nodes[0].secret.as_deref(), Some("s"));
        assert_eq!(c.schedule.max_attempts(), 3);
        assert_eq!(c.breaker.failure_threshold, 3);
        assert!(c.subscriptions[0].ordered);

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
    fn origins_and_mappings_are_checked() {
        assert_eq!(
            Settings::from_env(env(&[(
                "ALLOWED_ORIGINS",
                "https://a.example, http://b:8080"
            )]))
            .map(|s| s.allowed_origins)
            .ok(),
            Some(vec![
                "https://a.example".to_owned(),
                "http://b:8080".to_owned()
            ])
        );
        assert!(Settings::from_env(env(&[("ALLOWED_ORIGINS", "*")])).is_ok());
        for bad in ["*,https://a", "a.example", "https://a.example/"] {
            let e = Settings::from_env(env(&[("ALLOWED_ORIGINS", bad)])).expect_err(bad);
            assert_eq!(e.name, "ALLOWED_ORIGINS");
        }
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
    }

    #[test]
    fn production_secrets_must_be_strong() {
        assert!(strong("NEXUS_ADMIN_TOKEN", "short").is_err());
        assert!(strong("NEXUS_ADMIN_TOKEN", PLACEHOLDERS[1]).is_err());
        assert!(strong("NEXUS_ADMIN_TOKEN", &"k".repeat(32)).is_ok());
        assert!(strong("X", "whsec_AAAA").is_err(), "3 decoded bytes");
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
        assert_eq!(unknown.name, "NEXUS_CONFIG");
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
}
