//! How Rust values map to columns: the delivery state and consumer kind as enums (never bare
//! integers in SQL: statements name them, as `:leased`, and [`prepare`] writes their codes in),
//! timestamps, conversion errors, and binding by name.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
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

/// A statement's SQL as prepared, with its parameter names once known.
struct Expanded {
    /// The SQL with the enum codes written in.
    text: Rc<str>,
    /// The names SQLite gives its parameters, in index order (from the first prepare).
    names: Option<Rc<[Box<str>]>>,
}

thread_local! {
    /// Each statement's SQL with the enum codes written in, and its parameter names, by the
    /// address and length of the text it was written from: statements are `'static` text, so
    /// the pair names one text for good, and each is scanned once per thread instead of at
    /// every use.
    static EXPANDED: RefCell<HashMap<(usize, usize), Expanded>> = RefCell::new(HashMap::new());
}

/// A cached statement from [`prepare`], with the names of its parameters for [`bind`].
pub(crate) struct Prepared<'c> {
    stmt: CachedStatement<'c>,
    names: Rc<[Box<str>]>,
}

impl<'c> std::ops::Deref for Prepared<'c> {
    type Target = Statement<'c>;
    fn deref(&self) -> &Statement<'c> {
        &self.stmt
    }
}

impl std::ops::DerefMut for Prepared<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.stmt
    }
}

/// The names of a statement's parameters, in index order (`""` for a nameless `?`).
fn names_of(stmt: &Statement<'_>) -> Rc<[Box<str>]> {
    (1..=stmt.parameter_count())
        .map(|index| Box::from(stmt.parameter_name(index).unwrap_or("")))
        .collect()
}

/// The connection's cached statement for `sql`, with the names of [`ENUMS`] replaced by their
/// codes as literals (written once per text and thread, see [`EXPANDED`]). The connection must
/// have been set up by [`plan_once`].
///
/// SQLite (3.54 here) plans some statements with the values bound to them, and marks such a
/// statement to be prepared again whenever one of those parameters is bound anew: a `LIMIT
/// :max`, an equality with a small integer, and a term compared with a partial index's (`state <
/// :parked` against `deliveries_due`'s `state < 2`). rusqlite's cache clears the bindings after
/// each use, so each use was a new parse and plan: every lease, settle, `next_due` and page of
/// dead letters (`sqlite3Reprepare` was 6 % of the server's samples under `wrk` in a profile).
/// [`plan_once`] turns that planning off for the connection, and the codes are literals so that a
/// query can still be seen to fit a partial index from its text alone. A statement prepared again
/// all the same is counted ([`reprepared`]) and logged at debug level.
pub(crate) fn prepare<'c>(
    conn: &'c Connection,
    sql: &'static str,
) -> rusqlite::Result<Prepared<'c>> {
    let key = (sql.as_ptr() as usize, sql.len());
    // Looked up and let go before SQLite prepares, so nothing SQLite might call back into could
    // find the map borrowed.
    let (text, names) = EXPANDED.with_borrow_mut(|expanded| {
        let entry = expanded.entry(key).or_insert_with(|| {
            let mut text = String::with_capacity(sql.len());
            write_enums(sql, &mut text);
            Expanded {
                text: text.into(),
                names: None,
            }
        });
        (Rc::clone(&entry.text), entry.names.clone())
    });
    let stmt = conn.prepare_cached(&text)?;
    let names = match names {
        Some(names) => names,
        None => {
            let names = names_of(&stmt);
            EXPANDED.with_borrow_mut(|expanded| {
                if let Some(entry) = expanded.get_mut(&key) {
                    entry.names = Some(Rc::clone(&names));
                }
            });
            names
        }
    };
    #[cfg(debug_assertions)]
    {
        debug_assert_eq!(names, names_of(&stmt), "the names kept for {sql}");
        for name in names.iter() {
            debug_assert!(
                !ENUMS.iter().any(|(enum_name, _)| *enum_name == &**name),
                "{name} was left a parameter in {sql}"
            );
        }
    }
    let again = stmt.reset_status(StatementStatus::RePrepare);
    if again > 0 {
        REPREPARED.fetch_add(u64::from(again.unsigned_abs()), Ordering::Relaxed);
        tracing::debug!(
            sql = stmt.expanded_sql().unwrap_or_default(),
            times = again,
            "SQLite prepared a cached statement again"
        );
    }
    Ok(Prepared { stmt, names })
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
/// text and identifiers (`'...'`, `"..."`, `[...]`, `` `...` ``) and comments (`-- ...`,
/// `/* ... */`) are copied as they are; a parameter's name ends where SQLite's does (letters,
/// digits, `_`, `$`, any non-ASCII character, `::`). A code stands where a value would, so an
/// enum name is never used alone as an `ORDER BY` or `GROUP BY` term (a literal there is a
/// column number).
fn write_enums(sql: &str, out: &mut String) {
    use std::fmt::Write as _;
    let bytes = sql.as_bytes();
    let name_char = |i: usize| {
        bytes
            .get(i)
            .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80)
    };
    // Where the text opened at `i` ends (one past its last byte), if `i` opens a quote or a
    // comment.
    let skip = |i: usize| -> Option<usize> {
        let close = |from: usize, end: &str| {
            sql[from..]
                .find(end)
                .map_or(bytes.len(), |n| from + n + end.len())
        };
        match bytes[i] {
            b'\'' => Some(close(i + 1, "'")),
            b'"' => Some(close(i + 1, "\"")),
            b'`' => Some(close(i + 1, "`")),
            b'[' => Some(close(i + 1, "]")),
            b'-' if bytes.get(i + 1) == Some(&b'-') => Some(close(i + 2, "\n")),
            b'/' if bytes.get(i + 1) == Some(&b'*') => Some(close(i + 2, "*/")),
            _ => None,
        }
    };
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(end) = skip(i) {
            // A doubled quote ('it''s') closes and reopens: skipped as two quoted runs.
            i = end;
            continue;
        }
        if bytes[i] != b':' {
            i += 1;
            continue;
        }
        let mut end = i + 1;
        loop {
            if name_char(end) {
                end += 1;
            } else if bytes.get(end) == Some(&b':') && bytes.get(end + 1) == Some(&b':') {
                end += 2;
            } else {
                break;
            }
        }
        if let Some((_, code)) = ENUMS.iter().find(|(name, _)| *name == &sql[i..end]) {
            out.push_str(&sql[copied..i]);
            let _ = write!(out, "{code}");
            copied = end;
        }
        i = end;
    }
    out.push_str(&sql[copied..]);
}

/// Binds `args` and the state and kind names ([`ENUMS`]) a statement uses. Fails if `args` names
/// a parameter the statement does not have, or if any parameter is left unbound (SQLite would
/// read it as NULL and match nothing, silently).
pub(crate) fn bind(stmt: &mut Prepared<'_>, args: &[Arg<'_>]) -> rusqlite::Result<()> {
    let Prepared { stmt, names } = stmt;
    bind_names(stmt, names, args)
}

/// [`bind`] for a statement whose parameter names, in index order, are `names`.
///
/// The names come from [`prepare`], read from SQLite once per statement and thread: asking
/// SQLite for each name at every use (a call and a UTF-8 check per parameter) and searching
/// `args` for it was about 6 % of the writer's instructions in a drain. Arguments are usually
/// written in the statement's order, so the one at the parameter's own place is tried first.
fn bind_names(
    stmt: &mut Statement<'_>,
    names: &[Box<str>],
    args: &[Arg<'_>],
) -> rusqlite::Result<()> {
    if args.len() > 64 {
        return Err(rusqlite::Error::InvalidParameterCount(args.len(), 64));
    }
    let mut used: u64 = 0;
    for (at, name) in names.iter().enumerate() {
        let name: &str = name;
        let given = match args.get(at) {
            Some((n, _)) if *n == name => Some(at),
            _ => args.iter().position(|(n, _)| *n == name),
        };
        let value: &dyn ToSql = match given {
            Some(i) => {
                used |= 1 << i;
                args[i].1
            }
            None => match ENUMS.iter().find(|(n, _)| *n == name) {
                Some((_, code)) => code,
                None => return Err(rusqlite::Error::InvalidParameterName(name.to_owned())),
            },
        };
        stmt.raw_bind_parameter(at + 1, value)?;
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
    sql: &'static str,
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

    /// The enum names become their codes as whole names only, and nowhere inside quoted text,
    /// identifiers or comments.
    #[test]
    fn enum_names_are_written_in_as_codes() {
        let written = |sql: &str| {
            let mut out = String::new();
            write_enums(sql, &mut out);
            out
        };
        assert_eq!(
            written("WHERE state < :parked AND kind = :webhook AND o = :dead"),
            "WHERE state < 2 AND kind = 0 AND o = 1"
        );
        assert_eq!(
            written("SET a = :held_too, b = :deadline, c = :dead$x, d = :leasedé, e = :dead::x"),
            "SET a = :held_too, b = :deadline, c = :dead$x, d = :leasedé, e = :dead::x",
            "longer names are other parameters"
        );
        assert_eq!(
            written(
                "SELECT ':leased', \":leased\", [:leased], `:leased`, 'it''s :held' WHERE ?1 = :held"
            ),
            "SELECT ':leased', \":leased\", [:leased], `:leased`, 'it''s :held' WHERE ?1 = 3"
        );
        assert_eq!(
            written("SELECT 1 -- don't :held\n, :held /* it's :held */ , :held"),
            "SELECT 1 -- don't :held\n, 3 /* it's :held */ , 3",
            "comments are copied, and an apostrophe in one opens no quote"
        );
        assert_eq!(written("a : b :: c :"), "a : b :: c :");
        assert_eq!(written("x = :waiting"), "x = 0", "a name at the very end");
    }

    #[test]
    fn binding_refuses_unknown_names_and_unbound_parameters() {
        let conn = rusqlite::Connection::open_in_memory().expect("memory db");
        let one: i64 = 1;
        let bind = |stmt: &mut Statement<'_>, args: &[Arg<'_>]| {
            let names = names_of(stmt);
            bind_names(stmt, &names, args)
        };
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

    #[test]
    fn arguments_bind_by_name_in_any_order() {
        let conn = rusqlite::Connection::open_in_memory().expect("memory db");
        plan_once(&conn).expect("set up");
        let (five, one, two): (i64, i64, i64) = (5, 1, 2);
        let orders: [&[Arg<'_>]; 3] = [
            &[(":a", &five), (":b", &one), (":c", &two)],
            &[(":c", &two), (":a", &five), (":b", &one)],
            &[(":b", &one), (":c", &two), (":a", &five)],
        ];
        for (order, args) in orders.into_iter().enumerate() {
            // Prepared through the cache each time: the names are read from SQLite once.
            let mut stmt = prepare(&conn, "SELECT :a - :b * :c, :held").expect("prepare");
            bind(&mut stmt, args).expect("bind");
            let row: (i64, i64) = stmt
                .raw_query()
                .next()
                .expect("a row")
                .map(|r| (r.get(0).expect("int"), r.get(1).expect("int")))
                .expect("a row");
            assert_eq!(
                row,
                (3, i64::from(DeliveryState::Held.code())),
                "order {order}"
            );
        }
    }
}
