//! `nexus-cli`: the Nexus operator tool over the ingress, admin and WebSocket APIs.
//!
//! Every command talks to one server (`--server`, `NEXUS_URL`) with the admin token (`--token`,
//! `NEXUS_ADMIN_TOKEN`); `publish` signs as a node (`--node`/`NEXUS_NODE`,
//! `--secret`/`NEXUS_SECRET`). Output is a human table by default and JSON with `--json`;
//! progress of long operations goes to standard error when it is a terminal. Exit codes are in
//! [`EXIT_CODES`].

mod output;

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use nexus_client::{
    Admin, Draft, Error, EventQuery, Incoming, NewSubscription, PageRequest, Publisher, Replay,
    RetryPolicy, Scheme, Selection, State, Subscriber, SubscriptionUpdate,
};
use serde_json::{Value, json};

use crate::output::{Out, Progress, table};

/// What the exit codes mean; shown by `--help`.
const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the server answered with an error (4xx/5xx; its code is printed), or `health` is not ok
  2  usage or configuration error (bad flag, missing token, invalid input)
  3  the server could not be reached or did not answer in time";

/// The Nexus operator tool.
#[derive(Debug, Parser)]
#[command(name = "nexus-cli", version, about, after_help = EXIT_CODES)]
struct Cli {
    /// The server's base URL.
    #[arg(
        long = "server",
        short = 's',
        env = "NEXUS_URL",
        value_name = "URL",
        default_value = "http://127.0.0.1:3000",
        global = true
    )]
    server: String,
    /// The admin token (also a WebSocket subscriber token for `tail`).
    #[arg(long, env = "NEXUS_ADMIN_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// Print JSON instead of tables (one JSON document; `tail` prints one per line).
    #[arg(long, global = true)]
    json: bool,
    /// Seconds one request may take.
    #[arg(long, default_value_t = 10, value_name = "SECS", global = true)]
    timeout: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Publish events, signed as a node: one from arguments, or many as JSON lines on stdin.
    Publish(PublishArgs),
    /// Follow events live over the WebSocket (once connected, reconnects by itself, resuming
    /// where it was; exits 3 when the first connection fails).
    Tail(TailArgs),
    /// Read the event log.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Dead letters: list, redrive, purge.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Circuit breakers: list, reset.
    #[command(subcommand)]
    Breakers(BreakersCommand),
    /// Webhook subscriptions: list, get, create, update, delete.
    #[command(subcommand)]
    Subs(SubsCommand),
    /// Enqueue stored events again for a subscription or the reactors.
    Replay(ReplayArgs),
    /// The server's detailed health; exits 1 unless its status is ok.
    Health,
}

#[derive(Debug, Args)]
struct PublishArgs {
    /// The node to publish as.
    #[arg(long, env = "NEXUS_NODE")]
    node: String,
    /// The node's secret (`whsec_<base64>` or plain text).
    #[arg(long, env = "NEXUS_SECRET", hide_env_values = true)]
    secret: String,
    /// Signature scheme: `nexus` or `standard` (Standard Webhooks).
    #[arg(long, default_value = "nexus")]
    scheme: String,
    /// The event type; leave it out to read events from stdin.
    event_type: Option<String>,
    /// The payload as JSON (`{}` when left out; `-` reads it from stdin).
    payload: Option<String>,
    /// The event id (a UUIDv7 is made when left out; the server deduplicates by it).
    #[arg(long)]
    id: Option<String>,
    /// The correlation id.
    #[arg(long)]
    correlation_id: Option<String>,
    /// Events per batch when reading JSON lines (`{"type", "payload"?, "id"?,
    /// "correlation_id"?}`) from stdin; 1 to 1000.
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Attempts per request (network errors, timeouts, 429 and 5xx are retried).
    #[arg(long, default_value_t = 5)]
    attempts: u32,
}

#[derive(Debug, Args)]
struct TailArgs {
    /// Type globs to follow.
    #[arg(
        long = "events",
        short = 'e',
        default_value = "*",
        value_delimiter = ','
    )]
    events: Vec<String>,
    /// Start after this sequence (stored events first, then live ones).
    #[arg(long)]
    since: Option<u64>,
    /// Stop after this many events.
    #[arg(long)]
    count: Option<u64>,
}

#[derive(Debug, Args)]
struct ListArgs {
    /// Items per page (1 to 1000).
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// Start at this cursor (from a previous page).
    #[arg(long)]
    cursor: Option<String>,
    /// Follow the cursors to the end instead of one page.
    #[arg(long)]
    all: bool,
}

#[derive(Debug, Subcommand)]
enum EventsCommand {
    /// List events in sequence order.
    List {
        /// Only types matching this glob.
        #[arg(long = "type")]
        event_type: Option<String>,
        /// Only events after this sequence.
        #[arg(long)]
        after: Option<u64>,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Show one event.
    Get {
        /// The event id.
        id: String,
    },
}

#[derive(Debug, Args)]
struct Which {
    /// Dead letter ids.
    ids: Vec<i64>,
    /// Every dead letter.
    #[arg(long, conflicts_with = "ids")]
    all: bool,
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// List dead letters, newest first.
    List(ListArgs),
    /// Put dead letters back in the queue with their attempts reset.
    Redrive(Which),
    /// Delete dead letters.
    Purge(Which),
}

#[derive(Debug, Subcommand)]
enum BreakersCommand {
    /// List every target's breaker.
    List(ListArgs),
    /// Close one target's breaker.
    Reset {
        /// The target's origin, such as `http://127.0.0.1:4000`.
        target: String,
    },
}

#[derive(Debug, Subcommand)]
enum SubsCommand {
    /// List subscriptions.
    List(ListArgs),
    /// Show one subscription.
    Get {
        /// Its id.
        id: String,
    },
    /// Create a subscription; its secret is printed this once.
    Create {
        /// Where events are POSTed.
        #[arg(long)]
        url: String,
        /// Type globs, comma-separated or repeated.
        #[arg(long, required = true, value_delimiter = ',')]
        events: Vec<String>,
        /// Its signing secret (one is generated when left out).
        #[arg(long)]
        secret: Option<String>,
        /// Deliver in strict sequence order.
        #[arg(long)]
        ordered: bool,
    },
    /// Change a subscription.
    Update {
        /// Its id.
        id: String,
        /// A new URL.
        #[arg(long)]
        url: Option<String>,
        /// New type globs, comma-separated or repeated.
        #[arg(long, value_delimiter = ',')]
        events: Option<Vec<String>>,
        /// A new secret.
        #[arg(long)]
        secret: Option<String>,
        /// Ordered or not.
        #[arg(long)]
        ordered: Option<bool>,
        /// Enabled or not (re-enable one disabled by a 410).
        #[arg(long)]
        enabled: Option<bool>,
    },
    /// Delete a subscription.
    Delete {
        /// Its id.
        id: String,
    },
}

#[derive(Debug, Args)]
struct ReplayArgs {
    /// Events after this sequence.
    #[arg(long)]
    after: u64,
    /// Up to this sequence (inclusive).
    #[arg(long)]
    until: Option<u64>,
    /// Only these type globs, comma-separated or repeated.
    #[arg(long, value_delimiter = ',')]
    types: Option<Vec<String>>,
    /// A subscription id, or `reactors`.
    #[arg(long)]
    target: String,
    /// Then follow the retry queue until it is empty (or this many seconds pass).
    #[arg(long, value_name = "SECS")]
    wait: Option<u64>,
}

/// A usage or configuration error: exit code 2.
#[derive(Debug)]
struct Usage(String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// `health` found the server not ok: exit code 1.
#[derive(Debug)]
struct Unhealthy(String);

impl std::fmt::Display for Unhealthy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the server is {}", self.0)
    }
}

impl std::error::Error for Unhealthy {}

fn usage(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Usage(message.into()))
}

/// The exit code of a failure, per [`EXIT_CODES`].
fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<Usage>().is_some() {
        return 2;
    }
    if e.downcast_ref::<Unhealthy>().is_some() {
        return 1;
    }
    match e.downcast_ref::<Error>().map(Error::last) {
        Some(Error::Invalid { .. }) => 2,
        Some(Error::Network { .. } | Error::Timeout { .. }) => 3,
        Some(_) => 1,
        None => 1,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = exit_code(&e);
            let mut stderr = std::io::stderr().lock();
            if json {
                let mut error = json!({ "message": format!("{e:#}"), "exitCode": code });
                if let Some(api) = e.downcast_ref::<Error>().and_then(Error::api) {
                    error["status"] = json!(api.status);
                    error["code"] = json!(api.code);
                    error["requestId"] = json!(api.request_id);
                    error["details"] = json!(api.details);
                }
                let _ = writeln!(stderr, "{}", json!({ "error": error }));
            } else {
                let _ = writeln!(stderr, "nexus-cli: {e:#}");
            }
            ExitCode::from(code)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if cli.timeout == 0 {
        return Err(usage("--timeout must be at least 1 second"));
    }
    let timeout = Duration::from_secs(cli.timeout);
    let mut out = Out::new(cli.json);
    let admin = || -> anyhow::Result<Admin> {
        let token = cli
            .token
            .as_deref()
            .ok_or_else(|| usage("no admin token: give --token or set NEXUS_ADMIN_TOKEN"))?;
        Ok(Admin::with_timeout(&cli.server, token, timeout)?)
    };
    match cli.command {
        Command::Publish(args) => publish(&cli.server, timeout, args, &mut out),
        Command::Tail(args) => {
            let token = cli.token.as_deref().ok_or_else(|| {
                usage("no token: give --token or set NEXUS_ADMIN_TOKEN (admin or subscriber token)")
            })?;
            tail(&cli.server, token, args, &mut out)
        }
        Command::Events(c) => events(&admin()?, c, &mut out),
        Command::Dlq(c) => dlq(&admin()?, c, &mut out),
        Command::Breakers(c) => breakers(&admin()?, c, &mut out),
        Command::Subs(c) => subs(&admin()?, c, &mut out),
        Command::Replay(args) => replay(&admin()?, args, &mut out),
        Command::Health => health(&cli.server, cli.token.as_deref(), timeout, &mut out),
    }
}

fn publish(url: &str, timeout: Duration, a: PublishArgs, out: &mut Out) -> anyhow::Result<()> {
    let scheme: Scheme = a.scheme.parse()?;
    if a.attempts == 0 {
        return Err(usage("--attempts must be at least 1"));
    }
    if !(1..=nexus_client::MAX_BATCH).contains(&a.batch_size) {
        return Err(usage(format!(
            "--batch-size must be 1 to {}",
            nexus_client::MAX_BATCH
        )));
    }
    let publisher = Publisher::builder(url, &a.node, &a.secret)
        .scheme(scheme)
        .timeout(timeout)
        .retry(RetryPolicy {
            max_attempts: a.attempts,
            ..RetryPolicy::default()
        })
        .build()?;
    let Some(event_type) = a.event_type else {
        if a.payload.is_some() || a.id.is_some() || a.correlation_id.is_some() {
            return Err(usage(
                "a payload, --id or --correlation-id needs an event type; without one, events are read from stdin",
            ));
        }
        return publish_lines(&publisher, a.batch_size, out);
    };
    let payload = match a.payload.as_deref() {
        None => None,
        Some("-") => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut text)?;
            Some(parse_json("the payload on stdin", &text)?)
        }
        Some(text) => Some(parse_json("the payload", text)?),
    };
    let mut draft = Draft::of_type(&event_type)?;
    if let Some(p) = payload {
        draft = draft.payload(p);
    }
    if let Some(id) = &a.id {
        draft = draft.id(id)?;
    }
    if let Some(c) = &a.correlation_id {
        draft = draft.correlation_id(c)?;
    }
    let ack = publisher.publish(draft)?;
    if out.json() {
        out.json_value(&serde_json::to_value(&ack)?)
    } else {
        let what = if ack.duplicate {
            "already stored (duplicate) as"
        } else {
            "stored as"
        };
        out.line(&format!("{event_type} {} {what} #{}", ack.id, ack.sequence))
    }
}

fn parse_json(what: &str, text: &str) -> anyhow::Result<Value> {
    serde_json::from_str(text).map_err(|e| usage(format!("{what} is not JSON: {e}")))
}

/// Publishes JSON lines from stdin in batches; a bad line stops before anything after it is
/// sent, naming its line number.
fn publish_lines(publisher: &Publisher, batch_size: usize, out: &mut Out) -> anyhow::Result<()> {
    let mut acks = Vec::new();
    let mut batch = Vec::new();
    let mut progress = Progress::new("published");
    let stdin = std::io::stdin();
    for (n, line) in stdin.lock().lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let value = parse_json(&format!("line {}", n + 1), &line)?;
        let draft = Draft::from_json(&value).map_err(|e| usage(format!("line {}: {e}", n + 1)))?;
        batch.push(draft);
        if batch.len() == batch_size {
            acks.extend(publisher.publish_batch(std::mem::take(&mut batch))?);
            progress.update(acks.len() as u64, None);
        }
    }
    if !batch.is_empty() {
        acks.extend(publisher.publish_batch(batch)?);
        progress.update(acks.len() as u64, None);
    }
    progress.finish();
    if acks.is_empty() {
        return Err(usage("no events on stdin (one JSON object per line)"));
    }
    if out.json() {
        return out.json_value(&serde_json::to_value(&acks)?);
    }
    let rows = acks
        .iter()
        .map(|a| {
            vec![
                a.sequence.to_string(),
                a.id.clone(),
                if a.duplicate { "yes" } else { "no" }.to_owned(),
            ]
        })
        .collect();
    out.text(&table(&["SEQ", "ID", "DUPLICATE"], rows))
}

fn tail(url: &str, token: &str, a: TailArgs, out: &mut Out) -> anyhow::Result<()> {
    if a.count == Some(0) {
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut builder = Subscriber::builder(url, token).events(a.events.clone());
        if let Some(since) = a.since {
            builder = builder.since(since);
        }
        let mut sub = builder.connect()?;
        let mut states = sub.watch_state();
        let mut seen = 0u64;
        let interactive = std::io::stderr().is_terminal();
        let result = loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break Ok(()),
                changed = states.changed() => {
                    if changed.is_err() {
                        continue;
                    }
                    let state = *states.borrow_and_update();
                    if state == State::Reconnecting && sub.counters().connects == 0 {
                        // Never connected: the server is not there (exit 3), not a lost connection.
                        break Err(anyhow::Error::new(Error::Network {
                            url: url.to_owned(),
                            reason: "cannot open the WebSocket".into(),
                        }));
                    }
                    if interactive {
                        let note = match state {
                            State::Connected => "connected",
                            State::Reconnecting => "connection lost; reconnecting",
                            _ => continue,
                        };
                        let _ = writeln!(std::io::stderr(), "nexus-cli: {note}");
                    }
                }
                incoming = sub.next() => match incoming {
                    None => break Err(anyhow::Error::new(Error::Closed)),
                    Some(Incoming::ServerError { code, message }) => {
                        if code == "UNAUTHORIZED" || code == "FORBIDDEN" {
                            break Err(anyhow::anyhow!("{code}: {message}"));
                        }
                        let _ = writeln!(std::io::stderr(), "nexus-cli: server error {code}: {message}");
                    }
                    Some(Incoming::Event(e)) => {
                        if out.json() {
                            out.json_line(&json!({
                                "event": e.event_type, "id": e.id, "sequence": e.sequence,
                                "payload": e.payload, "timestamp": e.timestamp_ms,
                            }))?;
                        } else {
                            out.line(&format!("#{:<8} {:<28} {:<38} {}", e.sequence, e.event_type, e.id, e.payload))?;
                        }
                        seen += 1;
                        if a.count.is_some_and(|c| seen >= c) {
                            break Ok(());
                        }
                    }
                    Some(_) => {}
                },
            }
        };
        sub.close().await;
        result
    })
}

/// Walks the pages of a list (one unless `--all`), showing progress on long walks.
fn pages<T>(
    list: &ListArgs,
    mut fetch: impl FnMut(&PageRequest) -> Result<nexus_client::Page<T>, Error>,
) -> anyhow::Result<(Vec<T>, Option<String>)> {
    let mut request = PageRequest {
        limit: Some(list.limit),
        cursor: list.cursor.clone(),
    };
    let mut items = Vec::new();
    let mut progress = Progress::new("read");
    loop {
        let page = fetch(&request)?;
        items.extend(page.items);
        match page.next_cursor {
            Some(next) if list.all => {
                progress.update(items.len() as u64, None);
                request.cursor = Some(next);
            }
            next => {
                progress.finish();
                return Ok((items, next));
            }
        }
    }
}

fn list_out<T: serde::Serialize>(
    out: &mut Out,
    items: &[T],
    next: Option<String>,
    headers: &[&str],
    row: impl Fn(&T) -> Vec<String>,
) -> anyhow::Result<()> {
    if out.json() {
        return out.json_value(&json!({ "data": items, "nextCursor": next }));
    }
    out.text(&table(headers, items.iter().map(row).collect()))?;
    if let Some(next) = next {
        out.note(&format!("more: --cursor {next} (or --all)"))?;
    }
    Ok(())
}

fn events(admin: &Admin, c: EventsCommand, out: &mut Out) -> anyhow::Result<()> {
    match c {
        EventsCommand::List {
            event_type,
            after,
            list,
        } => {
            let (items, next) = pages(&list, |page| {
                admin.events(&EventQuery {
                    event_type: event_type.clone(),
                    after,
                    page: page.clone(),
                })
            })?;
            list_out(
                out,
                &items,
                next,
                &["SEQ", "TYPE", "ID", "SOURCE", "TIME"],
                |e| {
                    vec![
                        e.sequence.to_string(),
                        e.event_type.to_string(),
                        e.id.to_string(),
                        e.source.clone(),
                        e.time.to_string(),
                    ]
                },
            )
        }
        EventsCommand::Get { id } => {
            let e = admin.event(&id)?;
            if out.json() {
                return out.json_value(&serde_json::to_value(&e)?);
            }
            let rows = vec![
                vec!["id".into(), e.id.to_string()],
                vec!["type".into(), e.event_type.to_string()],
                vec!["source".into(), e.source.clone()],
                vec!["sequence".into(), e.sequence.to_string()],
                vec!["time".into(), e.time.to_string()],
                vec![
                    "correlation_id".into(),
                    e.correlation_id.map_or("-".into(), |c| c.to_string()),
                ],
                vec!["payload".into(), e.payload.to_string()],
            ];
            out.text(&table(&[], rows))
        }
    }
}

/// Ids are sent in chunks of this many, so a long redrive or purge shows progress.
const CHUNK: usize = 100;

fn selection_op(
    which: Which,
    verb: &'static str,
    out: &mut Out,
    op: impl Fn(&Selection) -> Result<u64, Error>,
) -> anyhow::Result<()> {
    let total = if which.all {
        op(&Selection::All)?
    } else {
        if which.ids.is_empty() {
            return Err(usage("give dead letter ids, or --all"));
        }
        let mut progress = Progress::new(verb);
        let mut total = 0;
        let mut done = 0;
        for chunk in which.ids.chunks(CHUNK) {
            total += op(&Selection::Ids(chunk.to_vec()))?;
            done += chunk.len() as u64;
            progress.update(done, Some(which.ids.len() as u64));
        }
        progress.finish();
        total
    };
    if out.json() {
        out.json_value(&json!({ verb: total }))
    } else {
        out.line(&format!("{verb} {total} dead letter(s)"))
    }
}

fn dlq(admin: &Admin, c: DlqCommand, out: &mut Out) -> anyhow::Result<()> {
    match c {
        DlqCommand::List(list) => {
            let (items, next) = pages(&list, |p| admin.dead_letters(p))?;
            list_out(
                out,
                &items,
                next,
                &[
                    "ID",
                    "EVENT TYPE",
                    "EVENT ID",
                    "TARGET",
                    "ATTEMPTS",
                    "STATUS",
                    "FAILED AT",
                    "ERROR",
                ],
                |d| {
                    vec![
                        d.id.to_string(),
                        d.event_type.clone(),
                        d.event_id.clone(),
                        d.target.clone(),
                        d.attempts.to_string(),
                        d.last_status.map_or("-".into(), |s| s.to_string()),
                        d.failed_at.to_string(),
                        d.last_error.clone(),
                    ]
                },
            )
        }
        DlqCommand::Redrive(which) => selection_op(which, "redriven", out, |s| admin.redrive(s)),
        DlqCommand::Purge(which) => selection_op(which, "deleted", out, |s| admin.purge(s)),
    }
}

fn breakers(admin: &Admin, c: BreakersCommand, out: &mut Out) -> anyhow::Result<()> {
    match c {
        BreakersCommand::List(list) => {
            let (items, next) = pages(&list, |p| admin.breakers(p))?;
            list_out(
                out,
                &items,
                next,
                &[
                    "TARGET",
                    "STATE",
                    "FAILURES",
                    "TRIPS",
                    "OPENED AT",
                    "NEXT TRIAL",
                ],
                |b| {
                    vec![
                        b.target.clone(),
                        b.state.to_string(),
                        b.consecutive_failures.to_string(),
                        b.trips.to_string(),
                        b.opened_at.map_or_else(|| "-".into(), |t| t.to_string()),
                        b.next_trial_at
                            .map_or_else(|| "-".into(), |t| t.to_string()),
                    ]
                },
            )
        }
        BreakersCommand::Reset { target } => {
            let n = admin.reset_breaker(&target)?;
            if out.json() {
                out.json_value(&json!({ "reset": n }))
            } else {
                out.line(&format!("reset the breaker of {target}"))
            }
        }
    }
}

fn sub_rows(s: &nexus_client::Subscription) -> Vec<String> {
    vec![
        s.id.clone(),
        s.url.clone(),
        s.events.join(","),
        s.ordered.to_string(),
        s.enabled.to_string(),
        s.created_at.to_string(),
    ]
}

const SUB_HEADERS: [&str; 6] = ["ID", "URL", "EVENTS", "ORDERED", "ENABLED", "CREATED AT"];

fn one_sub(out: &mut Out, s: &nexus_client::Subscription) -> anyhow::Result<()> {
    if out.json() {
        return out.json_value(&serde_json::to_value(s)?);
    }
    out.text(&table(&SUB_HEADERS, vec![sub_rows(s)]))?;
    if let Some(secret) = &s.secret {
        out.line(&format!("secret (shown once): {secret}"))?;
    }
    Ok(())
}

fn subs(admin: &Admin, c: SubsCommand, out: &mut Out) -> anyhow::Result<()> {
    match c {
        SubsCommand::List(list) => {
            let (items, next) = pages(&list, |p| admin.subscriptions(p))?;
            list_out(out, &items, next, &SUB_HEADERS, sub_rows)
        }
        SubsCommand::Get { id } => one_sub(out, &admin.subscription(&id)?),
        SubsCommand::Create {
            url,
            events,
            secret,
            ordered,
        } => {
            let created = admin.create_subscription(&NewSubscription {
                url,
                events,
                secret,
                ordered,
            })?;
            one_sub(out, &created)
        }
        SubsCommand::Update {
            id,
            url,
            events,
            secret,
            ordered,
            enabled,
        } => {
            let update = SubscriptionUpdate {
                url,
                events,
                secret,
                ordered,
                enabled,
            };
            if update == SubscriptionUpdate::default() {
                return Err(usage(
                    "nothing to change: give --url, --events, --secret, --ordered or --enabled",
                ));
            }
            one_sub(out, &admin.update_subscription(&id, &update)?)
        }
        SubsCommand::Delete { id } => {
            let n = admin.delete_subscription(&id)?;
            if out.json() {
                out.json_value(&json!({ "deleted": n }))
            } else {
                out.line(&format!("deleted subscription {id}"))
            }
        }
    }
}

fn replay(admin: &Admin, a: ReplayArgs, out: &mut Out) -> anyhow::Result<()> {
    let mut progress = Progress::new("enqueueing");
    progress.update(0, None);
    let enqueued = admin.replay(&Replay {
        after: a.after,
        until: a.until,
        types: a.types,
        target: a.target,
    })?;
    progress.finish();
    let mut pending = None;
    if let Some(secs) = a.wait {
        // The retry queue is shared: this follows all of it, the replayed deliveries included.
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut progress = Progress::new("delivering; pending");
        loop {
            let stats = admin.retry_stats()?;
            progress.update(stats.pending, None);
            if stats.pending == 0 || Instant::now() >= deadline {
                pending = Some(stats.pending);
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        progress.finish();
    }
    if out.json() {
        let mut v = json!({ "enqueued": enqueued });
        if let Some(p) = pending {
            v["pending"] = json!(p);
        }
        return out.json_value(&v);
    }
    out.line(&format!("enqueued {enqueued} deliveries"))?;
    if let Some(p) = pending {
        out.line(&format!("retry queue: {p} pending"))?;
    }
    Ok(())
}

fn health(url: &str, token: Option<&str>, timeout: Duration, out: &mut Out) -> anyhow::Result<()> {
    // Health needs no token; any non-empty placeholder satisfies the client's check.
    let admin = Admin::with_timeout(url, token.unwrap_or("-"), timeout)?;
    let h = admin.health()?;
    let status = h["status"].as_str().unwrap_or("unknown").to_owned();
    if out.json() {
        out.json_value(&h)?;
    } else {
        let get = |path: &str| {
            h.pointer(path).map_or("-".to_owned(), |v| {
                v.to_string().trim_matches('"').to_owned()
            })
        };
        let rows = [
            ("status", "/status"),
            ("version", "/version"),
            ("uptime (s)", "/uptimeSeconds"),
            ("database (bytes)", "/database/sizeBytes"),
            ("retry pending", "/retry/pending"),
            ("dead letters", "/retry/deadLetters"),
            ("breakers open", "/breakers/open"),
            ("breakers half-open", "/breakers/halfOpen"),
            ("websockets", "/websocket/connections"),
            ("memory rss (bytes)", "/memory/rssBytes"),
        ]
        .iter()
        .map(|(k, p)| vec![(*k).to_owned(), get(p)])
        .collect();
        out.text(&table(&[], rows))?;
    }
    if status == "ok" {
        Ok(())
    } else {
        Err(anyhow::Error::new(Unhealthy(status)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_subscriptions_url_is_not_the_servers_url() {
        let cli = Cli::try_parse_from([
            "nexus-cli",
            "--server",
            "http://nexus:3000",
            "subs",
            "create",
            "--url",
            "http://hooks/in",
            "--events",
            "A_*,B",
        ])
        .expect("parses");
        assert_eq!(cli.server, "http://nexus:3000");
        match cli.command {
            Command::Subs(SubsCommand::Create { url, events, .. }) => {
                assert_eq!(url, "http://hooks/in");
                assert_eq!(events, ["A_*", "B"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn failures_map_to_the_documented_exit_codes() {
        // An API error is exit code 1; the integration tests get one from a real server.
        assert_eq!(exit_code(&usage("x")), 2);
        let invalid = Draft::of_type("bad type!").expect_err("invalid");
        assert_eq!(exit_code(&anyhow::Error::new(invalid)), 2);
        let network = Error::Network {
            url: "u".into(),
            reason: "r".into(),
        };
        let gave_up = Error::GaveUp {
            attempts: 3,
            last: Box::new(network),
        };
        assert_eq!(exit_code(&anyhow::Error::new(gave_up)), 3);
        let timeout = Error::Timeout {
            url: "u".into(),
            timeout: Duration::from_secs(1),
        };
        assert_eq!(exit_code(&anyhow::Error::new(timeout)), 3);
        assert_eq!(exit_code(&anyhow::Error::new(Error::Closed)), 1);
        assert_eq!(
            exit_code(&anyhow::Error::new(Unhealthy("degraded".into()))),
            1
        );
    }
}
