//! The flags (clap), their defaults for each mode, and the checks that keep the flags of one mode
//! out of the other.

use std::time::Duration;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};

/// Load generator for nexus-server: a steady signed load against a live server, the
/// measurement suite, or a soak.
///
/// Steady load: --url URL --rate N --duration S [--secret S | NEXUS_SECRET=S] [--node NAME]
/// [--type EVENT_TYPE] [--connections N]; exits 1 when any publish failed.
///
/// Suite: no --url (it starts --server-bin on a fresh data directory), or --suite --url URL
/// --secret S --admin-token T; [--duration S] [--rate N] [--connections N] [--subscribers N].
///
/// Soak: --soak [--minutes 30] [--rate 5000] [--subscriptions 10] [--failing 2]
/// [--sample-seconds 10] [--csv PATH] [--server-bin PATH] [--connections 16]; starts its own
/// server and receivers, writes one CSV row per sample and exits 1 when a goal is missed.
#[derive(Debug, Parser)]
#[command(name = "loadgen")]
pub(crate) struct Args {
    /// The server, http://HOST:PORT (plain HTTP); without it the suite starts its own server.
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// Run the measurement suite against --url instead of a steady load.
    #[arg(long)]
    suite: bool,
    /// The node's signing secret (needed for a steady load; the suite's own server has one).
    #[arg(long, env = "NEXUS_SECRET", hide_env_values = true, value_name = "S")]
    secret: Option<String>,
    /// The server's admin token (suite only; the suite's own server has one).
    #[arg(long, value_name = "T")]
    admin_token: Option<String>,
    /// Seconds to run, fractions allowed (needed for a steady load; each suite phase, default 5).
    #[arg(long, value_name = "SECONDS", value_parser = seconds)]
    duration: Option<Duration>,
    /// Events per second (needed for a steady load; the suite's latency phase, default 10000).
    #[arg(long, value_name = "EVENTS_PER_S", value_parser = positive::<u64>)]
    rate: Option<u64>,
    /// Keep-alive connections (default 16 for a steady load, 64 in the suite).
    #[arg(long, value_name = "N", value_parser = positive::<usize>)]
    connections: Option<usize>,
    /// WebSocket subscribers of the fan-out (suite only, default 1000).
    #[arg(long, value_name = "N", value_parser = positive::<usize>)]
    subscribers: Option<usize>,
    /// PostgreSQL for the server the suite starts (its DATABASE_URL; an empty database), instead
    /// of SQLite in a fresh data directory; a baseline of raw insert transactions over one
    /// connection to it is measured first (suite without --url only).
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// The server binary the suite starts (suite only, default target/release/nexus-server).
    #[arg(long, value_name = "PATH")]
    server_bin: Option<String>,
    /// The node to sign as (steady load only, default loadgen).
    #[arg(long, value_name = "NAME")]
    node: Option<String>,
    /// The event type to publish (steady load only, default LOADGEN_TEST).
    #[arg(long = "type", value_name = "EVENT_TYPE", value_parser = event_type)]
    event_type: Option<String>,
    /// A soak: its own server, local receivers (some failing), a steady load for --minutes, one
    /// CSV row per sample and a verdict on memory, descriptors and latency drift.
    #[arg(long)]
    soak: bool,
    /// Minutes the soak runs, fractions allowed (soak only, default 30).
    #[arg(long, value_name = "MINUTES", value_parser = positive::<f64>)]
    minutes: Option<f64>,
    /// Webhook subscriptions, each to a receiver of its own (soak only, default 10).
    #[arg(long, value_name = "N", value_parser = positive::<usize>)]
    subscriptions: Option<usize>,
    /// How many of the subscriptions' receivers answer 500 (soak only, default 2).
    #[arg(long, value_name = "N")]
    failing: Option<usize>,
    /// Seconds between two samples, one CSV row each (soak only, default 10).
    #[arg(long, value_name = "SECONDS", value_parser = seconds)]
    sample_seconds: Option<Duration>,
    /// Where the soak writes its CSV (soak only, default soak.csv).
    #[arg(long, value_name = "PATH")]
    csv: Option<String>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// The settings of a run, defaults applied.
pub(crate) struct Options {
    /// `--url`: `None` starts a server for the suite.
    pub(crate) url: Option<String>,
    /// Run the measurement suite against `--url` instead of a steady load.
    pub(crate) suite: bool,
    pub(crate) secret: String,
    pub(crate) admin: String,
    pub(crate) duration: Duration,
    pub(crate) rate: u64,
    pub(crate) connections: usize,
    pub(crate) subscribers: usize,
    pub(crate) server_bin: String,
    /// `--database-url`: the suite's own server on PostgreSQL.
    pub(crate) database_url: Option<String>,
    pub(crate) node: String,
    pub(crate) event_type: String,
    /// `--soak`, with its settings.
    pub(crate) soak: Option<Soak>,
}

/// The settings of a soak, defaults applied.
pub(crate) struct Soak {
    pub(crate) run_for: Duration,
    pub(crate) subscriptions: usize,
    pub(crate) failing: usize,
    pub(crate) sample: Duration,
    pub(crate) csv: String,
}

impl Options {
    /// A steady load against `--url`, rather than the suite.
    pub(crate) fn steady(&self) -> bool {
        self.url.is_some() && !self.suite
    }
}

/// Parses `value` as a number greater than zero.
fn positive<T: std::str::FromStr + PartialOrd + Default>(value: &str) -> Result<T, String> {
    match value.parse::<T>() {
        Ok(v) if v > T::default() => Ok(v),
        _ => Err("must be a number greater than 0".into()),
    }
}

/// Parses `value` as a finite number of seconds greater than zero.
fn seconds(value: &str) -> Result<Duration, String> {
    let secs: f64 = positive(value).map_err(|_| "must be a number of seconds greater than 0")?;
    Duration::try_from_secs_f64(secs).map_err(|_| "must be a finite number of seconds".into())
}

fn event_type(value: &str) -> Result<String, String> {
    nexus_event::EventType::new(value)
        .map(|_| value.to_owned())
        .map_err(|e| e.to_string())
}

/// The flags of the command line, checked; a usage error exits 2 with clap's message.
pub(crate) fn options() -> Options {
    Args::parse()
        .check()
        .unwrap_or_else(|(kind, message)| Args::command().error(kind, message).exit())
}

impl Args {
    /// Applies the defaults of the mode the flags select, refusing flags of the other mode.
    fn check(self) -> Result<Options, (ErrorKind, String)> {
        let steady = self.url.is_some() && !self.suite;
        let only = |flags: &[(&str, bool)], mode: &str| match flags.iter().find(|(_, given)| *given)
        {
            Some((flag, _)) => Err((
                ErrorKind::ArgumentConflict,
                format!("{flag} only applies {mode}"),
            )),
            None => Ok(()),
        };
        let soak_flags = [
            ("--minutes", self.minutes.is_some()),
            ("--subscriptions", self.subscriptions.is_some()),
            ("--failing", self.failing.is_some()),
            ("--sample-seconds", self.sample_seconds.is_some()),
            ("--csv", self.csv.is_some()),
        ];
        let soak = if self.soak {
            only(
                &[
                    ("--url", self.url.is_some()),
                    ("--suite", self.suite),
                    ("--duration", self.duration.is_some()),
                    ("--subscribers", self.subscribers.is_some()),
                    ("--database-url", self.database_url.is_some()),
                    ("--node", self.node.is_some()),
                    ("--type", self.event_type.is_some()),
                ],
                "outside a soak (--soak starts its own server; its length is --minutes)",
            )?;
            let subscriptions = self.subscriptions.unwrap_or(10);
            let failing = self.failing.unwrap_or(2);
            if failing > subscriptions {
                return Err((
                    ErrorKind::ValueValidation,
                    format!("--failing {failing} is more than --subscriptions {subscriptions}"),
                ));
            }
            let minutes = self.minutes.unwrap_or(30.0);
            let run_for = Duration::try_from_secs_f64(minutes * 60.0).map_err(|_| {
                (
                    ErrorKind::ValueValidation,
                    format!("--minutes {minutes}: must be a finite number of minutes"),
                )
            })?;
            let sample = self.sample_seconds.unwrap_or(Duration::from_secs(10));
            if run_for < sample * 8 {
                return Err((
                    ErrorKind::ValueValidation,
                    format!(
                        "--minutes {minutes} gives fewer than 8 samples of {:?}: the verdict compares quarters of the run",
                        sample
                    ),
                ));
            }
            Some(Soak {
                run_for,
                subscriptions,
                failing,
                sample,
                csv: self.csv.unwrap_or_else(|| "soak.csv".into()),
            })
        } else {
            only(&soak_flags, "to a soak (--soak)")?;
            None
        };
        // A soak has no --url (refused above), so it is never steady; it shares the suite's flags.
        if steady {
            only(
                &[
                    ("--admin-token", self.admin_token.is_some()),
                    ("--subscribers", self.subscribers.is_some()),
                    ("--server-bin", self.server_bin.is_some()),
                    ("--database-url", self.database_url.is_some()),
                ],
                "to the suite (--suite or no --url)",
            )?;
            for (needed, given) in [
                ("--rate", self.rate.is_some()),
                ("--duration", self.duration.is_some()),
            ] {
                if !given {
                    return Err((
                        ErrorKind::MissingRequiredArgument,
                        format!("a steady load against --url needs {needed}"),
                    ));
                }
            }
            if self.secret.is_none() {
                return Err((
                    ErrorKind::MissingRequiredArgument,
                    "a steady load against --url needs the node's secret: --secret S or NEXUS_SECRET".into(),
                ));
            }
        } else if soak.is_none() {
            only(
                &[
                    ("--node", self.node.is_some()),
                    ("--type", self.event_type.is_some()),
                ],
                "to a steady load (--url without --suite)",
            )?;
            if self.url.is_some() && self.database_url.is_some() {
                return Err((
                    ErrorKind::ArgumentConflict,
                    "--database-url is for the server the suite starts; a server at --url has its own store".into(),
                ));
            }
            if let Some(url) = &self.database_url
                && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
            {
                return Err((
                    ErrorKind::ValueValidation,
                    format!("--database-url {url:?}: expected postgres://USER@HOST:PORT/DATABASE"),
                ));
            }
            if self.suite && self.url.is_none() {
                return Err((
                    ErrorKind::MissingRequiredArgument,
                    "--suite needs --url (without --url the suite starts its own server)".into(),
                ));
            }
        }
        if let Some(url) = &self.url {
            host_of(url).map_err(|e| (ErrorKind::ValueValidation, e))?;
        }
        Ok(Options {
            url: self.url,
            suite: self.suite,
            secret: self
                .secret
                .unwrap_or_else(|| "loadgen-node-secret-0123456789abcdef".into()),
            admin: self
                .admin_token
                .unwrap_or_else(|| "loadgen-admin-token-0123456789abcdef".into()),
            duration: self.duration.unwrap_or(Duration::from_secs(5)),
            rate: self
                .rate
                .unwrap_or(if soak.is_some() { 5_000 } else { 10_000 }),
            connections: self
                .connections
                .unwrap_or(if steady || soak.is_some() { 16 } else { 64 }),
            subscribers: self.subscribers.unwrap_or(1000),
            server_bin: self
                .server_bin
                .unwrap_or_else(|| "target/release/nexus-server".into()),
            database_url: self.database_url,
            node: self.node.unwrap_or_else(|| "loadgen".into()),
            event_type: self.event_type.unwrap_or_else(|| "LOADGEN_TEST".into()),
            soak,
        })
    }
}

/// `host:port` of a plain-HTTP base URL such as `http://127.0.0.1:3000`.
pub(crate) fn host_of(url: &str) -> Result<String, String> {
    let rest = if let Some(rest) = url.strip_prefix("http://") {
        rest
    } else if url.starts_with("https://") {
        return Err(format!(
            "--url {url:?}: loadgen speaks plain HTTP only; point it at the server's own listener (or a plain-HTTP port of the proxy)"
        ));
    } else {
        return Err(format!("--url {url:?}: expected http://HOST:PORT"));
    };
    let host = rest.trim_end_matches('/');
    if host.is_empty() || host.contains('/') || host.contains('@') {
        return Err(format!(
            "--url {url:?}: expected http://HOST:PORT with no path or credentials"
        ));
    }
    Ok(
        if host
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            host.to_owned()
        } else {
            format!("{host}:80")
        },
    )
}
