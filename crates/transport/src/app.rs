//! The service: shared state, configuration and the router that an embedding application can
//! mount or [`serve`](crate::serve).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware;
use axum::routing::{get, post};
use nexus_core::Bus;
use nexus_event::{EventType, WellKnown};
use nexus_resilience::Breakers;
use nexus_store::Store;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::auth::{Nodes, Secret};
use crate::ingress::WebhookMapping;
use crate::{admin, health, ingress, request_id};

/// Everything the HTTP layer is configured with. The binary builds it from the environment and
/// the config file; an embedding application builds it directly.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// Who may publish.
    pub nodes: Nodes,
    /// `NEXUS_ADMIN_TOKEN`.
    pub admin_token: Secret,
    /// `[[webhooks]]` mappings; `flowpay` and `factory` have defaults.
    pub webhooks: Vec<WebhookMapping>,
    /// `NEXUS_MAX_BODY_BYTES` (default 262144); a batch may be 16 times that.
    pub max_body_bytes: usize,
    /// `NEXUS_ENV=production`: private targets are refused unless allowed.
    pub production: bool,
    /// `NEXUS_ALLOW_PRIVATE_TARGETS`.
    pub allow_private_targets: bool,
    /// `ALLOWED_ORIGINS` for CORS; empty allows none.
    pub allowed_origins: Vec<String>,
    /// The version reported by `/health/detailed`.
    pub version: String,
    /// WebSocket tokens and limits.
    pub ws: crate::ws::WsConfig,
    /// Requests per client IP on ingress and `/ws`.
    pub rate_limit: crate::rate_limit::RateLimit,
    /// How long a request may take, reading its body included, before it is answered
    /// `503 UNAVAILABLE` (with `Retry-After`). Default 30 s. WebSocket connections are not
    /// limited by it once upgraded.
    pub request_timeout: std::time::Duration,
    /// The configured reactors, as `GET /api/reactors` lists them (read only). Default none.
    pub reactors: Vec<nexus_api::reactors::Reactor>,
    /// `NEXUS_UI`: serve the operator console under `/ui/` (default true); off, every `/ui`
    /// path answers `404`.
    pub ui: bool,
    /// `NEXUS_MAX_BODY_BYTES_IN_FLIGHT`: request body bytes (compressed and decompressed) held
    /// in memory at once across every ingress request. A request that would pass it waits up
    /// to 1 s for room, then is answered `503 UNAVAILABLE` with `Retry-After`. Default 64 MiB.
    pub max_body_bytes_in_flight: usize,
}

impl AppConfig {
    /// A configuration with the documented defaults, for these nodes and admin token.
    pub fn new(nodes: Nodes, admin_token: Secret) -> Self {
        AppConfig {
            nodes,
            admin_token,
            webhooks: Vec::new(),
            max_body_bytes: 262_144,
            production: false,
            allow_private_targets: false,
            allowed_origins: Vec::new(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            ws: crate::ws::WsConfig::default(),
            rate_limit: crate::rate_limit::RateLimit::default(),
            request_timeout: std::time::Duration::from_secs(30),
            reactors: Vec::new(),
            ui: true,
            max_body_bytes_in_flight: 64 << 20,
        }
    }

    /// The mapping of `/webhook/{node}`: configured, or the default for `flowpay` and `factory`.
    pub fn webhook_mapping(&self, node: &str) -> Option<WebhookMapping> {
        if let Some(m) = self.webhooks.iter().find(|m| m.node == node) {
            return Some(m.clone());
        }
        let default = match node {
            "flowpay" => WellKnown::PaymentReceived,
            "factory" => WellKnown::MintConfirmed,
            _ => return None,
        };
        Some(WebhookMapping {
            node: node.to_owned(),
            event_type: EventType::from(default),
            id_pointer: None,
        })
    }
}

/// Renders the Prometheus text exposition (installed by the binary).
pub type MetricsRenderer = Arc<dyn Fn() -> String + Send + Sync>;

/// Reports the database size in bytes, `None` when it cannot be read now (a server-side
/// database asked over the network).
pub type SizeProbe = Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<u64>> + Send>>
        + Send
        + Sync,
>;

/// Shared by every handler: one `Arc`, so the router's per-request clones of its services (each
/// layer and each route clones what it wraps) cost one reference count, not one per field.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// What [`AppState`] shares (its fields are the crate's own).
#[derive(Clone)]
pub struct Shared {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) bus: Bus,
    pub(crate) breakers: Arc<Breakers>,
    pub(crate) config: Arc<AppConfig>,
    pub(crate) lifecycle: Arc<Lifecycle>,
    pub(crate) metrics: Option<MetricsRenderer>,
    pub(crate) database_size: Option<SizeProbe>,
    pub(crate) store_kind: Option<nexus_api::health::StoreKind>,
    /// The event-type catalogue every publish is checked against (API.md section 11).
    pub(crate) catalog: Arc<nexus_catalog::Catalog>,
    /// The outbound client test sends go through (`POST /api/subscriptions/{id}/test`).
    pub(crate) outbound: Arc<nexus_outbound::HttpClient>,
    /// Room for request bodies in memory (`max_body_bytes_in_flight`).
    pub(crate) bodies: Arc<crate::intake::BodyBudget>,
    /// WebSocket event frames shared by every connection.
    pub(crate) frames: Arc<crate::ws::EventFrames>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    /// For the builder methods of [`App`], before the router shares the state.
    fn shared_mut(&mut self) -> &mut Shared {
        Arc::make_mut(&mut self.0)
    }
}

impl AppState {
    /// The event-type catalogue: [`nexus_catalog::Catalog::declared`] lists the declared
    /// types (what the AsyncAPI document describes).
    pub fn catalog(&self) -> &Arc<nexus_catalog::Catalog> {
        &self.catalog
    }
}

/// Readiness and drain state, plus counters the health endpoint reports.
#[derive(Debug)]
pub struct Lifecycle {
    started: Instant,
    ready: AtomicBool,
    draining: AtomicBool,
    shutdown: tokio::sync::watch::Sender<bool>,
    /// Open WebSocket connections.
    pub websocket_connections: AtomicU64,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            started: Instant::now(),
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            shutdown: tokio::sync::watch::channel(false).0,
            websocket_connections: AtomicU64::new(0),
        }
    }
}

impl Lifecycle {
    /// The store is open and the workers run.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Shutting down: readiness answers 503, publishing is refused, WebSocket connections are
    /// closed with 1001.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
        self.shutdown.send_replace(true);
    }

    /// Moves when the server starts draining.
    pub(crate) fn shutdown_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Whether `/health/ready` answers 200.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.draining.load(Ordering::Acquire)
    }

    /// Whether the server is shutting down.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Seconds since start.
    pub fn uptime_seconds(&self) -> u64 {
        self.started.elapsed().as_secs()
    }
}

impl AppState {
    pub(crate) fn accepting(&self) -> bool {
        !self.lifecycle.is_draining()
    }
}

/// The Nexus HTTP service.
///
/// ```no_run
/// # async fn run(store: std::sync::Arc<nexus_store::SqliteStore>) -> std::io::Result<()> {
/// use nexus_transport::{App, AppConfig, auth::{Nodes, Secret}};
/// let secret = Secret::parse("dev-secret").expect("valid");
/// let app = App::new(store, nexus_core::Bus::new(), Default::default(),
///     AppConfig::new(Nodes::Open(secret.clone()), secret));
/// app.lifecycle().set_ready();
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// nexus_transport::serve(listener, app.router(), std::future::pending()).await
/// # }
/// ```
#[derive(Clone)]
pub struct App {
    state: AppState,
}

impl App {
    /// The service over a store, the bus committed events are published on, and the breakers the
    /// retry worker uses. The event-type catalogue is read from the store in the background
    /// (undeclared types accepted); give one already read, or one that requires declared types,
    /// with [`App::catalog`].
    pub fn new(
        store: Arc<dyn Store>,
        bus: Bus,
        breakers: Arc<Breakers>,
        config: AppConfig,
    ) -> Self {
        let catalog = nexus_catalog::Catalog::start(Arc::clone(&store) as _, false);
        // Until the binary shares its delivery client: one with the same private-address guard
        // the configuration asks of subscription URLs.
        let outbound = Arc::new(nexus_outbound::HttpClient::new(
            nexus_outbound::OutboundConfig {
                refuse_private: config.production && !config.allow_private_targets,
                ..nexus_outbound::OutboundConfig::default()
            },
        ));
        let bodies = Arc::new(crate::intake::BodyBudget::new(
            config.max_body_bytes_in_flight,
        ));
        App {
            state: AppState(Arc::new(Shared {
                bodies,
                frames: Arc::new(crate::ws::EventFrames::new()),
                catalog,
                store,
                bus,
                breakers,
                outbound,
                config: Arc::new(config),
                lifecycle: Arc::default(),
                metrics: None,
                database_size: None,
                store_kind: None,
            })),
        }
    }

    /// Serves `/metrics` with this renderer (the binary installs the Prometheus recorder).
    pub fn metrics(mut self, render: MetricsRenderer) -> Self {
        self.state.shared_mut().metrics = Some(render);
        self
    }

    /// Reports the database size on `/health/detailed` and `nexus_database_size_bytes`.
    pub fn database_size(mut self, probe: SizeProbe) -> Self {
        self.state.shared_mut().database_size = Some(probe);
        self
    }

    /// Sends test events (`POST /api/subscriptions/{id}/test`) through `client`, the one
    /// deliveries use, so they share its timeout, connection pool and private-address guard.
    /// Without it the app makes its own, guarded as `production` and `allow_private_targets`
    /// say.
    pub fn outbound(mut self, client: Arc<nexus_outbound::HttpClient>) -> Self {
        self.state.shared_mut().outbound = client;
        self
    }

    /// Reports which store serves on `/health/detailed` (`store: {kind}`).
    pub fn store_kind(mut self, kind: nexus_api::health::StoreKind) -> Self {
        self.state.shared_mut().store_kind = Some(kind);
        self
    }

    /// Checks publishes against this event-type catalogue (over the same store), and serves it
    /// on `/api/event-types`.
    pub fn catalog(mut self, catalog: Arc<nexus_catalog::Catalog>) -> Self {
        // The one `new` started holds the store: let it go now, so the store can close.
        self.state.catalog.stop_now();
        self.state.shared_mut().catalog = catalog;
        self
    }

    /// What every handler shares: the store, the catalogue ([`AppState::catalog`]), the
    /// configuration.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Readiness and draining.
    pub fn lifecycle(&self) -> &Arc<Lifecycle> {
        &self.state.lifecycle
    }

    /// The router with every route and layer: mount it in another axum app, or serve it.
    pub fn router(&self) -> Router {
        let compress = SizeAbove::new(1024).and(NotForContentType::new("text/event-stream"));
        let cors = cors(&self.state.config.allowed_origins);
        let limiter = crate::rate_limit::Limiter::new(self.state.config.rate_limit);
        let limited = Router::new()
            .route("/events", post(ingress::publish))
            .route("/events/batch", post(ingress::publish_batch))
            .route("/webhook/{node}", post(ingress::webhook))
            .route("/ws", get(crate::ws::upgrade))
            .route_layer(middleware::from_fn_with_state(
                limiter,
                crate::rate_limit::layer,
            ));
        let console = if self.state.config.ui {
            crate::ui::routes()
        } else {
            Router::new()
        };
        Router::new()
            .merge(limited)
            .merge(admin::routes(&self.state))
            .merge(console)
            .route("/health", get(health::health))
            .route("/health/live", get(health::live))
            .route("/health/ready", get(health::ready))
            .route("/health/detailed", get(health::detailed))
            .route("/metrics", get(health::metrics))
            .route("/openapi.json", get(crate::openapi::serve))
            .route("/asyncapi.json", get(crate::asyncapi::serve))
            .fallback(health::not_found)
            .method_not_allowed_fallback(health::method_not_allowed)
            .with_state(self.state.clone())
            // Few layers, each doing several things: axum applies a layer to every route, and
            // each call clones the layers under it, so every layer costs on every request
            // (eight single-purpose layers here were a fifth of the server's CPU per publish).
            .layer(middleware::from_fn_with_state(
                self.state.config.request_timeout,
                guard,
            ))
            .layer(CompressionLayer::new().compress_when(compress))
            .layer(cors)
            .layer(middleware::from_fn(edge))
    }
}

/// The outermost layer: the request id ([`request_id::layer`]) and the security headers of
/// every answer (`X-Content-Type-Options`, `X-Frame-Options`, `Referrer-Policy`, and a
/// `Content-Security-Policy` on JSON answers that carry none of their own).
async fn edge(request: axum::extract::Request, next: middleware::Next) -> axum::response::Response {
    let mut response = request_id::layer(request, next).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| ct == "application/json")
        && !headers.contains_key(header::CONTENT_SECURITY_POLICY)
    {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        );
    }
    response
}

/// The layer around the routes: refuses a head over `NEXUS_MAX_HEADER_BYTES` with `431`
/// ([`head_too_large`]), answers a request that takes longer than `limit` with `503`
/// ([`timed_out`]), and turns a bare error answer into the envelope ([`envelope_bare_errors`]).
async fn guard(
    axum::extract::State(limit): axum::extract::State<std::time::Duration>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    if let Some(refused) = head_too_large(&request) {
        return refused;
    }
    let answered = async move { envelope_bare_errors(next.run(request).await).await };
    match tokio::time::timeout(limit, answered).await {
        Ok(response) => response,
        Err(_) => timed_out(limit),
    }
}

/// Refuses a request whose head is over `NEXUS_MAX_HEADER_BYTES` (measured by
/// [`serve_with`](crate::serve_with)) with `431` and the envelope.
fn head_too_large(request: &axum::extract::Request) -> Option<axum::response::Response> {
    use axum::response::IntoResponse;
    let too_large = request.extensions().get::<crate::serve::HeadTooLarge>()?;
    Some(
        crate::envelope::ApiError::headers_too_large(format!(
            "the request line and headers take {} bytes, more than the limit of {}",
            too_large.size, too_large.limit
        ))
        .into_response(),
    )
}

/// The net under every refusal: an error answer that is not JSON (a framework extractor's or a
/// layer's plain-text rejection that no handler turned into an [`ApiError`]) becomes the error
/// envelope with the same status and its text as the message. Handlers answer with
/// [`ApiError`] already; this keeps a new extractor or layer from ever leaking plain text.
async fn envelope_bare_errors(response: axum::response::Response) -> axum::response::Response {
    use axum::response::IntoResponse;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json") || ct.ends_with("+json"));
    if json {
        return response;
    }
    let (parts, body) = response.into_parts();
    // The texts of these rejections are short; more than 1 KiB is not one of them.
    let text = match axum::body::to_bytes(body, 1024).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
        Err(_) => String::new(),
    };
    if status.is_server_error() && status != axum::http::StatusCode::SERVICE_UNAVAILABLE {
        // The text of a server-side failure is for the log, not the caller.
        tracing::error!(status = status.as_u16(), error = %text, "a layer failed the request");
        return crate::envelope::ApiError::internal().into_response();
    }
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("the request was refused")
            .to_owned()
    } else {
        text
    };
    let mut enveloped = crate::envelope::ApiError::from_status(status, message).into_response();
    for name in [header::RETRY_AFTER, header::ALLOW, header::WWW_AUTHENTICATE] {
        if let Some(v) = parts.headers.get(&name) {
            enveloped.headers_mut().insert(name, v.clone());
        }
    }
    enveloped
}

/// The answer to a request that took longer than `limit` (tower-http's `TimeoutLayer` answers
/// an empty body); what it had started, such as a commit, still completes.
fn timed_out(limit: std::time::Duration) -> axum::response::Response {
    use axum::response::IntoResponse;
    crate::envelope::ApiError::unavailable(format!(
        "the request did not complete within {} ms",
        limit.as_millis()
    ))
    .into_response()
}

fn cors(origins: &[String]) -> CorsLayer {
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o.trim()).ok()),
        )
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("x-nexus-node"),
            HeaderName::from_static("x-nexus-timestamp"),
            HeaderName::from_static("x-nexus-signature"),
            HeaderName::from_static("webhook-id"),
            HeaderName::from_static("webhook-timestamp"),
            HeaderName::from_static("webhook-signature"),
        ])
        .expose_headers([HeaderName::from_static("x-request-id")])
}
