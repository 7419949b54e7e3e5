//! The environment (API.md section 9): every variable read once at start, checked, with its
//! default; an error names the variable.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{ConfigError, LogFormat, Mode, SecretText, err};

/// Everything read from the environment.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) host: IpAddr,
    pub(crate) port: u16,
    pub(crate) data_dir: PathBuf,
    /// `DATABASE_URL`: PostgreSQL instead of SQLite under `data_dir`. A secret: it may hold
    /// the password.
    pub(crate) database_url: Option<SecretText>,
    pub(crate) mode: Mode,
    pub(crate) config_path: Option<PathBuf>,
    pub(crate) secret: Option<SecretText>,
    pub(crate) admin_token: Option<SecretText>,
    pub(crate) allowed_origins: Vec<String>,
    pub(crate) rate_window: Duration,
    pub(crate) rate_max: u32,
    pub(crate) max_body_bytes: usize,
    pub(crate) ws_buffer: usize,
    /// `NEXUS_WS_MAX_MESSAGE_BYTES` (65536), `NEXUS_WS_MAX_FRAME_PATTERNS` (256),
    /// `NEXUS_WS_MAX_PATTERNS` (1024): what one WebSocket client may send and hold.
    pub(crate) ws_limits: WsLimits,
    pub(crate) reactor_max_depth: usize,
    pub(crate) allow_private_targets: bool,
    /// `NEXUS_REQUIRE_DECLARED_TYPES` (false): refuse events of undeclared types (API.md
    /// section 11).
    pub(crate) require_declared_types: bool,
    pub(crate) log_level: tracing::Level,
    pub(crate) log_format: LogFormat,
    /// `NEXUS_UI` (true): serve the operator console under `/ui/` (API.md section 14).
    pub(crate) ui: bool,
    /// `NEXUS_HEADER_TIMEOUT_MS`, `NEXUS_IDLE_TIMEOUT_MS`, `NEXUS_MAX_CONNECTIONS`,
    /// `NEXUS_MAX_HEADER_BYTES`: the connection limits (defaults in `ServeConfig`).
    pub(crate) serve: nexus_transport::ServeConfig,
    /// `NEXUS_MAX_BODY_BYTES_IN_FLIGHT` (64 MiB): request body bytes in memory at once.
    pub(crate) max_body_bytes_in_flight: usize,
}

/// The connection limits of the HTTP server, each in its variable.
fn serve_config(
    non_empty: impl Fn(&str) -> Option<String>,
) -> Result<nexus_transport::ServeConfig, ConfigError> {
    let defaults = nexus_transport::ServeConfig::default();
    let millis = |name: &str, default: Duration| -> Result<Duration, ConfigError> {
        let ms: u64 = number(
            name,
            non_empty(name),
            u64::try_from(default.as_millis()).unwrap_or(u64::MAX),
            "milliseconds",
        )?;
        if ms == 0 {
            return Err(err(name, "must be more than 0"));
        }
        Ok(Duration::from_millis(ms))
    };
    let header_timeout = millis("NEXUS_HEADER_TIMEOUT_MS", defaults.header_timeout)?;
    let idle_timeout = millis("NEXUS_IDLE_TIMEOUT_MS", defaults.idle_timeout)?;
    let max_connections: usize = number(
        "NEXUS_MAX_CONNECTIONS",
        non_empty("NEXUS_MAX_CONNECTIONS"),
        defaults.max_connections,
        "a number of connections",
    )?;
    if max_connections == 0 {
        return Err(err("NEXUS_MAX_CONNECTIONS", "must be at least 1"));
    }
    let max_header_bytes: usize = number(
        "NEXUS_MAX_HEADER_BYTES",
        non_empty("NEXUS_MAX_HEADER_BYTES"),
        defaults.max_header_bytes,
        "a number of bytes",
    )?;
    if !(1024..=1 << 20).contains(&max_header_bytes) {
        return Err(err(
            "NEXUS_MAX_HEADER_BYTES",
            "must be between 1024 and 1048576",
        ));
    }
    Ok(nexus_transport::ServeConfig {
        header_timeout,
        idle_timeout,
        max_connections,
        max_header_bytes,
    })
}

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

/// The WebSocket bounds of [`Settings::ws_limits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WsLimits {
    pub(crate) max_message_bytes: usize,
    pub(crate) max_patterns_per_frame: usize,
    pub(crate) max_patterns: usize,
}

impl WsLimits {
    /// Reads the three variables: each at least 1 (a message at least 1024 bytes), and a frame
    /// may not name more patterns than a connection may hold.
    fn from_env(non_empty: impl Fn(&str) -> Option<String>) -> Result<WsLimits, ConfigError> {
        let at_least = |name: &str, default: usize, min: usize, what: &str| {
            let v: usize = number(name, non_empty(name), default, what)?;
            if v < min {
                return Err(err(name, format!("must be at least {min}")));
            }
            Ok(v)
        };
        let limits = WsLimits {
            max_message_bytes: at_least(
                "NEXUS_WS_MAX_MESSAGE_BYTES",
                nexus_transport::DEFAULT_WS_MAX_MESSAGE_BYTES,
                1024,
                "a number of bytes",
            )?,
            max_patterns_per_frame: at_least(
                "NEXUS_WS_MAX_FRAME_PATTERNS",
                nexus_transport::DEFAULT_WS_MAX_FRAME_PATTERNS,
                1,
                "a number of patterns",
            )?,
            max_patterns: at_least(
                "NEXUS_WS_MAX_PATTERNS",
                nexus_transport::DEFAULT_WS_MAX_PATTERNS,
                1,
                "a number of patterns",
            )?,
        };
        if limits.max_patterns_per_frame > limits.max_patterns {
            return Err(err(
                "NEXUS_WS_MAX_FRAME_PATTERNS",
                format!(
                    "must not be above NEXUS_WS_MAX_PATTERNS ({})",
                    limits.max_patterns
                ),
            ));
        }
        Ok(limits)
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

/// `NEXUS_UI`: `true` or `1` (the default when unset or empty), `false` or `0`.
fn console(value: Option<String>) -> Result<bool, ConfigError> {
    match value.as_deref().map(str::trim) {
        None | Some("" | "true" | "1") => Ok(true),
        Some("false" | "0") => Ok(false),
        Some(other) => Err(err(
            "NEXUS_UI",
            format!("must be true, false, 1 or 0, got {other:?}"),
        )),
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

fn non_empty(get: impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    get(name).filter(|v| !v.trim().is_empty())
}

/// Whether `url` names a PostgreSQL database (`postgres://` or `postgresql://` with a host
/// part); the message says what is wrong without repeating the URL, which may hold a password.
pub(crate) fn check_database_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .ok_or("must be a postgres:// or postgresql:// URL")?;
    if rest.is_empty() || (rest.starts_with('/') && !rest.contains("host=")) {
        return Err("names no host (postgres://user:password@host:port/database)".into());
    }
    if url.chars().any(char::is_whitespace) {
        return Err("must not contain spaces".into());
    }
    Ok(())
}

/// `NEXUS_ENV`.
fn mode(get: impl Fn(&str) -> Option<String>) -> Result<Mode, ConfigError> {
    match non_empty(get, "NEXUS_ENV").as_deref() {
        None | Some("development") => Ok(Mode::Development),
        Some("production") => Ok(Mode::Production),
        Some("test") => Ok(Mode::Test),
        Some(other) => Err(err(
            "NEXUS_ENV",
            format!("must be development, production or test, got {other:?}"),
        )),
    }
}

/// `LOG_FORMAT`: JSON by default outside development.
fn log_format(get: impl Fn(&str) -> Option<String>, mode: Mode) -> Result<LogFormat, ConfigError> {
    match non_empty(get, "LOG_FORMAT").as_deref() {
        None if mode == Mode::Development => Ok(LogFormat::Pretty),
        None | Some("json") => Ok(LogFormat::Json),
        Some("pretty") => Ok(LogFormat::Pretty),
        Some(other) => Err(err(
            "LOG_FORMAT",
            format!("must be json or pretty, got {other:?}"),
        )),
    }
}

impl LogFormat {
    /// The format to report an error in before the settings are known (or when they are
    /// refused): as [`Settings::from_env`] would choose, pretty when `LOG_FORMAT` itself is bad.
    pub(crate) fn hint(get: impl Fn(&str) -> Option<String>) -> LogFormat {
        log_format(&get, mode(&get).unwrap_or(Mode::Development)).unwrap_or(LogFormat::Pretty)
    }
}

impl Settings {
    /// Reads and checks every variable; `get` is the environment (a map in tests).
    pub(crate) fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
        let non_empty = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let mode = mode(&get)?;
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
        let max_body_bytes_in_flight: usize = number(
            "NEXUS_MAX_BODY_BYTES_IN_FLIGHT",
            non_empty("NEXUS_MAX_BODY_BYTES_IN_FLIGHT"),
            64 << 20,
            "a number of bytes",
        )?;
        // A batch at the limit must fit on its own, gzip-encoded too (compressed and
        // decompressed bytes are both held while it is decompressed).
        let batch = max_body_bytes.saturating_mul(16);
        if max_body_bytes_in_flight < batch.saturating_mul(2)
            || max_body_bytes_in_flight > u32::MAX as usize
        {
            return Err(err(
                "NEXUS_MAX_BODY_BYTES_IN_FLIGHT",
                format!(
                    "must be at least twice a batch at the body limit ({} bytes) and below 4 GiB",
                    batch.saturating_mul(2)
                ),
            ));
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
        let ws_limits = WsLimits::from_env(non_empty)?;
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
        let log_format = log_format(&get, mode)?;
        let database_url = non_empty("DATABASE_URL").map(|u| u.trim().to_owned());
        if let Some(url) = &database_url {
            check_database_url(url).map_err(|m| err("DATABASE_URL", m))?;
        }
        Ok(Settings {
            host,
            port,
            data_dir: non_empty("DATA_DIR").map_or_else(|| PathBuf::from("./data"), PathBuf::from),
            database_url: database_url.map(SecretText::new),
            mode,
            config_path: non_empty("NEXUS_CONFIG").map(PathBuf::from),
            secret: non_empty("NEXUS_SECRET").map(SecretText::new),
            admin_token: non_empty("NEXUS_ADMIN_TOKEN").map(SecretText::new),
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
            ws_limits,
            reactor_max_depth,
            allow_private_targets: boolean(
                "NEXUS_ALLOW_PRIVATE_TARGETS",
                get("NEXUS_ALLOW_PRIVATE_TARGETS"),
            )?,
            require_declared_types: boolean(
                "NEXUS_REQUIRE_DECLARED_TYPES",
                get("NEXUS_REQUIRE_DECLARED_TYPES"),
            )?,
            log_level,
            log_format,
            ui: console(get("NEXUS_UI"))?,
            serve: serve_config(non_empty)?,
            max_body_bytes_in_flight,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_env as env;

    #[test]
    fn websocket_limits() {
        let d = Settings::from_env(env(&[])).expect("defaults").ws_limits;
        assert_eq!(
            (
                d.max_message_bytes,
                d.max_patterns_per_frame,
                d.max_patterns
            ),
            (65_536, 256, 1024)
        );
        let set = Settings::from_env(env(&[
            ("NEXUS_WS_MAX_MESSAGE_BYTES", "4096"),
            ("NEXUS_WS_MAX_FRAME_PATTERNS", "8"),
            ("NEXUS_WS_MAX_PATTERNS", "8"),
        ]))
        .expect("set")
        .ws_limits;
        assert_eq!(
            (
                set.max_message_bytes,
                set.max_patterns_per_frame,
                set.max_patterns
            ),
            (4096, 8, 8)
        );
        for (vars, named) in [
            (
                &[("NEXUS_WS_MAX_MESSAGE_BYTES", "100")][..],
                "NEXUS_WS_MAX_MESSAGE_BYTES",
            ),
            (
                &[("NEXUS_WS_MAX_PATTERNS", "0")][..],
                "NEXUS_WS_MAX_PATTERNS",
            ),
            (
                &[("NEXUS_WS_MAX_FRAME_PATTERNS", "many")][..],
                "NEXUS_WS_MAX_FRAME_PATTERNS",
            ),
            (
                &[
                    ("NEXUS_WS_MAX_FRAME_PATTERNS", "64"),
                    ("NEXUS_WS_MAX_PATTERNS", "32"),
                ][..],
                "NEXUS_WS_MAX_FRAME_PATTERNS",
            ),
        ] {
            let e = Settings::from_env(env(vars)).expect_err("refused");
            assert_eq!(e.name, named, "{e}");
        }
    }

    #[test]
    fn defaults_and_bad_values() {
        let s = Settings::from_env(env(&[])).expect("defaults");
        assert_eq!(
            (s.port, s.mode, s.log_format),
            (3000, Mode::Development, LogFormat::Pretty)
        );
        assert_eq!(s.data_dir, PathBuf::from("./data"));
        assert!(s.database_url.is_none(), "SQLite unless a URL is given");
        let pg = Settings::from_env(env(&[(
            "DATABASE_URL",
            "postgres://nexus:hunter2@db.internal:5433/nexus",
        )]))
        .expect("a postgres URL");
        assert_eq!(
            pg.database_url.as_ref().map(SecretText::expose),
            Some("postgres://nexus:hunter2@db.internal:5433/nexus")
        );
        assert!(!format!("{pg:?}").contains("hunter2"), "{pg:?}");
        let bad = Settings::from_env(env(&[("DATABASE_URL", "mysql://root:hunter2@db/x")]))
            .expect_err("not postgres");
        assert!(!bad.message.contains("hunter2"), "{bad}");
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
            ("NEXUS_REQUIRE_DECLARED_TYPES", "sometimes"),
            ("NEXUS_UI", "yes"),
            ("NEXUS_UI", "off"),
            ("NEXUS_REACTOR_MAX_DEPTH", "0"),
            ("NEXUS_HEADER_TIMEOUT_MS", "0"),
            ("NEXUS_HEADER_TIMEOUT_MS", "soon"),
            ("NEXUS_IDLE_TIMEOUT_MS", "-5"),
            ("NEXUS_MAX_CONNECTIONS", "0"),
            ("NEXUS_MAX_HEADER_BYTES", "100"),
            ("NEXUS_MAX_BODY_BYTES_IN_FLIGHT", "1048576"),
            ("DATABASE_URL", "mysql://root@db/nexus"),
            ("DATABASE_URL", "postgres://"),
            ("DATABASE_URL", "nexus.db"),
        ] {
            let e = Settings::from_env(env(&[(var, value)])).expect_err(var);
            assert_eq!(e.name, var, "{e}");
        }
        assert!(
            !s.require_declared_types,
            "undeclared types are accepted by default"
        );
        assert_eq!(s.serve, nexus_transport::ServeConfig::default());
        assert_eq!(s.max_body_bytes_in_flight, 64 << 20);
        let limits = Settings::from_env(env(&[
            ("NEXUS_HEADER_TIMEOUT_MS", "1500"),
            ("NEXUS_IDLE_TIMEOUT_MS", "2500"),
            ("NEXUS_MAX_CONNECTIONS", "64"),
            ("NEXUS_MAX_HEADER_BYTES", "4096"),
        ]))
        .expect("limits");
        assert_eq!(
            limits.serve,
            nexus_transport::ServeConfig {
                header_timeout: Duration::from_millis(1500),
                idle_timeout: Duration::from_millis(2500),
                max_connections: 64,
                max_header_bytes: 4096,
            }
        );
        let strict =
            Settings::from_env(env(&[("NEXUS_REQUIRE_DECLARED_TYPES", "true")])).expect("strict");
        assert!(strict.require_declared_types);
        let p = Settings::from_env(env(&[("NEXUS_ENV", "production")])).expect("production");
        assert_eq!(p.log_format, LogFormat::Json);
        for (pairs, hint) in [
            (&[][..], LogFormat::Pretty),
            (
                &[("LOG_FORMAT", "json"), ("PORT", "x")][..],
                LogFormat::Json,
            ),
            (
                &[("NEXUS_ENV", "production"), ("PORT", "x")][..],
                LogFormat::Json,
            ),
            (
                &[("NEXUS_ENV", "prod"), ("LOG_FORMAT", "json")][..],
                LogFormat::Json,
            ),
            (&[("LOG_FORMAT", "xml")][..], LogFormat::Pretty),
        ] {
            assert_eq!(LogFormat::hint(env(pairs)), hint, "{pairs:?}");
        }
    }

    #[test]
    fn the_console_is_on_unless_turned_off() {
        assert!(Settings::from_env(env(&[])).expect("defaults").ui);
        for (value, on) in [
            ("true", true),
            ("1", true),
            ("", true),
            ("false", false),
            ("0", false),
        ] {
            let s = Settings::from_env(env(&[("NEXUS_UI", value)])).expect(value);
            assert_eq!(s.ui, on, "NEXUS_UI={value}");
        }
        let e = Settings::from_env(env(&[("NEXUS_UI", "disabled")])).expect_err("not a boolean");
        assert_eq!(e.name, "NEXUS_UI");
        assert!(e.message.contains("true, false, 1 or 0"), "{e}");
    }

    #[test]
    fn origins_are_checked() {
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
    }
}
