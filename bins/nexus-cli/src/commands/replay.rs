//! `replay`: re-delivers a range of the log, then optionally follows the queue until empty.

use std::time::{Duration, Instant};

use nexus_client::{Admin, Replay};
use serde_json::json;

use crate::cli::ReplayArgs;
use crate::output::{Out, Progress};

pub(crate) fn replay(admin: &Admin, a: ReplayArgs, out: &mut Out) -> anyhow::Result<()> {
    let mut progress = Progress::new("enqueueing");
    progress.update(0, None);
    let enqueued = admin.replay(&Replay {
        after: a.after,
        until: a.until,
        types: a.types,
        target: a.target,
    })?;
    progress.finish();
    let mut pending = None;
    if let Some(secs) = a.wait {
        // The retry queue is shared: this follows all of it, the replayed deliveries included.
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut progress = Progress::new("delivering; pending");
        loop {
            let stats = admin.retry_stats()?;
            progress.update(stats.pending, None);
            if stats.pending == 0 || Instant::now() >= deadline {
                pending = Some(stats.pending);
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        progress.finish();
    }
    if out.json() {
        let mut v = json!({ "enqueued": enqueued });
        if let Some(p) = pending {
            v["pending"] = json!(p);
        }
        return out.json_value(&v);
    }
    out.line(&format!("enqueued {enqueued} deliveries"))?;
    if let Some(p) = pending {
        out.line(&format!("retry queue: {p} pending"))?;
    }
    Ok(())
}
