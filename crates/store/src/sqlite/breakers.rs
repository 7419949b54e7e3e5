//! Circuit breaker states kept across restarts, so a restart does not hammer a target that was
//! down. Each save bumps the row's `generation` (schema version 3), as PostgreSQL does.

use async_trait::async_trait;
use nexus_event::Timestamp;
use rusqlite::params;

use super::SqliteStore;
use super::columns::{db_err, prepare, ts};
use crate::error::Result;
use crate::model::BreakerRecord;
use crate::traits::BreakerLog;

#[async_trait]
impl BreakerLog for SqliteStore {
    async fn save_breaker(&self, record: BreakerRecord) -> Result<u64> {
        self.call(move |ctx| {
            let generation = prepare(ctx.conn,
                    "INSERT INTO breakers (target, open, consecutive_failures, trips, opened_ms, updated_ms, generation) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1) ON CONFLICT (target) DO UPDATE SET \
                     open = excluded.open, consecutive_failures = excluded.consecutive_failures, \
                     trips = excluded.trips, opened_ms = excluded.opened_ms, updated_ms = excluded.updated_ms, \
                     generation = breakers.generation + 1 RETURNING generation",
                )
                .and_then(|mut s| {
                    s.query_row(params![
                        record.target,
                        record.open,
                        record.consecutive_failures,
                        i64::try_from(record.trips).unwrap_or(i64::MAX),
                        record.opened_at.map(Timestamp::as_unix_millis),
                        Timestamp::now().as_unix_millis(),
                    ], |r| r.get::<_, i64>(0))
                })
                .map_err(db_err("save breaker"))?;
            Ok(generation.max(0) as u64)
        })
        .await
    }

    async fn breakers(&self) -> Result<Vec<BreakerRecord>> {
        self.read(|conn| {
            prepare(conn,
                "SELECT target, open, consecutive_failures, trips, opened_ms, generation FROM breakers ORDER BY target",
            )
            .and_then(|mut s| {
                s.query_map([], |r| {
                    Ok(BreakerRecord {
                        target: r.get(0)?,
                        open: r.get(1)?,
                        consecutive_failures: r.get(2)?,
                        trips: r.get::<_, i64>(3)?.max(0) as u64,
                        opened_at: r.get::<_, Option<i64>>(4)?.map(ts).transpose()?,
                        generation: r.get::<_, i64>(5)?.max(0) as u64,
                    })
                })?
                .collect()
            })
            .map_err(db_err("read breakers"))
        })
        .await
    }
}
