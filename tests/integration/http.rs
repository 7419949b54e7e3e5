//! The HTTP service against the wire contract (API.md sections 2, 3, 6, 8, 9), over loopback
//! with a real client and signed requests.

use std::time::Duration;

use nexus_event::{EventId, NewEvent, Timestamp, WellKnown};
use nexus_store::{BreakerLog, BreakerRecord, DeliveryQueue, EventLog, Failure};
use serde_json::{Value, json};

use crate::support::server::{Call, SECRET, TestServer, now, publish};

fn assert_envelope_ok(a: &crate::support::server::Answer) {
    assert_eq!(a.body["success"], true, "{}", a.text);
    assert!(
        a.body["timestamp"]
            .as_str()
            .is_some_and(|t| t.parse::<Timestamp>().is_ok())
    );
    assert_eq!(a.body["requestId"].as_str(), a.header("x-request-id"));
}

fn assert_error(a: &crate::support::server::Answer, status: u16, code: &str) {
    assert_eq!(a.status, status, "{}", a.text);
    assert_eq!(a.body["success"], false, "{}", a.text);
    assert_eq!(a.code(), code, "{}", a.text);
    assert!(
        a.body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    assert_eq!(a.body["requestId"].as_str(), a.header("x-request-id"));
}

#[test]
fn publishing_answers_202_once_committed_and_200_for_a_repeat() {
    let s = TestServer::start();
    let mut sub = s.bus.subscribe(nexus_event::TypeFilter::all());
    let a = publish(
        &s,
        &json!({"type": "PAYMENT_RECEIVED", "id": "pay-1", "payload": {"amount": 5}, "source": "ignored"}),
    );
    assert_eq!(a.status, 202, "{}", a.text);
    assert_envelope_ok(&a);
    assert_eq!(
        a.body["data"],
        json!({"id": "pay-1", "sequence": 1, "duplicate": false})
    );
    let stored = s
        .block_on(s.store.get(&EventId::new("pay-1").expect("valid")))
        .expect("get")
        .expect("stored before the answer");
    assert_eq!(
        stored.source, "flowpay",
        "the authenticated node, whatever the body says"
    );
    assert_eq!(stored.payload, json!({"amount": 5}));
    assert_eq!(
        sub.try_recv().map(|e| e.sequence),
        Ok(1),
        "dispatched on the bus"
    );

    let again = publish(&s, &json!({"type": "PAYMENT_RECEIVED", "id": "pay-1"}));
    assert_eq!(again.status, 200);
    assert_eq!(
        again.body["data"],
        json!({"id": "pay-1", "sequence": 1, "duplicate": true})
    );
    assert!(sub.try_recv().is_err(), "a repeat dispatches nothing");

    let other = Call::new("POST", s.url("/events"))
        .json(&json!({"type": "PAYMENT_RECEIVED", "id": "pay-1"}))
        .nexus_signed("notifier", "whsec_bm90aWZpZXItc2VjcmV0")
        .send();
    assert_error(&other, 409, "CONFLICT");

    let fresh = publish(&s, &json!({"type": "PAYMENT_RECEIVED"}));
    assert_eq!(fresh.status, 202);
    let id = fresh.body["data"]["id"].as_str().expect("an id");
    assert_eq!(uuid_version(id), Some('7'), "a new UUIDv7: {id}");
}

fn uuid_version(id: &str) -> Option<char> {
    (id.len() == 36).then(|| id.chars().nth(14)).flatten()
}

#[test]
fn every_response_carries_request_id_and_security_headers() {
    let s = TestServer::start();
    let a = Call::new("GET", s.url("/health"))
        .header("x-request-id", "req-123")
        .send();
    assert_eq!(a.header("x-request-id"), Some("req-123"));
    assert_eq!(a.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(a.header("x-frame-options"), Some("DENY"));
    assert_eq!(a.header("referrer-policy"), Some("no-referrer"));
    let long = "x".repeat(129);
    let b = Call::new("GET", s.url("/nowhere"))
        .header("x-request-id", long.clone())
        .send();
    let id = b.header("x-request-id").expect("a request id");
    assert_ne!(id, long, "a request id over 128 characters is replaced");
    assert_error(&b, 404, "NOT_FOUND");
    assert!(b.header("content-security-policy").is_some());
}

#[test]
fn signatures_are_required_and_checked() {
    let s = TestServer::start();
    let body = json!({"type": "PAYMENT_RECEIVED"});
    let unsigned = Call::new("POST", s.url("/events"))
        .json(&body)
        .header("x-nexus-node", "flowpay")
        .send();
    assert_error(&unsigned, 401, "UNAUTHORIZED");
    let wrong = Call::new("POST", s.url("/events"))
        .json(&body)
        .nexus_signed("flowpay", "not-the-secret")
        .send();
    assert_error(&wrong, 401, "UNAUTHORIZED");
    let unknown = Call::new("POST", s.url("/events"))
        .json(&body)
        .nexus_signed("mallory", SECRET)
        .send();
    assert_error(&unknown, 401, "UNAUTHORIZED");
    let stale_ts = now() - 301;
    let raw = serde_json::to_vec(&body).expect("json");
    let sig = nexus_transport::auth::sign_nexus(
        &nexus_transport::auth::Secret::parse(SECRET).expect("valid"),
        stale_ts,
        &raw,
    );
    let stale = Call::new("POST", s.url("/events"))
        .raw("application/json", raw)
        .header("x-nexus-node", "flowpay")
        .header("x-nexus-timestamp", stale_ts.to_string())
        .header("x-nexus-signature", sig)
        .send();
    assert_error(&stale, 401, "UNAUTHORIZED");
    assert_eq!(
        s.block_on(s.store.head()).expect("head"),
        0,
        "nothing stored"
    );
}

#[test]
fn standard_webhooks_and_cloudevents_are_accepted() {
    let s = TestServer::start();
    let a = Call::new("POST", s.url("/events"))
        .json(&json!({"type": "NOTIFICATION_SENT"}))
        .header("x-nexus-node", "notifier")
        .standard_signed("msg-42", "whsec_bm90aWZpZXItc2VjcmV0")
        .send();
    assert_eq!(a.status, 202, "{}", a.text);
    assert_eq!(a.body["data"]["id"], "msg-42", "webhook-id is the event id");

    let ce = json!({"specversion": "1.0", "id": "ce-1", "type": "PAYMENT_RECEIVED", "source": "/flowpay", "data": {"amount": 9}});
    let structured = Call::new("POST", s.url("/events"))
        .raw(
            "application/cloudevents+json",
            serde_json::to_vec(&ce).expect("json"),
        )
        .nexus_signed("flowpay", SECRET)
        .send();
    assert_eq!(structured.status, 202, "{}", structured.text);
    let e = s
        .block_on(s.store.get(&EventId::new("ce-1").expect("valid")))
        .expect("get")
        .expect("stored");
    assert_eq!(e.payload, json!({"amount": 9}));

    let binary = Call::new("POST", s.url("/events"))
        .raw("application/json", br#"{"amount": 10}"#.to_vec())
        .header("ce-specversion", "1.0")
        .header("ce-id", "ce-2")
        .header("ce-type", "PAYMENT_RECEIVED")
        .header("ce-source", "/flowpay")
        .nexus_signed("flowpay", SECRET)
        .send();
    assert_eq!(binary.status, 202, "{}", binary.text);
    let e = s
        .block_on(s.store.get(&EventId::new("ce-2").expect("valid")))
        .expect("get")
        .expect("stored");
    assert_eq!(
        (e.event_type.as_str(), e.payload.clone()),
        ("PAYMENT_RECEIVED", json!({"amount": 10}))
    );
}

#[test]
fn bad_input_gets_the_documented_error_and_stores_nothing() {
    let s = TestServer::start();
    let send = |ct: &str, body: &[u8]| {
        Call::new("POST", s.url("/events"))
            .raw(ct, body.to_vec())
            .nexus_signed("flowpay", SECRET)
            .send()
    };
    assert_error(&send("application/json", b"{not json"), 400, "BAD_REQUEST");
    let no_type = send("application/json", br#"{"payload": {}}"#);
    assert_error(&no_type, 400, "VALIDATION_ERROR");
    assert_eq!(no_type.body["error"]["details"]["field"], "type");
    let bad_type = send("application/json", br#"{"type": "NOT A TYPE"}"#);
    assert_eq!(bad_type.body["error"]["details"]["field"], "type");
    let bad_id = send(
        "application/json",
        br#"{"type": "PAYMENT_RECEIVED", "id": ""}"#,
    );
    assert_eq!(bad_id.body["error"]["details"]["field"], "id");
    let bad_corr = send(
        "application/json",
        br#"{"type": "PAYMENT_RECEIVED", "correlation_id": 5}"#,
    );
    assert_eq!(bad_corr.body["error"]["details"]["field"], "correlation_id");
    assert_error(
        &send("text/plain", br#"{"type": "PAYMENT_RECEIVED"}"#),
        415,
        "UNSUPPORTED_MEDIA_TYPE",
    );
    let forbidden = send("application/json", br#"{"type": "MINT_CONFIRMED"}"#);
    assert_error(&forbidden, 403, "FORBIDDEN");
    let big = format!(
        r#"{{"type": "PAYMENT_RECEIVED", "payload": "{}"}}"#,
        "x".repeat(70 * 1024)
    );
    assert_error(
        &send("application/json", big.as_bytes()),
        413,
        "PAYLOAD_TOO_LARGE",
    );
    assert_eq!(s.block_on(s.store.head()).expect("head"), 0);
}

#[test]
fn batches_are_all_or_nothing() {
    let s = TestServer::start();
    let batch = |events: Value| {
        Call::new("POST", s.url("/events/batch"))
            .json(&json!({ "events": events }))
            .nexus_signed("flowpay", SECRET)
            .send()
    };
    let ok = batch(
        json!([{"type": "PAYMENT_RECEIVED", "id": "b1"}, {"type": "PAYMENT_RECEIVED", "id": "b2"}]),
    );
    assert_eq!(ok.status, 202, "{}", ok.text);
    assert_eq!(
        ok.body["data"]["events"],
        json!([{"id": "b1", "sequence": 1, "duplicate": false}, {"id": "b2", "sequence": 2, "duplicate": false}])
    );
    let repeats = batch(
        json!([{"type": "PAYMENT_RECEIVED", "id": "b2"}, {"type": "PAYMENT_RECEIVED", "id": "b1"}]),
    );
    assert_eq!(repeats.status, 200, "a batch made only of repeats");
    assert_eq!(repeats.body["data"]["events"][0]["sequence"], 2);

    let invalid = batch(
        json!([{"type": "PAYMENT_RECEIVED"}, {"type": "PAYMENT_RECEIVED"}, {"type": "bad type"}]),
    );
    assert_error(&invalid, 400, "VALIDATION_ERROR");
    assert_eq!(
        invalid.body["error"]["details"],
        json!({"field": "type", "index": 2})
    );
    let forbidden = batch(json!([{"type": "PAYMENT_RECEIVED"}, {"type": "MINT_FAILED"}]));
    assert_error(&forbidden, 403, "FORBIDDEN");
    assert_eq!(forbidden.body["error"]["details"]["index"], 1);
    let twice = batch(
        json!([{"type": "PAYMENT_RECEIVED", "id": "x"}, {"type": "PAYMENT_RECEIVED", "id": "x"}]),
    );
    assert_error(&twice, 400, "VALIDATION_ERROR");
    assert_eq!(twice.body["error"]["details"]["index"], 1);
    let too_many: Vec<Value> = (0..1001)
        .map(|_| json!({"type": "PAYMENT_RECEIVED"}))
        .collect();
    assert_error(&batch(Value::Array(too_many)), 413, "PAYLOAD_TOO_LARGE");
    assert_error(&batch(json!([])), 400, "VALIDATION_ERROR");
    assert_eq!(
        s.block_on(s.store.head()).expect("head"),
        2,
        "refused batches stored nothing"
    );
}

/// A payload is any JSON value: an explicit `null` is stored and returned as `null` on every
/// ingress route, and `{}` stands in only for a payload left out (API.md section 1).
#[test]
fn an_explicit_null_payload_stays_null() {
    let s = TestServer::start();
    let read = |id: &str| {
        let a = Call::new("GET", s.url(&format!("/api/events/{id}")))
            .admin()
            .send();
        assert_eq!(a.status, 200, "{}", a.text);
        let data = a.body["data"].as_object().expect("an event").clone();
        data.get("payload")
            .cloned()
            .expect("the payload key is there")
    };
    let single = publish(
        &s,
        &json!({"type": "PAYMENT_RECEIVED", "id": "null-1", "payload": null}),
    );
    assert_eq!(single.status, 202, "{}", single.text);
    assert_eq!(read("null-1"), Value::Null);
    publish(&s, &json!({"type": "PAYMENT_RECEIVED", "id": "absent-1"}));
    assert_eq!(
        read("absent-1"),
        json!({}),
        "{{}} only when the key is absent"
    );

    let batch = Call::new("POST", s.url("/events/batch"))
        .json(&json!({"events": [
            {"type": "PAYMENT_RECEIVED", "id": "null-2", "payload": null},
            {"type": "PAYMENT_RECEIVED", "id": "absent-2"},
        ]}))
        .nexus_signed("flowpay", SECRET)
        .send();
    assert_eq!(batch.status, 202, "{}", batch.text);
    assert_eq!((read("null-2"), read("absent-2")), (Value::Null, json!({})));

    let ce = json!({"specversion": "1.0", "id": "null-3", "type": "PAYMENT_RECEIVED", "source": "/flowpay", "data": null});
    let structured = Call::new("POST", s.url("/events"))
        .raw(
            "application/cloudevents+json",
            serde_json::to_vec(&ce).expect("json"),
        )
        .nexus_signed("flowpay", SECRET)
        .send();
    assert_eq!(structured.status, 202, "{}", structured.text);
    assert_eq!(read("null-3"), Value::Null, "CloudEvents data: null");

    let webhook = Call::new("POST", s.url("/webhook/flowpay"))
        .json(&Value::Null)
        .standard_signed("null-4", SECRET)
        .send();
    assert_eq!(webhook.status, 202, "{}", webhook.text);
    assert_eq!(
        read("null-4"),
        Value::Null,
        "a node's own payload may be null"
    );
}

#[test]
fn node_webhooks_map_to_events() {
    let s = TestServer::start_with(|c| {
        c.webhooks.push(nexus_transport::WebhookMapping {
            node: "flowpay".into(),
            event_type: WellKnown::PaymentReceived.into(),
            id_pointer: Some("/payment_id".into()),
        });
    });
    let body = json!({"payment_id": "fp-77", "amount": 12});
    let a = Call::new("POST", s.url("/webhook/flowpay"))
        .json(&body)
        .standard_signed("wh-1", SECRET)
        .send();
    assert_eq!(a.status, 202, "{}", a.text);
    assert_eq!(
        a.body["data"]["id"], "fp-77",
        "id from the configured pointer"
    );
    let e = s
        .block_on(s.store.get(&EventId::new("fp-77").expect("valid")))
        .expect("get")
        .expect("stored");
    assert_eq!(
        (e.event_type.as_str(), e.payload.clone()),
        ("PAYMENT_RECEIVED", body.clone())
    );
    let again = Call::new("POST", s.url("/webhook/flowpay"))
        .json(&body)
        .standard_signed("wh-2", SECRET)
        .send();
    assert_eq!(
        (again.status, again.body["data"]["duplicate"].clone()),
        (200, json!(true))
    );

    let factory = Call::new("POST", s.url("/webhook/factory"))
        .json(&json!({"token": "t-1"}))
        .nexus_signed("factory", "factory-secret")
        .send();
    assert_eq!(
        factory.status, 202,
        "factory maps to MINT_CONFIRMED by default: {}",
        factory.text
    );

    let mismatch = Call::new("POST", s.url("/webhook/flowpay"))
        .json(&body)
        .nexus_signed("factory", "factory-secret")
        .send();
    assert_error(&mismatch, 401, "UNAUTHORIZED");
    let unmapped = Call::new("POST", s.url("/webhook/notifier"))
        .json(&json!({}))
        .standard_signed("n-1", "whsec_bm90aWZpZXItc2VjcmV0")
        .send();
    assert_error(&unmapped, 404, "NOT_FOUND");
}

#[test]
fn the_admin_api_needs_the_token() {
    let s = TestServer::start();
    for path in [
        "/api/retry/stats",
        "/api/subscriptions",
        "/api/events",
        "/api/breakers",
        "/api/nodes",
        "/api/reactors",
        "/api/instances",
    ] {
        assert_error(&Call::new("GET", s.url(path)).send(), 401, "UNAUTHORIZED");
        assert_error(
            &Call::new("GET", s.url(path))
                .header("authorization", "Bearer wrong")
                .send(),
            401,
            "UNAUTHORIZED",
        );
        assert_eq!(
            Call::new("GET", s.url(path)).admin().send().status,
            200,
            "{path}"
        );
    }
    let nodes = Call::new("GET", s.url("/api/nodes?limit=2")).admin().send();
    assert_eq!(nodes.body["data"][0]["name"], "factory");
    assert_eq!(nodes.body["data"][0]["publish"], json!(["MINT_*"]));
    let cursor = nodes.body["meta"]["nextCursor"]
        .as_str()
        .expect("a second page")
        .to_owned();
    let rest = Call::new("GET", s.url(&format!("/api/nodes?cursor={cursor}")))
        .admin()
        .send();
    assert_eq!(rest.body["data"][0]["name"], "notifier");
    assert!(
        !nodes.text.contains("secret"),
        "never a secret: {}",
        nodes.text
    );
}

/// `GET /api/instances` on the embedded store: this server alone, as the list envelope, with
/// the store's instance id; `/health/detailed` counts it.
#[test]
fn instances_list_this_server() {
    let s = TestServer::start();
    assert_error(
        &Call::new("GET", s.url("/api/instances")).send(),
        401,
        "UNAUTHORIZED",
    );
    let list = Call::new("GET", s.url("/api/instances")).admin().send();
    assert_eq!(list.status, 200, "{}", list.text);
    assert_eq!(list.body["success"], true);
    assert_eq!(list.body["meta"], json!({"nextCursor": null}));
    let data = list.body["data"].as_array().expect("a list");
    assert_eq!(data.len(), 1, "{}", list.text);
    let me = &data[0];
    assert_eq!(me["id"], s.store.instance());
    assert_eq!(
        me.as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>()),
        Some(
            ["host", "id", "lastSeenAt", "startedAt", "version"]
                .map(String::from)
                .to_vec()
        )
    );
    assert!(me["host"].as_str().is_some_and(|h| !h.is_empty()));
    for key in ["startedAt", "lastSeenAt"] {
        let at = me[key].as_str().expect("a time");
        assert!(at.ends_with('Z') && at.contains('T'), "{key}: {at}");
    }
    assert!(me["lastSeenAt"].as_str() >= me["startedAt"].as_str());
    let typed: Vec<nexus_api::instances::Instance> =
        serde_json::from_value(list.body["data"].clone()).expect("nexus-api's Instance");
    assert_eq!(typed[0].id, s.store.instance());
    let first_page = Call::new("GET", s.url("/api/instances?limit=1"))
        .admin()
        .send();
    assert_eq!(first_page.body["meta"]["nextCursor"], json!(null));
    let bad = Call::new("GET", s.url("/api/instances?limit=0"))
        .admin()
        .send();
    assert_error(&bad, 400, "VALIDATION_ERROR");
    let bad = Call::new("GET", s.url("/api/instances?cursor=nonsense"))
        .admin()
        .send();
    assert_error(&bad, 400, "VALIDATION_ERROR");
    assert_eq!(bad.body["error"]["details"]["field"], "cursor");
    let d = Call::new("GET", s.url("/health/detailed")).send();
    assert_eq!(d.body["instances"], 1, "{}", d.text);
}

#[test]
fn subscriptions_crud_with_validation() {
    let s = TestServer::start();
    let create = |body: Value| {
        Call::new("POST", s.url("/api/subscriptions"))
            .admin()
            .json(&body)
            .send()
    };
    let made = create(json!({"url": "https://crm.example/hooks", "events": ["MINT_*"]}));
    assert_eq!(made.status, 201, "{}", made.text);
    let sub = &made.body["data"];
    assert!(
        sub["secret"]
            .as_str()
            .is_some_and(|s| s.starts_with("whsec_")),
        "a generated secret, shown once"
    );
    assert_eq!(
        (sub["ordered"].clone(), sub["enabled"].clone()),
        (json!(false), json!(true))
    );
    let id = sub["id"].as_str().expect("id").to_owned();

    let got = Call::new("GET", s.url(&format!("/api/subscriptions/{id}")))
        .admin()
        .send();
    assert_eq!(got.body["data"]["url"], "https://crm.example/hooks");
    assert!(
        got.body["data"].get("secret").is_none(),
        "the secret is shown at creation only"
    );

    for (bad, field) in [
        (json!({"events": ["*"]}), "url"),
        (json!({"url": "ftp://x/", "events": ["*"]}), "url"),
        (json!({"url": "http://x/"}), "events"),
        (json!({"url": "http://x/", "events": []}), "events"),
        (
            json!({"url": "http://x/", "events": ["bad glob"]}),
            "events",
        ),
        (
            json!({"url": "http://x/", "events": ["*"], "colour": "red"}),
            "colour",
        ),
        (
            json!({"url": "http://x/", "events": ["*"], "ordered": "yes"}),
            "ordered",
        ),
    ] {
        let a = create(bad);
        assert_error(&a, 400, "VALIDATION_ERROR");
        assert_eq!(a.body["error"]["details"]["field"], field, "{}", a.text);
    }

    let patch = |body: Value| {
        Call::new("PATCH", s.url(&format!("/api/subscriptions/{id}")))
            .admin()
            .json(&body)
            .send()
    };
    let patched = patch(json!({"enabled": false, "events": ["*"]}));
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(
        (
            patched.body["data"]["enabled"].clone(),
            patched.body["data"]["events"].clone()
        ),
        (json!(false), json!(["*"]))
    );
    assert_eq!(patch(json!({})).status, 400);
    assert_eq!(
        patch(json!({"enabled": "no"})).body["error"]["details"]["field"],
        "enabled"
    );
    assert_eq!(
        patch(json!({"id": "other"})).body["error"]["details"]["field"],
        "id"
    );
    let missing = Call::new("PATCH", s.url("/api/subscriptions/nope"))
        .admin()
        .json(&json!({"enabled": true}))
        .send();
    assert_error(&missing, 404, "NOT_FOUND");

    let list = Call::new("GET", s.url("/api/subscriptions?limit=1"))
        .admin()
        .send();
    assert_eq!(list.body["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(list.body["meta"]["nextCursor"], Value::Null);
    assert_error(
        &Call::new("GET", s.url("/api/subscriptions?limit=1001"))
            .admin()
            .send(),
        400,
        "VALIDATION_ERROR",
    );

    let deleted = Call::new("DELETE", s.url(&format!("/api/subscriptions/{id}")))
        .admin()
        .send();
    assert_eq!(deleted.body["data"], json!({"deleted": 1}));
    assert_error(
        &Call::new("DELETE", s.url(&format!("/api/subscriptions/{id}")))
            .admin()
            .send(),
        404,
        "NOT_FOUND",
    );
}

#[test]
fn the_log_is_readable_in_pages() {
    let s = TestServer::start();
    for i in 0..5 {
        assert_eq!(
            publish(
                &s,
                &json!({"type": "PAYMENT_RECEIVED", "id": format!("e{i}")})
            )
            .status,
            202
        );
    }
    let first = Call::new("GET", s.url("/api/events?limit=2"))
        .admin()
        .send();
    let seqs = |a: &crate::support::server::Answer| -> Vec<u64> {
        a.body["data"]
            .as_array()
            .expect("list")
            .iter()
            .map(|e| e["sequence"].as_u64().expect("seq"))
            .collect()
    };
    assert_eq!(seqs(&first), vec![1, 2]);
    let cursor = first.body["meta"]["nextCursor"]
        .as_str()
        .expect("more")
        .to_owned();
    let second = Call::new(
        "GET",
        s.url(&format!("/api/events?limit=2&cursor={cursor}")),
    )
    .admin()
    .send();
    assert_eq!(seqs(&second), vec![3, 4]);
    let after = Call::new("GET", s.url("/api/events?after=3&type=PAYMENT_*"))
        .admin()
        .send();
    assert_eq!(seqs(&after), vec![4, 5]);
    assert_eq!(after.body["meta"]["nextCursor"], Value::Null);
    let none = Call::new("GET", s.url("/api/events?type=MINT_*"))
        .admin()
        .send();
    assert_eq!(seqs(&none), Vec::<u64>::new());
    let one = Call::new("GET", s.url("/api/events/e3")).admin().send();
    assert_eq!(one.body["data"]["sequence"], 4);
    assert_eq!(one.body["data"]["source"], "flowpay");
    assert_error(
        &Call::new("GET", s.url("/api/events/missing"))
            .admin()
            .send(),
        404,
        "NOT_FOUND",
    );
    assert_error(
        &Call::new("GET", s.url("/api/events?after=x"))
            .admin()
            .send(),
        400,
        "VALIDATION_ERROR",
    );
    for (query, field) in [
        ("bogus=1", "bogus"),
        ("after=x", "after"),
        ("limit=0", "limit"),
        ("limit=lots", "limit"),
        ("cursor=abc", "cursor"),
        ("type=bad%20glob", "type"),
    ] {
        let a = Call::new("GET", s.url(&format!("/api/events?{query}")))
            .admin()
            .send();
        assert_error(&a, 400, "VALIDATION_ERROR");
        assert_eq!(
            a.body["error"]["details"]["field"], field,
            "{query}: {}",
            a.text
        );
    }
    let decoded = Call::new("GET", s.url("/api/events?type=PAYMENT_%2A&limit=%31"))
        .admin()
        .send();
    assert_eq!(
        seqs(&decoded).len(),
        1,
        "percent-encoded values are decoded"
    );
}

/// `order=desc` lists newest first and pages towards smaller sequences with its cursor;
/// `until` (inclusive) bounds both orders, `after` (exclusive) too; ascending stays the default.
#[test]
fn the_log_reads_newest_first_and_within_a_range() {
    let s = TestServer::start();
    for i in 0..7 {
        let t = if i % 2 == 0 {
            "PAYMENT_RECEIVED"
        } else {
            "PAYMENT_REFUNDED"
        };
        assert_eq!(
            publish(&s, &json!({"type": t, "id": format!("d{i}")})).status,
            202
        );
    }
    let seqs = |a: &crate::support::server::Answer| -> Vec<u64> {
        a.body["data"]
            .as_array()
            .unwrap_or_else(|| panic!("a list: {}", a.text))
            .iter()
            .map(|e| e["sequence"].as_u64().expect("seq"))
            .collect()
    };
    let get = |query: &str| {
        Call::new("GET", s.url(&format!("/api/events?{query}")))
            .admin()
            .send()
    };
    // Paging backwards from the head: 7 6 5 | 4 3 2 | 1, every event once.
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let a = get(&format!(
            "order=desc&limit=3{}",
            cursor
                .as_ref()
                .map_or(String::new(), |c| format!("&cursor={c}"))
        ));
        assert_eq!(a.status, 200, "{}", a.text);
        pages.push(seqs(&a));
        match a.body["meta"]["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, vec![vec![7, 6, 5], vec![4, 3, 2], vec![1]]);
    assert_eq!(seqs(&get("order=desc&until=5&limit=2")), vec![5, 4]);
    assert_eq!(
        seqs(&get("order=desc&after=2&until=6&type=*_RECEIVED")),
        vec![5, 3],
        "after exclusive, until inclusive, the type filter applies"
    );
    let bounded = get("order=desc&until=6&limit=2&after=1");
    assert_eq!(seqs(&bounded), vec![6, 5]);
    let next = bounded.body["meta"]["nextCursor"].as_str().expect("more");
    assert_eq!(
        seqs(&get(&format!(
            "order=desc&until=6&limit=10&after=1&cursor={next}"
        ))),
        vec![4, 3, 2],
        "the next page keeps the range"
    );
    assert_eq!(seqs(&get("until=3")), vec![1, 2, 3], "ascending by default");
    assert_eq!(seqs(&get("order=asc&after=2&until=4")), vec![3, 4]);
    let asc = get("order=asc&until=5&limit=2");
    assert_eq!(seqs(&asc), vec![1, 2]);
    let c = asc.body["meta"]["nextCursor"].as_str().expect("more");
    let rest = get(&format!("order=asc&until=5&limit=2&cursor={c}"));
    assert_eq!(seqs(&rest), vec![3, 4]);
    let c = rest.body["meta"]["nextCursor"].as_str().expect("more");
    let last = get(&format!("order=asc&until=5&limit=2&cursor={c}"));
    assert_eq!(seqs(&last), vec![5]);
    assert_eq!(
        last.body["meta"]["nextCursor"],
        Value::Null,
        "until ends it"
    );
    assert_eq!(seqs(&get("order=desc&cursor=1")), Vec::<u64>::new());
    for (query, field) in [
        ("order=newest", "order"),
        ("until=-1", "until"),
        ("order=desc&cursor=x", "cursor"),
    ] {
        let a = get(query);
        assert_error(&a, 400, "VALIDATION_ERROR");
        assert_eq!(a.body["error"]["details"]["field"], field, "{query}");
    }
}

/// `GET /api/reactors` lists what the binary configured, by name, paged; empty by default.
#[test]
fn reactors_are_listed_read_only() {
    let empty = TestServer::start();
    let a = Call::new("GET", empty.url("/api/reactors")).admin().send();
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["data"], json!([]));
    assert_error(
        &Call::new("GET", empty.url("/api/reactors")).send(),
        401,
        "UNAUTHORIZED",
    );
    let reactor = |name: &str| nexus_api::reactors::Reactor {
        name: name.into(),
        on: "PAYMENT_*".into(),
        when: serde_json::Map::new(),
        call: nexus_api::reactors::ReactorCall {
            method: "POST".into(),
            url: "http://127.0.0.1:4000/mint".into(),
            timeout_ms: 2500,
        },
        emit_on_success: Some("MINT_REQUESTED".into()),
        emit_on_failure: None,
    };
    let s = TestServer::start_with(|c| c.reactors = vec![reactor("zeta"), reactor("alpha")]);
    let first = Call::new("GET", s.url("/api/reactors?limit=1"))
        .admin()
        .send();
    assert_eq!(
        first.body["data"],
        json!([{"name": "alpha", "on": "PAYMENT_*", "when": {},
            "call": {"method": "POST", "url": "http://127.0.0.1:4000/mint", "timeoutMs": 2500},
            "emitOnSuccess": "MINT_REQUESTED", "emitOnFailure": null}])
    );
    let cursor = first.body["meta"]["nextCursor"].as_str().expect("more");
    let rest = Call::new("GET", s.url(&format!("/api/reactors?cursor={cursor}")))
        .admin()
        .send();
    assert_eq!(rest.body["data"][0]["name"], "zeta");
    assert_eq!(rest.body["meta"]["nextCursor"], Value::Null);
}

#[test]
fn dead_letters_stats_redrive_and_delete() {
    let s = TestServer::start();
    let made = Call::new("POST", s.url("/api/subscriptions"))
        .admin()
        .json(&json!({"url": "http://127.0.0.1:9/hook", "events": ["*"]}))
        .send();
    let sub = made.body["data"]["id"].as_str().expect("id").to_owned();
    for i in 0..3 {
        publish(
            &s,
            &json!({"type": "PAYMENT_RECEIVED", "id": format!("p{i}"), "payload": {"n": i}}),
        );
    }
    s.block_on(async {
        let leases = s
            .store
            .lease_due("test", Timestamp::now(), 10, Duration::from_secs(60))
            .await
            .expect("lease");
        for l in leases {
            s.store
                .dead_letter(
                    &l.token,
                    Failure {
                        error: "HTTP 500: boom".into(),
                        status: Some(500),
                        at: Timestamp::now(),
                        duration_ms: 1,
                    },
                )
                .await
                .expect("dead letter");
        }
    });
    let stats = Call::new("GET", s.url("/api/retry/stats")).admin().send();
    assert_eq!(
        stats.body["data"],
        json!({"pending": 0, "deadLetters": 3, "oldestRetry": null, "inFlight": 0})
    );
    let list = Call::new("GET", s.url("/api/retry/dead-letters?limit=2"))
        .admin()
        .send();
    let items = list.body["data"].as_array().expect("list");
    assert_eq!(items.len(), 2);
    let d = &items[0];
    assert_eq!(d["eventId"], "p2", "newest first");
    assert_eq!(d["subscriptionId"], sub.as_str());
    assert_eq!(d["reactor"], Value::Null);
    assert_eq!(
        (
            d["attempts"].clone(),
            d["lastStatus"].clone(),
            d["lastError"].clone()
        ),
        (json!(1), json!(500), json!("HTTP 500: boom"))
    );
    assert_eq!(d["payload"], json!({"n": 2}));
    assert_eq!(d["target"], "http://127.0.0.1:9");
    let id = d["id"].as_i64().expect("id");
    assert!(list.body["meta"]["nextCursor"].is_string());

    let redrive = Call::new("POST", s.url("/api/retry/dead-letters/redrive"))
        .admin()
        .json(&json!({"ids": [id, 999_999]}))
        .send();
    assert_eq!(redrive.body["data"], json!({"redriven": 1}));
    let stats = Call::new("GET", s.url("/api/retry/stats")).admin().send();
    assert_eq!(
        (
            stats.body["data"]["pending"].clone(),
            stats.body["data"]["deadLetters"].clone()
        ),
        (json!(1), json!(2))
    );
    // Ids that name no dead letter (unknown, or not even numbers) are no error: they are not
    // counted (API.md section 6).
    let other = items[1]["id"].as_i64().expect("id");
    let nothing = Call::new("POST", s.url("/api/retry/dead-letters/redrive"))
        .admin()
        .json(&json!({"ids": ["nope", 999_998, id]}))
        .send();
    assert_eq!(nothing.status, 200, "{}", nothing.text);
    assert_eq!(
        nothing.body["data"],
        json!({"redriven": 0}),
        "already redriven"
    );
    let one = Call::new("DELETE", s.url("/api/retry/dead-letters"))
        .admin()
        .json(&json!({"ids": ["x", other.to_string(), 999_997]}))
        .send();
    assert_eq!(one.status, 200, "{}", one.text);
    assert_eq!(
        one.body["data"],
        json!({"deleted": 1}),
        "an id may be written as a string"
    );
    let null_ids = Call::new("DELETE", s.url("/api/retry/dead-letters"))
        .admin()
        .json(&json!({"ids": null}))
        .send();
    assert_error(&null_ids, 400, "VALIDATION_ERROR");
    assert_eq!(null_ids.body["error"]["details"]["field"], "ids");
    let deleted = Call::new("DELETE", s.url("/api/retry/dead-letters"))
        .admin()
        .json(&json!({}))
        .send();
    assert_eq!(
        deleted.body["data"],
        json!({"deleted": 1}),
        "\"ids\": null deleted nothing"
    );
    let bad = Call::new("DELETE", s.url("/api/retry/dead-letters"))
        .admin()
        .json(&json!({"ids": "all"}))
        .send();
    assert_error(&bad, 400, "VALIDATION_ERROR");
    assert_eq!(bad.body["error"]["details"]["field"], "ids");
    let unknown_key = Call::new("DELETE", s.url("/api/retry/dead-letters"))
        .admin()
        .json(&json!({"idz": [1]}))
        .send();
    assert_error(&unknown_key, 400, "VALIDATION_ERROR");
    assert_eq!(unknown_key.body["error"]["details"]["field"], "idz");
    let empty = Call::new("POST", s.url("/api/retry/dead-letters/redrive"))
        .admin()
        .send();
    assert_error(&empty, 400, "VALIDATION_ERROR");
}

/// A reset through the admin API lets the deliveries parked behind the breaker go at once (not
/// at the trial time they were parked until), saves the reset for the other instances, and finds
/// a breaker only another instance has tripped so far (it is in the store, not here yet).
#[test]
fn a_reset_releases_parked_deliveries_and_reaches_the_store() {
    use nexus_resilience::CallResult;
    let s = TestServer::start();
    let target = "http://127.0.0.1:4000";
    let made = Call::new("POST", s.url("/api/subscriptions"))
        .admin()
        .json(&json!({"url": "http://127.0.0.1:4000/hook", "events": ["*"]}))
        .send();
    assert_eq!(made.status, 201, "{}", made.text);
    publish(&s, &json!({"type": "PAYMENT_RECEIVED", "id": "parked-1"}));
    for _ in 0..5 {
        s.breakers
            .record(target, false, CallResult::Failure, Timestamp::now());
    }
    let next_trial = s
        .breakers
        .get(target)
        .and_then(|b| b.next_trial_at)
        .expect("open");
    let lease_now = || {
        s.block_on(
            s.store
                .lease_due("w", Timestamp::now(), 10, Duration::from_secs(60)),
        )
        .expect("lease")
    };
    let leased = lease_now();
    assert_eq!(leased.len(), 1);
    s.block_on(s.store.park(&leased[0].token, next_trial))
        .expect("park");
    assert!(lease_now().is_empty(), "parked until the next trial");

    let url = s.url("/api/breakers/http%3A%2F%2F127.0.0.1%3A4000/reset");
    let reset = Call::new("POST", url.clone()).admin().send();
    assert_eq!(reset.body["data"], json!({"reset": 1}), "{}", reset.text);
    let released = lease_now();
    assert_eq!(
        released
            .iter()
            .map(|l| l.event.id.as_str())
            .collect::<Vec<_>>(),
        vec!["parked-1"],
        "the reset released the parked delivery"
    );
    let kept = s.block_on(s.store.breakers()).expect("breakers");
    assert_eq!(
        kept.iter()
            .map(|r| (r.target.as_str(), r.open, r.generation))
            .collect::<Vec<_>>(),
        vec![(target, false, 1)],
        "the reset is saved for the other instances"
    );

    // Tripped by another instance, not synced here yet.
    let elsewhere = "http://127.0.0.1:4001";
    s.block_on(s.store.save_breaker(BreakerRecord {
        target: elsewhere.into(),
        open: true,
        consecutive_failures: 5,
        trips: 1,
        opened_at: Some(Timestamp::now()),
        generation: 0,
    }))
    .expect("save elsewhere");
    assert!(s.breakers.get(elsewhere).is_none());
    let reset = Call::new(
        "POST",
        s.url("/api/breakers/http%3A%2F%2F127.0.0.1%3A4001/reset"),
    )
    .admin()
    .send();
    assert_eq!(reset.body["data"], json!({"reset": 1}), "{}", reset.text);
    assert_eq!(
        s.breakers.get(elsewhere).map(|b| b.state),
        Some(nexus_resilience::BreakerState::Closed)
    );
    let kept = s.block_on(s.store.breakers()).expect("breakers");
    assert_eq!(
        kept.iter()
            .find(|r| r.target == elsewhere)
            .map(|r| (r.open, r.generation)),
        Some((false, 2))
    );
}

#[test]
fn breakers_and_replay() {
    use nexus_resilience::CallResult;
    let s = TestServer::start();
    let target = "http://127.0.0.1:4000";
    for _ in 0..5 {
        s.breakers
            .record(target, false, CallResult::Failure, Timestamp::now());
    }
    let list = Call::new("GET", s.url("/api/breakers")).admin().send();
    let b = &list.body["data"][0];
    assert_eq!(
        (b["target"].clone(), b["state"].clone(), b["trips"].clone()),
        (json!(target), json!("open"), json!(1))
    );
    assert!(b["nextTrialAt"].is_string());
    let reset = Call::new(
        "POST",
        s.url("/api/breakers/http%3A%2F%2F127.0.0.1%3A4000/reset"),
    )
    .admin()
    .send();
    assert_eq!(reset.body["data"], json!({"reset": 1}), "{}", reset.text);
    assert_eq!(
        s.breakers.get(target).map(|b| b.state),
        Some(nexus_resilience::BreakerState::Closed)
    );
    assert_error(
        &Call::new("POST", s.url("/api/breakers/http%3A%2F%2Fnope%3A1/reset"))
            .admin()
            .send(),
        404,
        "NOT_FOUND",
    );

    for i in 0..4 {
        publish(
            &s,
            &json!({"type": "PAYMENT_RECEIVED", "id": format!("r{i}")}),
        );
    }
    let made = Call::new("POST", s.url("/api/subscriptions"))
        .admin()
        .json(&json!({"url": "http://127.0.0.1:4000/hook", "events": ["*"]}))
        .send();
    let sub = made.body["data"]["id"].as_str().expect("id").to_owned();
    let replay = Call::new("POST", s.url("/api/replay"))
        .admin()
        .json(&json!({"after": 1, "until": 3, "target": sub}))
        .send();
    assert_eq!(replay.status, 202, "{}", replay.text);
    assert_eq!(replay.body["data"], json!({"enqueued": 2}));
    let unknown = Call::new("POST", s.url("/api/replay"))
        .admin()
        .json(&json!({"after": 0, "target": "nope"}))
        .send();
    assert_error(&unknown, 404, "NOT_FOUND");
    let bad = Call::new("POST", s.url("/api/replay"))
        .admin()
        .json(&json!({"target": "reactors"}))
        .send();
    assert_eq!(bad.body["error"]["details"]["field"], "after");
}

#[test]
fn health_endpoints_and_metrics() {
    let s = TestServer::start();
    assert_eq!(
        Call::new("GET", s.url("/health")).send().body,
        json!({"status": "ok"})
    );
    assert_eq!(Call::new("GET", s.url("/health/live")).send().status, 200);
    assert_eq!(
        Call::new("GET", s.url("/health/ready")).send().body,
        json!({"status": "ready"})
    );
    let d = Call::new("GET", s.url("/health/detailed")).send();
    for key in [
        "status",
        "version",
        "uptimeSeconds",
        "database",
        "retry",
        "breakers",
        "websocket",
        "memory",
        "instances",
    ] {
        assert!(d.body.get(key).is_some(), "{key} in {}", d.text);
    }
    assert!(
        d.body["database"]["sizeBytes"]
            .as_u64()
            .is_some_and(|n| n > 0)
    );
    assert!(d.body["memory"]["rssBytes"].as_u64().is_some_and(|n| n > 0));
    let m = Call::new("GET", s.url("/metrics")).send();
    assert_eq!(m.status, 200);
    assert!(
        m.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain"))
    );
    s.app.lifecycle().start_draining();
    let draining = Call::new("GET", s.url("/health/ready")).send();
    assert_eq!(
        (draining.status, draining.body.clone()),
        (503, json!({"status": "draining"}))
    );
    let refused = publish(&s, &json!({"type": "PAYMENT_RECEIVED"}));
    assert_error(&refused, 503, "UNAVAILABLE");
    assert!(refused.header("retry-after").is_some());
}

#[test]
fn large_answers_are_compressed_and_cors_follows_the_allowed_origins() {
    let s = TestServer::start_with(|c| c.allowed_origins = vec!["https://dash.example".into()]);
    s.block_on(async {
        let batch: Vec<NewEvent> = (0..50)
            .map(|i| {
                NewEvent::new(WellKnown::PaymentReceived, "flowpay")
                    .payload(json!({"n": i, "pad": "x".repeat(40)}))
            })
            .collect();
        s.store.append(batch).await.expect("append");
    });
    let gz = Call::new("GET", s.url("/api/events"))
        .admin()
        .header("accept-encoding", "gzip")
        .send();
    assert_eq!(gz.status, 200);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    let small = Call::new("GET", s.url("/health"))
        .header("accept-encoding", "gzip")
        .send();
    assert_eq!(
        small.header("content-encoding"),
        None,
        "1 KiB or less is sent as it is"
    );
    let preflight = Call::new("OPTIONS", s.url("/events"))
        .header("origin", "https://dash.example")
        .header("access-control-request-method", "POST")
        .send();
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("https://dash.example")
    );
    let other = Call::new("GET", s.url("/health"))
        .header("origin", "https://evil.example")
        .send();
    assert_eq!(other.header("access-control-allow-origin"), None);
}

#[test]
fn ingress_is_rate_limited_per_client_and_health_is_not() {
    let s = TestServer::start_with(|c| {
        c.rate_limit = nexus_transport::RateLimit {
            window: Duration::from_secs(60),
            max_requests: 3,
        };
    });
    for i in 0..3 {
        assert_eq!(
            publish(
                &s,
                &json!({"type": "PAYMENT_RECEIVED", "id": format!("r{i}")})
            )
            .status,
            202
        );
    }
    let limited = publish(&s, &json!({"type": "PAYMENT_RECEIVED", "id": "r3"}));
    assert_error(&limited, 429, "RATE_LIMITED");
    let wait: u64 = limited
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=20).contains(&wait), "{wait}");
    for _ in 0..5 {
        assert_eq!(
            Call::new("GET", s.url("/health")).send().status,
            200,
            "health is not limited"
        );
        assert_eq!(
            Call::new("GET", s.url("/api/retry/stats"))
                .admin()
                .send()
                .status,
            200,
            "admin is not limited"
        );
    }
}

/// Every operation of `/openapi.json` is routed: none answers the router's fallback (404 "no
/// route") or 405.
#[test]
fn the_openapi_document_lists_only_real_routes() {
    let s = TestServer::start();
    let doc = Call::new("GET", s.url("/openapi.json")).send();
    assert_eq!(doc.status, 200);
    assert!(
        doc.body["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3."))
    );
    let paths = doc.body["paths"].as_object().expect("paths");
    assert_eq!(
        paths
            .values()
            .map(|p| p.as_object().map_or(0, |m| m.len()))
            .sum::<usize>(),
        nexus_transport::openapi::ENDPOINTS.len()
    );
    for (path, ops) in paths {
        for method in ops.as_object().expect("operations").keys() {
            let concrete = path
                .replace("{node}", "flowpay")
                .replace("{id}", "x")
                .replace("{target}", "x")
                .replace("{name}", "X");
            let a = Call::new(
                match method.as_str() {
                    "get" => "GET",
                    "post" => "POST",
                    "put" => "PUT",
                    "patch" => "PATCH",
                    "delete" => "DELETE",
                    other => panic!("unexpected method {other}"),
                },
                s.url(&concrete),
            )
            .send();
            assert_ne!(a.status, 405, "{method} {path}");
            assert!(
                !(a.status == 404 && a.text.contains("no route for")),
                "{method} {path} is not routed"
            );
        }
    }
}

#[test]
fn production_refuses_private_targets_unless_allowed() {
    let body = json!({"url": "http://127.0.0.1:9/hook", "events": ["*"]});
    let strict = TestServer::start_with(|c| c.production = true);
    let refused = Call::new("POST", strict.url("/api/subscriptions"))
        .admin()
        .json(&body)
        .send();
    assert_error(&refused, 400, "VALIDATION_ERROR");
    assert_eq!(refused.body["error"]["details"]["field"], "url");
    assert!(refused.text.contains("private"), "{}", refused.text);
    let allowed = TestServer::start_with(|c| {
        c.production = true;
        c.allow_private_targets = true;
    });
    assert_eq!(
        Call::new("POST", allowed.url("/api/subscriptions"))
            .admin()
            .json(&body)
            .send()
            .status,
        201
    );
    for private in [
        "10.1.2.3",
        "127.0.0.1",
        "0.1.2.3",
        "100.64.0.1",
        "169.254.169.254",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "fe80::1",
        "fd00::1",
        "::1",
        "ff02::1",
        "::ffff:192.168.1.1",
        "64:ff9b::a00:1",
        "2002:a00:1::1",
    ] {
        let ip = private.parse().expect("ip");
        assert!(nexus_outbound::is_private(ip), "{private} is private");
    }
    for public in [
        "93.184.216.34",
        "2606:2800:220:1::1",
        "64:ff9b::5db8:d822",
        "2002:5db8:d822::1",
    ] {
        let ip = public.parse().expect("ip");
        assert!(!nexus_outbound::is_private(ip), "{public} is public");
    }
}

#[test]
fn a_request_that_takes_too_long_gets_503_in_the_envelope() {
    use std::io::{Read, Write};
    let server = TestServer::start_with(|c| c.request_timeout = Duration::from_millis(300));
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(&addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    // Headers announce 100 bytes of body; only 10 come, and then nothing. The signature headers
    // pass what is checked before the body (node, timestamp window), so the body is waited for.
    write!(
        stream,
        "POST /events HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         x-nexus-node: flowpay\r\nx-nexus-timestamp: {}\r\nx-nexus-signature: sha256=00\r\n\
         content-length: 100\r\n\r\n{{\"type\":\"A",
        now()
    )
    .expect("write");
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("\"success\":false") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.to_ascii_lowercase().contains("retry-after:"), "{text}");
    assert!(text.contains("\"code\":\"UNAVAILABLE\""), "{text}");
    assert!(text.contains("within 300 ms"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // A request that is on time is not affected.
    assert_eq!(Call::new("GET", server.url("/health")).send().status, 200);
}
