//! Published events in the live tail and the event log, and an event's deliveries and
//! attempts.

use std::time::Duration;

use serde_json::{Value, json};

use super::receiver::Receiver;
use super::{deliveries_on_the_server, eventually, publish};
use crate::support::browser::{Browser, button, link};
use crate::support::process::ServerProcess;

/// The events published for the later scenarios.
pub(super) struct Published {
    /// A payment above the filter's threshold: delivered to the subscription.
    pub(super) paid: (String, u64),
    /// A payment below it: stored, not delivered.
    pub(super) small: (String, u64),
    /// Two mints for the failing receiver.
    pub(super) mints: [(String, u64); 2],
}

/// Published events show in the live tail (filtered by a glob, paused and resumed) and in the
/// event log (newest first, searched by type and id), whose link opens the event.
pub(super) fn live_tail_and_event_log(browser: &Browser, server: &ServerProcess) -> Published {
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
pub(super) fn deliveries_and_attempts(
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
