//! How Rust values map to columns: the delivery state and consumer kind as enums (never bare
//! integers in SQL), timestamps, conversion errors, and binding by name so every statement takes
//! its values (states included) as parameters.

use nexus_event::Timestamp;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::{Statement, ToSql};

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

/// Names every statement may use for the states and consumer kinds; bound wherever they appear.
const ENUMS: [Arg<'static>; 8] = [
    (":waiting", &DeliveryState::Waiting),
    (":leased", &DeliveryState::Leased),
    (":parked", &DeliveryState::Parked),
    (":held", &DeliveryState::Held),
    (":webhook", &ConsumerKind::Subscription),
    (":reactor", &ConsumerKind::Reactor),
    (":delivered", &Finished::Delivered),
    (":dead", &Finished::Dead),
];

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
        let value = match args.iter().position(|(n, _)| *n == name) {
            Some(i) => {
                used |= 1 << i;
                args[i].1
            }
            None => match ENUMS.iter().find(|(n, _)| *n == name) {
                Some((_, value)) => *value,
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
    let mut stmt = conn.prepare_cached(sql)?;
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
