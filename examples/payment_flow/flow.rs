//! The payment -> mint -> notify flow: a Nexus composed in-process from the library crates, a
//! fake FlowPay, Smart Factory and notifier on loopback, and four scenarios. Shared by
//! `examples/payment_flow` (which prints the timeline) and the integration test (which checks
//! the report).
#![allow(clippy::print_stdout, dead_code)]

use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use nexus_core::Bus;
use nexus_event::{Event, Timestamp, TypeFilter};
use nexus_outbound::{HttpClient, OutboundConfig};
use nexus_reactors::{DeliveryTarget, ReactorConfig, Reactors};
use nexus_resilience::{
    BreakerConfig, Breakers, RetryWorker, Schedule, SystemClock, WorkerConfig, WorkerHandle,
};
use nexus_store::{NewSubscription, SqliteStore, Subscriptions};
use nexus_transport::auth::{Node, Nodes, Secret, sign_nexus};
use nexus_transport::{App, AppConfig, WebhookMapping};
use serde_json::{Value, json};

pub const ADMIN_TOKEN: &str = "payment-flow-admin-token";
/// FlowPay signs its webhooks with this (the Nexus scheme).
pub const FLOWPAY_SECRET: &str = "whsec_Zmxvd3BheS1kZW1vLXNlY3JldC0wMTIzNDU2Nzg5";
/// The factory signs its MINT_CONFIRMED posts with this.
pub const FACTORY_SECRET: &str = "whsec_ZmFjdG9yeS1ub2RlLXNlY3JldC0wMTIzNDU2Nzg5";
/// Nexus signs the reactor's calls to the factory with this.
pub const FACTORY_HOOK_SECRET: &str = "whsec_ZmFjdG9yeS1ob29rLXNlY3JldC0wMTIzNDU2Nzg5";
/// Nexus signs deliveries to the notifier with this.
pub const NOTIFIER_SECRET: &str = "whsec_bm90aWZpZXItc3Vic2NyaXB0aW9uLXNlY3JldA==";

/// The reactor, exactly as it would be written under `[[reactors]]` in the config file.
pub fn mint_reactor(factory: &str) -> Value {
    json!({
        "name": "mint-on-payment",
        "on": "PAYMENT_RECEIVED",
        "when": { "/amount": { "gte": 1 } },
        "http": { "method": "POST", "url": format!("{factory}/mint"), "timeout_ms": 2000 },
        "emit_on_success": "MINT_REQUESTED",
        "emit_on_failure": "MINT_FAILED"
    })
}

/// What happened, when, printed as it goes when `echo` is on.
pub struct Timeline {
    started: Instant,
    echo: bool,
    lines: Mutex<Vec<String>>,
}

impl Timeline {
    pub fn new(echo: bool) -> Arc<Self> {
        Arc::new(Timeline {
            started: Instant::now(),
            echo,
            lines: Mutex::new(Vec::new()),
        })
    }

    pub fn log(&self, who: &str, what: impl Display) {
        let line = format!(
            "{:>7.3} s  {who:<9} {what}",
            self.started.elapsed().as_secs_f64()
        );
        if self.echo {
            println!("{line}");
        }
        if let Ok(mut lines) = self.lines.lock() {
            lines.push(line);
        }
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

/// Checks a Standard Webhooks signature independently of Nexus's own signing code: HMAC-SHA256
/// with the `whsec_` key's decoded bytes over `<id>.<timestamp>.<body>`, any of the
/// space-separated `v1,` signatures, and a timestamp within 5 minutes.
pub fn verify_standard(
    secret: &str,
    id: &str,
    timestamp: &str,
    body: &[u8],
    signatures: &str,
    now_secs: i64,
) -> bool {
    let key = match secret.strip_prefix("whsec_") {
        Some(b64) => match base64::engine::general_purpose::STANDARD.decode(b64) {
            Ok(k) => k,
            Err(_) => return false,
        },
        None => secret.as_bytes().to_vec(),
    };
    let Ok(ts) = timestamp.parse::<i64>() else {
        return false;
    };
    if (now_secs - ts).abs() > 300 {
        return false;
    }
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    let mut signed = Vec::with_capacity(id.len() + timestamp.len() + body.len() + 2);
    signed.extend_from_slice(id.as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(timestamp.as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(body);
    signatures
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .any(|sig| ring::hmac::verify(&key, &signed, &sig).is_ok())
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn signature_ok(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    verify_standard(
        secret,
        header(headers, "webhook-id"),
        header(headers, "webhook-timestamp"),
        body,
        header(headers, "webhook-signature"),
        Timestamp::now().as_unix_secs(),
    )
}

type Http = Client<HttpConnector, Full<Bytes>>;

fn http_client() -> Http {
    Client::builder(TokioExecutor::new()).build_http()
}

/// One HTTP call; answers the status and the JSON body (`Null` when it is not JSON).
pub async fn call(
    http: &Http,
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> Result<(u16, Value), String> {
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json");
    for (k, v) in headers {
        request = request.header(*k, v.as_str());
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = http
        .request(request)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("bound");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}")
}

/// How the fake factory answers `/mint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactoryMode {
    /// 202 with a mint id, then posts MINT_CONFIRMED back.
    Working,
    /// 500 for the next `n` calls, then working.
    FailNext(u32),
    /// 500 until told otherwise.
    Broken,
    /// 503: down for maintenance.
    Down,
}

struct FactoryState {
    mode: Mutex<FactoryMode>,
    calls: Mutex<HashMap<String, u32>>,
    bad_signatures: Mutex<u32>,
    nexus: Mutex<String>,
    timeline: Arc<Timeline>,
    http: Http,
}

/// The fake Smart Factory: takes signed mint requests, confirms them by publishing
/// MINT_CONFIRMED to Nexus.
pub struct Factory {
    pub url: String,
    state: Arc<FactoryState>,
}

impl Factory {
    pub async fn start(timeline: Arc<Timeline>) -> Factory {
        let state = Arc::new(FactoryState {
            mode: Mutex::new(FactoryMode::Working),
            calls: Mutex::new(HashMap::new()),
            bad_signatures: Mutex::new(0),
            nexus: Mutex::new(String::new()),
            timeline,
            http: http_client(),
        });
        let router = axum::Router::new()
            .route("/mint", post(mint))
            .with_state(Arc::clone(&state));
        Factory {
            url: serve(router).await,
            state,
        }
    }

    pub fn set_mode(&self, mode: FactoryMode) {
        if let Ok(mut m) = self.state.mode.lock() {
            *m = mode;
        }
        self.state.timeline.log("factory", format!("now {mode:?}"));
    }

    /// Mint calls received per payment id.
    pub fn calls(&self) -> HashMap<String, u32> {
        self.state
            .calls
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }

    pub fn bad_signatures(&self) -> u32 {
        self.state.bad_signatures.lock().map_or(0, |b| *b)
    }
}

async fn mint(
    State(state): State<Arc<FactoryState>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    if !signature_ok(FACTORY_HOOK_SECRET, &headers, &body) {
        if let Ok(mut b) = state.bad_signatures.lock() {
            *b += 1;
        }
        state
            .timeline
            .log("factory", "refused a call: bad signature");
        return (StatusCode::UNAUTHORIZED, "bad signature".into());
    }
    let Ok(payment) = serde_json::from_slice::<Event>(&body) else {
        return (StatusCode::BAD_REQUEST, "not an event".into());
    };
    let payment_id = payment.payload["payment_id"]
        .as_str()
        .unwrap_or("?")
        .to_owned();
    let attempt = {
        let mut calls = state.calls.lock().expect("calls lock");
        let n = calls.entry(payment_id.clone()).or_insert(0);
        *n += 1;
        *n
    };
    let mode = {
        let mut mode = state.mode.lock().expect("mode lock");
        let now = *mode;
        if let FactoryMode::FailNext(n) = now {
            *mode = if n <= 1 {
                FactoryMode::Working
            } else {
                FactoryMode::FailNext(n - 1)
            };
        }
        now
    };
    match mode {
        FactoryMode::FailNext(_) | FactoryMode::Broken => {
            state.timeline.log(
                "factory",
                format!("mint {payment_id} (call {attempt}): 500, the minting line is jammed"),
            );
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "minting line jammed".into(),
            )
        }
        FactoryMode::Down => {
            state.timeline.log(
                "factory",
                format!("mint {payment_id} (call {attempt}): 503, down for maintenance"),
            );
            (StatusCode::SERVICE_UNAVAILABLE, "maintenance".into())
        }
        FactoryMode::Working => {
            let mint_id = format!("mint-{payment_id}");
            state.timeline.log(
                "factory",
                format!(
                    "mint {payment_id} (call {attempt}): 202 accepted as {mint_id}, signature ok"
                ),
            );
            let confirm = Arc::clone(&state);
            let trigger = payment.id.to_string();
            let (pid, mid) = (payment_id.clone(), mint_id.clone());
            // The factory confirms a little later, as a node publishing to Nexus.
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let body = serde_json::to_vec(&json!({
                    "type": "MINT_CONFIRMED",
                    "payload": {"payment_id": pid, "mint_id": mid, "tokens": 1},
                    "correlation_id": trigger,
                }))
                .expect("serializes");
                let ts = Timestamp::now().as_unix_secs();
                let secret = Secret::parse(FACTORY_SECRET).expect("valid secret");
                let headers = [
                    ("x-nexus-node", "factory".to_owned()),
                    ("x-nexus-timestamp", ts.to_string()),
                    ("x-nexus-signature", sign_nexus(&secret, ts, &body)),
                ];
                let base = confirm.nexus.lock().map(|n| n.clone()).unwrap_or_default();
                match call(
                    &confirm.http,
                    "POST",
                    &format!("{base}/events"),
                    &headers,
                    body,
                )
                .await
                {
                    Ok((status, _)) => confirm.timeline.log(
                        "factory",
                        format!("posted MINT_CONFIRMED for {pid}: {status}"),
                    ),
                    Err(e) => confirm
                        .timeline
                        .log("factory", format!("cannot post MINT_CONFIRMED: {e}")),
                }
            });
            (
                StatusCode::ACCEPTED,
                json!({"mint_id": mint_id, "payment_id": payment_id}).to_string(),
            )
        }
    }
}

struct NotifierState {
    received: Mutex<Vec<(Event, bool)>>,
    timeline: Arc<Timeline>,
}

/// The fake notifier: a webhook subscriber to `MINT_*` that checks every signature.
pub struct Notifier {
    pub url: String,
    state: Arc<NotifierState>,
}

impl Notifier {
    pub async fn start(timeline: Arc<Timeline>) -> Notifier {
        let state = Arc::new(NotifierState {
            received: Mutex::new(Vec::new()),
            timeline,
        });
        let router = axum::Router::new()
            .route("/hooks", post(notify))
            .with_state(Arc::clone(&state));
        Notifier {
            url: format!("{}/hooks", serve(router).await),
            state,
        }
    }

    /// Every delivery so far, with whether its signature verified.
    pub fn received(&self) -> Vec<(Event, bool)> {
        self.state
            .received
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// The first delivered event of `event_type` whose payload (or, for MINT_FAILED, trigger's
    /// payload) names `payment_id`.
    pub fn find(&self, event_type: &str, payment_id: &str) -> Option<Event> {
        self.received().into_iter().map(|(e, _)| e).find(|e| {
            e.event_type.as_str() == event_type
                && (e.payload["payment_id"] == payment_id
                    || e.payload["event"]["payload"]["payment_id"] == payment_id)
        })
    }
}

async fn notify(
    State(state): State<Arc<NotifierState>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let verified = signature_ok(NOTIFIER_SECRET, &headers, &body);
    let Ok(event) = serde_json::from_slice::<Event>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let about = event.payload["payment_id"]
        .as_str()
        .or(event.payload["event"]["payload"]["payment_id"].as_str())
        .unwrap_or("?")
        .to_owned();
    state.timeline.log(
        "notifier",
        format!(
            "got {} for {about} (seq {}), signature {}",
            event.event_type,
            event.sequence,
            if verified { "verified" } else { "BAD" }
        ),
    );
    if let Ok(mut r) = state.received.lock() {
        r.push((event, verified));
    }
    if verified {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::UNAUTHORIZED
    }
}

/// Retry schedule of the demo: 300 ms, then 600 ms (three attempts), no jitter.
pub const SCHEDULE_MS: [u64; 2] = [300, 600];

/// Nexus composed in-process from the library crates, on a loopback port.
pub struct Nexus {
    pub base: String,
    pub store: Arc<SqliteStore>,
    pub breakers: Arc<Breakers>,
    worker: Option<WorkerHandle>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Nexus {
    pub async fn start(factory: &str, notifier: &str, timeline: Arc<Timeline>) -> Nexus {
        let dir = tempfile::tempdir().expect("a temporary data dir");
        let config: ReactorConfig =
            serde_json::from_value(mint_reactor(factory)).expect("a reactor entry");
        let reactors = Arc::new(
            Reactors::new(vec![
                config.build(FACTORY_HOOK_SECRET).expect("a valid reactor"),
            ])
            .expect("unique names"),
        );
        let bus = Bus::new();
        let store = Arc::new(
            SqliteStore::builder(dir.path())
                .bus(bus.clone())
                .router(Arc::clone(&reactors) as _)
                .open()
                .expect("the store opens"),
        );
        store
            .create_subscription(NewSubscription {
                url: notifier.to_owned(),
                events: vec![nexus_event::Pattern::new("MINT_*").expect("glob")],
                secret: NOTIFIER_SECRET.to_owned(),
                ordered: false,
                filter: None,
            })
            .await
            .expect("the notifier subscribes");
        // Every committed event, as the log numbers it.
        let mut committed = bus.subscribe(TypeFilter::all());
        let log = Arc::clone(&timeline);
        tokio::spawn(async move {
            while let Ok(e) = committed.recv().await {
                let cause = e
                    .correlation_id
                    .as_ref()
                    .map(|c| format!(", caused by {c}"))
                    .unwrap_or_default();
                log.log(
                    "nexus",
                    format!(
                        "committed #{} {} from {}{cause}",
                        e.sequence, e.event_type, e.source
                    ),
                );
            }
        });
        let breakers = Arc::new(Breakers::new(BreakerConfig {
            failure_threshold: 5,
            success_threshold: 2,
            reset_timeout: Duration::from_secs(2),
        }));
        let http = Arc::new(HttpClient::new(OutboundConfig::default()));
        let target = Arc::new(DeliveryTarget::new(
            Arc::clone(&store) as _,
            http,
            Arc::clone(&reactors),
        ));
        let schedule = Schedule::new(
            SCHEDULE_MS
                .iter()
                .map(|ms| Duration::from_millis(*ms))
                .collect(),
            0.0,
        )
        .expect("a valid schedule");
        let worker = RetryWorker::new(
            Arc::clone(&store) as _,
            target,
            Arc::new(SystemClock),
            WorkerConfig {
                schedule,
                ..WorkerConfig::default()
            },
        )
        .expect("a valid worker")
        .breakers(Arc::clone(&breakers))
        .spawn();
        let node = |name: &str, secret: &str, glob: &str| Node {
            name: name.into(),
            secret: Secret::parse(secret).expect("valid secret"),
            publish: TypeFilter::parse([glob]).expect("valid glob"),
        };
        let mut config = AppConfig::new(
            Nodes::configured([
                node("flowpay", FLOWPAY_SECRET, "PAYMENT_*"),
                node("factory", FACTORY_SECRET, "MINT_*"),
            ]),
            Secret::token(ADMIN_TOKEN),
        );
        config.webhooks = vec![WebhookMapping {
            node: "flowpay".into(),
            event_type: nexus_event::EventType::new("PAYMENT_RECEIVED").expect("type"),
            id_pointer: Some("/payment_id".into()),
        }];
        let app = App::new(Arc::clone(&store) as _, bus, Arc::clone(&breakers), config);
        app.lifecycle().set_ready();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let base = format!("http://{}", listener.local_addr().expect("bound"));
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(nexus_transport::serve(listener, app.router(), async move {
            let _ = stopped.await;
        }));
        timeline.log("nexus", format!("listening on {base}"));
        Nexus {
            base,
            store,
            breakers,
            worker: Some(worker),
            shutdown: Some(shutdown),
            _dir: dir,
        }
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        if let Some(w) = self.worker.take() {
            w.stop(Duration::from_secs(2)).await;
        }
    }
}

/// Waits up to `limit` for `check` to give something.
pub async fn wait_for<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "timed out after {} ms waiting for {what}",
                limit.as_millis()
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the four scenarios showed; the integration test checks it.
#[derive(Debug, Default)]
pub struct Report {
    /// Mint calls the factory got, per payment id.
    pub factory_calls: HashMap<String, u32>,
    /// Calls the factory refused for a bad signature.
    pub factory_bad_signatures: u32,
    /// Deliveries to the notifier, with whether each signature verified.
    pub notified: Vec<(Event, bool)>,
    /// The dead letter of the factory failing for good, as the admin API showed it.
    pub dead_letter: Value,
    /// `{"redriven": n}` of the redrive.
    pub redrive: Value,
    /// The factory's breaker while it was down.
    pub breaker_open: Value,
    /// The factory's breaker at the end.
    pub breaker_after: Value,
    /// `GET /api/retry/stats` at the end.
    pub stats_after: Value,
    /// Every event in the log at the end, in sequence order.
    pub log: Vec<Value>,
}

/// The flow's participants.
pub struct Flow {
    pub timeline: Arc<Timeline>,
    pub factory: Factory,
    pub notifier: Notifier,
    pub nexus: Nexus,
    http: Http,
}

const STEP: Duration = Duration::from_secs(20);

impl Flow {
    pub async fn start(echo: bool) -> Flow {
        let timeline = Timeline::new(echo);
        let factory = Factory::start(Arc::clone(&timeline)).await;
        let notifier = Notifier::start(Arc::clone(&timeline)).await;
        let nexus = Nexus::start(&factory.url, &notifier.url, Arc::clone(&timeline)).await;
        if let Ok(mut n) = factory.state.nexus.lock() {
            *n = nexus.base.clone();
        }
        Flow {
            timeline,
            factory,
            notifier,
            nexus,
            http: http_client(),
        }
    }

    fn say(&self, what: impl Display) {
        self.timeline.log("flow", what);
    }

    /// FlowPay reports a payment: its own JSON, signed the Nexus way, to `/webhook/flowpay`.
    pub async fn pay(&self, payment_id: &str, amount: u64) -> Result<Value, String> {
        let body = serde_json::to_vec(
            &json!({"payment_id": payment_id, "amount": amount, "currency": "EUR"}),
        )
        .map_err(|e| e.to_string())?;
        let ts = Timestamp::now().as_unix_secs();
        let secret = Secret::parse(FLOWPAY_SECRET).map_err(|e| e.to_string())?;
        let headers = [
            ("x-nexus-timestamp", ts.to_string()),
            ("x-nexus-signature", sign_nexus(&secret, ts, &body)),
        ];
        let url = format!("{}/webhook/flowpay", self.nexus.base);
        let (status, answer) = call(&self.http, "POST", &url, &headers, body).await?;
        self.timeline.log(
            "flowpay",
            format!("payment {payment_id} of {amount} EUR -> {status}"),
        );
        if status != 202 {
            return Err(format!("FlowPay's webhook got {status}: {answer}"));
        }
        Ok(answer["data"].clone())
    }

    /// An admin API call; answers the envelope's `data` (and `meta`).
    pub async fn admin(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let url = format!("{}{path}", self.nexus.base);
        let headers = [("authorization", format!("Bearer {ADMIN_TOKEN}"))];
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let (status, answer) = call(&self.http, method, &url, &headers, body).await?;
        if !(200..300).contains(&status) {
            return Err(format!("{method} {path} got {status}: {answer}"));
        }
        Ok(answer)
    }

    async fn confirmed(&self, payment_id: &str) -> Result<Event, String> {
        wait_for(
            STEP,
            &format!("MINT_CONFIRMED of {payment_id} at the notifier"),
            || async { self.notifier.find("MINT_CONFIRMED", payment_id) },
        )
        .await
    }

    async fn breaker(&self) -> Result<Value, String> {
        let list = self.admin("GET", "/api/breakers", None).await?;
        let origin = nexus_store::target_origin(&self.factory.url).map_err(|e| e.to_string())?;
        list["data"]
            .as_array()
            .and_then(|all| all.iter().find(|b| b["target"] == origin.as_str()).cloned())
            .ok_or_else(|| format!("no breaker for {origin} in {list}"))
    }

    /// Runs the four scenarios, in order.
    pub async fn run(&self) -> Result<Report, String> {
        let mut report = Report::default();

        self.say("1. The happy path: payment -> mint -> confirmation -> notifier");
        self.pay("pay-1001", 25).await?;
        self.confirmed("pay-1001").await?;

        self.say("2. The factory fails twice; the reactor's call is retried (300 ms, 600 ms)");
        self.factory.set_mode(FactoryMode::FailNext(2));
        self.pay("pay-1002", 40).await?;
        self.confirmed("pay-1002").await?;

        self.say("3. The factory fails for good: dead letter and MINT_FAILED, then a redrive");
        self.factory.set_mode(FactoryMode::Broken);
        self.pay("pay-1003", 15).await?;
        let failed = wait_for(STEP, "MINT_FAILED of pay-1003 at the notifier", || async {
            self.notifier.find("MINT_FAILED", "pay-1003")
        })
        .await?;
        self.say(format!("MINT_FAILED says: {}", failed.payload["error"]));
        // MINT_FAILED is emitted just before the delivery is moved to the dead letters.
        report.dead_letter = wait_for(STEP, "the dead letter of pay-1003", || async {
            let letters = self
                .admin("GET", "/api/retry/dead-letters", None)
                .await
                .ok()?;
            letters["data"]
                .as_array()
                .and_then(|l| l.iter().find(|d| d["eventId"] == "pay-1003").cloned())
        })
        .await?;
        self.say(format!(
            "operator sees dead letter {} of reactor {}: {} attempts, last error {}",
            report.dead_letter["id"],
            report.dead_letter["reactor"],
            report.dead_letter["attempts"],
            report.dead_letter["lastError"]
        ));
        self.factory.set_mode(FactoryMode::Working);
        report.redrive = self
            .admin(
                "POST",
                "/api/retry/dead-letters/redrive",
                Some(json!({"ids": [report.dead_letter["id"]]})),
            )
            .await?["data"]
            .clone();
        self.say(format!("operator redrives it: {}", report.redrive));
        self.confirmed("pay-1003").await?;

        self.say("4. The factory goes down: the breaker opens after 5 failures, then closes");
        self.factory.set_mode(FactoryMode::Down);
        let burst = ["pay-2001", "pay-2002", "pay-2003", "pay-2004"];
        for id in burst {
            self.pay(id, 10).await?;
        }
        report.breaker_open = wait_for(STEP, "the factory's breaker to open", || async {
            self.breaker().await.ok().filter(|b| b["state"] == "open")
        })
        .await?;
        self.say(format!(
            "breaker of {} is open after {} failures; next trial at {}; deliveries wait, parked",
            report.breaker_open["target"],
            report.breaker_open["consecutiveFailures"],
            report.breaker_open["nextTrialAt"]
        ));
        self.factory.set_mode(FactoryMode::Working);
        for id in burst {
            self.confirmed(id).await?;
        }
        report.breaker_after = self.breaker().await?;
        self.say(format!(
            "breaker is {} again ({} trip)",
            report.breaker_after["state"], report.breaker_after["trips"]
        ));

        // Let the last deliveries settle before the final look at the queue.
        let stats = wait_for(STEP, "an empty retry queue", || async {
            let s = self.admin("GET", "/api/retry/stats", None).await.ok()?;
            let d = &s["data"];
            (d["pending"] == 0 && d["inFlight"] == 0).then(|| d.clone())
        })
        .await?;
        report.stats_after = stats;
        let events = self.admin("GET", "/api/events?limit=1000", None).await?;
        report.log = events["data"].as_array().cloned().unwrap_or_default();
        report.factory_calls = self.factory.calls();
        report.factory_bad_signatures = self.factory.bad_signatures();
        report.notified = self.notifier.received();
        self.say(format!(
            "done: {} events in the log, {} deliveries to the notifier, retry queue {}",
            report.log.len(),
            report.notified.len(),
            report.stats_after
        ));
        Ok(report)
    }
}
