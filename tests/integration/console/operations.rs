//! What an operator does: a subscription with a filter through the form and its test send;
//! dead letters of a failing receiver, its breaker reset, a redrive and a delete, each with
//! the confirmation.

use std::time::Duration;

use nexus_transport::auth::{Secret, sign_standard};
use serde_json::{Value, json};

use super::events::Published;
use super::receiver::Receiver;
use super::{admin, deliveries_on_the_server, eventually, ok};
use crate::support::browser::{Browser, button, button_in, link};
use crate::support::process::ServerProcess;

/// A subscription with a filter made through the form: the secret shows once (and is the one
/// that signs), and the test send reaches the receiver and shows its answer. Its id.
pub(super) fn new_subscription_with_a_filter(
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

/// The failing receiver dead-letters both mints and opens its breaker. The breaker is reset
/// from the console, the receiver fixed, one dead letter redriven (with the confirmation): it
/// is delivered, its page shows the failed attempts and the good one. The id of the dead
/// letter kept.
pub(super) fn dead_letters_and_breaker(
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

/// The kept dead letter deleted from the console, after the confirmation.
pub(super) fn delete_a_dead_letter(browser: &Browser, server: &ServerProcess, kept: &str) {
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

/// The failing receiver's subscription edited through the form, disabled and enabled again,
/// then deleted after the confirmation; the server holds each change.
pub(super) fn edit_disable_and_delete_a_subscription(
    browser: &Browser,
    server: &ServerProcess,
    flaky: &Receiver,
) {
    let subs = ok(admin(server, "GET", "/api/subscriptions").send());
    let id = subs
        .as_array()
        .and_then(|subs| subs.iter().find(|s| s["url"] == json!(flaky.url)))
        .and_then(|s| s["id"].as_str())
        .unwrap_or_else(|| panic!("the failing receiver's subscription in {subs}"))
        .to_owned();
    let on_server = || ok(admin(server, "GET", &format!("/api/subscriptions/{id}")).send());
    let row = format!("//table[@id='subs-table']//tr[@data-id='{id}']");
    browser.click(&link("Subscriptions"));
    browser.wait_ready("Subscriptions");

    browser.click(&button_in(&row, "Edit"));
    browser.find("form#sub-form");
    browser.find("#sub-url");
    assert_eq!(
        browser.execute("return document.querySelector('#sub-url').value", vec![]),
        json!(flaky.url),
        "the form opens with the subscription's values"
    );
    browser.fill("#sub-events", "MINT_*, PAYMENT_FAILED");
    browser.click(&button_in("//form[@id='sub-form']", "Save"));
    eventually(Duration::from_secs(5), "the edit saved", || {
        on_server()["events"] == json!(["MINT_*", "PAYMENT_FAILED"])
    });
    browser.wait_for_text(&row, &["PAYMENT_FAILED"]);
    assert!(
        !browser.exists("#sub-secret"),
        "an edit shows no secret (it is shown once, at creation)"
    );

    browser.click(&button_in(&row, "Disable"));
    browser.find(&button_in(&row, "Enable"));
    eventually(Duration::from_secs(5), "disabled on the server", || {
        on_server()["enabled"] == json!(false)
    });
    browser.click(&button_in(&row, "Enable"));
    browser.find(&button_in(&row, "Disable"));
    eventually(
        Duration::from_secs(5),
        "enabled again on the server",
        || on_server()["enabled"] == json!(true),
    );

    browser.click(&button_in(&row, "Delete"));
    browser.click(&button_in("//dialog[@open]", "Confirm"));
    browser.wait_until("the deleted subscription leaves the table", |b| {
        !b.exists(&row)
    });
    let gone = admin(server, "GET", &format!("/api/subscriptions/{id}")).send();
    assert_eq!(gone.status, 404, "{}", gone.text);
    browser.assert_log_clean("edit, disable, enable and delete a subscription");
}
