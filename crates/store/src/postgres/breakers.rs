//! Circuit breaker states kept across restarts, so a restart does not hammer a target that was
//! down. The table has a `generation` column for the shared breakers of several instances
//! (issue 14 continues); this backend keeps it as it is.

use async_trait::async_trait;
use nexus_event::Timestamp;

use super::columns::{db_err, signed, ts, unsigned};
use super::{PgStore, get};
use crate::error::Result;
use crate::model::BreakerRecord;
use crate::traits::BreakerLog;

#[async_trait]
impl BreakerLog for PgStore {
    async fn save_breaker(&self, record: BreakerRecord) -> Result<()> {
        self.call(move |ctx| {
            Box::pin(async move {
                ctx.client
                    .execute(
                        "INSERT INTO breakers (target, open, consecutive_failures, trips, \
                         opened_ms, updated_ms) VALUES ($1, $2, $3, $4, $5, $6) \
                         ON CONFLICT (target) DO UPDATE SET open = excluded.open, \
                         consecutive_failures = excluded.consecutive_failures, \
                         trips = excluded.trips, opened_ms = excluded.opened_ms, \
                         updated_ms = excluded.updated_ms",
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
                Ok(())
            })
        })
        .await
    }

    async fn breakers(&self) -> Result<Vec<BreakerRecord>> {
        let op = "read breakers";
        let client = self.conn(op).await?;
        let rows = client
            .query(
                "SELECT target, open, consecutive_failures, trips, opened_ms FROM breakers \
                 ORDER BY target",
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
                })
            })
            .collect()
    }
}
