//! A Nexus HTTP service on a loopback port of its own, on its own runtime, for tests that talk
//! to it like any outside client (blocking `ureq`, signed requests).

use std::sync::Arc;
use std::time::Duration;

use nexus_core::Bus;
use nexus_event::{Timestamp, TypeFilter};
use nexus_resilience::Breakers;
use nexus_store::{SqliteBuilder, SqliteStore};
use nexus_transport::auth::{Node, Nodes, Secret, sign_nexus, sign_standard};
use nexus_transport::{App, AppConfig};
use serde_json::Value;

pub const ADMIN: &str = "admin-token-for-tests-0123456789abcdef";
pub const SECRET: &str = "flowpay-secret-for-tests";

pub struct TestServer {
    pub base: String,
    pub store: Arc<SqliteStore>,
    pub bus: Bus,
    pub breakers: Arc<Breakers>,
    pub app: App,
    rt: tokio::runtime::Runtime,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The nodes of the tests: flowpay may publish payments, factory mints, notifier anything.
pub fn nodes() -> Nodes {
    let node = |name: &str, secret: &str, globs: &[&str]| Node {
        name: name.into(),
        secret: Secret::parse(secret).expect("valid secret"),
        publish: TypeFilter::parse(globs).expect("valid globs"),
    };
    Nodes::configured([
        node("flowpay", SECRET, &["PAYMENT_*"]),
        node("factory", "factory-secret", &["MINT_*"]),
        node("notifier", "whsec_bm90aWZpZXItc2VjcmV0", &["*"]),
    ])
}

impl TestServer {
    pub fn start() -> Self {
        Self::start_with(|_| {})
    }

    pub fn start_with(configure: impl FnOnce(&mut AppConfig)) -> Self {
        Self::start_with_store(|store| store, configure)
    }

    /// Like `start_with`, with store options of the test's own (a router, a writer queue).
    pub fn start_with_store(
        store_options: impl FnOnce(SqliteBuilder) -> SqliteBuilder,
        configure: impl FnOnce(&mut AppConfig),
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let bus = Bus::new();
        let store = Arc::new(
            store_options(SqliteStore::builder(dir.path()).bus(bus.clone()))
                .open()
                .expect("open store"),
        );
        let breakers = Arc::new(Breakers::default());
        let mut config = AppConfig::new(nodes(), Secret::parse(ADMIN).expect("valid"));
        config.max_body_bytes = 64 * 1024;
        configure(&mut config);
        let app = App::new(
            Arc::clone(&store) as _,
            bus.clone(),
            Arc::clone(&breakers),
            config,
        )
        .metrics(Arc::new(|| "# metrics of the test\n".to_owned()))
        .database_size({
            let store = Arc::clone(&store);
            Arc::new(move || {
                let size = store.size_bytes();
                Box::pin(async move { Some(size) })
            })
        });
        app.lifecycle().set_ready();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let router = app.router();
        rt.spawn(async move {
            let _ = nexus_transport::serve(listener, router, async move {
                let _ = rx.await;
            })
            .await;
        });
        TestServer {
            base: format!("http://{addr}"),
            store,
            bus,
            breakers,
            app,
            rt,
            shutdown: Some(tx),
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Runs a future on the server's runtime (to reach the store directly).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

pub fn now() -> i64 {
    Timestamp::now().as_unix_secs()
}

/// An answer: status, headers we look at, and the body as JSON (or `Null`).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
    pub text: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The envelope's `error.code`.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

fn answer(result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
    let mut response = result.expect("the request reached the server");
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
        text,
    }
}

/// A request builder over `ureq` that keeps the raw body, so it can be signed.
pub struct Call {
    method: &'static str,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl Call {
    pub fn new(method: &'static str, url: String) -> Self {
        Call {
            method,
            url,
            headers: Vec::new(),
            body: None,
        }
    }

    pub fn header(mut self, k: &str, v: impl Into<String>) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }

    pub fn json(self, body: &Value) -> Self {
        self.raw(
            "application/json",
            serde_json::to_vec(body).expect("serializes"),
        )
    }

    pub fn raw(mut self, content_type: &str, body: Vec<u8>) -> Self {
        self.headers
            .push(("content-type".into(), content_type.into()));
        self.body = Some(body);
        self
    }

    pub fn admin(self) -> Self {
        self.header("authorization", format!("Bearer {ADMIN}"))
    }

    /// Signs the body the Nexus way as `node` with `secret`.
    pub fn nexus_signed(self, node: &str, secret: &str) -> Self {
        let ts = now();
        let body = self.body.clone().unwrap_or_default();
        let sig = sign_nexus(&Secret::parse(secret).expect("valid"), ts, &body);
        self.header("x-nexus-node", node)
            .header("x-nexus-timestamp", ts.to_string())
            .header("x-nexus-signature", sig)
    }

    /// Signs the body the Standard Webhooks way.
    pub fn standard_signed(self, id: &str, secret: &str) -> Self {
        let ts = now();
        let body = self.body.clone().unwrap_or_default();
        let sig = sign_standard(&Secret::parse(secret).expect("valid"), id, ts, &body);
        self.header("webhook-id", id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sig)
    }

    pub fn send(self) -> Answer {
        let agent = agent();
        let body = self.body.unwrap_or_default();
        let request = ureq::http::Request::builder()
            .method(self.method)
            .uri(&self.url);
        let request = self
            .headers
            .iter()
            .fold(request, |r, (k, v)| r.header(k.as_str(), v.as_str()))
            .body(body)
            .expect("valid request");
        answer(agent.run(request))
    }
}

/// `POST /events` of a plain event, signed by flowpay.
pub fn publish(server: &TestServer, event: &Value) -> Answer {
    Call::new("POST", server.url("/events"))
        .json(event)
        .nexus_signed("flowpay", SECRET)
        .send()
}
