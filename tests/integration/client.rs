//! `nexus-client` against real servers on loopback: the publisher's signatures, retries and
//! typed errors, the admin client, and the subscriber, including across a `kill -9` and a
//! SIGTERM of the real `nexus-server` binary with no event lost or repeated.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nexus_client::{
    Admin, Backoff, DeclaredTypePut, Draft, Error, EventQuery, Incoming, NewSubscription,
    PageRequest, Publisher, Replay, RetryPolicy, Scheme, Selection, State, Subscriber,
    SubscriptionUpdate, WsEvent,
};
use nexus_event::{TypeFilter, WellKnown};
use nexus_transport::WsToken;
use nexus_transport::auth::Secret;
use serde_json::json;

use crate::support::catalogue::{CONFIG_TYPE, CatalogueStub};
use crate::support::process::{self, ServerProcess};
use crate::support::server::{ADMIN, SECRET, TestServer};

type Sleeps = Arc<Mutex<Vec<Duration>>>;

/// A publisher that records its waits instead of sleeping.
fn recording(base: &str, node: &str, secret: &str, attempts: u32) -> (Publisher, Sleeps) {
    let sleeps: Sleeps = Arc::default();
    let p = Publisher::builder(base, node, secret)
        .retry(RetryPolicy {
            max_attempts: attempts,
            ..RetryPolicy::default()
        })
        .sleeper({
            let sleeps = Arc::clone(&sleeps);
            move |d| sleeps.lock().expect("lock").push(d)
        })
        .build()
        .expect("valid publisher");
    (p, sleeps)
}

fn payment(id: &str, amount: u64) -> Draft {
    Draft::new(WellKnown::PaymentReceived)
        .id(id)
        .expect("valid id")
        .payload(json!({ "amount": amount }))
}

#[test]
fn publisher_signs_both_ways_sends_batches_and_a_repeat_is_a_duplicate() {
    let s = TestServer::start();
    let (flowpay, sleeps) = recording(&s.base, "flowpay", SECRET, 3);
    let first = flowpay.publish(payment("pay-1", 5)).expect("stored");
    assert_eq!(
        (first.id.as_str(), first.sequence, first.duplicate),
        ("pay-1", 1, false)
    );
    let again = flowpay
        .publish(payment("pay-1", 5))
        .expect("a repeat is success");
    assert_eq!((again.sequence, again.duplicate), (1, true));

    let notifier = Publisher::builder(&s.base, "notifier", "whsec_bm90aWZpZXItc2VjcmV0")
        .scheme(Scheme::StandardWebhooks)
        .build()
        .expect("valid");
    let n = notifier
        .publish(Draft::new(WellKnown::NotificationSent).payload(json!({"to": "a@b"})))
        .expect("stored");
    assert_eq!((n.sequence, n.duplicate), (2, false));
    assert_eq!(n.id.len(), 36, "a UUIDv7 given by the publisher: {}", n.id);

    let acks = flowpay
        .publish_batch(vec![
            payment("pay-2", 1),
            payment("pay-3", 2),
            payment("pay-1", 5),
        ])
        .expect("stored");
    let seen: Vec<(&str, u64, bool)> = acks
        .iter()
        .map(|a| (a.id.as_str(), a.sequence, a.duplicate))
        .collect();
    assert_eq!(
        seen,
        [("pay-2", 3, false), ("pay-3", 4, false), ("pay-1", 1, true)]
    );
    assert!(
        sleeps.lock().expect("lock").is_empty(),
        "nothing was retried"
    );

    let admin = Admin::new(&s.base, ADMIN).expect("valid");
    let stored = admin.event("pay-3").expect("stored");
    assert_eq!(
        (stored.source.as_str(), stored.payload["amount"].as_u64()),
        ("flowpay", Some(2))
    );
    assert_eq!(stored.event_type, WellKnown::PaymentReceived);
}

#[test]
fn publisher_returns_client_errors_at_once_with_the_servers_code_and_request_id() {
    let s = TestServer::start();
    let (flowpay, sleeps) = recording(&s.base, "flowpay", SECRET, 5);

    let e = flowpay
        .publish(Draft::new(WellKnown::MintConfirmed))
        .expect_err("flowpay may not mint");
    let api = e.api().expect("an API error");
    assert_eq!((api.status, api.code.as_str()), (403, "FORBIDDEN"));
    assert!(
        api.request_id.as_deref().is_some_and(|r| !r.is_empty()),
        "{api:?}"
    );

    let (wrong, _) = recording(&s.base, "flowpay", "not-the-secret", 5);
    let e = wrong.publish(payment("p", 1)).expect_err("bad signature");
    assert_eq!(
        e.api().map(|a| (a.status, a.code.as_str())),
        Some((401, "UNAUTHORIZED"))
    );

    let big = "x".repeat(70 * 1024);
    let e = flowpay
        .publish(Draft::new(WellKnown::PaymentReceived).payload(json!({ "note": big })))
        .expect_err("over the 64 KiB limit of the test server");
    assert_eq!(
        e.api().map(|a| (a.status, a.code.as_str())),
        Some((413, "PAYLOAD_TOO_LARGE"))
    );

    let e = flowpay
        .publish_batch(vec![payment("twice", 1), payment("twice", 1)])
        .expect_err("an id twice in a batch");
    let api = e.api().expect("an API error");
    assert_eq!((api.status, api.code.as_str()), (400, "VALIDATION_ERROR"));
    assert_eq!(
        api.details.as_ref().map(|d| d["index"].clone()),
        Some(json!(1))
    );

    assert!(
        sleeps.lock().expect("lock").is_empty(),
        "none of these is retried"
    );
    let page = Admin::new(&s.base, ADMIN)
        .expect("valid")
        .events(&EventQuery::default())
        .expect("listed");
    assert!(
        page.items.is_empty(),
        "nothing was stored: {:?}",
        page.items
    );
}

#[test]
fn publisher_retries_503_honouring_retry_after_then_gives_up_with_the_last_error() {
    let s = TestServer::start();
    s.app.lifecycle().start_draining();
    let (flowpay, sleeps) = recording(&s.base, "flowpay", SECRET, 3);
    let e = flowpay.publish(payment("late", 1)).expect_err("draining");
    let Error::GaveUp { attempts, last } = &e else {
        panic!("expected GaveUp, got {e:?}")
    };
    assert_eq!(*attempts, 3);
    let api = last.api().expect("the last answer");
    assert_eq!((api.status, api.code.as_str()), (503, "UNAVAILABLE"));
    assert_eq!(api.retry_after, Some(Duration::from_secs(1)));
    let sleeps = sleeps.lock().expect("lock").clone();
    assert_eq!(sleeps.len(), 2);
    assert!(
        sleeps.iter().all(|d| *d >= Duration::from_secs(1)),
        "Retry-After honoured: {sleeps:?}"
    );
}

#[test]
fn publisher_waits_out_a_429_and_then_succeeds() {
    let s = TestServer::start_with(|c| {
        c.rate_limit = nexus_transport::RateLimit {
            window: Duration::from_millis(1000),
            max_requests: 1,
        };
    });
    let waited: Sleeps = Arc::default();
    let flowpay = Publisher::builder(&s.base, "flowpay", SECRET)
        .retry(RetryPolicy {
            max_attempts: 5,
            backoff: Backoff::new(Duration::from_millis(50), Duration::from_millis(200))
                .expect("valid"),
            max_retry_after: Duration::from_secs(2),
        })
        .sleeper({
            let waited = Arc::clone(&waited);
            move |d| {
                waited.lock().expect("lock").push(d);
                std::thread::sleep(d);
            }
        })
        .build()
        .expect("valid");
    flowpay
        .publish(payment("a", 1))
        .expect("the first fits the bucket");
    let ack = flowpay
        .publish(payment("b", 1))
        .expect("stored after waiting");
    assert_eq!((ack.sequence, ack.duplicate), (2, false));
    let waited = waited.lock().expect("lock").clone();
    assert!(!waited.is_empty(), "the second met a 429");
    assert!(
        waited[0] >= Duration::from_secs(1),
        "Retry-After of the 429: {waited:?}"
    );
}

#[test]
fn admin_client_reads_the_log_manages_subscriptions_and_replays() {
    let s = TestServer::start();
    let (flowpay, _) = recording(&s.base, "flowpay", SECRET, 1);
    for i in 0..5 {
        flowpay
            .publish(payment(&format!("p-{i}"), i))
            .expect("stored");
    }
    let admin = Admin::new(&s.base, ADMIN).expect("valid");
    let first = admin
        .events(&EventQuery {
            after: Some(1),
            page: PageRequest {
                limit: Some(2),
                cursor: None,
            },
            ..EventQuery::default()
        })
        .expect("listed");
    assert_eq!(
        first.items.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        [2, 3]
    );
    let next = admin
        .events(&EventQuery {
            page: PageRequest {
                limit: Some(2),
                cursor: first.next_cursor.clone(),
            },
            ..EventQuery::default()
        })
        .expect("listed");
    assert_eq!(
        next.items.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        [4, 5]
    );
    let newest = admin
        .events(&EventQuery {
            until: Some(4),
            order: Some(nexus_client::EventOrder::Desc),
            page: PageRequest {
                limit: Some(2),
                cursor: None,
            },
            ..EventQuery::default()
        })
        .expect("listed newest first");
    assert_eq!(
        newest.items.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        [4, 3]
    );
    assert!(
        admin
            .reactors(&PageRequest::default())
            .expect("reactors")
            .items
            .is_empty()
    );

    let created = admin
        .create_subscription(&NewSubscription {
            url: "http://127.0.0.1:9/hook".into(),
            events: vec!["PAYMENT_*".into()],
            ..NewSubscription::default()
        })
        .expect("created");
    assert!(
        created
            .secret
            .as_deref()
            .is_some_and(|s| s.starts_with("whsec_"))
    );
    let listed = admin
        .subscriptions(&PageRequest::default())
        .expect("listed");
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].secret, None, "the secret is shown once");
    let updated = admin
        .update_subscription(
            &created.id,
            &SubscriptionUpdate {
                enabled: Some(false),
                ..SubscriptionUpdate::default()
            },
        )
        .expect("updated");
    assert!(!updated.enabled);
    // A filter goes through typed, set and cleared (API.md section 12).
    let filter =
        nexus_client::When::from_value(&json!({"/amount": {"gte": 10000}})).expect("a filter");
    let filtered = admin
        .update_subscription(
            &created.id,
            &SubscriptionUpdate {
                filter: Some(Some(filter.clone())),
                ..SubscriptionUpdate::default()
            },
        )
        .expect("filter set");
    assert_eq!(filtered.filter, Some(filter.clone()));
    assert_eq!(
        admin.subscription(&created.id).expect("read").filter,
        Some(filter)
    );
    let cleared = admin
        .update_subscription(
            &created.id,
            &SubscriptionUpdate {
                filter: Some(None),
                ..SubscriptionUpdate::default()
            },
        )
        .expect("filter cleared");
    assert_eq!(cleared.filter, None);
    let enqueued = admin
        .replay(&Replay {
            after: 2,
            until: Some(4),
            types: Some(vec!["PAYMENT_*".into()]),
            target: created.id.clone(),
        })
        .expect("replayed");
    assert_eq!(enqueued, 2, "sequences 3 and 4");
    assert!(admin.retry_stats().expect("stats").pending >= 2);
    assert!(
        admin
            .dead_letters(&PageRequest::default())
            .expect("listed")
            .items
            .is_empty()
    );
    assert_eq!(
        admin.redrive(&Selection::Ids(vec![1, 2])).expect("redrive"),
        0
    );
    assert_eq!(admin.purge(&Selection::All).expect("purge"), 0);
    assert!(
        admin
            .breakers(&PageRequest::default())
            .expect("listed")
            .items
            .is_empty()
    );
    let instances = admin.instances(&PageRequest::default()).expect("instances");
    assert_eq!(
        instances
            .items
            .iter()
            .map(|i| i.id.as_str())
            .collect::<Vec<_>>(),
        [s.store.instance()]
    );
    assert_eq!(instances.next_cursor, None);
    assert!(instances.items[0].last_seen_at >= instances.items[0].started_at);
    let e = admin
        .reset_breaker("http://127.0.0.1:9")
        .expect_err("no breaker");
    assert_eq!(e.api().map(|a| a.status), Some(404));
    assert_eq!(admin.delete_subscription(&created.id).expect("deleted"), 1);
    let e = admin.subscription(&created.id).expect_err("gone");
    assert_eq!(
        e.api().map(|a| (a.status, a.code.as_str())),
        Some((404, "NOT_FOUND"))
    );
    assert_eq!(admin.health().expect("health")["status"], "ok");
    assert!(admin.ready().expect("ready"));

    let wrong = Admin::new(&s.base, "not-the-token").expect("valid");
    let e = wrong.events(&EventQuery::default()).expect_err("refused");
    assert_eq!(
        e.api().map(|a| (a.status, a.code.as_str())),
        Some((401, "UNAUTHORIZED"))
    );
}

/// The catalogue calls against the stand-in of API.md section 11 (`support::catalogue`): the
/// server's own `/api/event-types` handlers come with the catalogue itself.
#[test]
fn admin_client_manages_the_event_type_catalogue_and_checks_drafts_locally() {
    let stub = CatalogueStub::start();
    let admin = Admin::new(&stub.base, ADMIN).expect("valid");
    let schema = json!({
        "type": "object",
        "required": ["order", "amount"],
        "properties": {
            "order": { "type": "string" },
            "amount": { "type": "integer", "minimum": 1 },
            "currency": { "enum": ["EUR", "USD"] }
        }
    });
    let body = DeclaredTypePut {
        description: "A customer paid.".into(),
        schema: Some(schema.clone()),
        examples: vec![json!({"order": "o-1", "amount": 2500, "currency": "EUR"})],
        deprecated: false,
    };
    let first = admin
        .put_event_type("PAYMENT_RECEIVED", &body)
        .expect("declared");
    assert!(first.created);
    assert_eq!(first.event_type.schema.as_ref(), Some(&schema));
    let again = admin
        .put_event_type(
            "PAYMENT_RECEIVED",
            &DeclaredTypePut {
                deprecated: true,
                ..body.clone()
            },
        )
        .expect("replaced");
    assert!(!again.created);
    assert!(again.event_type.deprecated);
    assert_eq!(again.event_type.created_at, first.event_type.created_at);
    admin
        .put_event_type("legacy.order:v1", &DeclaredTypePut::default())
        .expect("a type without a schema");

    // Paging: one at a time, by name, until the cursor runs out.
    let mut names = Vec::new();
    let mut page = PageRequest {
        limit: Some(1),
        cursor: None,
    };
    loop {
        let listed = admin.event_types(&page).expect("a page");
        assert!(listed.items.len() <= 1);
        names.extend(listed.items.into_iter().map(|t| t.name));
        match listed.next_cursor {
            Some(cursor) => page.cursor = Some(cursor),
            None => break,
        }
    }
    assert_eq!(names, [CONFIG_TYPE, "PAYMENT_RECEIVED", "legacy.order:v1"]);
    assert_eq!(names, stub.names());
    let too_long = admin
        .event_types(&PageRequest {
            limit: Some(1001),
            cursor: None,
        })
        .expect_err("limit");
    assert_eq!(
        too_long.api().map(|a| (a.status, a.code.as_str())),
        Some((400, "VALIDATION_ERROR"))
    );

    let got = admin.event_type("legacy.order:v1").expect("declared");
    assert_eq!((got.schema, got.examples.len()), (None, 0));
    let missing = admin.event_type("NOPE").expect_err("unknown");
    assert_eq!(missing.api().map(|a| a.status), Some(404));

    // Refusals carry the field.
    let field = |e: Error| {
        let api = e.api().expect("an API error").clone();
        (
            api.status,
            api.details
                .and_then(|d| d["field"].as_str().map(str::to_owned)),
        )
    };
    let bad_schema = DeclaredTypePut {
        schema: Some(json!({"type": "no-such-type"})),
        ..DeclaredTypePut::default()
    };
    let e = admin
        .put_event_type("BAD", &bad_schema)
        .expect_err("schema");
    assert_eq!(field(e), (400, Some("schema".into())));
    let bad_example = DeclaredTypePut {
        examples: vec![json!({"order": "o-1", "amount": 1}), json!({"amount": 0})],
        ..body.clone()
    };
    let e = admin
        .put_event_type("BAD", &bad_example)
        .expect_err("example");
    assert_eq!(field(e), (400, Some("examples/1".into())));
    for e in [
        admin
            .put_event_type(CONFIG_TYPE, &body)
            .expect_err("config"),
        admin.delete_event_type(CONFIG_TYPE).expect_err("config"),
    ] {
        assert_eq!(
            e.api().map(|a| (a.status, a.code.as_str())),
            Some((409, "CONFLICT"))
        );
    }
    let e = Admin::new(&stub.base, "not-the-token")
        .expect("valid")
        .event_types(&PageRequest::default())
        .expect_err("wrong token");
    assert_eq!(e.api().map(|a| a.status), Some(401));

    // A draft checked against the fetched schema before it is sent.
    let fetched = admin
        .payload_schema("PAYMENT_RECEIVED")
        .expect("fetched")
        .expect("it has a schema");
    Draft::new(WellKnown::PaymentReceived)
        .payload(json!({"order": "o-9", "amount": 10}))
        .check(&fetched)
        .expect("valid");
    let refused = Draft::new(WellKnown::PaymentReceived)
        .payload(json!({"order": "o-9", "amount": 0, "currency": "GBP"}))
        .check(&fetched)
        .expect_err("two violations");
    let (pointer, errors) = refused.schema_violations().expect("violations");
    assert_eq!(pointer, "/amount");
    let pointers: Vec<&str> = errors.iter().map(|e| e.pointer.as_str()).collect();
    assert_eq!(pointers, ["/amount", "/currency"]);
    assert!(
        admin
            .payload_schema("legacy.order:v1")
            .expect("fetched")
            .is_none(),
        "no schema: nothing to check"
    );

    assert_eq!(
        admin
            .delete_event_type("PAYMENT_RECEIVED")
            .expect("deleted"),
        1
    );
    let gone = admin
        .delete_event_type("PAYMENT_RECEIVED")
        .expect_err("gone");
    assert_eq!(gone.api().map(|a| a.status), Some(404));
    let e = admin
        .event_type("bad name")
        .expect_err("refused before sending");
    assert!(
        matches!(
            e,
            Error::Invalid {
                what: "event type",
                ..
            }
        ),
        "{e}"
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Takes events until `got` holds `want`, within 30 s.
fn collect(
    rt: &tokio::runtime::Runtime,
    sub: &mut Subscriber,
    got: &mut Vec<WsEvent>,
    want: usize,
    context: &dyn Fn() -> String,
) {
    rt.block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while got.len() < want {
            match tokio::time::timeout_at(deadline, sub.next()).await {
                Ok(Some(Incoming::Event(e))) => got.push(e),
                Ok(other) => panic!("unexpected {other:?}; {}", context()),
                Err(_) => panic!(
                    "only {} of {want} events within 30 s (state {:?}, {:?}); {}",
                    got.len(),
                    sub.state(),
                    sub.counters(),
                    context()
                ),
            }
        }
    });
}

/// Polls a condition every 10 ms for at most 30 s.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn subscriber_replays_then_follows_live_and_reports_scope_errors() {
    const DASH: &str = "dashboard-token-for-client-tests-0123";
    let s = TestServer::start_with(|c| {
        c.ws.tokens.push(WsToken {
            token: Secret::parse(DASH).expect("valid"),
            events: TypeFilter::parse(["PAYMENT_*"]).expect("valid"),
        });
    });
    let (flowpay, _) = recording(&s.base, "flowpay", SECRET, 1);
    for i in 1..=3 {
        flowpay
            .publish(payment(&format!("s-{i}"), i))
            .expect("stored");
    }
    let rt = runtime();
    let mut sub = rt
        .block_on(async {
            Subscriber::builder(&s.base, DASH)
                .events(["PAYMENT_*", "MINT_*"])
                .since(0)
                .connect()
        })
        .expect("valid");
    let first =
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), sub.next()).await });
    match first {
        Ok(Some(Incoming::ServerError { code, message })) => {
            assert_eq!(code, "FORBIDDEN");
            assert!(message.contains("MINT_*"), "{message}");
        }
        other => panic!("expected the scope error first, got {other:?}"),
    }
    let mut got = Vec::new();
    collect(&rt, &mut sub, &mut got, 3, &String::new);
    for i in 4..=5 {
        flowpay
            .publish(payment(&format!("s-{i}"), i))
            .expect("stored");
    }
    collect(&rt, &mut sub, &mut got, 5, &String::new);
    let seen: Vec<(u64, &str)> = got.iter().map(|e| (e.sequence, e.id.as_str())).collect();
    assert_eq!(
        seen,
        [(1, "s-1"), (2, "s-2"), (3, "s-3"), (4, "s-4"), (5, "s-5")]
    );
    assert_eq!(got[4].payload, json!({"amount": 5}));
    assert_eq!(got[4].event_type, "PAYMENT_RECEIVED");
    assert_eq!(sub.state(), State::Connected);
    assert_eq!(sub.last_sequence(), Some(5));
    let c = sub.counters();
    assert_eq!(
        (c.connects, c.reconnects, c.messages, c.errors),
        (1, 0, 5, 1)
    );
    rt.block_on(sub.close());
    assert_eq!(sub.state(), State::Closed);
}

#[test]
fn a_wrong_token_closes_the_subscriber_instead_of_retrying() {
    let s = TestServer::start();
    let rt = runtime();
    let mut sub = rt
        .block_on(async {
            Subscriber::builder(&s.base, "wrong-token")
                .events(["*"])
                .connect()
        })
        .expect("valid");
    let got =
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), sub.next()).await });
    assert!(
        matches!(&got, Ok(Some(Incoming::ServerError { code, .. })) if code == "UNAUTHORIZED"),
        "{got:?}"
    );
    let end =
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), sub.next()).await });
    assert!(matches!(end, Ok(None)), "closed: {end:?}");
    eventually("Closed", || sub.state() == State::Closed);
    assert_eq!(sub.counters().connects, 0);
}

/// A TCP relay to a loopback port that the test can close to new connections, so a
/// subscriber can be held offline while events are published: they can then only reach it by
/// the `since` replay of its next connection.
struct Gate {
    url: String,
    open: Arc<std::sync::atomic::AtomicBool>,
}

impl Gate {
    fn new(rt: &tokio::runtime::Runtime, upstream_port: u16) -> Gate {
        use std::sync::atomic::Ordering;
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let open = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let is_open = Arc::clone(&open);
        rt.spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                if !is_open.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is refused after accept
                }
                tokio::spawn(async move {
                    if let Ok(mut up) =
                        tokio::net::TcpStream::connect(("127.0.0.1", upstream_port)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                });
            }
        });
        Gate { url, open }
    }

    fn set_open(&self, open: bool) {
        self.open.store(open, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The acceptance test: a subscriber of the real server binary sees every event
/// exactly once, in sequence order, across a `kill -9` and a SIGTERM of the server and its
/// restart on the same address and data; publishing while it is down fails (retryably).
///
/// The subscriber reaches the server through a [`Gate`]: after the `kill -9` it is held
/// offline until the restarted server has stored 10 more events, so those can only come from
/// its resume with `since`; after the SIGTERM it reconnects as soon as it can.
#[test]
fn subscriber_loses_nothing_and_repeats_nothing_across_server_restarts() {
    let mut server = ServerProcess::start();
    let context = |server: &ServerProcess| format!("server log:\n{}", server.log());
    let publisher = Publisher::builder(&server.base, "flowpay", process::SECRET)
        .retry(RetryPolicy {
            max_attempts: 3,
            backoff: Backoff::new(Duration::from_millis(20), Duration::from_millis(100))
                .expect("valid"),
            max_retry_after: Duration::from_secs(1),
        })
        .timeout(Duration::from_secs(5))
        .build()
        .expect("valid");
    let rt = runtime();
    let gate = Gate::new(&rt, server.port);
    let mut sub = rt
        .block_on(async {
            Subscriber::builder(&gate.url, process::ADMIN)
                .events(["PAYMENT_*"])
                .since(0)
                .backoff(Duration::from_millis(20), Duration::from_millis(200))
                .ping_every(Duration::from_secs(1))
                .pong_within(Duration::from_secs(2))
                .connect()
        })
        .expect("valid");
    let publish_n = |n: usize, published: &mut Vec<String>| {
        for _ in 0..n {
            let i = published.len() + 1;
            let ack = publisher
                .publish(payment(&format!("r-{i}"), i as u64))
                .expect("stored");
            assert_eq!(ack.sequence, i as u64, "the log is gap-free");
            published.push(ack.id);
        }
    };
    let mut published = Vec::new();
    let mut got = Vec::new();

    publish_n(10, &mut published);
    collect(&rt, &mut sub, &mut got, 10, &|| context(&server));
    assert_eq!(sub.counters().connects, 1);

    // kill -9: no close frame, no drain; acknowledged events are on disk.
    gate.set_open(false);
    server.kill();
    eventually("the subscriber notices", || {
        sub.state() == State::Reconnecting
    });
    let e = publisher
        .publish(payment("while-down", 0))
        .expect_err("nobody listens");
    assert!(
        e.is_retryable() && matches!(e.last(), Error::Network { .. }),
        "{e:?}"
    );
    server.restart();
    publish_n(10, &mut published);
    assert_eq!(sub.counters().connects, 1, "still held offline by the gate");
    assert_eq!(sub.state(), State::Reconnecting);
    gate.set_open(true);
    collect(&rt, &mut sub, &mut got, 20, &|| context(&server));
    assert_eq!(sub.counters().reconnects, 1);

    // SIGTERM: the server drains and closes WebSockets with 1001.
    let status = server.terminate();
    assert!(
        status.success(),
        "a drained server exits 0: {status}; {}",
        context(&server)
    );
    eventually("the subscriber notices", || {
        sub.state() == State::Reconnecting
    });
    server.restart();
    publish_n(5, &mut published);
    collect(&rt, &mut sub, &mut got, 25, &|| context(&server));

    let sequences: Vec<u64> = got.iter().map(|e| e.sequence).collect();
    assert_eq!(
        sequences,
        (1..=25).collect::<Vec<u64>>(),
        "no gap, no duplicate, in order"
    );
    let ids: Vec<&str> = got.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(
        ids,
        published.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert!(
        !ids.contains(&"while-down"),
        "what could not be published was not stored"
    );
    let c = sub.counters();
    assert_eq!(c.messages, 25);
    assert!(c.reconnects >= 2, "{c:?}");
    assert_eq!(c.connects, c.reconnects + 1, "{c:?}");
    assert!(c.errors >= 2, "two lost connections at least: {c:?}");
    // Nothing more is on its way: a duplicate would have come right behind the last event.
    let extra =
        rt.block_on(async { tokio::time::timeout(Duration::from_millis(300), sub.next()).await });
    assert!(extra.is_err(), "nothing after the 25th: {extra:?}");
    rt.block_on(sub.close());
    assert_eq!(sub.state(), State::Closed);
}
