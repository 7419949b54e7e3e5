//! The command line: clap definitions of every command, flag and its help text.

use clap::{Args, Parser, Subcommand};

use nexus_client::When;

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
    /// The event-type catalogue: list, get, put, delete, and check a payload locally.
    #[command(subcommand)]
    Types(TypesCommand),
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
        /// Deliver only events whose payload passes these conditions, as JSON:
        /// '{"/amount": {"gte": 10000}}' (JSON pointers; eq ne gt gte lt lte exists).
        #[arg(long, value_parser = filter)]
        filter: Option<When>,
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
        /// A new filter, as JSON (see `subs create --help`); it replaces the one it has.
        #[arg(long, value_parser = filter, conflicts_with = "clear_filter")]
        filter: Option<When>,
        /// Remove its filter: every event whose type matches is delivered again.
        #[arg(long)]
        clear_filter: bool,
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

#[derive(Debug, Subcommand)]
pub(crate) enum TypesCommand {
    /// List the declared event types, by name.
    List(ListArgs),
    /// Show one declared type with its schema and examples.
    Get {
        /// The type's name.
        name: String,
    },
    /// Declare a type or replace it whole: what is not given is cleared (no schema, no
    /// examples, empty description, not deprecated).
    Put(TypePutArgs),
    /// Delete a declared type (events already stored are kept).
    Delete {
        /// The type's name.
        name: String,
    },
    /// Check a payload against the type's schema, fetched from the catalogue, without
    /// publishing it; exits 1 listing the violations when it does not match.
    Check {
        /// The type's name.
        name: String,
        /// The payload as JSON (`{}` when left out; `-` reads it from stdin).
        payload: Option<String>,
    },
}

#[derive(Debug, Args)]
pub(crate) struct TypePutArgs {
    /// The type's name.
    pub(crate) name: String,
    /// A file with the whole body, `{"description"?, "schema"?, "examples"?, "deprecated"?}`
    /// (`-` reads stdin); the flags below override its fields.
    #[arg(long, value_name = "PATH")]
    pub(crate) file: Option<String>,
    /// A file with the payload's JSON Schema (draft 2020-12) alone (`-` reads stdin).
    #[arg(long, value_name = "PATH")]
    pub(crate) schema: Option<String>,
    /// What the type means.
    #[arg(long)]
    pub(crate) description: Option<String>,
    /// An example payload as JSON; repeat for several (replaces the file's examples).
    #[arg(long = "example", value_name = "JSON")]
    pub(crate) examples: Vec<String>,
    /// Mark it deprecated (`--deprecated=false` to clear it over the file's value).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub(crate) deprecated: Option<bool>,
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

/// `--filter`: a condition object, checked here so a typo is a usage error naming the key.
fn filter(text: &str) -> Result<When, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    if value.is_null() {
        return Err("null is no filter; `subs update --clear-filter` removes one".into());
    }
    When::from_value(&value).map_err(|e| e.to_string())
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
    fn types_put_takes_a_body_file_or_a_schema_and_flags() {
        let cli = Cli::try_parse_from([
            "nexus-cli",
            "types",
            "put",
            "PAYMENT_RECEIVED",
            "--schema",
            "s.json",
            "--example",
            r#"{"amount":1}"#,
            "--example",
            r#"{"amount":2}"#,
            "--deprecated",
        ])
        .expect("parses");
        match cli.command {
            Command::Types(TypesCommand::Put(put)) => {
                assert_eq!(put.name, "PAYMENT_RECEIVED");
                assert_eq!(put.schema.as_deref(), Some("s.json"));
                assert_eq!(put.examples.len(), 2);
                assert_eq!(put.deprecated, Some(true));
                assert!(put.file.is_none() && put.description.is_none());
            }
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from([
            "nexus-cli",
            "types",
            "put",
            "X",
            "--file",
            "-",
            "--deprecated=false",
        ])
        .expect("parses");
        match cli.command {
            Command::Types(TypesCommand::Put(put)) => {
                assert_eq!(
                    (put.file.as_deref(), put.deprecated),
                    (Some("-"), Some(false))
                );
            }
            other => panic!("{other:?}"),
        }
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
    fn filters_are_checked_and_cleared_apart() {
        let parse =
            |args: &[&str]| Cli::try_parse_from(["nexus-cli", "subs"].iter().chain(args).copied());
        let create = parse(&[
            "create",
            "--url",
            "http://hooks/in",
            "--events",
            "*",
            "--filter",
            r#"{"/amount": {"gte": 10000}}"#,
        ])
        .expect("parses");
        match create.command {
            Command::Subs(SubsCommand::Create {
                filter: Some(f), ..
            }) => assert!(f.holds(&serde_json::json!({"amount": 10000}))),
            other => panic!("{other:?}"),
        }
        match parse(&["update", "s1", "--clear-filter"])
            .expect("parses")
            .command
        {
            Command::Subs(SubsCommand::Update {
                clear_filter: true,
                filter: None,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        for (bad, needle) in [
            ("{", "not JSON"),
            ("null", "--clear-filter"),
            ("[1]", "object"),
            (r#"{"/a": {"near": 1}}"#, r#""/a".near"#),
        ] {
            let e = parse(&["update", "s1", "--filter", bad]).expect_err(bad);
            assert!(e.to_string().contains(needle), "{bad}: {e}");
        }
        assert!(
            parse(&["update", "s1", "--filter", "{}", "--clear-filter"]).is_err(),
            "set and clear at once"
        );
    }
}
