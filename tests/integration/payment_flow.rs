//! The payment -> mint -> notify flow of `examples/payment_flow`, checked: every step signed,
//! durable, retried, dead-lettered and redriven, and guarded by the breaker.

#[path = "../../examples/payment_flow/flow.rs"]
mod flow;

use serde_json::Value;

/// The notifier's verifier is an independent Standard Webhooks implementation: it must pass the
/// specification's published example.
#[test]
fn the_verifier_passes_the_standard_webhooks_example() {
    let (secret, id, ts) = (
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "1614265330",
    );
    let body = br#"{"test": 2432232314}"#;
    let good = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    assert!(flow::verify_standard(
        secret, id, ts, body, good, 1614265330
    ));
    let several = format!("v1,bm9wZQ== {good}");
    assert!(flow::verify_standard(
        secret, id, ts, body, &several, 1614265330
    ));
    assert!(!flow::verify_standard(
        secret,
        id,
        ts,
        br#"{"test": 1}"#,
        good,
        1614265330
    ));
    assert!(
        !flow::verify_standard(secret, id, ts, body, good, 1614265330 + 301),
        "stale"
    );
}

fn events<'a>(log: &'a [Value], event_type: &str, correlation: &str) -> Vec<&'a Value> {
    log.iter()
        .filter(|e| e["type"] == event_type && e["correlation_id"] == correlation)
        .collect()
}

#[test]
fn payment_mint_notify_with_retries_dead_letter_redrive_and_breaker() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (report, timeline) = rt.block_on(async {
        let flow = flow::Flow::start(false).await;
        let report = flow.run().await;
        let timeline = flow.timeline.lines();
        flow.nexus.stop().await;
        (report, timeline)
    });
    let report = report.unwrap_or_else(|e| panic!("{e}\n{}", timeline.join("\n")));
    let context = timeline.join("\n");

    // Every call to the factory and every delivery to the notifier carried a valid signature.
    assert_eq!(report.factory_bad_signatures, 0, "{context}");
    assert!(!report.notified.is_empty());
    assert!(report.notified.iter().all(|(_, ok)| *ok), "{context}");

    // Retries: twice failed then through; failed for good (3 attempts) then redriven once.
    let calls = &report.factory_calls;
    assert_eq!(calls.get("pay-1001"), Some(&1), "{context}");
    assert_eq!(calls.get("pay-1002"), Some(&3), "{context}");
    assert_eq!(calls.get("pay-1003"), Some(&4), "{context}");
    // While the breaker was open nothing was attempted, so none of the burst ran out of attempts.
    for id in ["pay-2001", "pay-2002", "pay-2003", "pay-2004"] {
        let n = calls.get(id).copied().unwrap_or(0);
        assert!((2..=3).contains(&n), "{id}: {n} calls\n{context}");
    }

    // The dead letter, as the operator saw it.
    let dl = &report.dead_letter;
    assert_eq!(dl["reactor"], "mint-on-payment");
    assert_eq!(dl["subscriptionId"], Value::Null);
    assert_eq!(dl["eventType"], "PAYMENT_RECEIVED");
    assert_eq!(dl["attempts"], 3);
    assert_eq!(dl["lastStatus"], 500);
    assert!(
        dl["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("minting line jammed")),
        "{dl}"
    );
    assert_eq!(dl["payload"]["payment_id"], "pay-1003");
    assert_eq!(report.redrive["redriven"], 1);

    // The breaker opened on the fifth failure in a row and closed after the trials.
    assert_eq!(report.breaker_open["state"], "open");
    assert!(report.breaker_open["nextTrialAt"].is_string());
    assert_eq!(report.breaker_after["state"], "closed", "{context}");
    assert_eq!(report.breaker_after["trips"], 1, "{context}");

    // Nothing left behind: the queue is empty and the redriven dead letter is gone.
    assert_eq!(report.stats_after["pending"], 0);
    assert_eq!(report.stats_after["deadLetters"], 0);

    // The log tells the whole story, once per payment: the reactor's emits are never repeated.
    let log = &report.log;
    let seqs: Vec<u64> = log.iter().filter_map(|e| e["sequence"].as_u64()).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "gap-free: {seqs:?}"
    );
    for id in [
        "pay-1001", "pay-1002", "pay-1003", "pay-2001", "pay-2002", "pay-2003", "pay-2004",
    ] {
        let payment: Vec<_> = log.iter().filter(|e| e["id"] == id).collect();
        assert_eq!(payment.len(), 1, "{id}");
        assert_eq!(payment[0]["type"], "PAYMENT_RECEIVED");
        assert_eq!(payment[0]["source"], "flowpay");
        let requested = events(log, "MINT_REQUESTED", id);
        assert_eq!(requested.len(), 1, "{id}: {requested:?}");
        assert_eq!(requested[0]["source"], "nexus");
        assert_eq!(
            requested[0]["payload"]["mint_id"],
            format!("mint-{id}"),
            "the factory's answer is the payload"
        );
        let confirmed = events(log, "MINT_CONFIRMED", id);
        assert_eq!(confirmed.len(), 1, "{id}");
        assert_eq!(confirmed[0]["source"], "factory");
        let delivered = report
            .notified
            .iter()
            .filter(|(e, _)| {
                e.event_type.as_str() == "MINT_CONFIRMED" && e.payload["payment_id"] == id
            })
            .count();
        assert!(delivered >= 1, "{id} was confirmed to the notifier");
    }
    let failed = events(log, "MINT_FAILED", "pay-1003");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["source"], "nexus");
    assert_eq!(failed[0]["payload"]["reactor"], "mint-on-payment");
    assert_eq!(failed[0]["payload"]["attempts"], 3);
    assert_eq!(
        failed[0]["payload"]["event"]["payload"]["payment_id"],
        "pay-1003"
    );
    assert_eq!(log.iter().filter(|e| e["type"] == "MINT_FAILED").count(), 1);
}
