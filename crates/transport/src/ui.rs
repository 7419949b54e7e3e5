//! The operator console (API.md section 14): a single-page app served under `/ui/` from assets
//! embedded in the binary.
//!
//! `build.rs` gzips every file of `crates/transport/ui/` and names scripts and styles by a hash
//! of their content, so they are served `immutable` for a year; `index.html` keeps its name and
//! is revalidated (`no-cache` with an `ETag`). A client that takes gzip gets the stored bytes with
//! `Content-Encoding: gzip` (the compression layer leaves an encoded answer alone); any other gets
//! them inflated on the fly. Every answer under `/ui`, a `404` included, carries [`CSP`]: no
//! inline script or style, nothing from another origin. The console itself only calls the API
//! (sections 6, 7, 8, 11, 12) with the admin token the operator types, kept in the tab's
//! `sessionStorage`.

use std::io::Read as _;

use crate::extract::Path;
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::app::AppState;
use crate::envelope::ApiError;

/// One embedded file.
#[derive(Debug)]
pub(crate) struct Asset {
    /// Its path under `/ui/` (hashed for scripts and styles).
    pub(crate) path: &'static str,
    /// Its `Content-Type`.
    pub(crate) content_type: &'static str,
    /// Named by its content hash: cached for a year, never revalidated.
    pub(crate) immutable: bool,
    /// A strong `ETag` (a hash of the uncompressed bytes, quoted).
    pub(crate) etag: &'static str,
    /// Its uncompressed length in bytes.
    pub(crate) size: usize,
    /// The gzip of its bytes.
    pub(crate) gzip: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/ui_assets.rs"));

/// The `Content-Security-Policy` of every `/ui` answer: scripts, styles, fonts and API calls
/// (the WebSocket included: CSP 3 `'self'` covers `ws:`/`wss:` to the same host) from this
/// origin only, images from it or `data:`, no `<base>`, no framing.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "no-cache";

/// The console's routes (`GET` and `HEAD`), each answer with [`CSP`]. Mounted only when
/// [`AppConfig::ui`](crate::AppConfig::ui) is on; otherwise `/ui` paths fall through to the
/// `404` of unknown routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui", get(redirect))
        .route("/ui/", get(index))
        .route("/ui/{*path}", get(asset))
        .layer(middleware::map_response(with_csp))
}

async fn with_csp(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    response
}

/// `/ui` -> `/ui/`, so the page's relative asset names resolve under `/ui/`.
async fn redirect() -> Response {
    (
        StatusCode::MOVED_PERMANENTLY,
        [(header::LOCATION, HeaderValue::from_static("/ui/"))],
    )
        .into_response()
}

async fn index(headers: HeaderMap) -> Response {
    match find("index.html") {
        Some(a) => serve(a, &headers),
        None => ApiError::internal().into_response(),
    }
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    match find(&path) {
        Some(a) => serve(a, &headers),
        None => ApiError::not_found(format!("the console has no file /ui/{path}")).into_response(),
    }
}

fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// The answer for `asset`: `304` when `If-None-Match` names its tag, else its bytes, gzipped when
/// the client takes gzip.
fn serve(asset: &'static Asset, request: &HeaderMap) -> Response {
    let cache = if asset.immutable {
        IMMUTABLE
    } else {
        REVALIDATE
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(header::ETAG, HeaderValue::from_static(asset.etag));
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if if_none_match(request, asset.etag) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    if accepts_gzip(request) {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        return (headers, Body::from(asset.gzip)).into_response();
    }
    let mut plain = Vec::with_capacity(asset.size);
    match flate2::read::GzDecoder::new(asset.gzip).read_to_end(&mut plain) {
        Ok(_) => (headers, Body::from(plain)).into_response(),
        Err(e) => {
            tracing::error!(path = asset.path, error = %e, "an embedded console file does not inflate");
            ApiError::internal().into_response()
        }
    }
}

/// Whether `If-None-Match` names `etag` (weakly compared, as RFC 9110 asks for this header) or
/// is `*`.
fn if_none_match(request: &HeaderMap, etag: &str) -> bool {
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim() == "*" || bare(t) == etag)
}

/// Whether `Accept-Encoding` takes gzip: `gzip` (or `x-gzip`) with a non-zero `q`, or `*` with
/// a non-zero `q` when gzip is not named.
fn accepts_gzip(request: &HeaderMap) -> bool {
    let mut gzip = None;
    let mut any = None;
    for token in request
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        let mut parts = token.split(';');
        let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        match coding.as_str() {
            "gzip" | "x-gzip" => gzip = Some(q > 0.0),
            "*" => any = Some(q > 0.0),
            _ => {}
        }
    }
    gzip.or(any).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;
    use axum::http::Request;
    use nexus_store::SqliteStore;
    use std::sync::Arc;
    use tower::ServiceExt as _;

    use crate::auth::{Nodes, Secret};
    use crate::{App, AppConfig};

    struct Answer {
        status: StatusCode,
        headers: HeaderMap,
        body: Vec<u8>,
    }

    impl Answer {
        fn header(&self, name: header::HeaderName) -> &str {
            self.headers
                .get(&name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_else(|| panic!("no {name} header: {:?}", self.headers))
        }

        fn text(&self) -> String {
            String::from_utf8(self.body.clone()).expect("UTF-8")
        }
    }

    async fn call(ui: bool, path: &str, headers: &[(&str, &str)]) -> Answer {
        call_method(ui, "GET", path, headers).await
    }

    async fn call_method(ui: bool, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
        let dir = tempfile_dir();
        let store = Arc::new(SqliteStore::open(&dir).expect("open a store"));
        let secret = Secret::parse("a-test-secret").expect("valid");
        let mut config = AppConfig::new(Nodes::Open(secret.clone()), secret);
        config.ui = ui;
        let app = App::new(store, nexus_core::Bus::new(), Arc::default(), config);
        let mut request = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = app
            .router()
            .oneshot(request.body(Body::empty()).expect("a request"))
            .await
            .expect("infallible");
        let (parts, body) = response.into_parts();
        let body = to_bytes(body, usize::MAX).await.expect("a body").to_vec();
        let _ = std::fs::remove_dir_all(&dir);
        Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    fn tempfile_dir() -> std::path::PathBuf {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("nexus-ui-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        dir
    }

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .expect("gzip");
        out
    }

    /// The hashed name of the first module `index.html` loads.
    fn entry_script(index: &str) -> String {
        let at = index
            .find("<script type=\"module\" src=\"")
            .expect("a module script")
            + 27;
        index[at..index[at..].find('"').expect("closing quote") + at].to_owned()
    }

    #[tokio::test]
    async fn index_is_revalidated_with_an_etag_and_a_strict_csp() {
        let a = call(true, "/ui/", &[("accept-encoding", "gzip, br")]).await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.header(header::CONTENT_TYPE), "text/html; charset=utf-8");
        assert_eq!(a.header(header::CACHE_CONTROL), "no-cache");
        assert_eq!(a.header(header::CONTENT_ENCODING), "gzip");
        assert_eq!(a.header(header::VARY), "accept-encoding");
        assert_eq!(a.header(header::CONTENT_SECURITY_POLICY), CSP);
        assert_eq!(a.header(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        assert_eq!(a.header(header::X_FRAME_OPTIONS), "DENY");
        let html = String::from_utf8(gunzip(&a.body)).expect("UTF-8");
        assert!(
            html.contains("<main id=\"page\" data-ready=\"false\">"),
            "{html}"
        );
        assert!(!html.contains("<style"), "no inline style");
        for inline in [
            "<script>",
            "onclick",
            "onload",
            "onerror",
            "javascript:",
            "style=",
        ] {
            assert!(
                !html.contains(inline),
                "no inline script or style ({inline}): {html}"
            );
        }
        let etag = a.header(header::ETAG).to_owned();
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
        let again = call(true, "/ui/", &[("if-none-match", &etag)]).await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED);
        assert!(again.body.is_empty());
        assert_eq!(again.header(header::ETAG), etag);
        let weak = format!("\"other\", W/{etag}");
        let again = call(true, "/ui/", &[("if-none-match", &weak)]).await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED);
        let stale = call(true, "/ui/", &[("if-none-match", "\"0\"")]).await;
        assert_eq!(stale.status, StatusCode::OK);
    }

    #[tokio::test]
    async fn hashed_assets_are_immutable_and_inflated_for_clients_without_gzip() {
        let index = call(true, "/ui/", &[]).await;
        assert!(
            index.headers.get(header::CONTENT_ENCODING).is_none(),
            "no Accept-Encoding, no gzip"
        );
        let html = index.text();
        let script = entry_script(&html);
        assert!(
            script.starts_with("app.") && script.ends_with(".js") && script.len() == 15,
            "app.<8 hex>.js, got {script}"
        );
        assert!(html.contains("rel=\"modulepreload\""), "{html}");
        let gz = call(
            true,
            &format!("/ui/{script}"),
            &[("accept-encoding", "gzip")],
        )
        .await;
        assert_eq!(gz.status, StatusCode::OK);
        assert_eq!(
            gz.header(header::CACHE_CONTROL),
            "public, max-age=31536000, immutable"
        );
        assert_eq!(
            gz.header(header::CONTENT_TYPE),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(gz.header(header::CONTENT_ENCODING), "gzip");
        assert_eq!(gz.header(header::CONTENT_SECURITY_POLICY), CSP);
        let plain = call(
            true,
            &format!("/ui/{script}"),
            &[("accept-encoding", "gzip;q=0, deflate")],
        )
        .await;
        assert_eq!(plain.status, StatusCode::OK);
        assert!(plain.headers.get(header::CONTENT_ENCODING).is_none());
        assert_eq!(plain.body, gunzip(&gz.body), "the same bytes either way");
        let js = plain.text();
        assert!(js.contains("from './"), "imports stay relative: {js}");
        assert!(
            !js.contains("from './api.js'"),
            "imports name the hashed modules: {js}"
        );
        // Every module the entry imports is served under its hashed name.
        for import in js.split("from './").skip(1) {
            let name = &import[..import.find('\'').expect("closing quote")];
            let a = call(true, &format!("/ui/{name}"), &[]).await;
            assert_eq!(a.status, StatusCode::OK, "{name}");
            assert_eq!(
                a.header(header::CACHE_CONTROL),
                "public, max-age=31536000, immutable",
                "{name}"
            );
        }
        let head = call_method(true, "HEAD", &format!("/ui/{script}"), &[]).await;
        assert_eq!(head.status, StatusCode::OK);
        assert!(head.body.is_empty());
    }

    #[tokio::test]
    async fn ui_redirects_and_unknown_files_are_404_envelopes() {
        let r = call(true, "/ui", &[]).await;
        assert_eq!(r.status, StatusCode::MOVED_PERMANENTLY);
        assert_eq!(r.header(header::LOCATION), "/ui/");
        assert_eq!(r.header(header::CONTENT_SECURITY_POLICY), CSP);
        for path in ["/ui/nope.js", "/ui/app.js", "/ui/vendor/README.md"] {
            let a = call(true, path, &[]).await;
            assert_eq!(a.status, StatusCode::NOT_FOUND, "{path}");
            let body: serde_json::Value = serde_json::from_slice(&a.body).expect("JSON");
            assert_eq!(body["error"]["code"], "NOT_FOUND", "{path}");
            assert_eq!(a.header(header::CONTENT_SECURITY_POLICY), CSP, "{path}");
        }
        let licence = call(true, "/ui/vendor/LICENSE-preact.txt", &[]).await;
        assert_eq!(licence.status, StatusCode::OK);
        assert!(licence.text().contains("Jason Miller"));
        assert_eq!(licence.header(header::CACHE_CONTROL), "no-cache");
    }

    #[tokio::test]
    async fn nothing_is_served_when_the_console_is_off() {
        for path in [
            "/ui",
            "/ui/",
            "/ui/index.html",
            "/ui/vendor/LICENSE-htm.txt",
        ] {
            let a = call(false, path, &[]).await;
            assert_eq!(a.status, StatusCode::NOT_FOUND, "{path}");
            let body: serde_json::Value = serde_json::from_slice(&a.body).expect("JSON");
            assert_eq!(body["error"]["code"], "NOT_FOUND", "{path}");
        }
        let index = call(true, "/ui/index.html", &[]).await;
        assert_eq!(index.status, StatusCode::OK, "on, index.html is served too");
    }

    #[test]
    fn gzip_negotiation_follows_q_values() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_str(v).expect("ok"),
            );
            m
        };
        for (value, gzip) in [
            ("gzip", true),
            ("GZIP;q=0.5", true),
            ("br, gzip;q=0", false),
            ("*", true),
            ("*;q=0", false),
            ("gzip;q=0, *", false),
            ("identity", false),
            ("br", false),
            ("x-gzip", true),
        ] {
            assert_eq!(accepts_gzip(&h(value)), gzip, "{value}");
        }
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn every_asset_inflates_to_its_size_and_the_console_is_small() {
        let mut gzipped = 0;
        for a in ASSETS {
            assert_eq!(gunzip(a.gzip).len(), a.size, "{}", a.path);
            gzipped += a.gzip.len();
        }
        assert!(ASSETS.iter().any(|a| a.path == "index.html"));
        assert!(
            gzipped < 150 * 1024,
            "the console's assets take {gzipped} gzipped bytes"
        );
    }
}
