//! Pruning the delivery history: finished deliveries (delivered or dead) older than
//! `[retry] history_retention_ms` are removed with their attempts, at start and then every
//! [`EVERY`], in chunks of [`CHUNK`] so no single statement holds the store for long.

use std::sync::Arc;
use std::time::Duration;

use nexus_event::Timestamp;
use nexus_store::Store;

/// How often the history is pruned.
const EVERY: Duration = Duration::from_secs(600);

/// Finished deliveries removed per statement.
const CHUNK: usize = 5_000;

/// Prunes the history of `store` until the task is aborted.
pub(crate) fn spawn(store: Arc<dyn Store>, retention: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = Timestamp::now().as_unix_millis();
            let cut = now.saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
            let Ok(before) = Timestamp::from_unix_millis(cut) else {
                continue;
            };
            match prune(store.as_ref(), before).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(pruned = n, "delivery history pruned"),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot prune the delivery history; trying again later")
                }
            }
        }
    })
}

/// Removes every finished delivery that finished before `before`, chunk by chunk.
async fn prune(store: &dyn Store, before: Timestamp) -> nexus_store::Result<u64> {
    let mut total = 0;
    loop {
        let n = store.prune_history(before, CHUNK).await?;
        total += n;
        if n < CHUNK as u64 {
            return Ok(total);
        }
    }
}
