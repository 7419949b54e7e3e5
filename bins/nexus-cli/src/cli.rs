//! The command line: clap definitions of every command, flag and its help text.

use clap::{Args, Parser, Subcommand};

use crate::exit::EXIT_CODES;

/// The Nexus operator tool.
#[derive(Debug, Parser)]
#[command(name = "nexus-cli", version, about, after_help = EXIT_CODES)]
pub(crate) struct Cli {
    /// The server's base URL.
    #[arg(
        long = "server",
        short = 's',
        env = "NEXUS_URL",
        value_name = "URL",
        default_value = "http://127.0.0.1:3000",
        global = true
    )]
    pub(crate) server: String,
    /// The admin token (also a WebSocket subscriber token for `tail`).
    #[arg(long, env = "NEXUS_ADMIN_TOKEN", hide_env_values = true, global = true)]
    pub(crate) token: Option<String>,
    /// Print JSON instead of tables (one JSON document; `tail` prints one per line).
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Seconds one request may take.
    #[arg(long, default_value_t = 10, value_name = "SECS", global = true)]
    pub(crate) timeout: u64,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
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
    /// The live server instances on the store, earliest started first.
    Instances(ListArgs),
    /// Webhook subscriptions: list, get, create, update, delete.
    #[command(subcommand)]
    Subs(SubsCommand),
    /// Enqueue stored events again for a subscription or the reactors.
    Replay(ReplayArgs),
    /// The server's detailed health; exits 1 unless its status is ok.
    Health,
}

#[derive(Debug, Args)]
pub(crate) struct PublishArgs {
    /// The node to publish as.
    #[arg(long, env = "NEXUS_NODE")]
    pub(crate) node: String,
    /// The node's secret (`whsec_<base64>` or plain text).
    #[arg(long, env = "NEXUS_SECRET", hide_env_values = true)]
    pub(crate) secret: String,
    /// Signature scheme: `nexus` or `standard` (Standard Webhooks).
    #[arg(long, default_value = "nexus")]
    pub(crate) scheme: String,
    /// The event type; leave it out to read events from stdin.
    pub(crate) event_type: Option<String>,
    /// The payload as JSON (`{}` when left out; `-` reads it from stdin).
    pub(crate) payload: Option<String>,
    /// The event id (a UUIDv7 is made when left out; the server deduplicates by it).
    #[arg(long)]
    pub(crate) id: Option<String>,
    /// The correlation id.
    #[arg(long)]
    pub(crate) correlation_id: Option<String>,
    /// Events per batch when reading JSON lines (`{"type", "payload"?, "id"?,
    /// "correlation_id"?}`) from stdin; 1 to 1000.
    #[arg(long, default_value_t = 100)]
    pub(crate) batch_size: usize,
    /// Attempts per request (network errors, timeouts, 429 and 5xx are retried).
    #[arg(long, default_value_t = 5)]
    pub(crate) attempts: u32,
}

#[derive(Debug, Args)]
pub(crate) struct TailArgs {
    /// Type globs to follow.
    #[arg(
        long = "events",
        short = 'e',
        default_value = "*",
        value_delimiter = ','
    )]
    pub(crate) events: Vec<String>,
    /// Start after this sequence (stored events first, then live ones).
    #[arg(long)]
    pub(crate) since: Option<u64>,
    /// Stop after this many events.
    #[arg(long)]
    pub(crate) count: Option<u64>,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Items per page (1 to 1000).
    #[arg(long, default_value_t = 100)]
    pub(crate) limit: u32,
    /// Start at this cursor (from a previous page).
    #[arg(long)]
    pub(crate) cursor: Option<String>,
    /// Follow the cursors to the end instead of one page.
    #[arg(long)]
    pub(crate) all: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum EventsCommand {
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
    /// Show every delivery of one event with its attempts (time, duration, status, error).
    Deliveries {
        /// The event id.
        id: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct Which {
    /// Dead letter ids.
    pub(crate) ids: Vec<i64>,
    /// Every dead letter.
    #[arg(long, conflicts_with = "ids")]
    pub(crate) all: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DlqCommand {
    /// List dead letters, newest first.
    List(ListArgs),
    /// Put dead letters back in the queue with their attempts reset.
    Redrive(Which),
    /// Delete dead letters.
    Purge(Which),
}

#[derive(Debug, Subcommand)]
pub(crate) enum BreakersCommand {
    /// List every target's breaker.
    List(ListArgs),
    /// Close one target's breaker.
    Reset {
        /// The target's origin, such as `http://127.0.0.1:4000`.
        target: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum SubsCommand {
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
    /// Send a signed `nexus.test` event to a subscription now and show what its receiver
    /// answered (nothing is stored).
    Test {
        /// Its id.
        id: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct ReplayArgs {
    /// Events after this sequence.
    #[arg(long)]
    pub(crate) after: u64,
    /// Up to this sequence (inclusive).
    #[arg(long)]
    pub(crate) until: Option<u64>,
    /// Only these type globs, comma-separated or repeated.
    #[arg(long, value_delimiter = ',')]
    pub(crate) types: Option<Vec<String>>,
    /// A subscription id, or `reactors`.
    #[arg(long)]
    pub(crate) target: String,
    /// Then follow the retry queue until it is empty (or this many seconds pass).
    #[arg(long, value_name = "SECS")]
    pub(crate) wait: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

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
}
