//! The delivery history, test sends and subscription stats (API.md section 12) on the real
//! binary: a delivery that fails twice and then succeeds shows its three attempts with their
//! statuses; a test send reaches the receiver signed and answers its status; the subscription
//! counts what happened.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{
    ADMIN, admin_get, admin_send, agent, header_of, publish, scripted_receiver, standard_signature,
    start, terminate,
};

/// An admin GET: its status and JSON answer.
fn admin_status(url: &str) -> (u16, Value) {
    let mut r = agent()
        .get(url)
        .header("authorization", &format!("Bearer {ADMIN}"))
        .call()
        .expect("the admin API answers");
    (
        r.status().as_u16(),
        r.body_mut().read_json().unwrap_or_default(),
    )
}

#[test]
fn a_delivery_retried_twice_shows_three_attempts_and_a_test_send_answers_its_status() {
    let (url, received) = scripted_receiver(vec![500, 500, 204, 204, 503]);
    let sub_secret = "whsec_c3Vic2NyaWJlci1zZWNyZXQtMDEyMzQ1Njc4OQ==";
    let config = format!(
        "[[nodes]]\nname = \"flowpay\"\npublish = [\"PAYMENT_*\"]\n\n[[subscriptions]]\nurl = \"{url}\"\nevents = [\"PAYMENT_*\"]\nsecret_env = \"SUB_SECRET\"\n\n[retry]\nschedule_ms = [100, 100, 100]\njitter = 0.0\n"
    );
    let mut s = start(
        &[("NEXUS_CONFIG", "nexus.toml"), ("SUB_SECRET", sub_secret)],
        &[("nexus.toml", &config)],
    );
    let subs = admin_get(&format!("{}/api/subscriptions", s.base));
    let sub = subs["data"][0]["id"]
        .as_str()
        .expect("a subscription")
        .to_owned();
    let fresh = &subs["data"][0]["stats"];
    assert_eq!(
        fresh,
        &json!({"delivered": 0, "failed": 0, "pending": 0, "dead": 0})
    );

    let (status, body) = publish(
        &s.base,
        "flowpay",
        r#"{"type":"PAYMENT_RECEIVED","id":"pay-h","payload":{"amount":5}}"#,
    );
    assert_eq!(status, 202, "{body}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let delivery = loop {
        let list = admin_get(&format!("{}/api/events/pay-h/deliveries", s.base));
        let first = list["data"][0].clone();
        if first["state"] == "delivered" {
            break first;
        }
        assert!(Instant::now() < deadline, "not delivered: {list}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(delivery["subscriptionId"], sub.as_str());
    assert_eq!(delivery["reactor"], Value::Null);
    assert_eq!(delivery["eventId"], "pay-h");
    assert_eq!(delivery["nextAttemptAt"], Value::Null);
    let attempts = delivery["attempts"].as_array().expect("attempts");
    assert_eq!(
        attempts
            .iter()
            .map(|a| (a["status"].clone(), a["error"].is_string()))
            .collect::<Vec<_>>(),
        vec![(json!(500), true), (json!(500), true), (json!(204), false)],
        "{delivery}"
    );
    for a in attempts {
        assert!(a["at"].is_string() && a["durationMs"].is_u64(), "{a}");
    }
    assert!(
        attempts[0]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("HTTP 500")),
        "{delivery}"
    );
    for _ in 0..3 {
        received
            .recv_timeout(Duration::from_secs(5))
            .expect("an attempt");
    }

    // The subscription's list, its filters and its stats.
    let mine = admin_get(&format!("{}/api/subscriptions/{sub}/deliveries", s.base));
    assert_eq!(mine["data"].as_array().map(Vec::len), Some(1), "{mine}");
    assert_eq!(mine["meta"]["nextCursor"], Value::Null);
    let dead = admin_get(&format!(
        "{}/api/subscriptions/{sub}/deliveries?state=dead",
        s.base
    ));
    assert_eq!(dead["data"], json!([]));
    let (status, bad) = admin_status(&format!(
        "{}/api/subscriptions/{sub}/deliveries?state=lost",
        s.base
    ));
    assert_eq!(status, 400, "{bad}");
    assert_eq!(bad["error"]["code"], "VALIDATION_ERROR");
    assert_eq!(bad["error"]["details"]["field"], "state");
    let (status, _) = admin_status(&format!("{}/api/subscriptions/nope/deliveries", s.base));
    assert_eq!(status, 404);
    let (status, _) = admin_status(&format!("{}/api/events/nope/deliveries", s.base));
    assert_eq!(status, 404);
    let shown = admin_get(&format!("{}/api/subscriptions/{sub}", s.base));
    assert_eq!(
        shown["data"]["stats"],
        json!({"delivered": 1, "failed": 2, "pending": 0, "dead": 0})
    );

    // A test send: signed like a delivery, answered with the receiver's status, nothing stored.
    let (status, sent) = admin_send(
        "POST",
        &format!("{}/api/subscriptions/{sub}/test", s.base),
        &json!({}),
    );
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["data"]["status"], 204);
    assert_eq!(sent["data"]["error"], Value::Null);
    assert!(sent["data"]["durationMs"].is_u64(), "{sent}");
    let (headers, body) = received
        .recv_timeout(Duration::from_secs(5))
        .expect("the test send");
    assert_eq!(header_of(&headers, "x-nexus-event"), "nexus.test");
    assert_eq!(
        header_of(&headers, "webhook-signature"),
        standard_signature(sub_secret, &headers, &body)
    );
    let event: Value = serde_json::from_str(&body).expect("event JSON");
    assert_eq!(event["type"], "nexus.test");
    assert_eq!(event["payload"]["subscriptionId"], sub.as_str());
    let (status, failing) = admin_send(
        "POST",
        &format!("{}/api/subscriptions/{sub}/test", s.base),
        &json!({}),
    );
    assert_eq!(status, 200, "{failing}");
    assert_eq!(failing["data"]["status"], 503);
    assert!(
        failing["data"]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("HTTP 503")),
        "{failing}"
    );
    let (status, _) = admin_send(
        "POST",
        &format!("{}/api/subscriptions/nope/test", s.base),
        &json!({}),
    );
    assert_eq!(status, 404);
    let log = admin_get(&format!("{}/api/events", s.base));
    assert_eq!(log["data"].as_array().map(Vec::len), Some(1), "{log}");
    let after = admin_get(&format!("{}/api/subscriptions/{sub}", s.base));
    assert_eq!(
        after["data"]["stats"], shown["data"]["stats"],
        "test sends count nowhere"
    );
    assert_eq!(terminate(&mut s.child).code(), Some(0));
}
