//! The operator console (API.md section 14, issue 16) in a real headless Chromium, against the
//! real `nexus-server` binary with real data: sign-in, the live tail and the event log, an
//! event's deliveries and attempts, a subscription made through the form and test-sent, a
//! failing receiver's dead letter redriven from the console, a breaker reset, the CSP and a
//! clean browser log, and every page at desktop and phone widths without horizontal overflow
//! (screenshots in `target/console-screenshots/`).
//!
//! One browser session drives the scenarios in order (each builds on the data of the one
//! before), so the suite starts one Chromium. The ids, labels and routes it relies on are those
//! of the console contract; every wait is bounded (support/browser.rs).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nexus_transport::auth::{Secret, sign_standard};
use serde_json::{Value, json};

use crate::support::browser::{Browser, DESKTOP, LogEntry, PHONE, button, button_in, link};
use crate::support::process::{self, ServerProcess};
use crate::support::server::{Answer, Call};

/// A request a receiver got: headers (lowercase names) and body.
#[derive(Debug, Clone)]
struct Received {
    headers: Vec<(String, String)>,
    body: String,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// A webhook receiver on loopback that answers every request with its current status and
/// records it.
struct Receiver {
    url: String,
    origin: String,
    status: Arc<AtomicU16>,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    fn start(status: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let origin = format!("http://{}", listener.local_addr().expect("addr"));
        let status = Arc::new(AtomicU16::new(status));
        let got = Arc::new(Mutex::new(Vec::new()));
        let (answer, record) = (Arc::clone(&status), Arc::clone(&got));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                let mut headers = Vec::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = line.trim().split_once(':') {
                        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
                    }
                }
                let len: usize = headers
                    .iter()
                    .find(|(k, _)| k == "content-length")
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0; len];
                let _ = reader.read_exact(&mut body);
                record.lock().expect("received").push(Received {
                    headers,
                    body: String::from_utf8_lossy(&body).into_owned(),
                });
                let status = answer.load(Ordering::SeqCst);
                let _ = stream.write_all(
                    format!(
                        "HTTP/1.1 {status} Scripted\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    )
                    .as_bytes(),
                );
            }
        });
        Receiver {
            url: format!("{origin}/hook"),
            origin,
            status,
            got,
        }
    }

    fn answer_with(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().expect("received").clone()
    }
}

/// The server's config: two nodes, a declared type with a schema and an example, a reactor
/// (that never fires here) for the nodes page, and a retry budget and breaker small enough for
/// a failing receiver to dead-letter its deliveries and open its breaker within a second.
fn config(reactor_target: &str) -> String {
    format!(
        r#"
[[nodes]]
name = "flowpay"
publish = ["PAYMENT_*"]

[[nodes]]
name = "factory"
publish = ["MINT_*"]

[[event_types]]
name = "PAYMENT_RECEIVED"
description = "A customer paid; the amount is in minor units."
schema = {{ type = "object", required = ["amount"], properties = {{ amount = {{ type = "integer" }}, currency = {{ type = "string" }} }} }}
examples = [ {{ order = "o-1", amount = 2500, currency = "EUR" }} ]

[[reactors]]
name = "refund-notice"
on = "PAYMENT_REFUNDED"
http = {{ method = "POST", url = "{reactor_target}", timeout_ms = 2000 }}
emit_on_success = "NOTICE_SENT"

[retry]
schedule_ms = [150, 150]
jitter = 0.0

# Two deliveries of 3 attempts each: the sixth failure dead-letters the second one and opens
# the breaker (an open breaker would hold deliveries back instead of dead-lettering them).
[breaker]
failure_threshold = 6
success_threshold = 1
reset_timeout_ms = 600000
"#
    )
}

fn admin(server: &ServerProcess, method: &'static str, path: &str) -> Call {
    Call::new(method, format!("{}{path}", server.base))
        .header("authorization", format!("Bearer {}", process::ADMIN))
}

fn ok(answer: Answer) -> Value {
    assert!(
        (200..300).contains(&answer.status),
        "{}: {}",
        answer.status,
        answer.text
    );
    answer.body["data"].clone()
}

/// Publishes an event signed by `node`; its sequence.
fn publish(server: &ServerProcess, node: &str, event: &Value) -> u64 {
    let answer = Call::new("POST", format!("{}/events", server.base))
        .json(event)
        .nexus_signed(node, process::SECRET)
        .send();
    assert_eq!(answer.status, 202, "{}", answer.text);
    answer.body["data"]["sequence"]
        .as_u64()
        .expect("a sequence")
}

/// Polls an API condition (20 ms steps) until it holds or `within` passes.
fn eventually(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the deliveries of `event` on the server satisfy `done` (the receiver has its
/// request a moment before the server records the answer).
fn deliveries_on_the_server(
    server: &ServerProcess,
    event: &str,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) {
    let path = format!("/api/events/{event}/deliveries");
    let start = Instant::now();
    loop {
        let deliveries = ok(admin(server, "GET", &path).send());
        if deliveries.as_array().is_some_and(|d| done(d)) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{event}: {what}: not within 10 s: {deliveries}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn is_refused_token(entry: &LogEntry) -> bool {
    entry.source == "network" && entry.message.contains(" 401")
}

/// The pages of the console, as (name of the screenshot, route, heading).
const PAGES: &[(&str, &str, &str)] = &[
    ("overview", "#/overview", "Overview"),
    ("live", "#/live", "Live tail"),
    ("events", "#/events", "Event log"),
    ("subscriptions", "#/subscriptions", "Subscriptions"),
    ("dead-letters", "#/dead-letters", "Dead letters"),
    ("breakers", "#/breakers", "Breakers"),
    ("types", "#/types", "Event types"),
    ("nodes", "#/nodes", "Nodes and reactors"),
];

#[test]
fn the_console_in_chromium() {
    let hooks = Receiver::start(204);
    let flaky = Receiver::start(500);
    let config = config(&format!("{}/refund", hooks.origin));
    let server = ServerProcess::start_with(
        &[("NEXUS_CONFIG", "nexus.toml")],
        &[("nexus.toml", config.as_str())],
    );
    csp_on_every_console_answer(&server);

    let browser = Browser::start();
    the_log_catches_a_csp_violation(&browser);
    let ui = format!("{}/ui/", server.base);
    sign_in(&browser, &ui);
    let sub = new_subscription_with_a_filter(&browser, &server, &hooks);
    let failing = admin(&server, "POST", "/api/subscriptions")
        .json(&json!({"url": flaky.url, "events": ["MINT_*"]}))
        .send();
    assert_eq!(failing.status, 201, "{}", failing.text);

    let published = live_tail_and_event_log(&browser, &server);
    deliveries_and_attempts(&browser, &server, &ui, &published, &sub, &hooks);
    let kept = dead_letters_and_breaker(&browser, &server, &ui, &published, &flaky);
    read_only_pages(&browser, &server);
    every_page_at_both_widths(&browser, &ui, &published);
    delete_a_dead_letter(&browser, &server, &kept);
    sign_out(&browser);
    browser.assert_log_clean("the whole run");
}

/// The harness itself: a page of another loopback server whose inline script its CSP refuses
/// shows in the browser log as an error, so a clean log later means something.
fn the_log_catches_a_csp_violation(browser: &Browser) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for stream in listener.incoming().take(4) {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0; 2048];
            let _ = stream.read(&mut request);
            let page = "<!doctype html><title>canary</title><p>canary</p><script>document.title = 'ran';</script>";
            let _ = stream.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\n\
                     content-security-policy: default-src 'none'\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{page}",
                    page.len()
                )
                .as_bytes(),
            );
        }
    });
    browser.goto(&url);
    browser.expect_log_errors("a page whose inline script the CSP refuses", |e| {
        e.source == "security" && e.message.contains("Content Security Policy")
    });
    assert_eq!(
        browser.execute("return document.title", vec![]),
        json!("canary"),
        "the refused script did not run"
    );
}

/// `/ui/` and every asset it references answer with the strict Content-Security-Policy.
fn csp_on_every_console_answer(server: &ServerProcess) {
    let index = Call::new("GET", format!("{}/ui/", server.base)).send();
    assert_eq!(index.status, 200, "{}", index.text);
    let mut urls = vec!["/ui/".to_owned()];
    for attr in ["src=\"", "href=\""] {
        for part in index.text.split(attr).skip(1) {
            let value = part.split('"').next().unwrap_or("");
            if value.starts_with("http") || value.starts_with("data:") || value.starts_with('#') {
                assert!(
                    !value.starts_with("http"),
                    "the console loads nothing from another origin: {value}"
                );
                continue;
            }
            let path = if value.starts_with('/') {
                value.to_owned()
            } else {
                format!("/ui/{}", value.trim_start_matches("./"))
            };
            urls.push(path);
        }
    }
    assert!(
        urls.iter().any(|u| u.ends_with(".js")),
        "index.html loads a script: {}",
        index.text
    );
    for path in &urls {
        let answer = Call::new("GET", format!("{}{path}", server.base)).send();
        assert_eq!(answer.status, 200, "{path}: {}", answer.text);
        let csp = answer
            .header("content-security-policy")
            .unwrap_or_else(|| panic!("{path} has no Content-Security-Policy"));
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "connect-src 'self'",
        ] {
            assert!(csp.contains(directive), "{path}: {directive} in {csp}");
        }
        for loose in ["unsafe-inline", "unsafe-eval", "*"] {
            assert!(!csp.contains(loose), "{path}: {loose} in {csp}");
        }
    }
}

/// A wrong token shows the server's error with its request id and keeps the form; the right
/// one opens the overview and lives in sessionStorage only. The sign-in page is screenshot at
/// both widths first.
fn sign_in(browser: &Browser, ui: &str) {
    browser.goto(ui);
    browser.find("form#login");
    for (name, viewport) in [("login", PHONE), ("login", DESKTOP)] {
        browser.set_viewport(viewport);
        browser.assert_no_overflow(name);
        browser.screenshot(name);
    }
    assert_eq!(
        browser.text("form#login label[for='token']").trim(),
        "Admin token"
    );
    assert_eq!(
        browser.attr_now("input#token", "type").as_deref(),
        Some("password")
    );

    browser.fill("input#token", "not-the-admin-token-0123456789");
    browser.click(&button_in("//form[@id='login']", "Sign in"));
    let alert = browser.wait_for_text("[role='alert'].error", &["UNAUTHORIZED", "Request id: "]);
    let request_id = alert
        .split("Request id:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or("");
    assert!(
        request_id.len() >= 8,
        "a request id after \"Request id:\" in {alert:?}"
    );
    assert!(
        browser.exists("form#login"),
        "the form stays after a refusal"
    );
    browser.expect_log_errors("a refused token", is_refused_token);

    browser.fill("input#token", process::ADMIN);
    browser.click(&button_in("//form[@id='login']", "Sign in"));
    browser.wait_ready("Overview");
    let hash = browser.execute("return location.hash", vec![]);
    assert_eq!(hash, json!("#/overview"));
    let stored = browser.execute(
        "return [JSON.stringify(sessionStorage).includes(arguments[0]),
                 JSON.stringify(localStorage).includes(arguments[0]),
                 document.cookie.includes(arguments[0])]",
        vec![json!(process::ADMIN)],
    );
    assert_eq!(
        stored,
        json!([true, false, false]),
        "the token is kept in sessionStorage only"
    );
    browser.assert_log_clean("sign-in");
}

/// A subscription with a filter made through the form: the secret shows once (and is the one
/// that signs), and the test send reaches the receiver and shows its answer. Its id.
fn new_subscription_with_a_filter(
    browser: &Browser,
    server: &ServerProcess,
    hooks: &Receiver,
) -> String {
    browser.click(&link("Subscriptions"));
    browser.wait_ready("Subscriptions");
    browser.click(&button("New subscription"));
    browser.find("form#sub-form");
    browser.fill("#sub-url", &hooks.url);
    browser.fill("#sub-events", "PAYMENT_*");
    browser.fill("#sub-filter", r#"{"/amount": {"gte": 1000}}"#);
    browser.set_checked("#sub-ordered", false);
    browser.set_checked("#sub-enabled", true);
    browser.click(&button_in("//form[@id='sub-form']", "Save"));
    let secret = browser.wait_for_text("#sub-secret", &["whsec_"]);
    let secret = secret
        .split_whitespace()
        .find(|w| w.starts_with("whsec_"))
        .expect("the secret")
        .to_owned();

    let subs = ok(admin(server, "GET", "/api/subscriptions").send());
    let created = subs
        .as_array()
        .and_then(|subs| subs.iter().find(|s| s["url"] == json!(hooks.url)))
        .unwrap_or_else(|| panic!("the new subscription in {subs}"))
        .clone();
    assert_eq!(created["events"], json!(["PAYMENT_*"]));
    assert_eq!(created["filter"], json!({"/amount": {"gte": 1000}}));
    assert_eq!(created["enabled"], json!(true));
    assert_eq!(created["ordered"], json!(false));
    let id = created["id"].as_str().expect("an id").to_owned();
    let row = format!("//table[@id='subs-table']//tr[@data-id='{id}']");
    browser.find(&row);

    browser.click(&button_in(&row, "Test"));
    let result = browser.wait_for_text("#sub-test-result", &["204"]);
    let test = hooks
        .got()
        .into_iter()
        .find(|r| r.header("x-nexus-event") == "nexus.test")
        .unwrap_or_else(|| panic!("the receiver got the test send ({result:?})"));
    let signed = sign_standard(
        &Secret::parse(&secret).expect("the shown secret parses"),
        test.header("webhook-id"),
        test.header("webhook-timestamp")
            .parse()
            .expect("a timestamp"),
        test.body.as_bytes(),
    );
    assert!(
        test.header("webhook-signature")
            .split(' ')
            .any(|s| s == signed),
        "the secret shown once signs the deliveries"
    );

    // Shown once: gone after leaving the page and coming back.
    browser.click(&link("Overview"));
    browser.wait_ready("Overview");
    browser.click(&link("Subscriptions"));
    browser.wait_ready("Subscriptions");
    browser.find(&row);
    let shown = browser.execute(
        "return document.body.innerText.includes(arguments[0])",
        vec![json!(secret)],
    );
    assert_eq!(shown, json!(false), "the secret is shown once only");
    browser.assert_log_clean("new subscription");
    id
}

/// The events published for the later scenarios.
struct Published {
    /// A payment above the filter's threshold: delivered to the subscription.
    paid: (String, u64),
    /// A payment below it: stored, not delivered.
    small: (String, u64),
    /// Two mints for the failing receiver.
    mints: [(String, u64); 2],
}

/// Published events show in the live tail (filtered by a glob, paused and resumed) and in the
/// event log (newest first, searched by type and id), whose link opens the event.
fn live_tail_and_event_log(browser: &Browser, server: &ServerProcess) -> Published {
    browser.click(&link("Live tail"));
    browser.wait_ready("Live tail");
    assert!(browser.exists("label[for='live-filter']"));
    assert!(browser.exists("label[for='live-since']"));
    let paid_id = "pay-console-1";
    let paid = publish(
        server,
        "flowpay",
        &json!({"type": "PAYMENT_RECEIVED", "id": paid_id,
                "payload": {"order": "o-1", "amount": 2500, "currency": "EUR"}}),
    );
    let row = |sequence: u64| format!("#live-list li[data-sequence='{sequence}']");
    browser.find(&row(paid));
    assert_eq!(
        browser.attr_now(&row(paid), "data-type").as_deref(),
        Some("PAYMENT_RECEIVED")
    );

    // The glob filter: payments only.
    browser.fill("#live-filter", "PAYMENT_*");
    browser.press_enter("#live-filter");
    let first_mint = publish(
        server,
        "factory",
        &json!({"type": "MINT_CONFIRMED", "id": "mint-console-1", "payload": {"order": "o-1"}}),
    );
    let small_id = "pay-console-2";
    let small = publish(
        server,
        "flowpay",
        &json!({"type": "PAYMENT_RECEIVED", "id": small_id, "payload": {"order": "o-2", "amount": 5}}),
    );
    browser.find(&row(small));
    assert!(
        !browser.exists(&row(first_mint)),
        "a MINT_ event outside the filter PAYMENT_* shows in the live tail"
    );

    // Paused, nothing new shows; resumed, what came meanwhile does (from the last sequence).
    browser.click(&button("Pause"));
    browser.find(&button("Resume"));
    let second_mint = publish(
        server,
        "factory",
        &json!({"type": "MINT_CONFIRMED", "id": "mint-console-2", "payload": {"order": "o-2"}}),
    );
    let late_id = "pay-console-3";
    let late = publish(
        server,
        "flowpay",
        &json!({"type": "PAYMENT_RECEIVED", "id": late_id, "payload": {"order": "o-3", "amount": 7}}),
    );
    std::thread::sleep(Duration::from_millis(600));
    assert!(
        !browser.exists(&row(late)),
        "an event shows in the live tail while it is paused"
    );
    browser.click(&button("Resume"));
    browser.find(&row(late));
    // Newest first, payments only (what came before the filter may stay or go).
    let rows = browser.execute(
        "return [...document.querySelectorAll('#live-list li')]
                  .map(li => [Number(li.dataset.sequence), li.dataset.type])",
        vec![],
    );
    let rows: Vec<(u64, String)> = serde_json::from_value(rows).expect("rows");
    let sequences: Vec<u64> = rows.iter().map(|(s, _)| *s).collect();
    assert!(
        sequences.starts_with(&[late, small])
            && sequences.windows(2).all(|w| w[0] > w[1])
            && rows.iter().all(|(_, t)| t == "PAYMENT_RECEIVED"),
        "the live tail, newest first, payments only: {rows:?}"
    );
    browser.assert_log_clean("live tail");

    // The event log: newest first, every event.
    browser.click(&link("Event log"));
    browser.wait_ready("Event log");
    let sequences = browser.execute(
        "return [...document.querySelectorAll('#events-table tr[data-sequence]')].map(tr => Number(tr.dataset.sequence))",
        vec![],
    );
    let sequences: Vec<u64> = serde_json::from_value(sequences).expect("sequences");
    assert!(
        sequences.starts_with(&[late, second_mint, small, first_mint, paid]),
        "the event log, newest first: {sequences:?}"
    );
    // By type.
    browser.fill("#events-type", "MINT_CONFIRMED");
    browser.click(&button("Search"));
    browser.wait_until("the event log searched by type", |b| {
        b.execute(
            "return [...document.querySelectorAll('#events-table tr[data-id]')].map(tr => tr.dataset.id)",
            vec![],
        ) == json!(["mint-console-2", "mint-console-1"])
    });
    // By id; its link opens the event.
    browser.fill("#events-type", "");
    browser.fill("#events-id", paid_id);
    browser.click(&button("Search"));
    browser.wait_until("the event log searched by id", |b| {
        b.execute(
            "return [...document.querySelectorAll('#events-table tr[data-id]')].map(tr => tr.dataset.id)",
            vec![],
        ) == json!([paid_id])
    });
    assert_eq!(
        browser
            .attr_now(
                &format!("#events-table tr[data-id='{paid_id}']"),
                "data-sequence"
            )
            .as_deref(),
        Some(paid.to_string().as_str())
    );
    browser.click(&format!(
        "#events-table tr[data-id='{paid_id}'] a[href='#/events/{paid_id}']"
    ));
    browser.find("pre#event-payload");
    let payload = browser.text("pre#event-payload");
    let payload: Value = serde_json::from_str(&payload)
        .unwrap_or_else(|e| panic!("#event-payload holds JSON ({e}): {payload}"));
    assert_eq!(
        payload["amount"],
        json!(2500),
        "the payload shown: {payload}"
    );
    browser.assert_log_clean("event log");
    Published {
        paid: (paid_id.to_owned(), paid),
        small: (small_id.to_owned(), small),
        mints: [
            ("mint-console-1".to_owned(), first_mint),
            ("mint-console-2".to_owned(), second_mint),
        ],
    }
}

/// The delivered payment's page shows its delivery with the attempt and its 204; the small
/// one, which the filter kept from the subscription, shows none.
fn deliveries_and_attempts(
    browser: &Browser,
    server: &ServerProcess,
    ui: &str,
    published: &Published,
    sub: &str,
    hooks: &Receiver,
) {
    let (paid, _) = &published.paid;
    eventually(Duration::from_secs(10), "the payment delivered", || {
        hooks.got().iter().any(|r| r.header("webhook-id") == paid)
    });
    // The filter: the small payment never reaches the receiver.
    let (small, _) = &published.small;
    assert!(
        !hooks.got().iter().any(|r| r.header("webhook-id") == small),
        "the filter /amount >= 1000 let a payment of 5 through"
    );

    deliveries_on_the_server(server, paid, "its one delivery delivered", |d| {
        d.len() == 1 && d[0]["state"] == json!("delivered")
    });
    browser.goto(&format!("{ui}#/events/{paid}"));
    let delivered = "#deliveries article.delivery[data-state='delivered']";
    browser.find(delivered);
    let deliveries = browser.find_all("#deliveries article.delivery");
    assert_eq!(deliveries.len(), 1, "one delivery: the subscription {sub}");
    let attempts = browser.find_all(&format!("{delivered} tr.attempt"));
    assert_eq!(attempts.len(), 1, "one attempt");
    browser.wait_for_text(&format!("{delivered} tr.attempt"), &["204"]);

    browser.goto(&format!("{ui}#/events/{small}"));
    browser.find("pre#event-payload");
    browser.wait_until("the page of the filtered payment", |b| {
        b.exists("main#page[data-ready='true'] #deliveries")
    });
    assert!(
        browser.find_all("#deliveries article.delivery").is_empty(),
        "no delivery of a payment the filter refused"
    );
    browser.assert_log_clean("deliveries and attempts");
}

/// The failing receiver dead-letters both mints and opens its breaker. The breaker is reset
/// from the console, the receiver fixed, one dead letter redriven (with the confirmation): it
/// is delivered, its page shows the failed attempts and the good one. The id of the dead
/// letter kept.
fn dead_letters_and_breaker(
    browser: &Browser,
    server: &ServerProcess,
    ui: &str,
    published: &Published,
    flaky: &Receiver,
) -> String {
    let [(redriven_event, _), (kept_event, _)] = &published.mints;
    eventually(Duration::from_secs(15), "two dead letters", || {
        ok(admin(server, "GET", "/api/retry/stats").send())["deadLetters"] == json!(2)
    });
    let dead = ok(admin(server, "GET", "/api/retry/dead-letters").send());
    let id_of = |event: &str| {
        dead.as_array()
            .and_then(|d| d.iter().find(|d| d["eventId"] == json!(event)))
            .map(|d| match &d["id"] {
                Value::String(id) => id.clone(),
                id => id.to_string(),
            })
            .unwrap_or_else(|| panic!("a dead letter of {event} in {dead}"))
    };
    let (redriven, kept) = (id_of(redriven_event), id_of(kept_event));

    // The breaker: open after the sixth failure; reset from the console.
    browser.click(&link("Breakers"));
    browser.wait_ready("Breakers");
    let breaker = |state: &str| {
        format!(
            "#breakers-table tr[data-target='{}'][data-state='{state}']",
            flaky.origin
        )
    };
    browser.find(&breaker("open"));
    browser.click(&button_in(
        &format!(
            "//table[@id='breakers-table']//tr[@data-target='{}'][@data-state='open']",
            flaky.origin
        ),
        "Reset",
    ));
    browser.find(&breaker("closed"));
    let breakers = ok(admin(server, "GET", "/api/breakers").send());
    assert!(
        breakers.as_array().is_some_and(|all| all
            .iter()
            .any(|b| b["target"] == json!(flaky.origin) && b["state"] == json!("closed"))),
        "the breaker is closed on the server: {breakers}"
    );

    // Redrive one of the two, selected by its checkbox, with the confirmation.
    flaky.answer_with(204);
    browser.click(&link("Dead letters"));
    browser.wait_ready("Dead letters");
    for id in [&redriven, &kept] {
        browser.find(&format!("#dl-table tr[data-id='{id}']"));
    }
    let select = format!("#dl-table tr[data-id='{redriven}'] input[type='checkbox']");
    let label = browser.execute(
        "const box = document.querySelector(arguments[0]);
         return box.labels && box.labels.length ? box.labels[0].textContent.trim()
              : box.getAttribute('aria-label');",
        vec![json!(select)],
    );
    assert_eq!(label, json!(format!("Select {redriven}")));
    browser.set_checked(&select, true);
    browser.click(&button("Redrive selected"));
    browser.click(&button_in("//dialog[@open]", "Confirm"));
    browser.wait_for_text("#dl-result", &["1"]);
    browser.wait_until("the redriven dead letter leaves the table", |b| {
        !b.exists(&format!("#dl-table tr[data-id='{redriven}']"))
    });
    assert!(
        browser.exists(&format!("#dl-table tr[data-id='{kept}']")),
        "only the selected dead letter is redriven"
    );
    eventually(
        Duration::from_secs(10),
        "the redriven mint delivered",
        || {
            flaky
                .got()
                .iter()
                .filter(|r| r.header("webhook-id") == redriven_event)
                .count()
                == 4
        },
    );

    // Its page: the dead delivery's failed attempts, and the redriven one delivered (the
    // redrive makes a new delivery; the dead one stays in the history).
    deliveries_on_the_server(server, redriven_event, "a delivery delivered", |d| {
        d.iter().any(|d| d["state"] == json!("delivered"))
    });
    browser.goto(&format!("{ui}#/events/{redriven_event}"));
    let delivered = "#deliveries article.delivery[data-state='delivered']";
    browser.find(delivered);
    let attempts = |article: &str| {
        let texts = browser.execute(
            "return [...document.querySelectorAll(arguments[0])].map(tr => tr.innerText)",
            vec![json!(format!("{article} tr.attempt"))],
        );
        serde_json::from_value::<Vec<String>>(texts).expect("texts")
    };
    let good = attempts(delivered);
    assert!(
        good.len() == 1 && good[0].contains("204"),
        "the redriven delivery's attempt: {good:?}"
    );
    let failed = attempts("#deliveries article.delivery[data-state='dead']");
    assert!(
        failed.len() == 3 && failed.iter().all(|a| a.contains("500")),
        "the three failed attempts (500) before the redrive: {failed:?}"
    );
    browser.assert_log_clean("dead letters and breaker");
    kept
}

/// Event types, nodes and reactors, and the overview show what the server holds.
fn read_only_pages(browser: &Browser, server: &ServerProcess) {
    browser.click(&link("Event types"));
    browser.wait_ready("Event types");
    let declared = "#types-list article[data-type='PAYMENT_RECEIVED']";
    browser.wait_for_text(declared, &["minor units", "amount", "o-1"]);

    browser.click(&link("Nodes and reactors"));
    browser.wait_ready("Nodes and reactors");
    browser.wait_for_text(
        "#nodes-table",
        &["flowpay", "PAYMENT_*", "factory", "MINT_*"],
    );
    browser.wait_for_text("#reactors-table", &["refund-notice", "PAYMENT_REFUNDED"]);
    let page = browser.execute("return document.body.innerText", vec![]);
    assert!(
        !page.as_str().unwrap_or("").contains(process::SECRET),
        "a node's secret on the nodes page"
    );

    browser.click(&link("Overview"));
    browser.wait_ready("Overview");
    let stats = ok(admin(server, "GET", "/api/retry/stats").send());
    browser.wait_for_text("#overview-queue", &[&stats["deadLetters"].to_string()]);
    for part in [
        "#overview-health",
        "#overview-breakers",
        "#overview-instances",
    ] {
        browser.find(part);
    }
    browser.wait_until("three sparklines", |b| b.find_all("svg.spark").len() >= 3);
    browser.assert_log_clean("read-only pages");
}

/// Every page at 1280 and 390 px: ready, no horizontal overflow, a screenshot.
fn every_page_at_both_widths(browser: &Browser, ui: &str, published: &Published) {
    let event = format!("#/events/{}", published.paid.0);
    let mut pages: Vec<(&str, &str, &str)> = PAGES.to_vec();
    pages.push(("event", event.as_str(), ""));
    for viewport in [DESKTOP, PHONE] {
        browser.set_viewport(viewport);
        for (name, route, heading) in &pages {
            browser.goto(&format!("{ui}{route}"));
            if heading.is_empty() {
                browser.find("#deliveries article.delivery");
            } else {
                browser.wait_ready(heading);
            }
            browser.assert_no_overflow(name);
            browser.screenshot(name);
        }
        // The subscription form open, too.
        browser.goto(&format!("{ui}#/subscriptions"));
        browser.wait_ready("Subscriptions");
        browser.click(&button("New subscription"));
        browser.find("form#sub-form");
        browser.assert_no_overflow("subscription-form");
        browser.screenshot("subscription-form");
    }
    browser.set_viewport(DESKTOP);
    browser.assert_log_clean("every page at both widths");
}

/// The kept dead letter deleted from the console, after the confirmation.
fn delete_a_dead_letter(browser: &Browser, server: &ServerProcess, kept: &str) {
    browser.click(&link("Dead letters"));
    browser.wait_ready("Dead letters");
    browser.set_checked(
        &format!("#dl-table tr[data-id='{kept}'] input[type='checkbox']"),
        true,
    );
    browser.click(&button("Delete selected"));
    browser.click(&button_in("//dialog[@open]", "Confirm"));
    browser.wait_until("the deleted dead letter leaves the table", |b| {
        !b.exists(&format!("#dl-table tr[data-id='{kept}']"))
    });
    let stats = ok(admin(server, "GET", "/api/retry/stats").send());
    assert_eq!(stats["deadLetters"], json!(0), "{stats}");
    browser.assert_log_clean("delete a dead letter");
}

/// Signing out returns to the form and forgets the token.
fn sign_out(browser: &Browser) {
    browser.click(&button("Sign out"));
    browser.find("form#login");
    let kept = browser.execute(
        "return JSON.stringify(sessionStorage).includes(arguments[0])",
        vec![json!(process::ADMIN)],
    );
    assert_eq!(kept, json!(false), "the token is forgotten at sign-out");
}
