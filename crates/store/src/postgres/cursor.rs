//! Named sequence cursors, for consumers that resume from where they were.

use async_trait::async_trait;
use nexus_event::Timestamp;

use super::columns::{db_err, unsigned};
use super::{PgStore, get};
use crate::error::{Result, StoreError};
use crate::traits::Cursors;

#[async_trait]
impl Cursors for PgStore {
    async fn cursor(&self, name: &str) -> Result<Option<u64>> {
        let client = self.conn("read cursor").await?;
        client
            .query_opt("SELECT sequence FROM cursors WHERE name = $1", &[&name])
            .await
            .map_err(db_err("read cursor"))?
            .map(|r| get::<i64>(&r, 0, "read cursor").map(unsigned))
            .transpose()
    }

    async fn set_cursor(&self, name: &str, sequence: u64) -> Result<()> {
        let name = name.to_owned();
        let sequence = i64::try_from(sequence).map_err(|_| StoreError::Invalid {
            field: "sequence",
            message: "too large".into(),
        })?;
        self.call(move |ctx| {
            Box::pin(async move {
                ctx.client
                    .execute(
                        "INSERT INTO cursors (name, sequence, updated_ms) VALUES ($1, $2, $3) \
                         ON CONFLICT (name) DO UPDATE SET sequence = excluded.sequence, \
                         updated_ms = excluded.updated_ms",
                        &[&name, &sequence, &Timestamp::now().as_unix_millis()],
                    )
                    .await
                    .map_err(db_err("set cursor"))?;
                Ok(())
            })
        })
        .await
    }
}
