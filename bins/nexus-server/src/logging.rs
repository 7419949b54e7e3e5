//! Logs: `LOG_FORMAT=json` writes one JSON object per line with `timestamp`, `level`,
//! `message`, the event's fields, and `request_id` on every line about a request; `pretty` is for
//! people. [`Console`] writes the few lines that bypass the level filter (the listening banner,
//! generated secrets, the error that stops the start) in the same format, so that with JSON logs
//! every line the process writes is one JSON object.

use std::fmt;
use std::io::Write;
use std::net::SocketAddr;

use nexus_event::Timestamp;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::config::LogFormat;

struct Fields(Map<String, Value>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), Value::from(format!("{value:?}")));
    }
}

/// One JSON object per line.
struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields(Map::new());
        event.record(&mut fields);
        let message = fields.0.remove("message").unwrap_or(Value::from(""));
        let request_id = nexus_transport::request_id::RequestId::current_or_empty();
        if !request_id.is_empty() {
            fields
                .0
                .insert("request_id".into(), Value::from(request_id));
        }
        let line = json_line(
            event.metadata().level().as_str(),
            message,
            event.metadata().target(),
            fields.0,
        );
        writeln!(writer, "{line}")
    }
}

/// One log line as JSON: `timestamp`, `level`, `message`, `target`, then the fields (a field
/// never replaces one of those four).
fn json_line(level: &str, message: Value, target: &str, fields: Map<String, Value>) -> String {
    let mut line = Map::new();
    line.insert(
        "timestamp".into(),
        Value::from(Timestamp::now().to_string()),
    );
    line.insert("level".into(), Value::from(level));
    line.insert("message".into(), message);
    line.insert("target".into(), Value::from(target));
    for (k, v) in fields {
        line.entry(k).or_insert(v);
    }
    Value::Object(line).to_string()
}

/// The lines written whatever `LOG_LEVEL` says, in the format of the logs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Console {
    format: LogFormat,
}

impl Console {
    /// Lines in `format`.
    pub(crate) fn new(format: LogFormat) -> Console {
        Console { format }
    }

    fn json(level: &str, message: &str, fields: Map<String, Value>) -> String {
        json_line(
            level,
            Value::from(message),
            env!("CARGO_CRATE_NAME"),
            fields,
        )
    }

    /// The listening line, on standard output so scripts and tests can read the bound port:
    /// `nexus-server listening on http://ADDR`, or with JSON logs an object whose `url` is that
    /// address.
    #[allow(clippy::print_stdout)]
    pub(crate) fn banner(&self, address: SocketAddr, data_dir: &std::path::Path) {
        let url = format!("http://{address}");
        let line = match self.format {
            LogFormat::Pretty => format!("nexus-server listening on {url}"),
            LogFormat::Json => {
                let mut fields = Map::new();
                fields.insert("address".into(), Value::from(address.to_string()));
                fields.insert("url".into(), Value::from(url));
                fields.insert(
                    "data_dir".into(),
                    Value::from(data_dir.display().to_string()),
                );
                Console::json("INFO", "nexus-server listening", fields)
            }
        };
        let mut out = std::io::stdout().lock();
        // A closed standard output must not stop the server.
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    }

    /// The line of `nexus-server migrate`, on standard output: which store (`sqlite` or
    /// `postgres`), where (never a password) and the schema version it now has.
    pub(crate) fn migrated(&self, kind: &str, location: &str, version: i64) {
        let message = format!("{kind} store at {location} is at schema version {version}");
        let line = match self.format {
            LogFormat::Pretty => format!("nexus-server migrate: {message}"),
            LogFormat::Json => {
                let mut fields = Map::new();
                fields.insert("store".into(), Value::from(kind));
                fields.insert("location".into(), Value::from(location));
                fields.insert("schema_version".into(), Value::from(version));
                Console::json("INFO", &message, fields)
            }
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    }

    /// A line of `nexus-server copy`, on standard output: one per table (`table` and its row
    /// count), or with JSON logs an object with `table` and `rows`.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn copied_table(&self, table: &str, rows: u64) {
        let message = format!("{table}: {rows} copied");
        let line = match self.format {
            LogFormat::Pretty => format!("nexus-server copy: {message}"),
            LogFormat::Json => {
                let mut fields = Map::new();
                fields.insert("table".into(), Value::from(table));
                fields.insert("rows".into(), Value::from(rows));
                Console::json("INFO", &message, fields)
            }
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    }

    /// The last line of `nexus-server copy`, on standard output: from which database file into
    /// which database (never a password), and the head sequence the copy ends at.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn copied(&self, from: &str, to: &str, head: u64) {
        let message = format!("copied {from} into postgres store at {to}; head sequence {head}");
        let line = match self.format {
            LogFormat::Pretty => format!("nexus-server copy: {message}"),
            LogFormat::Json => {
                let mut fields = Map::new();
                fields.insert("from".into(), Value::from(from));
                fields.insert("location".into(), Value::from(to));
                fields.insert("head".into(), Value::from(head));
                Console::json("INFO", &message, fields)
            }
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    }

    /// A secret generated for this run (development), shown once on standard error.
    pub(crate) fn generated(&self, variable: &str, value: &str) {
        let line = match self.format {
            LogFormat::Pretty => {
                format!("nexus-server: {variable} was not set; generated for this run: {value}")
            }
            LogFormat::Json => {
                let mut fields = Map::new();
                fields.insert("variable".into(), Value::from(variable));
                fields.insert("value".into(), Value::from(value));
                Console::json(
                    "WARN",
                    &format!("{variable} was not set; generated for this run"),
                    fields,
                )
            }
        };
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }

    /// The error that stops the start, on standard error: `nexus-server: <message>`, or with
    /// JSON logs an `ERROR` object with the message and, for a setting, its variable or `key`.
    pub(crate) fn fatal(&self, key: Option<&str>, message: &str) {
        let line = match self.format {
            LogFormat::Pretty => format!("nexus-server: {message}"),
            LogFormat::Json => {
                let mut fields = Map::new();
                if let Some(key) = key {
                    fields.insert("key".into(), Value::from(key));
                }
                Console::json("ERROR", message, fields)
            }
        };
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
}

/// Installs the subscriber for the process.
pub(crate) fn install(level: tracing::Level, format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.event_format(JsonLines).try_init(),
        LogFormat::Pretty => builder.with_target(false).try_init(),
    };
    if format == LogFormat::Json {
        // The default hook writes plain lines; with JSON logs a panic is one JSON line too.
        std::panic::set_hook(Box::new(|info| {
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let location = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let thread = std::thread::current()
                .name()
                .unwrap_or("unnamed")
                .to_owned();
            tracing::error!(panic = %message, location = %location, thread = %thread, "a thread panicked");
        }));
    }
}
