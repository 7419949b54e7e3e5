//! `nexus-server`: the Nexus event gateway.
//!
//! Reads its configuration from the environment, `.env` and the file named by `NEXUS_CONFIG`;
//! opens the durable store; runs the retry worker that delivers webhooks and runs reactors;
//! serves the HTTP and WebSocket API of API.md; and drains on SIGTERM or SIGINT. The only place that reads the
//! environment and installs the log subscriber and the Prometheus recorder.
//!
//! The store is SQLite under `DATA_DIR`, or PostgreSQL when `DATABASE_URL` (or `[store] url`)
//! names one (module `store`). `nexus-server migrate` applies the selected store's schema and exits;
//! `nexus-server copy` copies a SQLite store into PostgreSQL (module `copy`).
#![forbid(unsafe_code)]

/// jemalloc with its background purging threads rather than glibc's malloc: after a burst
/// (40 connections of 4 MB bodies, then 80 batches of 1000 events) glibc kept the freed memory
/// in its arenas for good (75 MiB, idle), where jemalloc gives it back within 20 s (71 -> 35
/// MiB); mimalloc did worse than both (91 MiB). README "Memory after load" has the figures. An
/// embedding program chooses its own allocator.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod config;
mod copy;
mod logging;
mod prune;
mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use metrics_util::MetricKind;
use nexus_core::Bus;
use nexus_outbound::{HttpClient, OutboundConfig};
use nexus_reactors::{DeliveryTarget, Reactors};
use nexus_resilience::{Breakers, MetricsInstrument, RetryWorker, SystemClock, WorkerConfig};
use nexus_store::{NewSubscription, Store, SubscriptionPatch};
use nexus_transport::auth::{Node, Nodes, Secret};
use nexus_transport::{App, AppConfig, RateLimit, WsConfig, WsToken};

use config::{
    Checked, ConfigError, FileConfig, LogFormat, Mode, SecretText, Secrets, Settings, config_error,
};
use logging::Console;
use store::{Backend, Choice, Wiring};

/// The Nexus event gateway. With no command it serves; its settings come from the environment
/// (API.md section 9) and the file named by `NEXUS_CONFIG`.
#[derive(Debug, Parser)]
#[command(name = "nexus-server", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Applies the schema of the selected store (PostgreSQL at DATABASE_URL or `[store] url`,
    /// else SQLite under DATA_DIR), prints which store and schema version, and exits.
    Migrate,
    /// Copies a SQLite store (a stopped server's data dir) into an empty PostgreSQL database,
    /// prints one line per table and exits (API.md section 13).
    Copy {
        /// The SQLite data directory (no server may run on it).
        #[arg(long)]
        from: PathBuf,
        /// The PostgreSQL URL of an empty database.
        #[arg(long)]
        to: String,
    },
}

/// Bucket bounds of every histogram (all in seconds): from a fsync'd commit (sub-millisecond)
/// to an outbound call that runs into its timeout.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How long a drain may take before the process exits anyway.
const FORCED_EXIT: Duration = Duration::from_secs(30);

/// How often histogram samples recorded since the last scrape are folded into their buckets.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version print and exit 0; a bad argument prints the usage and exits 2.
        Err(e) => e.exit(),
    };
    let env = |name: &str| std::env::var(name).ok();
    // `.env` of the working directory only (dotenvy's `dotenv()` would also search the parents).
    if let Err(e) = dotenvy::from_filename(".env")
        && !e.not_found()
    {
        Console::new(LogFormat::hint(env)).fatal(None, &format!(".env: {e}"));
        return ExitCode::from(2);
    }
    let settings = match Settings::from_env(env) {
        Ok(s) => s,
        Err(e) => {
            Console::new(LogFormat::hint(env)).fatal(Some(&e.name), &e.to_string());
            return ExitCode::from(2);
        }
    };
    let console = Console::new(settings.log_format);
    logging::install(settings.log_level, settings.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            console.fatal(None, &format!("cannot start the runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let outcome = match cli.command {
        None => runtime.block_on(run(settings, console)),
        Some(Command::Migrate) => runtime.block_on(migrate(settings, console)),
        Some(Command::Copy { from, to }) => runtime
            .block_on(copy::copy(&from, &to, console))
            .map_err(anyhow::Error::from),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match e.downcast_ref::<ConfigError>() {
                Some(config) => console.fatal(Some(&config.name), &config.to_string()),
                None => console.fatal(None, &format!("{e:#}")),
            }
            ExitCode::from(2)
        }
    }
}

/// The config file named by `NEXUS_CONFIG`, checked; the defaults without one.
fn read_config(settings: &Settings) -> Result<Checked, ConfigError> {
    let env = |name: &str| std::env::var(name).ok();
    match &settings.config_path {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                config_error(
                    "NEXUS_CONFIG",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            FileConfig::parse(&text)?
                .relative_to(&config::base_of(Some(path)))
                .check(settings.mode, env)
        }
        None => Ok(Checked::default()),
    }
}

/// `nexus-server migrate`: opens the selected store, which applies its schema (or refuses a
/// newer one), says which store and schema version on one line, and closes it.
async fn migrate(settings: Settings, console: Console) -> anyhow::Result<()> {
    let checked = read_config(&settings)?;
    let backend = Backend::open(Choice::of(&settings, &checked), Wiring::default()).await?;
    console.migrated(
        backend.kind_name(),
        &backend.location(),
        backend.schema_version(),
    );
    backend.close().await;
    Ok(())
}

async fn run(settings: Settings, console: Console) -> anyhow::Result<()> {
    let checked = read_config(&settings)?;
    if settings.mode == Mode::Production && settings.config_path.is_none() {
        return Err(config_error(
            "NEXUS_CONFIG",
            "is required in production: without it any node name may publish any type",
        )
        .into());
    }
    let secrets = Secrets::resolve(&settings, &checked, |name, written| {
        console.generated(name, written);
    })?;
    let nodes = if settings.config_path.is_none() {
        let shared = secrets
            .nodes
            .as_ref()
            .map(SecretText::expose)
            .unwrap_or_default();
        Nodes::Open(Secret::parse(shared).map_err(|e| config_error("NEXUS_SECRET", e))?)
    } else {
        let mut list = Vec::new();
        for n in &checked.nodes {
            let written = n
                .secret
                .as_ref()
                .or(secrets.nodes.as_ref())
                .map(SecretText::expose)
                .unwrap_or_default();
            list.push(Node {
                name: n.name.clone(),
                secret: Secret::parse(written)
                    .map_err(|e| config_error(&format!("secret of node {}", n.name), e))?,
                publish: n.publish.clone(),
            });
        }
        Nodes::configured(list)
    };

    // Histograms, not the exporter's default summaries: buckets aggregate across instances and
    // over any range, which `histogram_quantile` in the alerts and the dashboard needs.
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(SECONDS_BUCKETS)
        .context("cannot configure the histogram buckets")?
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    // `install_recorder` runs no upkeep: each histogram sample would wait for the next scrape of
    // `/metrics`, so a server nobody scrapes grew by every request (the soak of issue 18: about
    // 10 MiB a minute at 5,000 events/s, given back by one scrape). Drained every 5 s, as the
    // exporter's own listener does.
    let upkeep = recorder.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(METRICS_UPKEEP);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    // Each crate names the metrics it records; API.md section 8 is all of them together.
    let described = nexus_transport::metric_names::ALL
        .iter()
        .chain(nexus_outbound::metric_names::ALL)
        .chain(nexus_resilience::metric_names::ALL)
        .chain(nexus_reactors::metric_names::ALL)
        .chain(nexus_store::metric_names::ALL)
        .chain(nexus_catalog::metric_names::ALL)
        .chain(nexus_transport::metric_names::PROCESS);
    for (name, kind, description) in described {
        match kind {
            MetricKind::Counter => metrics::describe_counter!(*name, *description),
            MetricKind::Gauge => metrics::describe_gauge!(*name, *description),
            MetricKind::Histogram => metrics::describe_histogram!(*name, *description),
        }
    }

    let mut rules = Vec::new();
    for (i, r) in checked.reactors.iter().enumerate() {
        rules.push(r.rule(i, secrets.nodes.as_ref().map(SecretText::expose))?);
    }
    let reactors = Arc::new(
        Reactors::new(rules)
            .map_err(|e| config_error("reactors", e))?
            .max_depth(settings.reactor_max_depth),
    );
    if settings.mode == Mode::Production && !settings.allow_private_targets {
        for (i, s) in checked.subscriptions.iter().enumerate() {
            nexus_outbound::refuse_private(&s.url)
                .await
                .map_err(|e| config_error(&format!("subscriptions[{i}].url"), e))?;
        }
        for (i, r) in checked.reactors.iter().enumerate() {
            nexus_outbound::refuse_private(&r.config.http.url)
                .await
                .map_err(|e| config_error(&format!("reactors[{i}].http.url"), e))?;
        }
    }

    let bus = Bus::new();
    let backend = Backend::open(
        Choice::of(&settings, &checked),
        Wiring {
            bus: Some(bus.clone()),
            router: Some(Arc::clone(&reactors) as _),
        },
    )
    .await?;
    let dyn_store = backend.dyn_store();
    apply_subscriptions(dyn_store.as_ref(), &checked).await?;
    let catalog =
        nexus_catalog::Catalog::open(Arc::clone(&dyn_store) as _, settings.require_declared_types)
            .await
            .map_err(|e| config_error("event_types", e))?;
    let synced = catalog
        .sync_config(checked.event_types.clone())
        .await
        .map_err(|e| config_error("event_types", e))?;
    tracing::debug!(
        declared = synced.declared,
        released = ?synced.released,
        "event types synced from the config file"
    );

    let breakers = Arc::new(Breakers::with_instrument(
        checked.breaker,
        Arc::new(MetricsInstrument),
    ));
    let http = Arc::new(HttpClient::new(OutboundConfig {
        refuse_private: settings.mode == Mode::Production && !settings.allow_private_targets,
        ..OutboundConfig::default()
    }));
    let target = Arc::new(
        DeliveryTarget::new(
            Arc::clone(&dyn_store),
            Arc::clone(&http),
            Arc::clone(&reactors),
        )
        .catalog(Arc::clone(&catalog)),
    );
    let pruning = prune::spawn(Arc::clone(&dyn_store), checked.history_retention);
    let worker = RetryWorker::new(
        backend.work_queue(),
        target,
        Arc::new(SystemClock),
        worker_config(&checked),
    )?
    .breakers(Arc::clone(&breakers))
    .spawn();

    let mut config = AppConfig::new(nodes, Secret::token(secrets.admin.expose()));
    config.webhooks = checked.webhooks.clone();
    config.max_body_bytes = settings.max_body_bytes;
    config.max_body_bytes_in_flight = settings.max_body_bytes_in_flight;
    config.production = settings.mode == Mode::Production;
    config.allow_private_targets = settings.allow_private_targets;
    config.allowed_origins = settings.allowed_origins.clone();
    config.ui = settings.ui;
    config.reactors = checked.reactors.iter().map(|r| r.describe()).collect();
    config.rate_limit = RateLimit {
        window: settings.rate_window,
        max_requests: settings.rate_max,
    };
    config.ws = WsConfig {
        tokens: checked
            .ws_tokens
            .iter()
            .map(|(token, scope)| {
                Ok(WsToken {
                    token: Secret::token(token.expose()),
                    events: scope.clone(),
                })
            })
            .collect::<Result<_, ConfigError>>()?,
        buffer: settings.ws_buffer,
        max_message_bytes: settings.ws_limits.max_message_bytes,
        max_patterns_per_frame: settings.ws_limits.max_patterns_per_frame,
        max_patterns: settings.ws_limits.max_patterns,
        ..WsConfig::default()
    };
    let store_gauges = backend.gauges();
    let app = App::new(dyn_store, bus, breakers, config)
        .catalog(Arc::clone(&catalog))
        .metrics(Arc::new(move || {
            store_gauges();
            // Read at scrape time, like the other gauges that are read rather than counted.
            if let Some(rss) = nexus_transport::rss_bytes() {
                metrics::gauge!(nexus_transport::metric_names::PROCESS_RESIDENT_MEMORY_BYTES)
                    .set(rss as f64);
            }
            recorder.render()
        }))
        .database_size(backend.size_probe())
        .store_kind(backend.kind())
        .outbound(http);

    let addr = SocketAddr::new(settings.host, settings.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| config_error("PORT", format!("cannot listen on {addr}: {e}")))?;
    let local = listener.local_addr()?;
    // The signal handlers exist before the server says it is ready: a SIGTERM sent as soon as
    // `/health/ready` answers 200 drains it, where it would otherwise still meet the default
    // action and kill it.
    let shutdown = Shutdown::install();
    app.lifecycle().set_ready();
    if settings.log_format == LogFormat::Pretty {
        tracing::info!(address = %local, store = backend.kind_name(), location = %backend.location(), "nexus-server listening");
    }
    // With JSON logs the banner is that log line, written whatever the level.
    console.banner(local, &settings.data_dir);

    let lifecycle = Arc::clone(app.lifecycle());
    let (stop_serving, serving_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(nexus_transport::serve_with(
        listener,
        app.router(),
        settings.serve,
        async move {
            let _ = serving_stopped.await;
        },
    ));
    shutdown.wait().await;
    tracing::info!("shutting down: draining");
    lifecycle.start_draining();
    tokio::spawn(async {
        tokio::time::sleep(FORCED_EXIT).await;
        tracing::error!(
            "drain took longer than {} s; exiting",
            FORCED_EXIT.as_secs()
        );
        std::process::exit(1);
    });
    // Stop accepting and finish the requests in flight; a connection that will not finish does
    // not keep the queue from being put away.
    let _ = stop_serving.send(());
    match tokio::time::timeout(Duration::from_secs(15), server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::error!(error = %e, "the HTTP server failed while draining"),
        Ok(Err(e)) => tracing::error!(error = %e, "the HTTP server task failed"),
        Err(_) => tracing::warn!("requests still open after 15 s; stopping without them"),
    }
    let report = worker.stop(Duration::from_secs(10)).await;
    pruning.abort();
    let _ = pruning.await;
    // WebSocket connections were told 1001 when the drain began; give their close frames a
    // moment to go out.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while lifecycle
        .websocket_connections
        .load(std::sync::atomic::Ordering::Relaxed)
        > 0
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::info!(
        finished = report.finished,
        released = report.released,
        "stopped"
    );
    // Everything that held the store is done with it; the last handle joins the writer on the
    // blocking pool, after its final commit. A handle still held elsewhere (a task that outlived
    // the drain) stops the store when it goes, through `Drop`.
    drop(app);
    // The catalogue's follower holds a handle of the store; closing needs the last one.
    catalog.stop().await;
    drop(catalog);
    backend.close().await;
    Ok(())
}

/// SIGTERM and SIGINT, listened for from [`Shutdown::install`] on.
struct Shutdown {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl Shutdown {
    /// Installs the handlers now (inside the runtime), so no signal meets the default action.
    fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let listen = |kind: SignalKind, name: &str| match signal(kind) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for {name}");
                    None
                }
            };
            Shutdown {
                term: listen(SignalKind::terminate(), "SIGTERM"),
                interrupt: listen(SignalKind::interrupt(), "SIGINT"),
            }
        }
        #[cfg(not(unix))]
        Shutdown {}
    }

    /// Until SIGTERM or SIGINT arrives.
    async fn wait(self) {
        #[cfg(unix)]
        {
            async fn recv(signal: Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                _ = recv(self.term) => {}
                _ = recv(self.interrupt) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// `[[subscriptions]]`, keyed by URL: created when none has it, else updated: events, ordered
/// and filter as the file says (no `filter` removes one), the secret when the file names one;
/// its `enabled` is left as it is. Removing one from the file deletes nothing.
async fn apply_subscriptions(store: &dyn Store, checked: &Checked) -> anyhow::Result<()> {
    let mut existing = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store.subscriptions(1000, cursor.as_deref()).await?;
        existing.extend(page.items);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    for (i, s) in checked.subscriptions.iter().enumerate() {
        match existing.iter().find(|e| e.url == s.url) {
            Some(found) => {
                store
                    .update_subscription(
                        &found.id,
                        SubscriptionPatch {
                            events: Some(s.events.clone()),
                            ordered: Some(s.ordered),
                            secret: s.secret.as_ref().map(|s| s.expose().to_owned()),
                            // The file says the filter, as it says the events: none there
                            // removes one set through the API.
                            filter: Some(s.filter.clone()),
                            ..Default::default()
                        },
                    )
                    .await
                    .map_err(|e| config_error(&format!("subscriptions[{i}]"), e))?;
            }
            None => {
                let secret = match &s.secret {
                    Some(written) => written.expose().to_owned(),
                    None => {
                        Secret::generate()
                            .map_err(|_| {
                                config_error(
                                    &format!("subscriptions[{i}].secret"),
                                    "cannot be generated: the system random generator failed",
                                )
                            })?
                            .1
                    }
                };
                store
                    .create_subscription(NewSubscription {
                        url: s.url.clone(),
                        events: s.events.clone(),
                        secret,
                        ordered: s.ordered,
                        filter: s.filter.clone(),
                    })
                    .await
                    .map_err(|e| config_error(&format!("subscriptions[{i}]"), e))?;
            }
        }
    }
    Ok(())
}

/// The retry worker's settings from the file: `[retry]`'s schedule and lease.
fn worker_config(checked: &Checked) -> WorkerConfig {
    WorkerConfig {
        schedule: checked.schedule.clone(),
        lease_for: checked.lease,
        ..WorkerConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_section_reaches_the_worker() {
        let checked = FileConfig::parse("[retry]\nschedule_ms = [1000]\nlease_ms = 90000\n")
            .and_then(|f| f.check(Mode::Development, |_: &str| None))
            .expect("valid");
        let config = worker_config(&checked);
        assert_eq!(config.lease_for, Duration::from_secs(90));
        assert_eq!(config.schedule.max_attempts(), 2);
        let default = worker_config(&Checked::default());
        assert_eq!(default.lease_for, WorkerConfig::default().lease_for);
    }
}
