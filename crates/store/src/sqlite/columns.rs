//! How Rust values map to columns: the delivery state and consumer kind as enums (never bare
//! integers in SQL: statements name them, as `:leased`, and [`prepare`] writes their codes in),
//! timestamps, conversion errors, and binding by name.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use nexus_event::Timestamp;
use rusqlite::config::DbConfig;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::{CachedStatement, Connection, Statement, StatementStatus, ToSql};

use crate::error::StoreError;
use crate::model::Consumer;

pub(crate) use crate::backend::{ConsumerKind, DeliveryState, Finished};

impl ToSql for DeliveryState {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(i64::from(self.code())))
    }
}

impl FromSql for DeliveryState {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let code = value.as_i64()?;
        DeliveryState::from_code(code).map_err(|_| FromSqlError::OutOfRange(code))
    }
}

impl ToSql for ConsumerKind {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(i64::from(self.code())))
    }
}

impl FromSql for ConsumerKind {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let code = value.as_i64()?;
        ConsumerKind::from_code(code).map_err(|_| FromSqlError::OutOfRange(code))
    }
}

impl ToSql for Finished {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(i64::from(self.code())))
    }
}

impl FromSql for Finished {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let code = value.as_i64()?;
        Finished::from_code(code).map_err(|_| FromSqlError::OutOfRange(code))
    }
}

/// The consumer of a row's kind and name columns.
pub(crate) fn consumer_from(kind: ConsumerKind, name: String) -> Consumer {
    crate::backend::consumer_of(kind, name)
}

/// One named parameter: its name with the leading `:` and its value.
pub(crate) type Arg<'a> = (&'a str, &'a dyn ToSql);

/// Names every statement may use for the states, consumer kinds and outcomes, with their codes.
/// [`prepare`] writes the codes into the SQL; [`bind`] binds them in a statement prepared
/// otherwise.
const ENUMS: [(&str, i16); 8] = [
    (":waiting", DeliveryState::Waiting.code()),
    (":leased", DeliveryState::Leased.code()),
    (":parked", DeliveryState::Parked.code()),
    (":held", DeliveryState::Held.code()),
    (":webhook", ConsumerKind::Subscription.code()),
    (":reactor", ConsumerKind::Reactor.code()),
    (":delivered", Finished::Delivered.code()),
    (":dead", Finished::Dead.code()),
];

/// How many times SQLite prepared a cached statement again before a later use (see [`prepare`]);
/// none is expected once a store is open.
static REPREPARED: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// The SQL being prepared, with the enum codes written in; kept to reuse its allocation.
    static EXPANDED: RefCell<String> = const { RefCell::new(String::new()) };
}

/// The connection's cached statement for `sql`, with the names of [`ENUMS`] replaced by their
/// codes as literals. The connection must have been set up by [`plan_once`].
///
/// SQLite (3.54 here) plans some statements with the values bound to them, and marks such a
/// statement to be prepared again whenever one of those parameters is bound anew: a `LIMIT
/// :max`, an equality with a small integer, and a term compared with a partial index's (`state <
/// :parked` against `deliveries_due`'s `state < 2`). rusqlite's cache clears the bindings after
/// each use, so each use was a new parse and plan: every lease, settle, `next_due` and page of
/// dead letters (a sixth of the server's CPU per publish in a profile was `sqlite3Reprepare`).
/// [`plan_once`] turns that planning off for the connection, and the codes are literals so that a
/// query can still be seen to fit a partial index from its text alone. A statement prepared again
/// all the same is counted ([`reprepared`]) and logged at debug level.
pub(crate) fn prepare<'c>(
    conn: &'c Connection,
    sql: &str,
) -> rusqlite::Result<CachedStatement<'c>> {
    let stmt = EXPANDED.with_borrow_mut(|text| {
        text.clear();
        write_enums(sql, text);
        conn.prepare_cached(text)
    })?;
    let again = stmt.reset_status(StatementStatus::RePrepare);
    if again > 0 {
        REPREPARED.fetch_add(u64::from(again.unsigned_abs()), Ordering::Relaxed);
        tracing::debug!(
            sql = stmt.expanded_sql().unwrap_or_default(),
            times = again,
            "SQLite prepared a cached statement again"
        );
    }
    Ok(stmt)
}

/// Statements a connection's cache keeps: more than the store uses on one connection, so none is
/// evicted and parsed again.
const STATEMENT_CACHE: usize = 64;

/// Sets a connection up for [`prepare`]: the query planner stability guarantee (a statement's
/// plan depends on its SQL alone, not on the values bound, so binding never makes SQLite prepare
/// it again) and a statement cache that holds every statement the store runs.
pub(crate) fn plan_once(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(())
}

/// How many times, in this process, SQLite had to prepare a cached statement again.
#[cfg(test)]
pub(crate) fn reprepared() -> u64 {
    REPREPARED.load(Ordering::Relaxed)
}

/// Appends `sql` to `out` with every parameter named in [`ENUMS`] replaced by its code. Quoted
/// text (`'...'`, `"..."`) is copied as it is.
fn write_enums(sql: &str, out: &mut String) {
    let bytes = sql.as_bytes();
    let mut copied = 0;
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'\'' || b == b'"' => quote = Some(b),
            None if b == b':' => {
                let end = bytes[i + 1..]
                    .iter()
                    .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
                    .map_or(bytes.len(), |n| i + 1 + n);
                if let Some((_, code)) = ENUMS.iter().find(|(name, _)| *name == &sql[i..end]) {
                    out.push_str(&sql[copied..i]);
                    out.push_str(&code.to_string());
                    copied = end;
                }
                i = end;
                continue;
            }
            None => {}
        }
        i += 1;
    }
    out.push_str(&sql[copied..]);
}

/// Binds `args` and the state and kind names ([`ENUMS`]) a statement uses. Fails if `args` names
/// a parameter the statement does not have, or if any parameter is left unbound (SQLite would
/// read it as NULL and match nothing, silently).
pub(crate) fn bind(stmt: &mut Statement<'_>, args: &[Arg<'_>]) -> rusqlite::Result<()> {
    // The statement's own parameter names, walked once: looking each name up in rusqlite's
    // name cache (a C string made and a map searched per name, for the eight enums too) was a
    // visible share of the writer's time per lease and ack.
    if args.len() > 64 {
        return Err(rusqlite::Error::InvalidParameterCount(args.len(), 64));
    }
    let mut used: u64 = 0;
    for index in 1..=stmt.parameter_count() {
        let name = stmt.parameter_name(index).unwrap_or("");
        let value: &dyn ToSql = match args.iter().position(|(n, _)| *n == name) {
            Some(i) => {
                used |= 1 << i;
                args[i].1
            }
            None => match ENUMS.iter().find(|(n, _)| *n == name) {
                Some((_, code)) => code,
                None => return Err(rusqlite::Error::InvalidParameterName(name.to_owned())),
            },
        };
        stmt.raw_bind_parameter(index, value)?;
    }
    match (0..args.len()).find(|i| used & (1 << i) == 0) {
        Some(unknown) => Err(rusqlite::Error::InvalidParameterName(
            args[unknown].0.to_owned(),
        )),
        None => Ok(()),
    }
}

/// Runs a cached statement that returns no rows with named parameters; how many rows changed.
pub(crate) fn execute(
    conn: &rusqlite::Connection,
    sql: &str,
    args: &[Arg<'_>],
) -> rusqlite::Result<usize> {
    let mut stmt = prepare(conn, sql)?;
    bind(&mut stmt, args)?;
    stmt.raw_execute()
}

/// The error of a failed database call during `op`.
pub(crate) fn db_err(op: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| StoreError::Database {
        op,
        source: Box::new(e),
    }
}

/// A timestamp column.
pub(crate) fn ts(ms: i64) -> rusqlite::Result<Timestamp> {
    Timestamp::from_unix_millis(ms).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Integer, Box::new(e))
    })
}

/// Maps a parse error of text column `col` to a row error.
pub(crate) fn conv<E: std::error::Error + Send + Sync + 'static>(
    col: usize,
) -> impl Fn(E) -> rusqlite::Error {
    move |e| {
        rusqlite::Error::FromSqlConversionFailure(col, rusqlite::types::Type::Text, Box::new(e))
    }
}

/// A status code column.
pub(crate) fn status_of(v: Option<i64>) -> Option<u16> {
    v.and_then(|s| u16::try_from(s).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_column() {
        let conn = rusqlite::Connection::open_in_memory().expect("memory db");
        for state in [
            DeliveryState::Waiting,
            DeliveryState::Leased,
            DeliveryState::Parked,
            DeliveryState::Held,
        ] {
            let back: DeliveryState = conn
                .query_row("SELECT ?1", [state], |r| r.get(0))
                .expect("round trip");
            assert_eq!(back, state);
        }
        let bad = conn.query_row("SELECT 7", [], |r| r.get::<_, DeliveryState>(0));
        assert!(bad.is_err(), "an unknown state is an error, not a guess");
    }

    #[test]
    fn binding_refuses_unknown_names_and_unbound_parameters() {
        let conn = rusqlite::Connection::open_in_memory().expect("memory db");
        let one: i64 = 1;
        let mut stmt = conn.prepare("SELECT :a + :held").expect("prepare");
        assert!(bind(&mut stmt, &[(":b", &one)]).is_err(), "unknown name");
        let mut stmt = conn.prepare("SELECT :a + :b").expect("prepare");
        assert!(bind(&mut stmt, &[(":a", &one)]).is_err(), "b left unbound");
        let mut stmt = conn.prepare("SELECT :a + :held").expect("prepare");
        bind(&mut stmt, &[(":a", &one)]).expect("a given, held from the enums");
        let sum: i64 = stmt
            .raw_query()
            .next()
            .expect("a row")
            .expect("a row")
            .get(0)
            .expect("an integer");
        assert_eq!(sum, 4);
    }
}
