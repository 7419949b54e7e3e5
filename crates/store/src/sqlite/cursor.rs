//! Named sequence cursors, for consumers that resume from where they were.

use async_trait::async_trait;
use nexus_event::Timestamp;
use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use super::columns::{db_err, prepare};
use crate::error::{Result, StoreError};
use crate::traits::Cursors;

#[async_trait]
impl Cursors for SqliteStore {
    async fn cursor(&self, name: &str) -> Result<Option<u64>> {
        let name = name.to_owned();
        self.read(move |conn| {
            prepare(conn, "SELECT sequence FROM cursors WHERE name = ?1")
                .and_then(|mut s| s.query_row([&name], |r| r.get::<_, i64>(0)).optional())
                .map(|v| v.map(|s| s as u64))
                .map_err(db_err("read cursor"))
        })
        .await
    }

    async fn set_cursor(&self, name: &str, sequence: u64) -> Result<()> {
        let name = name.to_owned();
        let sequence = i64::try_from(sequence).map_err(|_| StoreError::Invalid {
            field: "sequence",
            message: "too large".into(),
        })?;
        self.call(move |ctx| {
            prepare(ctx.conn,
                    "INSERT INTO cursors (name, sequence, updated_ms) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (name) DO UPDATE SET sequence = excluded.sequence, updated_ms = excluded.updated_ms",
                )
                .and_then(|mut s| s.execute(params![name, sequence, Timestamp::now().as_unix_millis()]))
                .map_err(db_err("set cursor"))?;
            Ok(())
        })
        .await
    }
}
