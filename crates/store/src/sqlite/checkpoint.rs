//! WAL checkpoints off the commit path.
//!
//! SQLite's automatic checkpoint runs inside the `COMMIT` that takes the WAL past 1000 pages, on
//! the connection that committed: here the single writer thread, which then copies pages into
//! the database file and fsyncs it while every caller of the next group waits (about an eighth
//! of the writer's time in the lease + ack bench, and a stall on the publish path). Instead the
//! writer's connection gets a WAL hook ([`install`]) that only nudges a thread of its own
//! ([`Checkpointer`]) every [`STEP`] pages; that thread runs a `PASSIVE` checkpoint on a second
//! connection, which never blocks the writer (SQLite lets one checkpoint run beside the
//! writer). A passive checkpoint cannot reset a WAL that keeps being appended to, so the WAL is
//! bounded by the writer itself: past [`LIMIT`] pages it runs a `RESTART` checkpoint after the
//! group, its callers answered ([`Checkpointer::after_commit`]); by then the checkpoint thread
//! has copied all but the last pages, so it is short, and the next group starts the WAL over.
//!
//! A `RESTART` must wait for every reader of an older snapshot (a long read: the queue's stats,
//! a page of the log, an export), and here the writer would wait, with every publish behind it.
//! So below [`HARD_FACTOR`] times the limit the writer does not wait for readers: if one holds
//! the WAL, its checkpoint gives up at once and is tried again a step of pages later, the WAL
//! growing past the limit by what is written while the read lasts. Only past that hard limit (a
//! read that would otherwise let the WAL grow without bound) does it wait, up to its busy
//! timeout.
//!
//! Durability is SQLite's: a checkpoint copies committed frames and fsyncs the database file
//! (at `synchronous` FULL or NORMAL) before it marks them copied; a crash at any point leaves
//! them in the WAL, where the next open finds them.

use std::ffi::c_int;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::hooks::Wal;
use rusqlite::wal::CheckpointMode;
use rusqlite::{Connection, ErrorCode, MAIN_DB, OpenFlags};

use crate::error::{Result, StoreError};

/// WAL pages between two nudges of the checkpoint thread: SQLite's default auto-checkpoint
/// interval (about 4 MiB at 4 KiB pages).
pub(crate) const STEP: c_int = 1000;

/// WAL pages past which the writer checkpoints itself (about 64 MiB at 4 KiB pages): the bound of
/// the WAL under a load that never pauses.
pub(crate) const LIMIT: c_int = 16_384;

/// How many times [`LIMIT`] the WAL may grow while readers hold it (about 256 MiB at 4 KiB
/// pages) before the writer waits for them to checkpoint it.
const HARD_FACTOR: c_int = 4;

/// What the writer's hook and the writer share (both run on the writer thread; the hook must
/// be `Send` all the same).
#[derive(Debug)]
struct Shared {
    /// The WAL's size in pages after the last commit.
    pages: AtomicI32,
    /// The size at which the writer checkpoints itself.
    forced: AtomicI32,
    /// Set by the hook when the WAL reached `forced`; the writer checkpoints after the group.
    due: AtomicBool,
    /// Held by whoever checkpoints: SQLite answers a second checkpoint at once `SQLITE_BUSY`.
    checkpointing: Mutex<()>,
}

/// The checkpoint thread; removing the writer's hook ([`Checkpointer::stop`]) ends it.
pub(crate) struct Checkpointer {
    handle: JoinHandle<()>,
    shared: Arc<Shared>,
    step: c_int,
    /// Past this many WAL pages the writer's checkpoint waits for readers.
    hard_limit: c_int,
    /// The writer's busy timeout, put back after a checkpoint that did not wait for readers.
    busy_timeout: Duration,
}

impl Checkpointer {
    /// Called by the writer after each committed group, its callers answered: past the limit,
    /// a `RESTART` checkpoint (it cannot run inside the hook, where the committing statement
    /// is still active). It copies the few pages the thread has not and makes the next group
    /// start the WAL over. Below the hard limit it does not wait for readers of older
    /// snapshots: while one reads, it gives up at once (`SQLITE_BUSY`) and is tried again a
    /// step of pages later. Past the hard limit it waits for them up to the writer's busy
    /// timeout. A failure is logged and tried again a step of pages later.
    pub(crate) fn after_commit(&self, writer: &Connection) {
        if !self.shared.due.swap(false, Ordering::Relaxed) {
            return;
        }
        let pages = self.shared.pages.load(Ordering::Relaxed);
        let wait_for_readers = pages >= self.hard_limit;
        // SQLite refuses a second checkpoint at once without waiting: wait for the thread's.
        let _one_at_a_time = self
            .shared
            .checkpointing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let result = if wait_for_readers {
            writer.wal_checkpoint_v2(Some(MAIN_DB), CheckpointMode::RESTART)
        } else {
            // No busy handler: a `RESTART` that finds a reader still on the WAL copies what it
            // can, as a passive one would, and answers `SQLITE_BUSY` instead of waiting.
            writer.busy_timeout(Duration::ZERO).and_then(|()| {
                let result = writer.wal_checkpoint_v2(Some(MAIN_DB), CheckpointMode::RESTART);
                if let Err(e) = writer.busy_timeout(self.busy_timeout) {
                    tracing::error!(error = %e, "cannot put the writer's busy timeout back");
                }
                result
            })
        };
        let again = || {
            self.shared
                .forced
                .store(pages.saturating_add(self.step), Ordering::Relaxed);
        };
        match result {
            Ok(_) => {}
            Err(e)
                if !wait_for_readers && e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy) =>
            {
                tracing::debug!(
                    pages,
                    "the WAL is in use (a reader, usually); the writer checkpoints later"
                );
                again();
            }
            Err(e) => {
                tracing::warn!(error = %e, pages, "the writer's checkpoint failed");
                again();
            }
        }
    }

    /// Removes the writer's WAL hook, which holds the only sender, and waits for the thread.
    pub(crate) fn stop(self, writer: &mut Connection) {
        if let Err(e) = writer.wal_hook(None::<fn(&mut Wal, c_int) -> rusqlite::Result<()>>) {
            tracing::error!(error = %e, "cannot remove the WAL hook");
        }
        if self.handle.join().is_err() {
            tracing::error!("the checkpoint thread panicked");
        }
    }
}

/// Opens the checkpoint thread's connection to `path` with the writer's `synchronous` pragma,
/// starts the thread and installs the writer's hook on `writer`, nudging every `step` WAL pages
/// and checkpointing on the writer past `limit` ([`STEP`] and [`LIMIT`] but in tests).
pub(crate) fn install(
    writer: &mut Connection,
    path: &Path,
    synchronous: &'static str,
    (step, limit): (c_int, c_int),
) -> Result<Checkpointer> {
    let io = |e: std::io::Error| StoreError::Io {
        path: path.to_owned(),
        source: e,
    };
    let db = |e: rusqlite::Error| StoreError::Database {
        op: "open the checkpoint connection",
        source: Box::new(e),
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(db)?;
    conn.execute_batch(synchronous).map_err(db)?;
    let busy_ms: i64 = writer
        .query_row("PRAGMA busy_timeout", [], |r| r.get(0))
        .map_err(db)?;
    let (nudge, nudged) = sync_channel(1);
    let shared = Arc::new(Shared {
        pages: AtomicI32::new(0),
        forced: AtomicI32::new(limit),
        due: AtomicBool::new(false),
        checkpointing: Mutex::new(()),
    });
    let thread_shared = Arc::clone(&shared);
    let handle = std::thread::Builder::new()
        .name("nexus-store-checkpoint".into())
        .spawn(move || run(&conn, &nudged, &thread_shared))
        .map_err(io)?;
    writer
        .wal_hook(Some(hook(nudge, Arc::clone(&shared), step, limit)))
        .map_err(db)?;
    Ok(Checkpointer {
        handle,
        shared,
        step,
        hard_limit: limit.saturating_mul(HARD_FACTOR),
        busy_timeout: Duration::from_millis(u64::try_from(busy_ms).unwrap_or(0)),
    })
}

/// The writer's WAL hook: called after each commit with the WAL's size in pages.
fn hook(
    nudge: SyncSender<()>,
    shared: Arc<Shared>,
    step: c_int,
    limit: c_int,
) -> impl FnMut(&mut Wal, c_int) -> rusqlite::Result<()> + Send {
    let mut next = step;
    let mut last = 0;
    move |_wal, pages| {
        if pages < last {
            // The WAL started over.
            next = step;
            shared.forced.store(limit, Ordering::Relaxed);
        }
        last = pages;
        shared.pages.store(pages, Ordering::Relaxed);
        if pages >= shared.forced.load(Ordering::Relaxed) {
            // The thread cannot reset a WAL that never stops growing: the writer will.
            shared.due.store(true, Ordering::Relaxed);
        } else if pages >= next {
            // A nudge already waiting is enough.
            let _ = nudge.try_send(());
            next = pages.saturating_add(step);
        }
        Ok(())
    }
}

/// The thread: one passive checkpoint per nudge (nudges sent while one runs collapse into one),
/// until the hook and its sender are gone.
fn run(conn: &Connection, nudged: &Receiver<()>, shared: &Shared) {
    while nudged.recv().is_ok() {
        let _one_at_a_time = shared
            .checkpointing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match conn.wal_checkpoint_v2(Some(MAIN_DB), CheckpointMode::PASSIVE) {
            Ok((log, copied)) => tracing::trace!(log, copied, "checkpoint"),
            // Busy while the writer checkpoints itself past the limit: the next nudge retries.
            Err(e) => tracing::debug!(error = %e, "checkpoint skipped"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn size(path: &Path) -> u64 {
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }

    /// The test's step and limit in pages.
    const STEP_LIMIT: (c_int, c_int) = (40, 400);

    /// A writer connection on `path` in WAL mode (`synchronous = NORMAL`, a 5 s busy timeout)
    /// with a table `t`, and its checkpointer at [`STEP_LIMIT`].
    fn writer_at(path: &Path) -> (Connection, Checkpointer) {
        let mut writer = Connection::open(path).expect("open");
        let mode: String = writer
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .expect("wal");
        assert_eq!(mode, "wal");
        writer
            .execute_batch(
                "PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000; CREATE TABLE t (b BLOB)",
            )
            .expect("schema");
        let checkpointer = install(
            &mut writer,
            path,
            "PRAGMA synchronous = NORMAL;",
            STEP_LIMIT,
        )
        .expect("install");
        (writer, checkpointer)
    }

    /// Commits `n` transactions of about 16 KiB each (four or five pages) on `conn`, each
    /// followed by what the writer does after a group.
    fn commit(conn: &Connection, checkpointer: Option<&Checkpointer>, n: usize) {
        let blob = vec![7u8; 16 * 1024];
        for _ in 0..n {
            conn.execute("INSERT INTO t (b) VALUES (?1)", [&blob])
                .expect("insert");
            if let Some(c) = checkpointer {
                c.after_commit(conn);
            }
        }
    }

    /// The thread copies the WAL into the database file without the writer checkpointing
    /// (SQLite's own automatic checkpoint is off once the hook is in), and under writes that
    /// never pause the WAL stays near the limit instead of growing with them; stopping ends
    /// the thread.
    #[test]
    fn the_wal_is_checkpointed_beside_the_writer_and_bounded() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("c.db");
        let (mut writer, checkpointer) = writer_at(&path);
        let page: i64 = writer
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .expect("page size");
        let page = u64::try_from(page).expect("page size");
        let (_, limit) = STEP_LIMIT;
        let db_before = size(&path);

        // Past one step: the thread is nudged and copies the pages into the database file.
        commit(&writer, Some(&checkpointer), 20);
        let deadline = Instant::now() + Duration::from_secs(10);
        while size(&path) < db_before + 40 * page {
            assert!(
                Instant::now() < deadline,
                "nothing was checkpointed into the database file ({} bytes)",
                size(&path)
            );
            std::thread::sleep(Duration::from_millis(10));
        }

        // More than ten times the limit written: the WAL file stays within the limit and one
        // commit.
        commit(&writer, Some(&checkpointer), 1_000);
        let wal = size(&dir.path().join("c.db-wal"));
        let frames = wal / (page + 24);
        assert!(
            frames <= limit as u64 + 10,
            "the WAL grew to {frames} frames, past {limit} and one commit"
        );
        checkpointer.stop(&mut writer);
        commit(&writer, None, 1);
    }

    /// A reader of an old snapshot holds the WAL: below the hard limit the writer's checkpoint
    /// gives up at once instead of waiting out its busy timeout (the stall every publish would
    /// sit behind), and the WAL grows past the limit; past the hard limit the writer waits for
    /// the reader, and once it has finished the WAL starts over.
    #[test]
    fn a_long_reader_does_not_stall_the_writer_below_the_hard_limit() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("r.db");
        let (mut writer, checkpointer) = writer_at(&path);
        let (step, limit) = STEP_LIMIT;
        commit(&writer, Some(&checkpointer), 10);

        let reader = Connection::open(&path).expect("reader");
        reader
            .execute_batch("BEGIN; SELECT count(*) FROM t;")
            .expect("a read transaction on the current snapshot");
        let pages = || checkpointer.shared.pages.load(Ordering::Relaxed);
        let hard = limit * HARD_FACTOR;
        let blob = vec![7u8; 16 * 1024];
        let mut slowest = Duration::ZERO;
        while pages() < hard - 2 * step {
            writer
                .execute("INSERT INTO t (b) VALUES (?1)", [&blob])
                .expect("insert");
            let started = Instant::now();
            checkpointer.after_commit(&writer);
            slowest = slowest.max(started.elapsed());
        }
        assert!(
            slowest < Duration::from_secs(2),
            "the writer waited {slowest:?} for a reader below the hard limit"
        );
        let busy: i64 = writer
            .query_row("PRAGMA busy_timeout", [], |r| r.get(0))
            .expect("busy timeout");
        assert_eq!(busy, 5000, "the writer's busy timeout is put back");

        // Past the hard limit the writer waits for the reader, which ends 300 ms after the WAL
        // got there.
        let shared = Arc::clone(&checkpointer.shared);
        let done = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            while shared.pages.load(Ordering::Relaxed) < hard && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_millis(300));
            reader.execute_batch("COMMIT").expect("end the read");
        });
        let started = Instant::now();
        let mut most = 0;
        while pages() >= limit {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the WAL never started over ({} pages)",
                pages()
            );
            commit(&writer, Some(&checkpointer), 1);
            most = most.max(pages());
        }
        done.join().expect("reader thread");
        // The first checkpoint due past the hard limit waited out the reader's 300 ms, so the
        // WAL grew no further than a step and a commit beyond it; a writer that did not wait
        // would have kept appending for those 300 ms.
        assert!(
            most <= hard + step + 10,
            "the WAL grew to {most} pages while the reader held it, past the hard limit {hard}"
        );
        checkpointer.stop(&mut writer);
    }
}
