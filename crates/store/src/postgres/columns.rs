//! How Rust values map to columns: the delivery state and consumer kind as enums (bound as
//! `smallint` parameters, never written into SQL text), timestamps, type filters as `LIKE`
//! patterns, and how driver and pool errors become [`StoreError`]s.

use nexus_event::{Timestamp, TypeFilter};
use tokio_postgres::error::SqlState;

use crate::error::StoreError;
use crate::model::Consumer;

pub(crate) use crate::backend::{ConsumerKind, DeliveryState, Finished};

/// The consumer of a row's kind and name columns.
pub(crate) fn consumer_from(kind: i16, name: String) -> Result<Consumer, StoreError> {
    let kind = ConsumerKind::from_code(kind.into()).map_err(|e| StoreError::Database {
        op: "read consumer",
        source: Box::new(e),
    })?;
    Ok(crate::backend::consumer_of(kind, name))
}

/// Whether a driver error means the server is away (connection lost, refused, shutting down,
/// out of connections) rather than an answer about the statement.
fn is_unreachable(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        return code.code().starts_with("08")
            || [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
                SqlState::TOO_MANY_CONNECTIONS,
            ]
            .contains(code);
    }
    // No SQLSTATE: an I/O error on the socket, or the connection's own failure.
    std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}

/// Maps a driver error during `op`: a server that is away is [`StoreError::Unavailable`]
/// (`503` with `Retry-After` at ingress), anything else [`StoreError::Database`]; both are
/// transient.
/// Every failure is counted in `nexus_store_errors_total`.
pub(crate) fn db_err(op: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError {
    move |e| {
        metrics::counter!(crate::metric_names::STORE_ERRORS_TOTAL).increment(1);
        if is_unreachable(&e) {
            StoreError::Unavailable {
                reason: format!("PostgreSQL is unreachable during {op}: {e}"),
            }
        } else {
            StoreError::Database {
                op,
                source: Box::new(e),
            }
        }
    }
}

/// Maps a pool error (no connection could be had) during `op` to [`StoreError::Unavailable`].
pub(crate) fn pool_err(op: &'static str) -> impl Fn(deadpool_postgres::PoolError) -> StoreError {
    move |e| match e {
        deadpool_postgres::PoolError::Backend(e) => db_err(op)(e),
        other => {
            metrics::counter!(crate::metric_names::STORE_ERRORS_TOTAL).increment(1);
            StoreError::Unavailable {
                reason: format!("no PostgreSQL connection for {op}: {other}"),
            }
        }
    }
}

/// A timestamp column.
pub(crate) fn ts(ms: i64) -> Result<Timestamp, StoreError> {
    Timestamp::from_unix_millis(ms).map_err(|e| StoreError::Database {
        op: "read timestamp",
        source: Box::new(e),
    })
}

/// A parse error of a stored value.
pub(crate) fn corrupt<E: std::error::Error + Send + Sync + 'static>(
    op: &'static str,
) -> impl Fn(E) -> StoreError {
    move |e| StoreError::Database {
        op,
        source: Box::new(e),
    }
}

/// A status code column.
pub(crate) fn status_of(v: Option<i32>) -> Option<u16> {
    v.and_then(|s| u16::try_from(s).ok())
}

/// A type filter as a `text[]` of `LIKE` patterns (`*` is `%`; `_`, `%` and `\` are escaped),
/// `None` for no filter. Statements test it as `($n::text[] IS NULL OR type LIKE ANY($n))`.
pub(crate) fn like_patterns(filter: &TypeFilter) -> Option<Vec<String>> {
    let patterns = filter.patterns();
    if patterns.is_empty() {
        return None;
    }
    Some(
        patterns
            .iter()
            .map(|p| {
                let mut like = String::with_capacity(p.as_str().len() + 4);
                for c in p.as_str().chars() {
                    match c {
                        '*' => like.push('%'),
                        '%' | '_' | '\\' => {
                            like.push('\\');
                            like.push(c);
                        }
                        c => like.push(c),
                    }
                }
                like
            })
            .collect(),
    )
}

/// A count or sequence read as `bigint`, never negative.
pub(crate) fn unsigned(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A count or sequence as `bigint`, saturating.
pub(crate) fn signed(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_become_escaped_like_patterns() {
        let filter = TypeFilter::parse(["MINT_*", "PAYMENT_RECEIVED"]).expect("valid");
        assert_eq!(
            like_patterns(&filter),
            Some(vec!["MINT\\_%".to_owned(), "PAYMENT\\_RECEIVED".to_owned()])
        );
        assert_eq!(like_patterns(&TypeFilter::all()), None);
    }

    #[test]
    fn unknown_kinds_are_errors_not_guesses() {
        assert!(matches!(
            consumer_from(ConsumerKind::Reactor.code(), "r".into()),
            Ok(Consumer::Reactor(name)) if name == "r"
        ));
        assert!(consumer_from(7, "x".into()).is_err());
    }
}
