//! What the event-type catalogue adds to a publish (API.md section 11): a payload of about
//! 1 KB checked against a schema with 10 properties. Two figures from the same run: the check
//! alone (`Catalog::check`, what ingress calls before the commit), and whole publishes through
//! the HTTP service in process (signed `POST /events`, JSON, the catalogue, a SQLite commit
//! with `synchronous=NORMAL` so the disk's fsync does not drown the difference): the same
//! requests to the same store through two services, one whose catalogue declares the type with
//! that schema and one whose catalogue is empty, interleaved.
//! Target: the check costs at most 5 µs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use nexus_api::event_types::EventTypePut;
use nexus_catalog::Catalog;
use nexus_event::EventType;
use nexus_store::{Durability, SqliteStore, TypeOrigin};
use nexus_transport::auth::{Nodes, Secret};
use nexus_transport::{App, AppConfig};
use serde_json::{Value, json};
use tower::ServiceExt;

const SECRET: &str = "bench-secret-of-the-nodes-0123456789";

/// A schema with 10 properties: types, a pattern, an enum, bounds, a nested array of objects.
pub fn schema() -> Value {
    json!({
        "type": "object",
        "required": ["order", "amount", "currency", "customer", "lines"],
        "properties": {
            "order": {"type": "string", "pattern": "^o-[0-9]+$"},
            "amount": {"type": "integer", "minimum": 1},
            "currency": {"enum": ["EUR", "USD", "GBP"]},
            "customer": {"type": "string", "minLength": 1},
            "email": {"type": "string", "maxLength": 254},
            "paid_at": {"type": "string"},
            "method": {"enum": ["card", "transfer", "wallet"]},
            "captured": {"type": "boolean"},
            "note": {"type": "string", "maxLength": 2000},
            "lines": {"type": "array", "maxItems": 100, "items": {
                "type": "object", "required": ["sku", "qty"],
                "properties": {"sku": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}}
            }}
        }
    })
}

/// A payload of about 1 KB that matches [`schema`].
pub fn payload() -> Value {
    let lines: Vec<Value> = (0..12)
        .map(|i| json!({"sku": format!("sku-{i:04}"), "qty": i + 1}))
        .collect();
    json!({
        "order": "o-20260209",
        "amount": 2500,
        "currency": "EUR",
        "customer": "cus_0192f6c0a1b2c3d4",
        "email": "someone@example.com",
        "paid_at": "2026-02-09T20:30:00.123Z",
        "method": "card",
        "captured": true,
        "note": "x".repeat(520),
        "lines": lines,
    })
}

fn hmac_hex(body: &str, ts: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    let tag = ring::hmac::sign(&key, format!("{ts}.{body}").as_bytes());
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn request(body: &str) -> Request<Body> {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        .to_string();
    Request::post("/events")
        .header("content-type", "application/json")
        .header("x-nexus-node", "bench")
        .header("x-nexus-timestamp", &ts)
        .header(
            "x-nexus-signature",
            format!("sha256={}", hmac_hex(body, &ts)),
        )
        .body(Body::from(body.to_owned()))
        .expect("request")
}

async fn publish_n(router: &axum::Router, body: &str, n: usize) -> Duration {
    let started = Instant::now();
    for _ in 0..n {
        let answer = router
            .clone()
            .oneshot(request(body))
            .await
            .expect("infallible");
        assert_eq!(answer.status().as_u16(), 202);
    }
    started.elapsed() / n as u32
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Runs both measurements and prints them; answers whether the target was met (always true
/// for a smoke run, which judges nothing).
#[allow(clippy::print_stdout)]
pub fn run(quick: bool) -> bool {
    let (rounds, checks, publishes) = if quick {
        (3, 1_000, 20)
    } else {
        (21, 100_000, 2_000)
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(
        SqliteStore::builder(dir.path())
            .durability(Durability::Normal)
            .open()
            .expect("open store"),
    );
    let typed = EventType::new("PAYMENT_RECEIVED").expect("type");
    let catalog = rt.block_on(async {
        let catalog = Catalog::open(store.clone(), false)
            .await
            .expect("catalogue");
        let put = EventTypePut {
            schema: Some(schema()),
            examples: vec![payload()],
            ..EventTypePut::default()
        };
        catalog
            .put(typed.clone(), put, TypeOrigin::Api)
            .await
            .expect("declared");
        catalog
    });
    let payload = payload();
    let size = payload.to_string().len();

    // The check alone.
    let mut per_check = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        for _ in 0..checks {
            let accepted =
                catalog.check(std::hint::black_box(&typed), std::hint::black_box(&payload));
            assert!(accepted.is_ok());
        }
        per_check.push(started.elapsed() / checks as u32);
    }
    let check = median(per_check);

    // Whole publishes, declared against undeclared, interleaved.
    let secret = Secret::parse(SECRET).expect("secret");
    let empty_dir = tempfile::tempdir().expect("temp dir");
    let empty = rt.block_on(async {
        let nothing = Arc::new(SqliteStore::open(empty_dir.path()).expect("open empty store"));
        Catalog::open(nothing, false)
            .await
            .expect("empty catalogue")
    });
    let service = |catalog: &Arc<Catalog>| {
        let app = App::new(
            store.clone(),
            nexus_core::Bus::new(),
            Arc::default(),
            AppConfig::new(Nodes::Open(secret.clone()), secret.clone()),
        )
        .catalog(Arc::clone(catalog));
        app.lifecycle().set_ready();
        app.router()
    };
    let (checked, unchecked) = (service(&catalog), service(&empty));
    let body = json!({"type": "PAYMENT_RECEIVED", "payload": payload}).to_string();
    let (mut with, mut without) = (Vec::new(), Vec::new());
    rt.block_on(async {
        publish_n(&checked, &body, publishes / 10 + 1).await;
        publish_n(&unchecked, &body, publishes / 10 + 1).await;
        // Alternating which goes first, so neither side always runs on the larger log.
        for round in 0..rounds {
            if round % 2 == 0 {
                without.push(publish_n(&unchecked, &body, publishes).await);
                with.push(publish_n(&checked, &body, publishes).await);
            } else {
                with.push(publish_n(&checked, &body, publishes).await);
                without.push(publish_n(&unchecked, &body, publishes).await);
            }
        }
    });
    let (with, without) = (median(with), median(without));
    let added = with.as_secs_f64() - without.as_secs_f64();
    println!();
    println!(
        "catalogue: a {size}-byte payload against a 10-property schema, medians of {rounds} rounds"
    );
    if quick {
        println!("smoke run: figures are not measurements and targets are not judged");
    }
    let met = check <= Duration::from_micros(5);
    println!(
        "{:<52} {:>10.2} µs  {}",
        "check alone (Catalog::check)",
        check.as_secs_f64() * 1e6,
        if quick {
            ""
        } else if met {
            "<= 5 µs: ok"
        } else {
            "<= 5 µs: MISSED"
        }
    );
    println!(
        "{:<52} {:>10.2} µs",
        "publish, empty catalogue (nothing checked)",
        without.as_secs_f64() * 1e6
    );
    println!(
        "{:<52} {:>10.2} µs",
        "publish, type declared with the schema (checked)",
        with.as_secs_f64() * 1e6
    );
    println!(
        "{:<52} {:>10.2} µs  (noisier: two medians of whole publishes)",
        "difference",
        added * 1e6
    );
    quick || met
}
