//! The real server on PostgreSQL (API.md section 13): `DATABASE_URL` or `[store] url` selects
//! it, events and sequences outlive a restart, `migrate` applies the schema and refuses a newer
//! one, an unreachable server stops the start with one line naming it, a webhook is delivered,
//! and two processes on one database are two instances, each listing both.
//!
//! Each test creates a database of its own (`CREATE DATABASE t_<random>`) on the server of
//! `NEXUS_TEST_DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`, and drops
//! it afterwards. These tests never skip: without a server they fail, naming the URL they tried
//! (`.ci/run` provides one).

use std::time::{Duration, Instant};

use nexus_store::conformance::pg::{TestDatabase, connect};

use super::{admin_get, admin_send, agent, command, get, publish, receiver, start, terminate};

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(f)
}

/// A database of one test's own, dropped when this is.
pub(super) struct TestDb(TestDatabase);

impl TestDb {
    pub(super) fn create() -> TestDb {
        TestDb(block_on(TestDatabase::create("t_srv")))
    }

    /// Its URL.
    pub(super) fn url(&self) -> &str {
        self.0.url()
    }

    /// Its name.
    pub(super) fn name(&self) -> &str {
        self.0.name()
    }

    /// Runs one statement on this database and answers the first column of the first row.
    fn query_i64(&self, sql: &str) -> i64 {
        block_on(async {
            let row = connect(self.0.url())
                .await
                .query_one(sql, &[])
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            let value: i64 = row.get(0);
            value
        })
    }

    /// The rows of a query as one JSON array, for failure messages.
    pub(super) fn rows_json(&self, sql: &str) -> String {
        block_on(async {
            let wrapped = format!("SELECT coalesce(json_agg(x), '[]')::text FROM ({sql}) x");
            let row = connect(self.0.url())
                .await
                .query_one(&wrapped, &[])
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            let text: String = row.get(0);
            text
        })
    }

    fn execute(&self, sql: &str) {
        block_on(async {
            connect(self.0.url())
                .await
                .batch_execute(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        });
    }
}

fn event(id: &str) -> String {
    format!(r#"{{"type":"PAYMENT_RECEIVED","id":"{id}","payload":{{"n":"{id}"}}}}"#)
}

/// The value of an unlabelled gauge on `base`'s `/metrics`, and the whole scrape for messages.
fn gauge(base: &str, name: &str) -> (Option<f64>, String) {
    let metrics = super::agent()
        .get(&format!("{base}/metrics"))
        .call()
        .expect("metrics")
        .body_mut()
        .read_to_string()
        .expect("text");
    let value = metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok());
    (value, metrics)
}

/// `(id, sequence)` of every event `GET /api/events` lists.
fn listed(base: &str) -> Vec<(String, u64)> {
    let page = admin_get(&format!("{base}/api/events?limit=100"));
    page["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no list: {page}"))
        .iter()
        .map(|e| {
            (
                e["id"].as_str().unwrap_or_default().to_owned(),
                e["sequence"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

#[test]
fn serves_from_postgres_and_keeps_events_and_sequences_across_a_restart() {
    let db = TestDb::create();
    let mut s = start(&[("DATABASE_URL", db.0.url())], &[]);
    let (status, health) = get(&format!("{}/health/detailed", s.base));
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["store"], serde_json::json!({"kind": "postgres"}));
    let size = health["database"]["sizeBytes"].as_u64().unwrap_or(0);
    assert!(size > 0, "pg_database_size: {health}");
    for (i, id) in ["p-1", "p-2", "p-3"].iter().enumerate() {
        let (status, body) = publish(&s.base, "flowpay", &event(id));
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["data"]["sequence"], i as u64 + 1, "{body}");
    }
    let first = vec![
        ("p-1".to_owned(), 1),
        ("p-2".to_owned(), 2),
        ("p-3".to_owned(), 3),
    ];
    assert_eq!(listed(&s.base), first);
    assert_eq!(db.query_i64("SELECT count(*) FROM events"), 3);
    let (gauge, metrics) = gauge(&s.base, "nexus_database_size_bytes");
    let gauge = gauge.unwrap_or_else(|| panic!("no nexus_database_size_bytes in {metrics}"));
    assert!(gauge > 0.0, "{gauge}");
    assert_eq!(terminate(&mut s.child).code(), Some(0), "a drain exits 0");

    // Again on the same database, this time named by the config file's `[store] url`.
    let config = format!(
        "[store]\nurl = \"{}\"\n\n[[nodes]]\nname = \"flowpay\"\npublish = [\"PAYMENT_*\"]\n",
        db.0.url()
    );
    let mut s = start(
        &[("NEXUS_CONFIG", "nexus.toml")],
        &[("nexus.toml", &config)],
    );
    assert_eq!(
        get(&format!("{}/health/detailed", s.base)).1["store"]["kind"],
        "postgres"
    );
    assert_eq!(listed(&s.base), first, "kept across the restart");
    let (status, body) = publish(&s.base, "flowpay", &event("p-4"));
    assert_eq!((status, body["data"]["sequence"].clone()), (202, 4.into()));
    let (status, body) = publish(&s.base, "flowpay", &event("p-2"));
    assert_eq!(
        (status, body["data"]["duplicate"].clone()),
        (200, serde_json::json!(true)),
        "an id stored before the restart is still known: {body}"
    );
    assert_eq!(terminate(&mut s.child).code(), Some(0));
    assert_eq!(db.query_i64("SELECT max(sequence) FROM events"), 4);
}

/// The one line `migrate` writes on standard output, as JSON (`LOG_FORMAT=json`).
fn migrate(dir: &std::path::Path, env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let out = command(dir, env).arg("migrate").output().expect("run");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn migrate_applies_the_schema_once_and_refuses_a_newer_one() {
    let db = TestDb::create();
    let dir = tempfile::tempdir().expect("temp dir");
    let env = [("DATABASE_URL", db.0.url())];
    let mut lines = Vec::new();
    for run in 0..2 {
        let (code, stdout, stderr) = migrate(dir.path(), &env);
        assert_eq!(code, Some(0), "{stdout}{stderr}");
        assert_eq!(stdout.lines().count(), 1, "one line: {stdout}");
        let line: serde_json::Value = serde_json::from_str(stdout.trim()).expect("JSON");
        lines.push(line);
        // The store logs each migration it applies: the first run applies them, the second
        // finds the schema current.
        assert_eq!(
            stderr.contains("store schema migrated"),
            run == 0,
            "run {run}: {stderr}"
        );
    }
    let version = db.query_i64("SELECT version::bigint FROM nexus_schema");
    assert!(version >= 1, "{version}");
    for line in &lines {
        assert_eq!(line["store"], "postgres", "{line}");
        assert_eq!(line["schema_version"], version, "{line}");
        let location = line["location"].as_str().unwrap_or_default();
        assert!(location.ends_with(&format!("/{}", db.0.name())), "{line}");
    }
    assert_eq!(
        lines[0]["message"], lines[1]["message"],
        "a migrated database is left as it is"
    );
    assert_eq!(db.query_i64("SELECT count(*) FROM events"), 0);
    assert!(
        !dir.path().join("data").exists(),
        "no SQLite store beside PostgreSQL"
    );

    let newer = version + 1;
    db.execute(&format!("UPDATE nexus_schema SET version = {newer}"));
    let (code, stdout, stderr) = migrate(dir.path(), &env);
    assert_ne!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    let last: serde_json::Value =
        serde_json::from_str(stderr.lines().last().unwrap_or_default()).expect("a JSON line");
    assert_eq!(last["key"], "DATABASE_URL", "{last}");
    let message = last["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("schema version {newer}"))
            && message.contains(&format!("the {version} this build knows")),
        "{message}"
    );
    // The server refuses to start on it too.
    let out = command(dir.path(), &env).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("schema version {newer}")),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn migrate_without_a_url_migrates_the_sqlite_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (code, stdout, stderr) = migrate(dir.path(), &[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let line: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(line["store"], "sqlite", "{line}");
    assert!(line["schema_version"].as_i64().unwrap_or(0) >= 1, "{line}");
    assert!(dir.path().join("data").join("nexus.db").is_file());
}

#[test]
fn an_unreachable_postgres_stops_the_start_with_one_line_naming_it() {
    // A port nothing listens on: bound, then let go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("postgres://nexus:hunter2-secret@127.0.0.1:{port}/nexusdb");
    let dir = tempfile::tempdir().expect("temp dir");
    let started = Instant::now();
    let out = command(dir.path(), &[("DATABASE_URL", &url)])
        .output()
        .expect("run");
    assert!(started.elapsed() < Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty(), "no listening line");
    assert!(
        !stderr.contains("hunter2"),
        "the password is never shown: {stderr}"
    );
    let line: serde_json::Value =
        serde_json::from_str(stderr.lines().last().unwrap_or_default()).expect("a JSON line");
    assert_eq!(line["level"], "ERROR");
    assert_eq!(line["key"], "DATABASE_URL", "{line}");
    let message = line["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("DATABASE_URL: ")
            && message.contains(&format!("127.0.0.1:{port}/nexusdb")),
        "{message}"
    );
    assert!(!message.contains('\n'));
}

#[test]
fn delivers_a_webhook_on_postgres() {
    let db = TestDb::create();
    let (url, received) = receiver();
    let config = format!(
        "[[nodes]]\nname = \"flowpay\"\npublish = [\"PAYMENT_*\"]\n\n[[subscriptions]]\nurl = \"{url}\"\nevents = [\"PAYMENT_*\"]\n"
    );
    let mut s = start(
        &[("DATABASE_URL", db.0.url()), ("NEXUS_CONFIG", "nexus.toml")],
        &[("nexus.toml", &config)],
    );
    let (status, body) = publish(&s.base, "flowpay", &event("pay-pg"));
    assert_eq!(status, 202, "{body}");
    let (headers, body) = received
        .recv_timeout(Duration::from_secs(20))
        .expect("a delivery");
    assert_eq!(super::header_of(&headers, "webhook-id"), "pay-pg");
    assert_eq!(super::header_of(&headers, "x-nexus-sequence"), "1");
    let delivered: serde_json::Value = serde_json::from_str(&body).expect("event JSON");
    assert_eq!(delivered["payload"], serde_json::json!({"n": "pay-pg"}));
    // Acknowledged in PostgreSQL: the delivery leaves the queue.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = admin_get(&format!("{}/api/retry/stats", s.base));
        if stats["data"]["pending"] == 0
            && stats["data"]["inFlight"] == 0
            && stats["data"]["deadLetters"] == 0
        {
            break;
        }
        assert!(Instant::now() < deadline, "still queued: {stats}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(db.query_i64("SELECT count(*) FROM deliveries"), 0);
    assert_eq!(terminate(&mut s.child).code(), Some(0));
    assert_eq!(received.try_iter().count(), 0, "one delivery only");
}

/// `nexus-server copy --from <from> --to <to>`: exit code, standard output and error.
fn copy(from: &std::path::Path, to: &str) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = command(dir.path(), &[])
        .arg("copy")
        .arg("--from")
        .arg(from)
        .args(["--to", to])
        .output()
        .expect("run copy");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The message of the last line of a failed command's standard error (JSON logs).
fn last_error(stderr: &str) -> String {
    let line: serde_json::Value =
        serde_json::from_str(stderr.lines().last().unwrap_or_default()).expect("a JSON line");
    assert_eq!(line["level"], "ERROR", "{line}");
    line["message"].as_str().unwrap_or_default().to_owned()
}

/// A single node grows: a SQLite server's events, subscription and queued (held) deliveries
/// are copied by `nexus-server copy` into PostgreSQL, and a server on the copy serves them,
/// delivers the queued ones and continues the sequences. The copy refuses a running source, a
/// missing one, a bad URL, an unreachable server and a non-empty target, exiting 2 with a line.
#[test]
fn copy_moves_a_sqlite_node_to_postgres() {
    let db = TestDb::create();
    let (hook, received) = receiver();
    let mut s = start(&[], &[]);
    let data = s._dir.path().join("data");
    let (status, made) = admin_send(
        "POST",
        &format!("{}/api/subscriptions", s.base),
        &serde_json::json!({"url": hook, "events": ["PAYMENT_*"]}),
    );
    assert_eq!(status, 201, "{made}");
    let id = made["data"]["id"].as_str().expect("id").to_owned();
    // Disabled, its deliveries wait (held) in the queue until it is enabled on PostgreSQL.
    let (status, body) = admin_send(
        "PATCH",
        &format!("{}/api/subscriptions/{id}", s.base),
        &serde_json::json!({"enabled": false}),
    );
    assert_eq!(status, 200, "{body}");
    let declared = agent()
        .put(&format!("{}/api/event-types/PAYMENT_RECEIVED", s.base))
        .header("authorization", &format!("Bearer {}", super::ADMIN))
        .send_json(serde_json::json!({"description": "paid", "schema": {"type": "object"}}))
        .expect("the admin API answers");
    assert_eq!(declared.status().as_u16(), 201);
    for id in ["c-1", "c-2", "c-3"] {
        assert_eq!(publish(&s.base, "flowpay", &event(id)).0, 202);
    }
    let (code, stdout, stderr) = copy(&data, db.0.url());
    assert_eq!(code, Some(2), "a server runs on it: {stdout}{stderr}");
    let message = last_error(&stderr);
    assert!(
        message.starts_with("--from: ") && message.contains("in use"),
        "{message}"
    );
    assert_eq!(terminate(&mut s.child).code(), Some(0));
    assert_eq!(
        received.try_iter().count(),
        0,
        "nothing delivered while disabled"
    );

    let (code, stdout, stderr) = copy(&data, db.0.url());
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let counts: Vec<(String, u64)> = lines
        .iter()
        .filter(|l| l.get("table").is_some())
        .map(|l| {
            (
                l["table"].as_str().unwrap_or_default().to_owned(),
                l["rows"].as_u64().unwrap_or(u64::MAX),
            )
        })
        .collect();
    let expected: Vec<(String, u64)> = [
        ("event_types", 1),
        ("subscriptions", 1),
        ("events", 3),
        ("deliveries", 3),
        ("dead_letters", 0),
        ("delivery_history", 0),
        ("delivery_attempts", 0),
        ("cursors", 0),
        ("breakers", 0),
    ]
    .iter()
    .map(|(t, n)| ((*t).to_owned(), *n))
    .collect();
    assert_eq!(counts, expected, "{stdout}");
    let last = lines.last().expect("a last line");
    assert_eq!(lines.len(), 10, "{stdout}");
    assert_eq!(last["head"], 3, "{last}");
    assert!(
        last["location"]
            .as_str()
            .is_some_and(|l| l.ends_with(&format!("/{}", db.0.name()))),
        "{last}"
    );

    // Each refusal exits 2 with one line naming the problem; none writes anything.
    let (code, _, stderr) = copy(&data, db.0.url());
    assert_eq!(code, Some(2), "{stderr}");
    let message = last_error(&stderr);
    assert!(
        message.starts_with("--to: ") && message.contains("already holds 3 events"),
        "{message}"
    );
    let (code, _, stderr) = copy(&data.join("missing"), db.0.url());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(last_error(&stderr).contains("does not exist"), "{stderr}");
    let empty = tempfile::tempdir().expect("temp dir");
    let (code, _, stderr) = copy(empty.path(), db.0.url());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        last_error(&stderr).contains("holds no Nexus store"),
        "{stderr}"
    );
    let (code, _, stderr) = copy(&data, "mysql://somewhere/db");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        last_error(&stderr).contains("not a PostgreSQL URL"),
        "{stderr}"
    );
    let (code, _, stderr) = copy(&data, "postgres://nexus:hunter2@127.0.0.1:1/nexus");
    assert_eq!(code, Some(2), "{stderr}");
    let message = last_error(&stderr);
    assert!(
        message.contains("127.0.0.1:1/nexus") && !message.contains("hunter2"),
        "{message}"
    );
    assert_eq!(db.query_i64("SELECT count(*) FROM events"), 3);

    let mut s = start(&[("DATABASE_URL", db.0.url())], &[]);
    let ids: Vec<(String, u64)> = ["c-1", "c-2", "c-3"]
        .iter()
        .zip(1..)
        .map(|(id, seq)| ((*id).to_owned(), seq))
        .collect();
    assert_eq!(listed(&s.base), ids);
    let sub = admin_get(&format!("{}/api/subscriptions/{id}", s.base));
    assert_eq!(sub["data"]["url"], hook.as_str(), "{sub}");
    assert_eq!(sub["data"]["enabled"], false, "{sub}");
    let (status, body) = admin_send(
        "PATCH",
        &format!("{}/api/subscriptions/{id}", s.base),
        &serde_json::json!({"enabled": true}),
    );
    assert_eq!(status, 200, "{body}");
    let mut delivered = Vec::new();
    for _ in 0..3 {
        let (headers, _) = received
            .recv_timeout(Duration::from_secs(20))
            .expect("a queued delivery delivered");
        delivered.push(super::header_of(&headers, "webhook-id"));
    }
    delivered.sort();
    assert_eq!(delivered, ["c-1", "c-2", "c-3"]);
    let (status, body) = publish(&s.base, "flowpay", &event("c-4"));
    assert_eq!((status, body["data"]["sequence"].clone()), (202, 4.into()));
    assert_eq!(terminate(&mut s.child).code(), Some(0));
}

/// The ids `GET /api/instances` lists on `base`, checking each instance's shape.
fn instance_ids(base: &str) -> Vec<String> {
    let page = admin_get(&format!("{base}/api/instances"));
    assert_eq!(
        page["meta"]["nextCursor"],
        serde_json::Value::Null,
        "{page}"
    );
    page["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no list: {page}"))
        .iter()
        .map(|i| {
            assert_eq!(i["version"], env!("CARGO_PKG_VERSION"), "{i}");
            assert!(i["host"].as_str().is_some_and(|h| !h.is_empty()), "{i}");
            assert!(
                i["startedAt"].is_string() && i["lastSeenAt"].is_string(),
                "{i}"
            );
            i["id"].as_str().unwrap_or_default().to_owned()
        })
        .collect()
}

/// Two processes on one database are two instances (UUID v7 ids of their own), and each lists
/// both, earliest started first, and counts them on `/health/detailed` and `nexus_instances`.
/// One stopped with SIGTERM leaves the list at once; one killed with SIGKILL leaves it once the
/// other takes it for dead (10 s unseen, heartbeat 2 s).
#[test]
fn two_processes_on_one_database_are_two_instances() {
    let db = TestDb::create();
    let env = [("DATABASE_URL", db.0.url())];
    let mut a = start(&env, &[]);
    let mut b = start(&env, &[]);
    let ids = instance_ids(&a.base);
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_ne!(ids[0], ids[1]);
    for id in &ids {
        assert_eq!(id.len(), 36, "{id}");
        assert_eq!(&id[14..15], "7", "a UUID v7: {id}");
    }
    assert_eq!(instance_ids(&b.base), ids, "the same list on either");
    for base in [&a.base, &b.base] {
        let (status, health) = get(&format!("{base}/health/detailed"));
        assert_eq!(
            (status, health["instances"].clone()),
            (200, 2.into()),
            "{health}"
        );
        let (gauge, metrics) = gauge(base, "nexus_instances");
        assert_eq!(gauge, Some(2.0), "{metrics}");
    }

    // A third process, stopped cleanly, leaves the list at once.
    let mut c = start(&env, &[]);
    assert_eq!(instance_ids(&a.base).len(), 3);
    assert_eq!(terminate(&mut c.child).code(), Some(0));
    assert_eq!(instance_ids(&a.base), ids, "c left at its drain");

    // b killed: a takes it for dead after 10 s unseen, on its heartbeat (every 2 s).
    b.child.kill().expect("kill -9 b");
    let _ = b.child.wait();
    let killed = Instant::now();
    // Listed no more once unseen for dead_after; its row deleted by a's next heartbeat.
    while db.query_i64("SELECT count(*) FROM instances") > 1 {
        assert!(
            killed.elapsed() < Duration::from_secs(20),
            "b not taken over {:?} after its kill",
            killed.elapsed()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let left = instance_ids(&a.base);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(ids.contains(&left[0]));
    assert_eq!(terminate(&mut a.child).code(), Some(0));
    assert_eq!(
        db.query_i64("SELECT count(*) FROM instances"),
        0,
        "a left at its drain"
    );
}
