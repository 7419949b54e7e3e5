//! Subscription filters (API.md section 12) on the real server: a filter from the config file and
//! one set through the admin API, checked at the queue (a refused event has no delivery, so it is
//! never counted as pending) as well as at the receiver; set, cleared and set again with `PATCH`;
//! applied by a replay; a bad filter refused with `details.field = "filter"`, and in the config
//! file with a line naming the key.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{admin_get, admin_send, command, header_of, publish, receiver, start, terminate};

/// Nothing listens there: deliveries to it fail and wait in the retry queue, where they can be
/// counted.
const DEAD_URL: &str = "http://127.0.0.1:9/hook";

/// Deliveries queued, leased ones included.
fn queued(base: &str) -> u64 {
    let stats = admin_get(&format!("{base}/api/retry/stats"));
    stats["data"]["pending"].as_u64().unwrap_or(0) + stats["data"]["inFlight"].as_u64().unwrap_or(0)
}

/// Waits until `queued` is `want`, then checks it stays there a moment (a delivery routed late
/// would show up).
fn queue_settles_at(base: &str, want: u64, why: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while queued(base) != want {
        assert!(
            Instant::now() < deadline,
            "{why}: queued {} not {want}",
            queued(base)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(queued(base), want, "{why}");
}

fn pay(base: &str, id: &str, amount: i64, currency: &str) {
    let body = json!({"type": "PAYMENT_RECEIVED", "id": id,
        "payload": {"amount": amount, "currency": currency}});
    let (status, answer) = publish(base, "flowpay", &body.to_string());
    assert_eq!(status, 202, "{answer}");
}

#[test]
fn filtered_out_events_get_no_delivery_and_matching_ones_are_delivered() {
    let (url, received) = receiver();
    let config = format!(
        "[[nodes]]\nname = \"flowpay\"\npublish = [\"PAYMENT_*\"]\n\n\
         [[subscriptions]]\nurl = \"{url}\"\nevents = [\"PAYMENT_*\"]\n\
         filter = {{ \"/amount\" = {{ gte = 10000 }} }}\n"
    );
    let mut s = start(
        &[("NEXUS_CONFIG", "nexus.toml")],
        &[("nexus.toml", &config)],
    );
    let base = s.base.clone();
    let subs = admin_get(&format!("{base}/api/subscriptions"));
    assert_eq!(
        subs["data"][0]["filter"],
        json!({"/amount": {"gte": 10000}}),
        "the config's filter, shown: {subs}"
    );

    // Bad filters are refused, naming the field.
    let subscriptions = format!("{base}/api/subscriptions");
    for bad in [
        json!([1]),
        json!({"amount": {"eq": 1}}),
        json!({"/amount": {"between": 1}}),
        json!({"/amount": {"gt": {}}}),
        json!({"/amount": {"exists": "yes"}}),
    ] {
        let (status, answer) = admin_send(
            "POST",
            &subscriptions,
            &json!({"url": DEAD_URL, "events": ["*"], "filter": bad}),
        );
        assert_eq!(status, 400, "{bad}: {answer}");
        assert_eq!(answer["error"]["code"], "VALIDATION_ERROR", "{answer}");
        assert_eq!(answer["error"]["details"]["field"], "filter", "{answer}");
    }

    let (status, created) = admin_send(
        "POST",
        &subscriptions,
        &json!({"url": DEAD_URL, "events": ["PAYMENT_*"], "filter": {"/currency": {"eq": "EUR"}}}),
    );
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        created["data"]["filter"],
        json!({"/currency": {"eq": "EUR"}})
    );
    let id = created["data"]["id"].as_str().expect("an id").to_owned();
    let one = format!("{base}/api/subscriptions/{id}");
    let (status, answer) = admin_send("PATCH", &one, &json!({"filter": {"/a": {"lt": [1]}}}));
    assert_eq!(
        (status, &answer["error"]["details"]["field"]),
        (400, &json!("filter")),
        "{answer}"
    );

    pay(&base, "small-usd", 500, "USD");
    pay(&base, "big-eur", 20_000, "EUR");
    pay(&base, "small-eur", 1, "EUR");
    let (headers, _) = received
        .recv_timeout(Duration::from_secs(20))
        .expect("the matching event is delivered");
    assert_eq!(header_of(&headers, "webhook-id"), "big-eur");
    // At the queue: the receiver's one delivery is done, and the dead URL holds the two EUR
    // payments only; small-usd has no delivery row anywhere.
    queue_settles_at(
        &base,
        2,
        "two EUR payments for the dead URL, nothing for small-usd",
    );

    // Cleared: every payment goes to it again, from the next one on.
    let (status, answer) = admin_send("PATCH", &one, &json!({"filter": null}));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["data"]["filter"], Value::Null);
    pay(&base, "tiny-usd", 5, "USD");
    queue_settles_at(&base, 3, "the cleared subscription takes tiny-usd");
    // A patch that does not name it keeps it; one that sets it applies to the next events.
    let (status, answer) = admin_send("PATCH", &one, &json!({"filter": {"/amount": {"gte": 100}}}));
    assert_eq!(status, 200, "{answer}");
    let (_, kept) = admin_send("PATCH", &one, &json!({"ordered": false}));
    assert_eq!(
        kept["data"]["filter"],
        json!({"/amount": {"gte": 100}}),
        "{kept}"
    );
    pay(&base, "tiny-eur", 7, "EUR");
    queue_settles_at(&base, 3, "tiny-eur is under the new filter's 100");

    // A replay applies the filter: of the five payments, small-usd (500) and big-eur (20000).
    let (status, answer) = admin_send(
        "POST",
        &format!("{base}/api/replay"),
        &json!({"after": 0, "target": id}),
    );
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["data"]["enqueued"], 2, "{answer}");
    queue_settles_at(&base, 5, "the two replayed deliveries");

    // The drain finishes calls in flight: after the exit the receiver has every call it got.
    assert_eq!(terminate(&mut s.child).code(), Some(0));
    assert_eq!(
        received.try_iter().count(),
        0,
        "only big-eur passes the receiver's filter"
    );
}

#[test]
fn a_bad_filter_in_the_config_stops_the_start_naming_the_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("nexus.toml"),
        "[[subscriptions]]\nurl = \"http://127.0.0.1:9/h\"\nevents = [\"*\"]\n\
         filter = { \"/amount\" = { gt = [1] } }\n",
    )
    .expect("write");
    let out = command(dir.path(), &[("NEXUS_CONFIG", "nexus.toml")])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(r#"subscriptions[0].filter.\"/amount\".gt"#)
            || stderr.contains(r#"subscriptions[0].filter."/amount".gt"#),
        "{stderr}"
    );
}
