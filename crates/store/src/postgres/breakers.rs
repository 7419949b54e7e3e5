//! Circuit breaker states kept across restarts, so a restart does not hammer a target that was
//! down, and shared by every instance on the database: each save bumps the row's `generation`
//! in the same statement, so the instances reading the table back (`nexus-resilience`'s breaker
//! sync) can tell a save they have not seen yet from their own.

use async_trait::async_trait;
use nexus_event::Timestamp;

use super::columns::{db_err, signed, ts, unsigned};
use super::{PgStore, get};
use crate::error::Result;
use crate::model::BreakerRecord;
use crate::traits::BreakerLog;

#[async_trait]
impl BreakerLog for PgStore {
    async fn save_breaker(&self, record: BreakerRecord) -> Result<u64> {
        self.call(move |ctx| {
            Box::pin(async move {
                // The upsert takes the row lock, so concurrent saves of one target get distinct,
                // growing generations.
                let row = ctx
                    .client
                    .query_one(
                        "INSERT INTO breakers (target, open, consecutive_failures, trips, \
                         opened_ms, updated_ms, generation) VALUES ($1, $2, $3, $4, $5, $6, 1) \
                         ON CONFLICT (target) DO UPDATE SET open = excluded.open, \
                         consecutive_failures = excluded.consecutive_failures, \
                         trips = excluded.trips, opened_ms = excluded.opened_ms, \
                         updated_ms = excluded.updated_ms, \
                         generation = breakers.generation + 1 \
                         RETURNING generation",
                        &[
                            &record.target,
                            &record.open,
                            &i64::from(record.consecutive_failures),
                            &signed(record.trips),
                            &record.opened_at.map(Timestamp::as_unix_millis),
                            &Timestamp::now().as_unix_millis(),
                        ],
                    )
                    .await
                    .map_err(db_err("save breaker"))?;
                Ok(unsigned(get(&row, 0, "save breaker")?))
            })
        })
        .await
    }

    async fn breakers(&self) -> Result<Vec<BreakerRecord>> {
        let op = "read breakers";
        let client = self.conn(op).await?;
        let rows = client
            .query(
                "SELECT target, open, consecutive_failures, trips, opened_ms, generation \
                 FROM breakers ORDER BY target",
                &[],
            )
            .await
            .map_err(db_err(op))?;
        rows.iter()
            .map(|r| {
                Ok(BreakerRecord {
                    target: get(r, 0, op)?,
                    open: get(r, 1, op)?,
                    consecutive_failures: u32::try_from(get::<i64>(r, 2, op)?).unwrap_or(u32::MAX),
                    trips: unsigned(get(r, 3, op)?),
                    opened_at: get::<Option<i64>>(r, 4, op)?.map(ts).transpose()?,
                    generation: unsigned(get(r, 5, op)?),
                })
            })
            .collect()
    }
}
