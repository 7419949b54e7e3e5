//! The writer task: it holds one connection, runs every operation that is waiting in one
//! transaction and one commit (group commit), and only then answers each caller.
//!
//! Unlike SQLite, PostgreSQL aborts the whole transaction on any failed statement, so there is
//! no savepoint per operation: every operation checks what can refuse it (duplicate ids, lost
//! leases, unknown ids) before it writes anything, and an operation that fails in the database
//! itself (a transient error: connection lost, server away) fails the whole group, which is
//! rolled back and answered [`StoreError::Unavailable`] or [`StoreError::Database`].

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use deadpool_postgres::{Object, Pool};
use nexus_event::Event;
use tokio::sync::{mpsc, watch};

use super::columns::{db_err, pool_err};
use super::follow::{EVENTS_CHANNEL, Fanout, SUBSCRIPTIONS_CHANNEL, WORK_CHANNEL};
use super::log::{Pending, prepare_appends};
use super::queue::PendingSettles;
use crate::error::{Result, StoreError};
use crate::model::Router;

/// A boxed future that may borrow for `'a`.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
/// What a job hands back once the transaction's fate is known: it answers the caller.
pub(crate) type Completion = Box<dyn FnOnce(Result<()>) + Send>;
/// A unit of work run by the writer inside the group's transaction: given the context, it hands
/// back how to answer its caller after the commit; given an error (the group could not run), it
/// answers its caller with it at once and hands back nothing.
pub(crate) type Run = Box<
    dyn for<'c> FnOnce(
            std::result::Result<&'c mut Ctx, StoreError>,
        ) -> BoxFuture<'c, Option<Completion>>
        + Send,
>;

/// What a job is, as far as the writer batches it.
#[derive(Debug)]
pub(crate) enum JobKind {
    /// An append of events with these ids: the writer looks the ids of all of a group's appends
    /// up in one query, and their rows are inserted together.
    Append {
        /// The ids of the batch.
        ids: Vec<String>,
    },
    /// A change of subscriptions: it takes the append lock too (before anything else of its
    /// group), so appends of every instance route by it from the moment it commits.
    Routes,
    /// An ack or a retry: it records its token in the group's [`PendingSettles`], which run
    /// together (before the next job of another kind that could touch the same rows, and
    /// before the commit).
    Settle,
    /// Anything else: it sees every earlier append and settle of its group in the tables.
    Other,
}

/// One operation waiting for the writer.
pub(crate) struct Job {
    pub(crate) kind: JobKind,
    pub(crate) run: Run,
}

/// Makes a job; gives its closure the higher-ranked type (a closure passed here is inferred as
/// one).
pub(crate) fn job<F>(kind: JobKind, f: F) -> Job
where
    F: for<'c> FnOnce(
            std::result::Result<&'c mut Ctx, StoreError>,
        ) -> BoxFuture<'c, Option<Completion>>
        + Send
        + 'static,
{
    Job {
        kind,
        run: Box::new(f),
    }
}

/// The most jobs one transaction groups.
const MAX_GROUP: usize = 512;

pub(crate) use crate::backend::SubRoute;

/// State the writer keeps between transactions.
pub(crate) struct State {
    /// The instance this store is; its leases carry the name.
    pub(crate) instance: Arc<str>,
    pub(crate) subscriptions: Vec<SubRoute>,
    /// The `routes_version` that `subscriptions` were read at; -1 to read them again.
    pub(crate) routes_version: i64,
    pub(crate) router: Option<Arc<dyn Router>>,
}

/// What one job may touch: the connection (inside the group's transaction), the writer's state,
/// and effects that wait for the commit.
pub(crate) struct Ctx {
    pub(crate) client: Object,
    pub(crate) state: State,
    /// The next sequence, once this group holds the append lock (taken before its first append).
    pub(crate) next_sequence: Option<u64>,
    /// Source and sequence of the ids the group's appends carry that are stored or appended by
    /// the group: what answers a repeat (duplicate) or another source's id (conflict).
    pub(crate) known: HashMap<String, (String, u64)>,
    /// Rows of the group's appends not inserted yet.
    pub(crate) pending: Pending,
    /// Acks and retries of the group not run yet.
    pub(crate) settles: PendingSettles,
    /// Events committed by this group, in sequence order, to publish after the commit.
    pub(crate) appended: Vec<Arc<Event>>,
    /// Whether the group made deliveries due (wakes sleeping workers after the commit).
    pub(crate) work: bool,
    /// Whether the group changed subscriptions (reloaded if it is rolled back).
    pub(crate) subscriptions_changed: bool,
    /// A statement failed in the database: the transaction is aborted and the group is lost.
    pub(crate) broken: bool,
}

pub(crate) struct Writer {
    pub(crate) pool: Pool,
    pub(crate) state: State,
    /// Where committed events go (the bus, in order, with the follower filling gaps).
    pub(crate) fanout: Arc<Fanout>,
    pub(crate) changes: watch::Sender<u64>,
}

impl Writer {
    /// Runs until every sender is gone.
    pub(crate) async fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        let mut group: Vec<Job> = Vec::with_capacity(MAX_GROUP);
        let mut conn: Option<Object> = None;
        while let Some(first) = jobs.recv().await {
            group.push(first);
            while group.len() < MAX_GROUP {
                match jobs.try_recv() {
                    Ok(job) => group.push(job),
                    Err(_) => break,
                }
            }
            conn = self.run_group(conn, &mut group).await;
        }
        tracing::debug!("postgres store writer stopped");
    }

    /// Runs one group on `conn` (or a fresh connection) and hands back the connection if it is
    /// still good.
    async fn run_group(&mut self, conn: Option<Object>, group: &mut Vec<Job>) -> Option<Object> {
        let client = match conn.filter(|c| !c.is_closed()) {
            Some(c) => c,
            None => match self.connect().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "store writer has no connection");
                    refuse_all(group, &e).await;
                    return None;
                }
            },
        };
        if let Err(e) = client.batch_execute("BEGIN").await {
            let e = db_err("begin")(e);
            tracing::error!(error = %e, "store writer cannot begin a transaction");
            refuse_all(group, &e).await;
            return None;
        }
        let instance = Arc::clone(&self.state.instance);
        let state = std::mem::replace(
            &mut self.state,
            State {
                instance,
                subscriptions: Vec::new(),
                routes_version: -1,
                router: None,
            },
        );
        let mut ctx = Ctx {
            client,
            state,
            next_sequence: None,
            known: HashMap::new(),
            pending: Pending::default(),
            settles: PendingSettles::default(),
            appended: Vec::new(),
            work: false,
            subscriptions_changed: false,
            broken: false,
        };
        let ids: Vec<&str> = group
            .iter()
            .flat_map(|j| match &j.kind {
                JobKind::Append { ids } => ids.as_slice(),
                JobKind::Routes | JobKind::Settle | JobKind::Other => &[],
            })
            .map(String::as_str)
            .collect();
        if group
            .iter()
            .any(|j| matches!(j.kind, JobKind::Append { .. }))
            && let Err(e) = prepare_appends(&mut ctx, &ids).await
        {
            tracing::error!(error = %e, "store writer cannot prepare the group's appends");
            ctx.broken = true;
        }
        let mut completions = Vec::with_capacity(group.len());
        for job in group.drain(..) {
            // Appends and settles touch rows no other append or settle of the group does (new
            // rows, rows leased before the group; a second settle of one delivery flushes the
            // first): each kind waits only for jobs of other kinds.
            if !ctx.broken
                && !matches!(job.kind, JobKind::Append { .. } | JobKind::Settle)
                && let Err(e) = ctx.flush().await
            {
                tracing::error!(error = %e, "store writer cannot write the group's appends or settles");
                ctx.broken = true;
            }
            if ctx.broken {
                // The transaction is lost: do not run more.
                (job.run)(Err(group_lost())).await;
                continue;
            }
            completions.extend((job.run)(Ok(&mut ctx)).await);
        }
        if !ctx.broken
            && let Err(e) = ctx.flush().await
        {
            tracing::error!(error = %e, "store writer cannot write the group's appends or settles");
            ctx.broken = true;
        }
        let Ctx {
            client,
            state,
            appended,
            work,
            subscriptions_changed,
            broken,
            ..
        } = ctx;
        self.state = state;
        // The notification goes with the commit, in the same round trip, and is delivered only
        // if the commit succeeds; one per group. Its payload is a hint (listeners read the log).
        let mut commit = match appended.last() {
            Some(last) => format!(
                "SELECT pg_notify('{EVENTS_CHANNEL}', '{}'); COMMIT",
                last.sequence
            ),
            None if work => format!("SELECT pg_notify('{WORK_CHANNEL}', ''); COMMIT"),
            None => "COMMIT".to_owned(),
        };
        if subscriptions_changed {
            // Every instance drops its cache of subscriptions once this commits.
            commit.insert_str(
                0,
                &format!("SELECT pg_notify('{SUBSCRIPTIONS_CHANNEL}', ''); "),
            );
        }
        let committed = if broken {
            Err(group_lost())
        } else {
            client
                .batch_execute(&commit)
                .await
                .map_err(db_err("commit"))
        };
        match committed {
            Ok(()) => {
                if work || !appended.is_empty() {
                    self.changes.send_modify(|n| *n = n.wrapping_add(1));
                }
                // Publish before answering, so a caller whose append returned finds its events on
                // the bus when they were next in order (the usual case); otherwise the follower
                // reads them after the other instances' events before them. Never blocks.
                self.fanout.committed(appended);
                if subscriptions_changed {
                    self.fanout.subscriptions_changed();
                }
                for completion in completions {
                    completion(Ok(()));
                }
                Some(client)
            }
            Err(e) => {
                tracing::error!(error = %e, "store group failed; it is rolled back");
                // Rolls back the aborted (or failed) transaction; a dead connection is dropped.
                let alive = client.batch_execute("ROLLBACK").await.is_ok();
                if subscriptions_changed {
                    // Read the routes again before the next append.
                    self.state.routes_version = -1;
                    self.fanout.subscriptions_changed();
                }
                let reason = e.to_string();
                for completion in completions {
                    completion(Err(StoreError::Unavailable {
                        reason: reason.clone(),
                    }));
                }
                alive.then_some(client)
            }
        }
    }

    /// A fresh connection from the pool; its backend process id goes to the fan-out, which tells
    /// this writer's notifications from other instances' by it.
    async fn connect(&self) -> Result<Object> {
        let client = self.pool.get().await.map_err(pool_err("begin"))?;
        let row = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .map_err(db_err("begin"))?;
        self.fanout.writer_connected(super::get(&row, 0, "begin")?);
        Ok(client)
    }
}

impl Ctx {
    /// Inserts the rows of the group's appends that are still pending, then runs its pending
    /// acks and retries (a retry that took makes work due).
    pub(crate) async fn flush(&mut self) -> Result<()> {
        self.pending.flush(&self.client).await?;
        self.settles.flush(&self.client).await?;
        self.work |= std::mem::take(&mut self.settles.retried);
        Ok(())
    }
}

/// The answer to the operations of a group whose transaction was aborted.
fn group_lost() -> StoreError {
    StoreError::Unavailable {
        reason: "a statement of the group failed in PostgreSQL; nothing of it was written".into(),
    }
}

/// Answers every job of a group that could not run with `e` (as `Unavailable`).
async fn refuse_all(group: &mut Vec<Job>, e: &StoreError) {
    let reason = e.to_string();
    for job in group.drain(..) {
        (job.run)(Err(StoreError::Unavailable {
            reason: reason.clone(),
        }))
        .await;
    }
}
