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

mod access;
mod events;
mod operations;
mod pages;
mod receiver;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::browser::{Browser, LogEntry};
use crate::support::process::{self, ServerProcess};
use crate::support::server::{Answer, Call};
use receiver::Receiver;

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
    the_checks_catch_what_they_should(&browser);
    let ui = format!("{}/ui/", server.base);
    access::sign_in(&browser, &ui);
    let sub = operations::new_subscription_with_a_filter(&browser, &server, &hooks);
    let failing = admin(&server, "POST", "/api/subscriptions")
        .json(&json!({"url": flaky.url, "events": ["MINT_*"]}))
        .send();
    assert_eq!(failing.status, 201, "{}", failing.text);

    let published = events::live_tail_and_event_log(&browser, &server);
    events::deliveries_and_attempts(&browser, &server, &ui, &published, &sub, &hooks);
    let kept = operations::dead_letters_and_breaker(&browser, &server, &ui, &published, &flaky);
    pages::read_only_pages(&browser, &server);
    pages::every_page_at_both_widths(&browser, &ui, &published);
    operations::delete_a_dead_letter(&browser, &server, &kept);
    operations::edit_disable_and_delete_a_subscription(&browser, &server, &flaky);
    access::an_expired_token_returns_to_the_login(&browser);
    access::sign_out(&browser);
    browser.assert_log_clean("the whole run");
}

/// The harness itself, on a page of another loopback server: its inline script, which its CSP
/// refuses, shows in the browser log as an error, its faint text fails the contrast check and
/// its wide table the overflow check; so when they pass on the console, that means something.
fn the_checks_catch_what_they_should(browser: &Browser) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for stream in listener.incoming().take(4) {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0; 2048];
            let _ = stream.read(&mut request);
            let page = "<!doctype html><title>canary</title><p>canary</p>\
                <p><font color='#c0c0c0'>faint</font></p>\
                <table width='3000'><tr><td>wide</td></tr></table>\
                <script>document.title = 'ran';</script>";
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
    for (check, expected) in [
        (
            Box::new(|| browser.assert_contrast("canary")) as Box<dyn Fn()>,
            "\"faint\" rgb(192, 192, 192) on rgb(255, 255, 255) = 1.",
        ),
        (
            Box::new(|| browser.assert_no_overflow("canary")),
            "the document is 30",
        ),
    ] {
        let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(check))
            .expect_err("the check fails on the canary page");
        let message = failed.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(message.contains(expected), "{expected:?} in {message}");
    }
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
