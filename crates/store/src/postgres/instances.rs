//! Several instances on one database (API.md section 13): each process registers a row in
//! `instances` at open, a heartbeat task refreshes it, and every round also takes over from the
//! instances not seen for `dead_after`: their leased deliveries are given back (due at once, the
//! lease generation bumped so the dead worker's late settling fails with `LeaseLost`) and their
//! rows deleted, in one transaction. At close the instance gives its own leases back and deletes
//! its row.
//!
//! Every time here is the database's (`clock_timestamp()`), never a machine's, so instances on
//! machines with skewed clocks agree on who is dead. Due times stay the writers' clocks, as
//! everywhere in the queue.
//!
//! The heartbeat has a connection of its own, outside the pool, so a pool busy with readers
//! cannot delay it until the others take this instance for dead. After a failed round it takes
//! no one over for `dead_after`: when the database was away for this instance it was likely away
//! for the others too, and they get that long to be seen again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use nexus_event::Timestamp;
use tokio::sync::oneshot;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_postgres::{Client, Config, GenericClient};

use super::columns::{ConsumerKind, DeliveryState, db_err, ts};
use super::{PgStore, get};
use crate::error::{Result, StoreError};
use crate::model::InstanceRecord;
use crate::traits::Instances;

/// Heartbeat period by default.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(2);

/// How long an instance may go unseen before the others take it for dead, by default.
pub const DEFAULT_DEAD_AFTER: Duration = Duration::from_secs(10);

/// A failing heartbeat warns at most this often.
const WARN_EVERY: Duration = Duration::from_secs(5);

/// The database's clock in Unix milliseconds, as SQL.
macro_rules! db_now {
    () => {
        "(extract(epoch from clock_timestamp()) * 1000)::bigint"
    };
}

/// Who this instance is, as its row says.
#[derive(Debug, Clone)]
pub(super) struct Identity {
    pub(super) id: Arc<str>,
    pub(super) host: String,
    pub(super) version: String,
}

/// Milliseconds of a duration, for SQL.
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Writes this instance's row, started and seen now by the database's clock; a row of the same
/// id (its previous process) is replaced. Returns the start time.
pub(super) async fn register<C: GenericClient + Sync>(client: &C, me: &Identity) -> Result<i64> {
    let id: &str = &me.id;
    let row = client
        .query_one(
            concat!(
                "INSERT INTO instances (id, host, started_ms, last_seen_ms, version) \
                 VALUES ($1, $2, ",
                db_now!(),
                ", ",
                db_now!(),
                ", $3) ON CONFLICT (id) DO UPDATE SET host = excluded.host, \
                 started_ms = excluded.started_ms, last_seen_ms = excluded.last_seen_ms, \
                 version = excluded.version RETURNING started_ms"
            ),
            &[&id, &me.host, &me.version],
        )
        .await
        .map_err(db_err("register instance"))?;
    get(&row, 0, "register instance")
}

/// Gives back every delivery leased by one of `instances`: due at `now` at the latest (held
/// when its subscription is disabled), lease cleared, generation bumped so a late settle by the
/// old holder fails with `LeaseLost`; attempts unchanged (API.md section 5). Rows are locked in
/// id order, so two instances giving back the same leases cannot deadlock. When it gave any back
/// it notifies `nexus_work` in the same transaction, so every instance's worker wakes for them at
/// the commit instead of sleeping until the old leases would have expired. Returns how many.
pub(super) async fn give_back<C: GenericClient + Sync>(
    client: &C,
    instances: &[&str],
    now: Timestamp,
) -> Result<u64> {
    let released = client
        .execute(
            "UPDATE deliveries SET state = CASE WHEN consumer_kind = $1 AND consumer IN \
             (SELECT id FROM subscriptions WHERE NOT enabled) THEN $2::smallint ELSE $3::smallint END, \
             due_ms = least(due_ms, $4), lease_owner = NULL, lease_instance = NULL, \
             lease_gen = lease_gen + 1 \
             WHERE id IN (SELECT id FROM deliveries WHERE state = $5 AND lease_instance = ANY($6) \
             ORDER BY id FOR UPDATE)",
            &[
                &ConsumerKind::Subscription.code(),
                &DeliveryState::Held.code(),
                &DeliveryState::Waiting.code(),
                &now.as_unix_millis(),
                &DeliveryState::Leased.code(),
                &instances,
            ],
        )
        .await
        .map_err(db_err("give back leases"))?;
    if released > 0 {
        client
            .execute("SELECT pg_notify($1, '')", &[&super::follow::WORK_CHANNEL])
            .await
            .map_err(db_err("give back leases"))?;
    }
    Ok(released)
}

/// At close: gives this instance's leases back and deletes its row, in one transaction.
pub(super) async fn leave(client: &mut deadpool_postgres::Object, id: &str) -> Result<u64> {
    let err = db_err("close instance");
    let tx = client.transaction().await.map_err(&err)?;
    let released = give_back(&*tx, &[id], Timestamp::now()).await?;
    tx.execute("DELETE FROM instances WHERE id = $1", &[&id])
        .await
        .map_err(&err)?;
    tx.commit().await.map_err(&err)?;
    Ok(released)
}

/// What one heartbeat round did.
#[derive(Debug, Default, PartialEq, Eq)]
struct Round {
    /// This instance's row was gone (the others took it for dead) and was written again.
    registered_again: bool,
    /// The dead instances taken over.
    dead: Vec<String>,
    /// Their leased deliveries given back.
    released: u64,
}

/// One round, in one transaction: this instance seen now (its row written again if the others
/// deleted it), then, with `take_over`, every other instance not seen for `dead_after` taken
/// over.
async fn beat(
    client: &mut Client,
    me: &Identity,
    started_ms: i64,
    dead_after: Duration,
    take_over: bool,
) -> Result<Round> {
    let err = db_err("heartbeat");
    let tx = client.transaction().await.map_err(&err)?;
    let id: &str = &me.id;
    let seen = tx
        .execute(
            concat!(
                "UPDATE instances SET last_seen_ms = ",
                db_now!(),
                " WHERE id = $1"
            ),
            &[&id],
        )
        .await
        .map_err(&err)?;
    let mut round = Round::default();
    if seen == 0 {
        tx.execute(
            concat!(
                "INSERT INTO instances (id, host, started_ms, last_seen_ms, version) \
                 VALUES ($1, $2, $3, ",
                db_now!(),
                ", $4) ON CONFLICT (id) DO UPDATE SET last_seen_ms = excluded.last_seen_ms"
            ),
            &[&id, &me.host, &started_ms, &me.version],
        )
        .await
        .map_err(&err)?;
        round.registered_again = true;
    }
    if !take_over {
        tx.commit().await.map_err(&err)?;
        return Ok(round);
    }
    let rows = tx
        .query(
            concat!(
                "DELETE FROM instances WHERE id <> $1 AND last_seen_ms < ",
                db_now!(),
                " - $2 RETURNING id"
            ),
            &[&id, &millis(dead_after)],
        )
        .await
        .map_err(&err)?;
    round.dead = rows
        .iter()
        .map(|r| get::<String>(r, 0, "heartbeat"))
        .collect::<Result<_>>()?;
    if !round.dead.is_empty() {
        let dead: Vec<&str> = round.dead.iter().map(String::as_str).collect();
        round.released = give_back(&tx, &dead, Timestamp::now()).await?;
    }
    tx.commit().await.map_err(&err)?;
    Ok(round)
}

/// The heartbeat task of one instance.
pub(super) struct Heartbeat {
    /// Where to connect (the store's URL, parsed).
    pub(super) config: Config,
    /// TLS as the URL's `sslmode` asks, as for the pool's connections.
    pub(super) tls: super::tls::RustlsConnect,
    /// `host:port/name`, for lines.
    pub(super) database: String,
    pub(super) me: Identity,
    /// Its start, by the database's clock, kept when its row is written again.
    pub(super) started_ms: i64,
    pub(super) every: Duration,
    pub(super) dead_after: Duration,
    /// Whether the last round reached the database, for [`Instances::reachable`].
    pub(super) reachable: Arc<AtomicBool>,
}

/// A running heartbeat: stop it with [`HeartbeatTask::stop`], or drop it (the task ends at its
/// next wake-up, without deleting the row).
pub(super) struct HeartbeatTask {
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl HeartbeatTask {
    /// Stops the heartbeat, waiting for a round in progress to be dropped.
    pub(super) async fn stop(mut self) {
        drop(self.stop.take());
        if let Some(task) = self.task.take()
            && task.await.is_err()
        {
            tracing::error!("the postgres heartbeat task ended abnormally");
        }
    }
}

impl Heartbeat {
    /// Starts the heartbeat; its first round is one period after open (which registered it).
    pub(super) fn spawn(self) -> HeartbeatTask {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(self.run(stopped));
        HeartbeatTask {
            stop: Some(stop),
            task: Some(task),
        }
    }

    async fn run(self, mut stopped: oneshot::Receiver<()>) {
        let mut ticker = tokio::time::interval_at(Instant::now() + self.every, self.every);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut client: Option<Client> = None;
        // Failures since the last warning, and when that was.
        let mut failures: u64 = 0;
        let mut warned: Option<Instant> = None;
        // When a round last failed. If the database was away for this instance it probably was
        // for the others too: they get dead_after from then to be seen again before this one
        // takes any of them for dead. A new instance counts its start as such a moment: it may
        // have been started just after an outage (by a supervisor retrying a failed open), when
        // every other instance still looks unseen although it is alive and about to reconnect.
        // Its first take-over comes dead_after after the start, inside the contract's 30 s.
        let mut failed_at: Option<Instant> = Some(Instant::now());
        loop {
            tokio::select! {
                _ = &mut stopped => return,
                _ = ticker.tick() => {}
            }
            // A round may wait on a lost server for as long as the others wait for it; it gives
            // up then, and is dropped at once when the store closes.
            let round = tokio::select! {
                _ = &mut stopped => return,
                r = tokio::time::timeout(
                    self.dead_after,
                    self.round(
                        &mut client,
                        failed_at.is_none_or(|at| at.elapsed() >= self.dead_after),
                    ),
                ) => r,
            };
            let result = round.unwrap_or_else(|_| {
                Err(StoreError::Unavailable {
                    reason: format!(
                        "PostgreSQL at {} did not answer the heartbeat within {:?}",
                        self.database, self.dead_after
                    ),
                })
            });
            match result {
                Ok(round) => {
                    if failures > 0 {
                        tracing::info!(instance = %self.me.id, failures, "heartbeat back");
                        failures = 0;
                        warned = None;
                    }
                    self.reachable.store(true, Ordering::Release);
                    self.report(&round);
                }
                Err(e) => {
                    self.reachable.store(false, Ordering::Release);
                    // A connection that failed once is made again next round.
                    client = None;
                    failures += 1;
                    failed_at = Some(Instant::now());
                    if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                        tracing::warn!(
                            instance = %self.me.id,
                            failures,
                            error = %e,
                            "heartbeat failed; retrying (other instances take this one for \
                             dead after dead_after)"
                        );
                        warned = Some(Instant::now());
                    }
                }
            }
        }
    }

    /// One round on this heartbeat's own connection, made first if there is none; see [`beat`].
    async fn round(&self, client: &mut Option<Client>, take_over: bool) -> Result<Round> {
        if client.as_ref().is_none_or(Client::is_closed) {
            let (fresh, connection) = self
                .config
                .connect(self.tls.clone())
                .await
                .map_err(db_err("heartbeat connect"))?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "heartbeat connection ended");
                }
            });
            *client = Some(fresh);
        }
        let Some(c) = client.as_mut() else {
            return Err(StoreError::Unavailable {
                reason: "no heartbeat connection".into(),
            });
        };
        beat(c, &self.me, self.started_ms, self.dead_after, take_over).await
    }

    fn report(&self, round: &Round) {
        if round.registered_again {
            tracing::warn!(
                instance = %self.me.id,
                dead_after = ?self.dead_after,
                "this instance was not seen for dead_after and was taken for dead by another: \
                 registered again; its leases were given back, so its late settles fail"
            );
        }
        if !round.dead.is_empty() {
            tracing::info!(
                instance = %self.me.id,
                dead = round.dead.len(),
                instances = ?round.dead,
                released = round.released,
                "took over from dead instances: their leased deliveries are due again"
            );
        }
    }
}

#[async_trait]
impl Instances for PgStore {
    /// `false` from a failed heartbeat round until one succeeds (the heartbeat has its own
    /// connection, so a pool busy with requests does not make the store look away).
    fn reachable(&self) -> bool {
        self.inner.reachable.load(Ordering::Acquire)
    }

    async fn instances(&self) -> Result<Vec<InstanceRecord>> {
        let op = "instances";
        let client = self.conn(op).await?;
        let rows = client
            .query(
                concat!(
                    "SELECT id, host, started_ms, last_seen_ms, version FROM instances \
                     WHERE last_seen_ms >= ",
                    db_now!(),
                    " - $1 ORDER BY started_ms, id"
                ),
                &[&millis(self.inner.dead_after)],
            )
            .await
            .map_err(db_err(op))?;
        rows.iter()
            .map(|r| {
                Ok(InstanceRecord {
                    id: get(r, 0, op)?,
                    host: get(r, 1, op)?,
                    started_at: ts(get(r, 2, op)?)?,
                    last_seen_at: ts(get(r, 3, op)?)?,
                    version: get(r, 4, op)?,
                })
            })
            .collect()
    }
}
