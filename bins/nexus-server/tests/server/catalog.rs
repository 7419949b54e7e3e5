//! The event-type catalogue end to end (API.md section 11): types declared in the config file
//! (schema beside it or inline) and through `/api/event-types`, every ingress route refusing a
//! payload that fails its type's schema with the pointer of the first failing value, batches
//! refused whole, `Deprecation: true`, `NEXUS_REQUIRE_DECLARED_TYPES`, a reactor whose emitted
//! event fails its schema dead-lettered, and `nexus_events_rejected_total`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{
    ADMIN, SECRET, Server, admin_get, admin_send, agent, hex, now, receiver, sign, start, terminate,
};

/// A signed request to `path` with `content_type` and extra headers: its status, its
/// `Deprecation` header and its JSON body.
fn signed(
    base: &str,
    path: &str,
    node: &str,
    content_type: &str,
    extra: &[(&str, &str)],
    body: &str,
) -> (u16, Option<String>, Value) {
    let ts = now().to_string();
    let sig = hex(&sign(SECRET.as_bytes(), format!("{ts}.{body}").as_bytes()));
    let mut request = agent()
        .post(&format!("{base}{path}"))
        .header("content-type", content_type)
        .header("x-nexus-node", node)
        .header("x-nexus-timestamp", &ts)
        .header("x-nexus-signature", &format!("sha256={sig}"));
    for (k, v) in extra {
        request = request.header(*k, *v);
    }
    let mut r = request.send(body).expect("the server answers");
    let status = r.status().as_u16();
    let deprecation = r
        .headers()
        .get("deprecation")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (
        status,
        deprecation,
        r.body_mut().read_json().unwrap_or(Value::Null),
    )
}

fn publish_json(base: &str, body: &Value) -> (u16, Option<String>, Value) {
    signed(
        base,
        "/events",
        "flowpay",
        "application/json",
        &[],
        &body.to_string(),
    )
}

/// Asserts a `400 VALIDATION_ERROR` about the payload, failing at `pointer`.
fn assert_payload_refused(answer: &(u16, Option<String>, Value), pointer: &str) {
    let (status, _, body) = answer;
    assert_eq!(*status, 400, "{body}");
    let error = &body["error"];
    assert_eq!(error["code"], "VALIDATION_ERROR", "{body}");
    assert_eq!(error["details"]["field"], "payload", "{body}");
    assert_eq!(error["details"]["pointer"], pointer, "{body}");
    let errors = error["details"]["errors"].as_array().expect("errors");
    assert!((1..=10).contains(&errors.len()), "{body}");
    assert_eq!(errors[0]["pointer"], pointer, "{body}");
    assert!(errors[0]["message"].as_str().is_some_and(|m| !m.is_empty()));
}

/// A call of the admin API with any method: status and JSON answer.
fn admin(method: &str, url: &str, body: Option<&Value>) -> (u16, Value) {
    if let Some(body) = body.filter(|_| matches!(method, "POST" | "PATCH")) {
        return admin_send(method, url, body);
    }
    let agent = agent();
    let auth = format!("Bearer {ADMIN}");
    let mut r = match (method, body) {
        ("PUT", Some(body)) => agent
            .put(url)
            .header("authorization", &auth)
            .send_json(body),
        ("PUT", None) => agent.put(url).header("authorization", &auth).send_empty(),
        ("GET", _) => agent.get(url).header("authorization", &auth).call(),
        ("DELETE", _) => agent.delete(url).header("authorization", &auth).call(),
        (other, _) => panic!("no {other} here"),
    }
    .expect("the admin API answers");
    let status = r.status().as_u16();
    (status, r.body_mut().read_json().unwrap_or_default())
}

fn stored_count(s: &Server, event_type: &str) -> usize {
    admin_get(&format!("{}/api/events?type={event_type}", s.base))["data"]
        .as_array()
        .map_or(0, Vec::len)
}

fn scrape(s: &Server) -> String {
    agent()
        .get(&format!("{}/metrics", s.base))
        .call()
        .expect("metrics")
        .body_mut()
        .read_to_string()
        .expect("text")
}

fn rejected(metrics: &str, event_type: &str, reason: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("nexus_events_rejected_total{")
                && l.contains(&format!("event_type=\"{event_type}\""))
                && l.contains(&format!("reason=\"{reason}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

const PAYMENT_SCHEMA: &str = r#"{
  "type": "object",
  "required": ["order", "amount", "currency"],
  "properties": {
    "order": {"type": "string", "pattern": "^o-[0-9]+$"},
    "amount": {"type": "integer", "minimum": 1},
    "currency": {"enum": ["EUR", "USD"]},
    "lines": {"type": "array", "items": {"type": "object", "required": ["sku"],
      "properties": {"sku": {"type": "string"}}}}
  }
}"#;

const CONFIG: &str = r#"
[[nodes]]
name = "flowpay"
publish = ["PAYMENT_*", "ORDER_*"]

[[event_types]]
name = "PAYMENT_RECEIVED"
description = "A customer paid; the amount is in minor units."
schema = "schemas/payment_received.json"
examples = [ { order = "o-1", amount = 2500, currency = "EUR" } ]

[[event_types]]
name = "PAYMENT_LEGACY"
schema = { type = "object" }
deprecated = true
"#;

fn good() -> Value {
    json!({"order": "o-1", "amount": 2500, "currency": "EUR", "lines": [{"sku": "a"}]})
}

fn with(key: &str, value: Value) -> Value {
    let mut payload = good();
    payload[key] = value;
    payload
}

/// The config file in a directory of its own, its schema beside it: the path is relative to
/// the config file, not to the working directory.
fn declared_server(env: &[(&str, &str)]) -> Server {
    let mut all = vec![("NEXUS_CONFIG", "etc/nexus.toml")];
    all.extend_from_slice(env);
    start(
        &all,
        &[
            ("etc/nexus.toml", CONFIG),
            ("etc/schemas/payment_received.json", PAYMENT_SCHEMA),
        ],
    )
}

#[test]
fn config_declared_types_guard_every_ingress_route() {
    let mut s = declared_server(&[]);
    let typed = |payload: Value| json!({"type": "PAYMENT_RECEIVED", "payload": payload});

    let ok = publish_json(&s.base, &typed(good()));
    assert_eq!(ok.0, 202, "{}", ok.2);
    assert_eq!(ok.1, None, "not deprecated");

    // Every kind of failure, each with the pointer of the first failing value.
    let mut missing = good();
    missing.as_object_mut().expect("object").remove("currency");
    for (payload, pointer) in [
        (with("amount", json!("2500")), "/amount"),
        (missing, ""),
        (with("order", json!("x-1")), "/order"),
        (with("currency", json!("GBP")), "/currency"),
        (
            with("lines", json!([{"sku": "a"}, {"sku": 7}])),
            "/lines/1/sku",
        ),
        (json!("not an object"), ""),
    ] {
        assert_payload_refused(&publish_json(&s.base, &typed(payload)), pointer);
    }
    // A payload left out is `{}`: it lacks the required keys.
    assert_payload_refused(
        &publish_json(&s.base, &json!({"type": "PAYMENT_RECEIVED"})),
        "",
    );

    // CloudEvents, structured and binary.
    let structured = json!({"specversion": "1.0", "id": "ce-1", "source": "flowpay",
        "type": "PAYMENT_RECEIVED", "data": with("amount", json!(0))});
    assert_payload_refused(
        &signed(
            &s.base,
            "/events",
            "flowpay",
            "application/cloudevents+json",
            &[],
            &structured.to_string(),
        ),
        "/amount",
    );
    let binary = signed(
        &s.base,
        "/events",
        "flowpay",
        "application/json",
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", "ce-2"),
            ("ce-source", "flowpay"),
            ("ce-type", "PAYMENT_RECEIVED"),
        ],
        &with("currency", json!("XXX")).to_string(),
    );
    assert_payload_refused(&binary, "/currency");
    let binary_ok = signed(
        &s.base,
        "/events",
        "flowpay",
        "application/json",
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", "ce-3"),
            ("ce-source", "flowpay"),
            ("ce-type", "PAYMENT_RECEIVED"),
        ],
        &good().to_string(),
    );
    assert_eq!(binary_ok.0, 202, "{}", binary_ok.2);

    // `/webhook/flowpay` maps to PAYMENT_RECEIVED by default.
    let hooked = signed(
        &s.base,
        "/webhook/flowpay",
        "flowpay",
        "application/json",
        &[],
        &with("lines", json!([{"qty": 1}])).to_string(),
    );
    assert_payload_refused(&hooked, "/lines/0");

    // A batch with one failing event stores nothing and names its index.
    let before = stored_count(&s, "PAYMENT_RECEIVED");
    let batch = json!({"events": [
        typed(good()),
        typed(with("amount", json!(-5))),
        {"type": "ORDER_PLACED", "payload": {"free": "form"}},
    ]});
    let refused = signed(
        &s.base,
        "/events/batch",
        "flowpay",
        "application/json",
        &[],
        &batch.to_string(),
    );
    assert_payload_refused(&refused, "/amount");
    assert_eq!(refused.2["error"]["details"]["index"], 1, "{}", refused.2);
    assert_eq!(
        stored_count(&s, "PAYMENT_RECEIVED"),
        before,
        "nothing stored"
    );
    assert_eq!(stored_count(&s, "ORDER_PLACED"), 0, "nothing stored");

    // A deprecated type is accepted and says so, in a batch too.
    let legacy = publish_json(&s.base, &json!({"type": "PAYMENT_LEGACY", "payload": {}}));
    assert_eq!(
        (legacy.0, legacy.1.as_deref()),
        (202, Some("true")),
        "{}",
        legacy.2
    );
    let mixed = json!({"events": [typed(good()), {"type": "PAYMENT_LEGACY", "payload": {}}]});
    let mixed = signed(
        &s.base,
        "/events/batch",
        "flowpay",
        "application/json",
        &[],
        &mixed.to_string(),
    );
    assert_eq!(
        (mixed.0, mixed.1.as_deref()),
        (202, Some("true")),
        "{}",
        mixed.2
    );

    // Declared in the config file: the API may read but not change or delete it.
    let url = format!("{}/api/event-types/PAYMENT_RECEIVED", s.base);
    let (status, shown) = admin("GET", &url, None);
    assert_eq!(status, 200, "{shown}");
    assert_eq!(
        shown["data"]["description"],
        "A customer paid; the amount is in minor units."
    );
    assert_eq!(shown["data"]["examples"][0]["amount"], 2500);
    assert_eq!(shown["data"]["schema"]["required"][1], "amount");
    let (status, body) = admin("PUT", &url, Some(&json!({"description": "mine now"})));
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &json!("CONFLICT")),
        "{body}"
    );
    let (status, body) = admin("DELETE", &url, None);
    assert_eq!(status, 409, "{body}");

    let metrics = scrape(&s);
    // 7 refused single events, the CloudEvents two, the webhook and the batch.
    assert_eq!(
        rejected(&metrics, "PAYMENT_RECEIVED", "schema"),
        11,
        "{metrics}"
    );
    assert_eq!(terminate(&mut s.child).code(), Some(0));
}

#[test]
fn the_admin_api_declares_replaces_and_deletes_types() {
    let mut s = start(&[], &[]);
    let url = |name: &str| format!("{}/api/event-types/{name}", s.base);
    let declared = json!({
        "description": "Minted.",
        "schema": {"type": "object", "required": ["mint_id"],
            "properties": {"mint_id": {"type": "string"}}},
        "examples": [{"mint_id": "m-1"}],
    });
    let (status, made) = admin("PUT", &url("MINT_CONFIRMED"), Some(&declared));
    assert_eq!(status, 201, "{made}");
    let data = &made["data"];
    assert_eq!(data["name"], "MINT_CONFIRMED");
    assert_eq!(data["deprecated"], false);
    assert_eq!(data["createdAt"], data["updatedAt"]);

    // Applied to the next publish at once.
    let minted = |payload: Value| {
        publish_json(
            &s.base,
            &json!({"type": "MINT_CONFIRMED", "payload": payload}),
        )
    };
    assert_payload_refused(&minted(json!({"mint_id": 5})), "/mint_id");
    assert_eq!(minted(json!({"mint_id": "m-2"})).0, 202);

    // Replaced as a whole: what the body leaves out takes its default.
    let (status, replaced) = admin(
        "PUT",
        &url("MINT_CONFIRMED"),
        Some(&json!({"deprecated": true})),
    );
    assert_eq!(status, 200, "{replaced}");
    assert_eq!(replaced["data"]["schema"], Value::Null);
    assert_eq!(replaced["data"]["examples"], json!([]));
    assert_eq!(replaced["data"]["createdAt"], data["createdAt"]);
    let after = minted(json!({"mint_id": 5}));
    assert_eq!(
        (after.0, after.1.as_deref()),
        (202, Some("true")),
        "{}",
        after.2
    );

    // Refusals name the field.
    for (name, body, field) in [
        ("bad%20name", json!({}), "name"),
        ("X", json!({"schema": {"type": "integr"}}), "schema"),
        ("X", json!({"schema": 7}), "schema"),
        (
            "X",
            json!({"schema": {"type": "integer"}, "examples": [1, "two"]}),
            "examples/1",
        ),
        ("X", json!({"colour": "red"}), "colour"),
        ("X", json!({"deprecated": "yes"}), "deprecated"),
    ] {
        let (status, body) = admin("PUT", &url(name), Some(&body));
        assert_eq!(status, 400, "{name}: {body}");
        assert_eq!(body["error"]["code"], "VALIDATION_ERROR", "{body}");
        assert_eq!(body["error"]["details"]["field"], field, "{body}");
    }
    assert_eq!(admin("GET", &url("X"), None).0, 404, "nothing was stored");

    // Listed by name, paged.
    assert_eq!(admin("PUT", &url("A_FIRST"), Some(&json!({}))).0, 201);
    let (status, page) = admin("GET", &format!("{}/api/event-types?limit=1", s.base), None);
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["data"][0]["name"], "A_FIRST");
    let cursor = page["meta"]["nextCursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let (_, page) = admin(
        "GET",
        &format!("{}/api/event-types?limit=1&cursor={cursor}", s.base),
        None,
    );
    assert_eq!(page["data"][0]["name"], "MINT_CONFIRMED");
    assert_eq!(page["meta"]["nextCursor"], Value::Null);
    let (status, body) = admin("GET", &format!("{}/api/event-types?limit=0", s.base), None);
    assert_eq!(
        (status, &body["error"]["details"]["field"]),
        (400, &json!("limit"))
    );

    // The AsyncAPI document (no token) follows the catalogue: one channel per declared type,
    // the deprecated one marked, the server named after the Host the caller reached.
    let doc: Value = agent()
        .get(&format!("{}/asyncapi.json", s.base))
        .call()
        .expect("answers")
        .body_mut()
        .read_json()
        .expect("json");
    assert_eq!(doc["asyncapi"], "3.0.0", "{doc}");
    let mut channels: Vec<&str> = doc["channels"]
        .as_object()
        .expect("channels")
        .keys()
        .map(String::as_str)
        .filter(|c| !c.starts_with('/'))
        .collect();
    channels.sort_unstable();
    assert_eq!(channels, ["A_FIRST", "MINT_CONFIRMED"], "{doc}");
    let minted = &doc["channels"]["MINT_CONFIRMED"]["messages"]["MINT_CONFIRMED"];
    assert_eq!(minted["deprecated"], true, "{minted}");
    let host = s.base.trim_start_matches("http://");
    let servers = doc["servers"].to_string();
    assert!(servers.contains(host), "{servers}");

    // Deleted once; events already stored are kept.
    let (status, body) = admin("DELETE", &url("MINT_CONFIRMED"), None);
    assert_eq!(
        (status, &body["data"]),
        (200, &json!({"deleted": 1})),
        "{body}"
    );
    assert_eq!(admin("DELETE", &url("MINT_CONFIRMED"), None).0, 404);
    assert_eq!(admin("GET", &url("MINT_CONFIRMED"), None).0, 404);
    assert_eq!(stored_count(&s, "MINT_CONFIRMED"), 2);
    let (status, _) = admin("GET", &format!("{}/api/event-types", s.base), None);
    assert_eq!(status, 200);
    let unauthorized = agent()
        .get(&format!("{}/api/event-types", s.base))
        .call()
        .expect("answers");
    assert_eq!(unauthorized.status().as_u16(), 401);
    assert_eq!(terminate(&mut s.child).code(), Some(0));
}

#[test]
fn with_declared_types_required_an_undeclared_type_is_refused() {
    let mut s = declared_server(&[("NEXUS_REQUIRE_DECLARED_TYPES", "true")]);
    let (status, _, body) =
        publish_json(&s.base, &json!({"type": "PAYMENT_UNKNOWN", "payload": {}}));
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "VALIDATION_ERROR");
    assert_eq!(body["error"]["details"]["field"], "type", "{body}");
    let batch = json!({"events": [
        {"type": "PAYMENT_RECEIVED", "payload": good()},
        {"type": "PAYMENT_UNKNOWN"},
    ]});
    let (status, _, body) = signed(
        &s.base,
        "/events/batch",
        "flowpay",
        "application/json",
        &[],
        &batch.to_string(),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error"]["details"],
        json!({"field": "type", "index": 1})
    );
    assert_eq!(
        publish_json(
            &s.base,
            &json!({"type": "PAYMENT_RECEIVED", "payload": good()})
        )
        .0,
        202
    );
    assert_eq!(stored_count(&s, "PAYMENT_RECEIVED"), 1);
    assert_eq!(rejected(&scrape(&s), "PAYMENT_UNKNOWN", "undeclared"), 2);
    assert_eq!(terminate(&mut s.child).code(), Some(0));
}

#[test]
fn a_reactor_whose_event_fails_its_schema_is_dead_lettered() {
    let (url, received) = receiver();
    let config = format!(
        "[[nodes]]\nname = \"flowpay\"\npublish = [\"PAYMENT_*\"]\n\n\
         [[event_types]]\nname = \"MINT_REQUESTED\"\n\
         schema = {{ type = \"object\", required = [\"mint_id\"] }}\n\n\
         [[reactors]]\nname = \"mint\"\non = \"PAYMENT_RECEIVED\"\n\
         http = {{ url = \"{url}\", timeout_ms = 5000 }}\nemit_on_success = \"MINT_REQUESTED\"\n"
    );
    let mut s = start(
        &[("NEXUS_CONFIG", "nexus.toml")],
        &[("nexus.toml", &config)],
    );
    let (status, _, body) = publish_json(
        &s.base,
        &json!({"type": "PAYMENT_RECEIVED", "id": "pay-1", "payload": {"amount": 5}}),
    );
    assert_eq!(status, 202, "{body}");
    received
        .recv_timeout(Duration::from_secs(20))
        .expect("the reactor's call");
    // The receiver answers 204 without a body: MINT_REQUESTED would carry `{}`, which lacks
    // mint_id. It is not stored; the delivery is a dead letter at once, saying why.
    let deadline = Instant::now() + Duration::from_secs(20);
    let dead = loop {
        let page = admin_get(&format!("{}/api/retry/dead-letters", s.base));
        if let Some(d) = page["data"].as_array().and_then(|l| l.first()).cloned() {
            break d;
        }
        assert!(Instant::now() < deadline, "no dead letter: {page}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(dead["reactor"], "mint", "{dead}");
    assert_eq!(dead["eventId"], "pay-1");
    assert_eq!(dead["attempts"], 1, "refused, not retried: {dead}");
    let error = dead["lastError"].as_str().unwrap_or_default();
    assert!(
        error.contains("MINT_REQUESTED") && error.contains("mint_id"),
        "{error}"
    );
    assert_eq!(stored_count(&s, "MINT_REQUESTED"), 0, "never stored");
    assert_eq!(rejected(&scrape(&s), "MINT_REQUESTED", "schema"), 1);
    assert_eq!(terminate(&mut s.child).code(), Some(0));
}

/// Two server processes on one PostgreSQL database: a type declared through one applies to
/// publishes on the other within a bounded time, and so does its deletion.
#[test]
fn on_postgres_a_type_declared_on_one_instance_guards_the_other() {
    let db = super::pg::TestDb::create();
    let mut one = start(&[("DATABASE_URL", db.url())], &[]);
    let mut two = start(&[("DATABASE_URL", db.url())], &[]);
    let url = format!("{}/api/event-types/PAYMENT_RECEIVED", one.base);
    let (status, body) = admin(
        "PUT",
        &url,
        Some(&json!({"schema": {"type": "object", "required": ["amount"]}})),
    );
    assert_eq!(status, 201, "{body}");
    let bound = Duration::from_secs(2);
    let started = Instant::now();
    let refused = loop {
        let answer = publish_json(
            &two.base,
            &json!({"type": "PAYMENT_RECEIVED", "payload": {}}),
        );
        if answer.0 == 400 {
            break answer;
        }
        assert_eq!(answer.0, 202, "{}", answer.2);
        assert!(
            started.elapsed() < bound,
            "not applied on the other instance within {bound:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_payload_refused(&refused, "");
    let (status, body) = admin("DELETE", &url, None);
    assert_eq!(status, 200, "{body}");
    let started = Instant::now();
    loop {
        let answer = publish_json(
            &two.base,
            &json!({"type": "PAYMENT_RECEIVED", "payload": {}}),
        );
        if answer.0 == 202 {
            break;
        }
        assert!(
            started.elapsed() < bound,
            "deletion not applied within {bound:?}: {}",
            answer.2
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(terminate(&mut one.child).code(), Some(0));
    assert_eq!(terminate(&mut two.child).code(), Some(0));
}
