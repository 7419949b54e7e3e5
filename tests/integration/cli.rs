//! The real `nexus-cli` binary against a server on loopback: its commands, `--json`, and the
//! exit codes scripts rely on (0 ok, 1 server error, 2 usage, 3 unreachable).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::catalogue::{CONFIG_TYPE, CatalogueStub};
use crate::support::process::bin;
use crate::support::server::{ADMIN, SECRET, TestServer};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {:?}; stderr {:?}",
                self.stdout, self.stderr
            )
        })
    }

    fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "stdout {:?}, stderr {:?}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Runs the CLI with a clean environment, `stdin` as its input, at most 30 s.
fn cli_in(args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(bin("nexus-cli"))
        .args(args)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nexus-cli");
    let mut input = child.stdin.take().expect("stdin");
    let text = stdin.to_owned();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(text.as_bytes());
    });
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(output) => output.expect("output"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("nexus-cli {args:?} did not finish within 30 s");
        }
    };
    let _ = writer.join();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn cli(args: &[&str]) -> Run {
    cli_in(args, "")
}

/// `--url <base> --token <admin>` and then `args`.
fn admin(s: &TestServer, args: &[&str]) -> Run {
    let mut all = vec!["--server", &s.base, "--token", ADMIN];
    all.extend_from_slice(args);
    cli(&all)
}

/// `--server <stub> --token <admin>` and then `args`, with `stdin` as input.
fn on_stub(stub: &CatalogueStub, args: &[&str], stdin: &str) -> Run {
    let mut all = vec!["--server", &stub.base, "--token", ADMIN];
    all.extend_from_slice(args);
    cli_in(&all, stdin)
}

fn publish_args<'a>(s: &'a TestServer, rest: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec![
        "--server", &s.base, "publish", "--node", "flowpay", "--secret", SECRET,
    ];
    all.extend_from_slice(rest);
    all
}

#[test]
fn publish_from_arguments_and_stdin_then_read_the_log() {
    let s = TestServer::start();
    let one = cli(&publish_args(
        &s,
        &[
            "--json",
            "PAYMENT_RECEIVED",
            r#"{"amount":5}"#,
            "--id",
            "cli-1",
        ],
    ))
    .ok();
    assert_eq!(
        one.json(),
        serde_json::json!({"id": "cli-1", "sequence": 1, "duplicate": false})
    );
    let again = cli(&publish_args(
        &s,
        &["PAYMENT_RECEIVED", r#"{"amount":5}"#, "--id", "cli-1"],
    ))
    .ok();
    assert_eq!(
        again.stdout.trim(),
        "PAYMENT_RECEIVED cli-1 already stored (duplicate) as #1"
    );

    let lines = "{\"type\":\"PAYMENT_RECEIVED\",\"id\":\"cli-2\",\"payload\":{\"amount\":1}}\n\
                 \n\
                 {\"type\":\"PAYMENT_REFUNDED\",\"id\":\"cli-3\"}\n\
                 {\"type\":\"PAYMENT_RECEIVED\",\"id\":\"cli-4\"}\n";
    let mut args = publish_args(&s, &["--json", "--batch-size", "2"]);
    args.push("--scheme");
    args.push("standard");
    let batch = cli_in(&args, lines).ok().json();
    let seqs: Vec<u64> = batch
        .as_array()
        .expect("an array of acks")
        .iter()
        .map(|a| a["sequence"].as_u64().expect("sequence"))
        .collect();
    assert_eq!(seqs, [2, 3, 4]);

    let listed = admin(&s, &["--json", "events", "list", "--limit", "3"])
        .ok()
        .json();
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|e| e["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["cli-1", "cli-2", "cli-3"]);
    assert_eq!(listed["nextCursor"], "3");
    let all = admin(
        &s,
        &[
            "events",
            "list",
            "--limit",
            "1",
            "--all",
            "--type",
            "PAYMENT_RECEIVED",
        ],
    )
    .ok();
    let rows: Vec<&str> = all.stdout.lines().collect();
    assert!(rows[0].starts_with("SEQ  TYPE"), "{rows:?}");
    assert_eq!(rows.len(), 4, "header and three PAYMENT_RECEIVED: {rows:?}");
    assert!(
        rows[3].starts_with("4    PAYMENT_RECEIVED  cli-4"),
        "{rows:?}"
    );

    let got = admin(&s, &["--json", "events", "get", "cli-2"]).ok().json();
    assert_eq!(
        (got["type"].as_str(), got["payload"]["amount"].as_u64()),
        (Some("PAYMENT_RECEIVED"), Some(1))
    );
    let shown = admin(&s, &["events", "get", "cli-2"]).ok();
    assert!(
        shown.stdout.contains("source          flowpay"),
        "{}",
        shown.stdout
    );

    let tail = admin(
        &s,
        &[
            "--json",
            "tail",
            "--since",
            "1",
            "--count",
            "2",
            "-e",
            "PAYMENT_*",
        ],
    )
    .ok();
    let frames: Vec<Value> = tail
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let seen: Vec<(u64, &str)> = frames
        .iter()
        .map(|f| {
            (
                f["sequence"].as_u64().expect("seq"),
                f["id"].as_str().expect("id"),
            )
        })
        .collect();
    assert_eq!(seen, [(2, "cli-2"), (3, "cli-3")]);
}

#[test]
fn subscriptions_dead_letters_breakers_replay_and_health() {
    let s = TestServer::start();
    cli(&publish_args(&s, &["PAYMENT_RECEIVED"])).ok();
    let created = admin(
        &s,
        &[
            "--json",
            "subs",
            "create",
            "--url",
            "http://127.0.0.1:9/hook",
            "--events",
            "PAYMENT_*,MINT_*",
        ],
    )
    .ok()
    .json();
    let id = created["id"].as_str().expect("id").to_owned();
    assert!(
        created["secret"]
            .as_str()
            .is_some_and(|s| s.starts_with("whsec_")),
        "{created}"
    );
    assert_eq!(
        created["events"],
        serde_json::json!(["PAYMENT_*", "MINT_*"])
    );

    let listed = admin(&s, &["subs", "list"]).ok();
    let rows: Vec<&str> = listed.stdout.lines().collect();
    assert!(rows[0].starts_with("ID"), "{rows:?}");
    assert!(rows.len() == 2 && rows[1].starts_with(&id), "{rows:?}");

    let updated = admin(&s, &["--json", "subs", "update", &id, "--enabled", "false"])
        .ok()
        .json();
    assert_eq!(updated["enabled"], false);
    let replayed = admin(&s, &["--json", "replay", "--after", "0", "--target", &id])
        .ok()
        .json();
    assert_eq!(replayed["enqueued"], 1);

    // The replayed delivery waits, held, for the disabled subscription.
    let events = admin(&s, &["--json", "events", "list"]).ok().json();
    let event_id = events["data"][0]["id"]
        .as_str()
        .expect("an event")
        .to_owned();
    let deliveries = admin(&s, &["--json", "events", "deliveries", &event_id])
        .ok()
        .json();
    assert_eq!(deliveries[0]["subscriptionId"], id.as_str(), "{deliveries}");
    assert_eq!(deliveries[0]["state"], "held");
    assert_eq!(deliveries[0]["attempts"], serde_json::json!([]));
    let shown = admin(&s, &["events", "deliveries", &event_id]).ok();
    let rows: Vec<&str> = shown.stdout.lines().collect();
    assert!(
        rows[0].starts_with("DELIVERY") && rows[0].contains("STATUS"),
        "{rows:?}"
    );
    assert!(rows.len() == 2 && rows[1].contains("held"), "{rows:?}");
    // Nothing listens on port 9: the test send answers the refusal, no status.
    let tested = admin(&s, &["--json", "subs", "test", &id]).ok().json();
    assert_eq!(tested["status"], Value::Null, "{tested}");
    assert!(tested["error"].is_string(), "{tested}");
    let told = admin(&s, &["subs", "test", &id]).ok();
    assert!(
        told.stdout
            .starts_with(&format!("test send to {id} failed: ")),
        "{}",
        told.stdout
    );
    let got = admin(&s, &["subs", "get", &id]).ok();
    assert!(
        got.stdout
            .contains("last 24 h: 0 delivered, 0 failed attempts, 1 pending, 0 dead"),
        "{}",
        got.stdout
    );

    let dlq = admin(&s, &["--json", "dlq", "list"]).ok().json();
    assert_eq!(dlq["data"], serde_json::json!([]));
    assert_eq!(admin(&s, &["dlq", "list"]).ok().stdout, "(none)\n");
    let redriven = admin(&s, &["dlq", "redrive", "1", "2", "3"]).ok();
    assert_eq!(redriven.stdout.trim(), "redriven 0 dead letter(s)");
    assert_eq!(
        admin(&s, &["--json", "dlq", "purge", "--all"]).ok().json()["deleted"],
        0
    );
    assert_eq!(admin(&s, &["breakers", "list"]).ok().stdout, "(none)\n");
    let instances = admin(&s, &["instances"]).ok();
    let rows: Vec<&str> = instances.stdout.lines().collect();
    assert!(
        rows[0].starts_with("ID") && rows[0].contains("LAST SEEN AT"),
        "{rows:?}"
    );
    assert!(
        rows.len() == 2 && rows[1].starts_with(s.store.instance()),
        "{rows:?}"
    );
    let instances = admin(&s, &["--json", "instances"]).ok().json();
    assert_eq!(instances["data"][0]["id"], s.store.instance());
    assert_eq!(instances["nextCursor"], Value::Null);

    assert_eq!(
        admin(&s, &["--json", "subs", "delete", &id]).ok().json()["deleted"],
        1
    );
    let gone = admin(&s, &["subs", "get", &id]);
    assert_eq!(gone.code, 1, "a server error: {:?}", gone.stderr);
    assert!(gone.stderr.contains("404 NOT_FOUND"), "{}", gone.stderr);
    let gone_json = admin(&s, &["--json", "subs", "get", &id]);
    let error: Value = serde_json::from_str(gone_json.stderr.trim()).expect("a JSON error");
    assert_eq!(
        (
            error["error"]["code"].as_str(),
            error["error"]["exitCode"].as_u64()
        ),
        (Some("NOT_FOUND"), Some(1))
    );
    assert!(
        error["error"]["requestId"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    );

    let health = cli(&["--server", &s.base, "health"]).ok();
    assert!(health.stdout.starts_with("status"), "{}", health.stdout);
    assert!(
        health
            .stdout
            .lines()
            .next()
            .is_some_and(|l| l.ends_with("ok"))
    );
    assert_eq!(
        cli(&["--server", &s.base, "--json", "health"]).ok().json()["status"],
        "ok"
    );
}

#[test]
fn exit_codes_tell_server_errors_usage_errors_and_unreachable_servers_apart() {
    let s = TestServer::start();
    let started = Instant::now();

    let bad_token = cli(&["--server", &s.base, "--token", "wrong", "events", "list"]);
    assert_eq!(bad_token.code, 1, "{:?}", bad_token.stderr);
    assert!(
        bad_token.stderr.contains("401 UNAUTHORIZED"),
        "{}",
        bad_token.stderr
    );

    let bad_secret = cli(&[
        "--server",
        &s.base,
        "publish",
        "--node",
        "flowpay",
        "--secret",
        "nope",
        "PAYMENT_RECEIVED",
    ]);
    assert_eq!(bad_secret.code, 1, "{:?}", bad_secret.stderr);
    let forbidden = cli(&publish_args(&s, &["MINT_CONFIRMED"]));
    assert_eq!(forbidden.code, 1);
    assert!(
        forbidden.stderr.contains("403 FORBIDDEN"),
        "{}",
        forbidden.stderr
    );

    let no_token = cli(&["--server", &s.base, "dlq", "list"]);
    assert_eq!(no_token.code, 2);
    assert!(
        no_token.stderr.contains("no admin token"),
        "{}",
        no_token.stderr
    );
    let bad_payload = cli(&publish_args(&s, &["PAYMENT_RECEIVED", "{not json"]));
    assert_eq!(bad_payload.code, 2);
    assert!(
        bad_payload.stderr.contains("the payload is not JSON"),
        "{}",
        bad_payload.stderr
    );
    let bad_type = cli(&publish_args(&s, &["not a type"]));
    assert_eq!(bad_type.code, 2, "{}", bad_type.stderr);
    let bad_line = cli_in(
        &publish_args(&s, &[]),
        "{\"type\":\"X\"}\n{\"typ\":\"Y\"}\n",
    );
    assert_eq!(bad_line.code, 2);
    assert!(bad_line.stderr.contains("line 2"), "{}", bad_line.stderr);
    assert_eq!(
        cli(&["events", "frobnicate"]).code,
        2,
        "clap's usage errors are 2 too"
    );
    let bad_url = cli(&[
        "--server",
        "localhost:3000",
        "--token",
        ADMIN,
        "events",
        "list",
    ]);
    assert_eq!(bad_url.code, 2);
    assert!(bad_url.stderr.contains("invalid url"), "{}", bad_url.stderr);

    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let nowhere = format!("http://127.0.0.1:{closed_port}");
    let unreachable = cli(&["--server", &nowhere, "--token", ADMIN, "events", "list"]);
    assert_eq!(unreachable.code, 3, "{}", unreachable.stderr);
    assert!(
        unreachable.stderr.contains("cannot reach"),
        "{}",
        unreachable.stderr
    );
    let unreachable = cli(&[
        "--server",
        &nowhere,
        "publish",
        "--node",
        "flowpay",
        "--secret",
        SECRET,
        "--attempts",
        "2",
        "PAYMENT_RECEIVED",
    ]);
    assert_eq!(unreachable.code, 3, "{}", unreachable.stderr);
    assert!(
        unreachable.stderr.contains("gave up after 2 attempts"),
        "{}",
        unreachable.stderr
    );
    assert_eq!(cli(&["--server", &nowhere, "health"]).code, 3);
    let tail = cli(&["--server", &nowhere, "--token", ADMIN, "tail"]);
    assert_eq!(tail.code, 3, "{}", tail.stderr);

    let help = cli(&["--help"]).ok();
    assert!(help.stdout.contains("Exit codes:"), "{}", help.stdout);
    assert!(started.elapsed() < Duration::from_secs(60));
}

/// `types` against the stand-in of API.md section 11 (`support::catalogue`); the server's
/// own `/api/event-types` handlers come with the catalogue itself.
#[test]
fn types_declare_list_show_check_and_delete_event_types() {
    let stub = CatalogueStub::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let schema_path = dir.path().join("payment.json");
    std::fs::write(
        &schema_path,
        r#"{"type": "object", "required": ["amount"],
            "properties": {"amount": {"type": "integer", "minimum": 1}}}"#,
    )
    .expect("write schema");
    let schema = schema_path.to_str().expect("utf-8 path");
    let declared = on_stub(
        &stub,
        &[
            "types",
            "put",
            "PAYMENT_RECEIVED",
            "--schema",
            schema,
            "--description",
            "A customer paid.",
            "--example",
            r#"{"amount":5}"#,
        ],
        "",
    )
    .ok();
    assert_eq!(
        declared.stdout.trim(),
        "declared event type PAYMENT_RECEIVED"
    );

    // A whole body from stdin, a flag over it: replaced.
    let body = r#"{"description": "Paid.", "schema": {"type": "object"}, "examples": [{}]}"#;
    let replaced = on_stub(
        &stub,
        &[
            "--json",
            "types",
            "put",
            "legacy.order:v1",
            "--file",
            "-",
            "--deprecated",
        ],
        body,
    )
    .ok()
    .json();
    assert_eq!(replaced["created"], true);
    assert_eq!(replaced["eventType"]["deprecated"], true);
    assert_eq!(replaced["eventType"]["description"], "Paid.");
    let again = on_stub(
        &stub,
        &["--json", "types", "put", "legacy.order:v1", "--file", "-"],
        body,
    )
    .ok()
    .json();
    assert_eq!(
        (&again["created"], &again["eventType"]["deprecated"]),
        (&json!(false), &json!(false))
    );

    let listed = on_stub(
        &stub,
        &["--json", "types", "list", "--limit", "2", "--all"],
        "",
    )
    .ok()
    .json();
    let names: Vec<&str> = listed["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, [CONFIG_TYPE, "PAYMENT_RECEIVED", "legacy.order:v1"]);
    assert_eq!(listed["nextCursor"], Value::Null);
    let table = on_stub(&stub, &["types", "list"], "").ok();
    assert!(table.stdout.starts_with("NAME"), "{}", table.stdout);
    assert!(
        table.stdout.contains("A customer paid."),
        "{}",
        table.stdout
    );

    let shown = on_stub(&stub, &["types", "get", "PAYMENT_RECEIVED"], "").ok();
    assert!(shown.stdout.contains("schema:\n{"), "{}", shown.stdout);
    assert!(shown.stdout.contains("example 1:"), "{}", shown.stdout);
    let shown = on_stub(&stub, &["--json", "types", "get", "PAYMENT_RECEIVED"], "")
        .ok()
        .json();
    assert_eq!(shown["examples"], json!([{"amount": 5}]));

    // The local check: valid, invalid (exit 1 with the violations), no schema.
    let valid = on_stub(
        &stub,
        &["types", "check", "PAYMENT_RECEIVED", r#"{"amount":3}"#],
        "",
    )
    .ok();
    assert_eq!(valid.stdout.trim(), "valid PAYMENT_RECEIVED payload");
    let invalid = on_stub(
        &stub,
        &["--json", "types", "check", "PAYMENT_RECEIVED", "-"],
        r#"{"amount": 0}"#,
    );
    assert_eq!(invalid.code, 1, "{:?}", invalid.stderr);
    let refused = invalid.json();
    assert_eq!(
        (&refused["valid"], &refused["pointer"]),
        (&json!(false), &json!("/amount"))
    );
    assert_eq!(refused["errors"][0]["pointer"], "/amount");
    let open = on_stub(&stub, &["types", "check", CONFIG_TYPE, "[1]"], "").ok();
    assert!(
        open.stdout.contains("declares no schema"),
        "{}",
        open.stdout
    );

    // Refusals: the server's (exit 1) and the CLI's own (exit 2).
    let bad = on_stub(
        &stub,
        &["--json", "types", "put", "BAD", "--file", "-"],
        r#"{"schema": {"type": 5}}"#,
    );
    assert_eq!(bad.code, 1);
    assert!(
        bad.stderr.contains("\"field\":\"schema\""),
        "{}",
        bad.stderr
    );
    let both = on_stub(
        &stub,
        &["types", "put", "BAD", "--file", "-", "--schema", "-"],
        "{}",
    );
    assert_eq!(both.code, 2, "{}", both.stderr);
    let not_a_body = on_stub(
        &stub,
        &["types", "put", "BAD", "--file", "-"],
        r#"{"name": "X"}"#,
    );
    assert_eq!(not_a_body.code, 2, "{}", not_a_body.stderr);
    assert!(
        not_a_body.stderr.contains("not an event type body"),
        "{}",
        not_a_body.stderr
    );
    assert_eq!(
        on_stub(&stub, &["types", "delete", CONFIG_TYPE], "").code,
        1
    );

    let deleted = on_stub(
        &stub,
        &["--json", "types", "delete", "PAYMENT_RECEIVED"],
        "",
    )
    .ok()
    .json();
    assert_eq!(deleted, json!({"deleted": 1}));
    let gone = on_stub(&stub, &["types", "get", "PAYMENT_RECEIVED"], "");
    assert_eq!(gone.code, 1, "{}", gone.stderr);
    assert!(gone.stderr.contains("NOT_FOUND"), "{}", gone.stderr);
    assert_eq!(stub.names(), [CONFIG_TYPE, "legacy.order:v1"]);
}
