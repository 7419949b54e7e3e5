//! The single writer thread: it owns the one read-write connection, groups every command that is
//! waiting into one transaction and one fsync (group commit), and only then answers each caller.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use nexus_core::Bus;
use nexus_event::Event;
use rusqlite::Connection;
use tokio::sync::{mpsc, watch};

use super::checkpoint::Checkpointer;
use crate::error::{Result, StoreError};
use crate::model::Router;

/// What a job hands back once the transaction's fate is known: it answers the caller.
pub(crate) type Completion = Box<dyn FnOnce(Result<()>) + Send>;
/// What a job runs on the writer thread inside the group's transaction: it returns whether it
/// failed (what it wrote is then undone) and how to answer its caller after the commit.
pub(crate) type Work = Box<dyn FnOnce(&mut Ctx<'_>) -> (bool, Completion) + Send>;
/// A unit of work for the writer. A job dropped without running answers its caller
/// `Unavailable` (its reply channel closes).
pub(crate) struct Job {
    pub(crate) run: Work,
    /// Whether the job runs inside a savepoint of its own, so its failure undoes only its own
    /// writes. Without one (settles: an ack is a few rows, and the savepoint's page journal
    /// was a large share of its cost) the job must fail only before it writes, as a settle
    /// whose lease was lost does; one that fails after writing rolls back the whole group,
    /// which answers every caller of the group `Unavailable` and loses nothing acknowledged.
    pub(crate) savepoint: bool,
}

/// The most jobs one transaction groups.
const MAX_GROUP: usize = 512;

pub(crate) use crate::backend::SubRoute;

/// The most recent events, by sequence, so leasing fresh deliveries does not reparse them.
pub(crate) struct EventCache {
    first: u64,
    events: VecDeque<Arc<Event>>,
    capacity: usize,
}

impl EventCache {
    pub(crate) fn new(capacity: usize, next: u64) -> Self {
        EventCache {
            first: next,
            events: VecDeque::with_capacity(capacity.min(1 << 16)),
            capacity,
        }
    }

    fn push(&mut self, event: Arc<Event>) {
        if self.capacity == 0 {
            return;
        }
        if self.first + self.events.len() as u64 != event.sequence {
            // Not contiguous (cannot happen for committed appends): start over.
            self.events.clear();
            self.first = event.sequence;
        }
        if self.events.len() == self.capacity {
            self.events.pop_front();
            self.first += 1;
        }
        self.events.push_back(event);
    }

    pub(crate) fn get(&self, sequence: u64) -> Option<Arc<Event>> {
        let index = sequence.checked_sub(self.first)?;
        self.events.get(usize::try_from(index).ok()?).cloned()
    }
}

/// State the writer keeps between transactions.
pub(crate) struct State {
    pub(crate) next_sequence: u64,
    pub(crate) subscriptions: Vec<SubRoute>,
    pub(crate) router: Option<Arc<dyn Router>>,
    pub(crate) cache: EventCache,
}

/// What one job may touch: the transaction, the writer's state, and effects that wait for the
/// commit.
pub(crate) struct Ctx<'a> {
    pub(crate) conn: &'a Connection,
    pub(crate) state: &'a mut State,
    /// Events committed by this group, in sequence order, to cache and publish after the commit.
    pub(crate) appended: Vec<Arc<Event>>,
    /// Whether the group made deliveries due (wakes sleeping workers after the commit).
    pub(crate) work: bool,
    /// Whether the running job changed subscriptions (it reloads `state.subscriptions` itself;
    /// this says to reload them again if the job is undone).
    pub(crate) subscriptions_changed: bool,
    /// A savepoint could not be rolled back: the whole group must be.
    poisoned: bool,
}

pub(crate) struct Writer {
    pub(crate) conn: Connection,
    /// Checkpoints the WAL beside the writer; stopped when the writer stops.
    checkpointer: Option<Checkpointer>,
    pub(crate) state: State,
    pub(crate) bus: Option<Bus>,
    pub(crate) head: Arc<AtomicU64>,
    pub(crate) changes: watch::Sender<u64>,
    /// Moves after every commit that changed subscriptions (readers' caches check it).
    pub(crate) subscriptions_version: Arc<AtomicU64>,
}

impl Writer {
    pub(crate) fn new(
        conn: Connection,
        checkpointer: Checkpointer,
        state: State,
        bus: Option<Bus>,
        head: Arc<AtomicU64>,
        changes: watch::Sender<u64>,
        subscriptions_version: Arc<AtomicU64>,
    ) -> Self {
        Writer {
            conn,
            checkpointer: Some(checkpointer),
            state,
            bus,
            head,
            changes,
            subscriptions_version,
        }
    }

    /// Runs until every sender is gone.
    pub(crate) fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        let mut group: Vec<Job> = Vec::with_capacity(MAX_GROUP);
        while let Some(first) = jobs.blocking_recv() {
            group.push(first);
            while group.len() < MAX_GROUP {
                match jobs.try_recv() {
                    Ok(job) => group.push(job),
                    Err(_) => break,
                }
            }
            self.run_group(&mut group);
        }
        if let Some(checkpointer) = self.checkpointer.take() {
            checkpointer.stop(&mut self.conn);
        }
        tracing::debug!("store writer stopped");
    }

    fn run_group(&mut self, group: &mut Vec<Job>) {
        if let Err(e) = run_cached(&self.conn, "BEGIN IMMEDIATE") {
            tracing::error!(error = %e, "store writer cannot begin a transaction");
            // Dropping the jobs answers their callers `Unavailable`.
            group.clear();
            return;
        }
        let mut ctx = Ctx {
            conn: &self.conn,
            state: &mut self.state,
            appended: Vec::new(),
            work: false,
            subscriptions_changed: false,
            poisoned: false,
        };
        let mut completions = Vec::with_capacity(group.len());
        for job in group.drain(..) {
            if ctx.poisoned {
                // The transaction is lost: do not run more; dropping answers `Unavailable`.
                drop(job);
                continue;
            }
            completions.extend(run_job(&mut ctx, job));
        }
        let Ctx {
            appended,
            work,
            poisoned,
            subscriptions_changed,
            ..
        } = ctx;

        let committed = if poisoned {
            if !self.conn.is_autocommit() {
                let _ = self.conn.execute_batch("ROLLBACK");
            }
            Err(StoreError::Unavailable {
                reason: "the database rolled back the transaction (disk full or I/O error?); \
                         nothing of it was written"
                    .into(),
            })
        } else {
            run_cached(&self.conn, "COMMIT").map_err(|e| {
                tracing::error!(error = %e, "store commit failed; the group is rolled back");
                let _ = self.conn.execute_batch("ROLLBACK");
                StoreError::Database {
                    op: "commit",
                    source: Box::new(e),
                }
            })
        };
        match committed {
            Ok(()) => {
                if subscriptions_changed {
                    // Before any caller is answered, so it reads what it just wrote.
                    self.subscriptions_version.fetch_add(1, Ordering::AcqRel);
                }
                for event in &appended {
                    self.state.cache.push(Arc::clone(event));
                }
                if let Some(last) = appended.last() {
                    self.head.store(last.sequence, Ordering::Release);
                }
                if work || !appended.is_empty() {
                    self.changes.send_modify(|n| *n = n.wrapping_add(1));
                }
                // Publish before answering, so a caller whose append returned finds its events on
                // the bus; publishing never blocks, and the bus sees commit order.
                if let Some(bus) = &self.bus {
                    for event in appended {
                        bus.publish(event);
                    }
                }
                for completion in completions {
                    completion(Ok(()));
                }
                if let Some(checkpointer) = &self.checkpointer {
                    checkpointer.after_commit(&self.conn);
                }
            }
            Err(e) => {
                // Nothing of the group was written: forget what its jobs changed in memory.
                self.state.next_sequence = self.head.load(Ordering::Acquire) + 1;
                self.reload_subscriptions();
                let reason = e.to_string();
                for completion in completions {
                    completion(Err(StoreError::Unavailable {
                        reason: reason.clone(),
                    }));
                }
            }
        }
    }

    fn reload_subscriptions(&mut self) {
        match super::subscriptions::load_subscription_routes(&self.conn) {
            Ok(subs) => self.state.subscriptions = subs,
            Err(e) => tracing::error!(error = %e, "cannot reload subscriptions"),
        }
    }
}

/// Runs one transaction-control statement from the connection's statement cache: these run for
/// every job and group, and parsing them each time was a visible share of the writer's time.
fn run_cached(conn: &Connection, sql: &'static str) -> rusqlite::Result<()> {
    super::columns::prepare(conn, sql)?.execute([]).map(|_| ())
}

/// Runs one job, inside its own savepoint when it asks for one, so a failing job leaves the rest
/// of the group intact.
///
/// A job that panics counts as failed (its caller sees `Unavailable`). If SQLite rolled back
/// the whole transaction under the job (disk full, I/O error), or a job without a savepoint
/// failed after it had written rows, the group is poisoned: no other job runs in it and nothing
/// of it is committed.
fn run_job(ctx: &mut Ctx<'_>, job: Job) -> Option<Completion> {
    if ctx.conn.is_autocommit() {
        ctx.poisoned = true;
        return None;
    }
    let Job { run, savepoint } = job;
    if savepoint && let Err(e) = run_cached(ctx.conn, "SAVEPOINT job") {
        tracing::error!(error = %e, "cannot open a savepoint");
        ctx.poisoned = true;
        return None;
    }
    let changes = ctx.conn.total_changes();
    let next_sequence = ctx.state.next_sequence;
    let appended = ctx.appended.len();
    let (work, subs) = (ctx.work, ctx.subscriptions_changed);
    ctx.subscriptions_changed = false;
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&mut *ctx)));
    let (failed, completion) = match ran {
        Ok((failed, completion)) => (failed, Some(completion)),
        Err(_) => {
            tracing::error!("a store operation panicked; it is rolled back");
            (true, None)
        }
    };
    if ctx.conn.is_autocommit() {
        tracing::error!("the database rolled back the transaction; the group is abandoned");
        ctx.poisoned = true;
        return completion;
    }
    if failed {
        if savepoint {
            if let Err(e) = ctx.conn.execute_batch("ROLLBACK TO job; RELEASE job") {
                tracing::error!(error = %e, "cannot roll back a savepoint");
                ctx.poisoned = true;
            }
        } else if ctx.conn.total_changes() != changes {
            tracing::error!("a store operation failed after writing; its group is rolled back");
            ctx.poisoned = true;
        }
        ctx.state.next_sequence = next_sequence;
        ctx.appended.truncate(appended);
        ctx.work = work;
        if ctx.subscriptions_changed {
            // The job changed subscriptions and was undone: route by what is in the database.
            match super::subscriptions::load_subscription_routes(ctx.conn) {
                Ok(routes) => ctx.state.subscriptions = routes,
                Err(e) => {
                    tracing::error!(error = %e, "cannot reload subscriptions");
                    ctx.poisoned = true;
                }
            }
        }
        ctx.subscriptions_changed = subs;
    } else {
        ctx.subscriptions_changed |= subs;
        if savepoint && let Err(e) = run_cached(ctx.conn, "RELEASE job") {
            tracing::error!(error = %e, "cannot release a savepoint");
            ctx.poisoned = true;
        }
    }
    completion
}

#[cfg(test)]
mod tests {
    use crate::error::StoreError;
    use crate::sqlite::SqliteStore;
    use crate::sqlite::columns::db_err;
    use crate::traits::EventLog;

    /// Rows of `events` the writer's transaction can see.
    async fn events(store: &SqliteStore) -> i64 {
        store
            .call(|ctx| {
                ctx.conn
                    .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
                    .map_err(db_err("count"))
            })
            .await
            .expect("count")
    }

    /// A job without a savepoint that fails before writing answers its own error and leaves
    /// the group alone; one that fails after writing has its group rolled back (nothing of it
    /// stays) and answers `Unavailable`; the store goes on afterwards.
    #[tokio::test]
    async fn a_job_without_a_savepoint_that_fails_after_writing_undoes_its_group() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(dir.path()).expect("open");
        let lost = store
            .call_settle(|_ctx| -> crate::error::Result<()> {
                Err(StoreError::LeaseLost { delivery: 7 })
            })
            .await;
        assert!(
            matches!(lost, Err(StoreError::LeaseLost { delivery: 7 })),
            "{lost:?}"
        );

        let wrote = store
            .call_settle(|ctx| -> crate::error::Result<()> {
                ctx.conn
                    .execute(
                        "INSERT INTO events (sequence, id, source, type, time_ms, payload) \
                         VALUES (1, 'half', 'flowpay', 'PAYMENT_RECEIVED', 0, '{}')",
                        [],
                    )
                    .map_err(db_err("insert"))?;
                Err(StoreError::LeaseLost { delivery: 8 })
            })
            .await;
        assert!(
            matches!(wrote, Err(StoreError::Unavailable { .. })),
            "{wrote:?}"
        );
        assert_eq!(events(&store).await, 0, "the half-done job left nothing");

        store
            .append(vec![nexus_event::NewEvent::new(
                nexus_event::WellKnown::PaymentReceived,
                "flowpay",
            )])
            .await
            .expect("the next group commits");
        assert_eq!(events(&store).await, 1);
    }

    /// Single appends run without a savepoint: one refused as a conflict (its id taken by
    /// another source) wrote nothing, so the others of its group commit, numbered without a gap.
    #[tokio::test]
    async fn single_appends_refused_in_a_group_leave_the_rest_of_it() {
        use nexus_event::{EventId, NewEvent, WellKnown};
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(dir.path()).expect("open");
        let taken = EventId::new("taken").expect("id");
        store
            .append(vec![
                NewEvent::new(WellKnown::PaymentReceived, "flowpay").id(taken.clone()),
            ])
            .await
            .expect("first");
        // Sent at once, so the writer groups them: every third one takes the id of another
        // source.
        let calls = (0..60).map(|i| {
            let store = store.clone();
            let draft = if i % 3 == 0 {
                NewEvent::new(WellKnown::PaymentReceived, "factory").id(taken.clone())
            } else {
                NewEvent::new(WellKnown::PaymentReceived, "flowpay")
            };
            tokio::spawn(async move { store.try_append(vec![draft]).await })
        });
        let mut sequences = Vec::new();
        for call in calls {
            match call.await.expect("task") {
                Ok(appended) => sequences.push(appended[0].sequence),
                Err(StoreError::Conflict { index: 0, .. }) => {}
                Err(other) => panic!("unexpected: {other:?}"),
            }
        }
        sequences.sort_unstable();
        assert_eq!(
            sequences,
            (2..42).collect::<Vec<u64>>(),
            "40 appended, no gap"
        );
        assert_eq!(events(&store).await, 41);
    }
}
