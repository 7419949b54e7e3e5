//! The pooled outbound HTTP client (API.md sections 4 and 10) shared by webhook deliveries and
//! reactor calls.
//!
//! [`HttpClient`] is one hyper client per process (keep-alive per origin, rustls with the ring
//! provider for `https://`), with a timeout per call, response bodies read up to a cap, and the
//! error reasons the retry worker needs. With the private-target guard on, it refuses an IP
//! literal before connecting and, through [`crate::guard`]'s resolver, a host that resolves to a
//! private address at connect time.

use nexus_api::retry_after::parse_retry_after;
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use nexus_resilience::{AttemptError, Reason};

use crate::guard::{GuardedResolver, PrivateAddress, find_private, is_private};
use crate::metric_names;

/// Outbound settings.
#[derive(Debug, Clone)]
pub struct OutboundConfig {
    /// How long one call may take, connection included, unless the call says otherwise.
    /// Default 10 s.
    pub timeout: Duration,
    /// The most of a response body read (the rest is ignored). Default 64 KiB.
    pub max_response_bytes: usize,
    /// How long a connection to a receiver is kept open unused before it is closed. Default
    /// 30 s: under the idle timeouts of common servers and load balancers (nginx 75 s, AWS
    /// load balancers 60 s), and the connections a burst opened are let go soon after it.
    pub idle_timeout: Duration,
    /// Refuse targets whose address is loopback, private or link-local, checked when connecting.
    /// Default `false` (development); the server turns it on in production unless
    /// `NEXUS_ALLOW_PRIVATE_TARGETS=true`.
    pub refuse_private: bool,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        OutboundConfig {
            timeout: Duration::from_secs(10),
            max_response_bytes: 64 * 1024,
            idle_timeout: Duration::from_secs(30),
            refuse_private: false,
        }
    }
}

type Https = hyper_rustls::HttpsConnector<HttpConnector<GuardedResolver>>;

/// The pooled outbound HTTP client shared by webhook deliveries and reactor calls.
pub struct HttpClient {
    client: Client<Https, Full<Bytes>>,
    config: OutboundConfig,
}

/// What one HTTP call came to.
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: u16,
    /// `Retry-After`, as a wait from now.
    pub retry_after: Option<Duration>,
    /// The body, empty when it was larger than the configured size or could not be read.
    pub body: Bytes,
    /// Whether `body` is the whole body as sent.
    pub complete: bool,
}

/// One outbound call.
#[derive(Debug)]
pub struct Call<'a> {
    /// `POST`, `PUT`, ...
    pub method: Method,
    /// The absolute URL.
    pub url: &'a str,
    /// Its origin, the label of the metrics and the breaker.
    pub target: &'a str,
    /// Extra headers (`content-type: application/json` and a user agent are always sent).
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Bytes,
    /// This call's timeout instead of the client's.
    pub timeout: Option<Duration>,
}

impl HttpClient {
    /// A client with its own connection pool.
    pub fn new(config: OutboundConfig) -> Self {
        let mut http =
            HttpConnector::new_with_resolver(GuardedResolver::new(config.refuse_private));
        http.enforce_http(false);
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        // The idle timeout needs the pool's timer: without one, hyper drops an expired
        // connection only when a checkout happens to reach it, so the connections a burst
        // opens would stay open.
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(config.idle_timeout)
            .pool_timer(TokioTimer::new())
            .pool_max_idle_per_host(256)
            .build(https);
        HttpClient { client, config }
    }

    /// The settings.
    pub fn config(&self) -> &OutboundConfig {
        &self.config
    }

    /// Makes one call, recording `nexus_http_calls_total` and `nexus_http_call_duration_seconds`
    /// under the target origin. A connection failure, a refused private address and a timeout
    /// are errors (`connect`, `private`, `timeout`); any answer is an [`Answer`].
    pub async fn send(&self, call: Call<'_>) -> Result<Answer, AttemptError> {
        let Call {
            method,
            url,
            target,
            headers,
            body,
            timeout,
        } = call;
        let timeout = timeout.unwrap_or(self.config.timeout);
        if self.config.refuse_private {
            // IP literals never reach the resolver.
            let uri: hyper::Uri = url
                .parse()
                .map_err(|e| AttemptError::new(Reason::Request, format!("bad URL {url:?}: {e}")))?;
            let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
            if let Ok(ip) = host.parse::<IpAddr>()
                && is_private(ip)
            {
                metrics::counter!(metric_names::HTTP_CALLS_TOTAL, "target" => target.to_owned(), "method" => method.to_string(), "status_code" => "error")
                    .increment(1);
                let refusal = PrivateAddress {
                    host: host.to_owned(),
                    ip,
                };
                return Err(AttemptError::new(Reason::Private, refusal.to_string()));
            }
        }
        let method_label = method.to_string();
        let mut request = Request::builder()
            .method(method)
            .uri(url)
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, concat!("nexus/", env!("CARGO_PKG_VERSION")));
        for (k, v) in headers {
            request = request.header(k, v);
        }
        let request = request.body(Full::new(body)).map_err(|e| {
            AttemptError::new(Reason::Request, format!("cannot build the request: {e}"))
        })?;
        let started = Instant::now();
        let max = self.config.max_response_bytes;
        let result = tokio::time::timeout(timeout, async {
            let response = self.client.request(request).await?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now()));
            // The status decides a delivery; a body over the cap or cut off is not an error
            // here, it is marked incomplete (a reactor that emits it needs all of it).
            let (body, complete) = match Limited::new(response.into_body(), max).collect().await {
                Ok(collected) => (collected.to_bytes(), true),
                Err(_) => (Bytes::new(), false),
            };
            Ok::<_, hyper_util::client::legacy::Error>(Answer {
                status,
                retry_after,
                body,
                complete,
            })
        })
        .await;
        metrics::histogram!(metric_names::HTTP_CALL_DURATION_SECONDS, "target" => target.to_owned())
            .record(started.elapsed().as_secs_f64());
        let (label, outcome) = match result {
            Ok(Ok(answer)) => (answer.status.to_string(), Ok(answer)),
            Ok(Err(e)) => {
                // The guard's refusal sits a few sources down (client, connect, DNS, I/O).
                let error = match find_private(&e) {
                    Some(refusal) => AttemptError::new(Reason::Private, refusal.to_string()),
                    None => {
                        AttemptError::new(Reason::Connect, format!("cannot reach {target}: {e:?}"))
                    }
                };
                ("error".to_owned(), Err(error))
            }
            Err(_) => (
                "timeout".to_owned(),
                Err(AttemptError::new(
                    Reason::Timeout,
                    format!("no answer from {target} within {} ms", timeout.as_millis()),
                )),
            ),
        };
        metrics::counter!(metric_names::HTTP_CALLS_TOTAL, "target" => target.to_owned(), "method" => method_label, "status_code" => label)
            .increment(1);
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A receiver answering `204` to each request (bodiless requests only), counting the
    /// connections it accepted and those the client closed.
    async fn counting_receiver() -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let (opened, closed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (o, c) = (Arc::clone(&opened), Arc::clone(&closed));
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                o.fetch_add(1, Ordering::SeqCst);
                let c = Arc::clone(&c);
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            let answer = b"HTTP/1.1 204 No Content\r\n\r\n";
                            if socket.write_all(answer).await.is_err() {
                                return;
                            }
                        }
                    }
                    c.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        (url, opened, closed)
    }

    #[tokio::test]
    async fn idle_connections_are_closed_after_the_idle_timeout() {
        let (url, opened, closed) = counting_receiver().await;
        let client = HttpClient::new(OutboundConfig {
            idle_timeout: Duration::from_millis(200),
            ..OutboundConfig::default()
        });
        let call = || Call {
            method: Method::GET,
            url: &url,
            target: "t",
            headers: Vec::new(),
            body: Bytes::new(),
            timeout: None,
        };
        // A burst: four calls at once need four connections.
        let answers = tokio::join!(
            client.send(call()),
            client.send(call()),
            client.send(call()),
            client.send(call())
        );
        for answer in [answers.0, answers.1, answers.2, answers.3] {
            assert_eq!(answer.expect("answered").status, 204);
        }
        let burst = opened.load(Ordering::SeqCst);
        assert!(burst >= 2, "the burst opened {burst} connections");
        // Nobody calls again: the pool closes them itself once they have been idle long enough.
        for _ in 0..100 {
            if closed.load(Ordering::SeqCst) == burst {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            closed.load(Ordering::SeqCst),
            burst,
            "idle connections left open 5 s after a 200 ms idle timeout"
        );
        // And a later call opens a new one and works.
        assert_eq!(client.send(call()).await.expect("answered").status, 204);
        assert_eq!(opened.load(Ordering::SeqCst), burst + 1);
    }

    #[tokio::test]
    async fn the_guard_refuses_private_addresses_by_name_and_by_literal() {
        let guarded = HttpClient::new(OutboundConfig {
            refuse_private: true,
            timeout: Duration::from_secs(5),
            ..OutboundConfig::default()
        });
        for url in [
            "http://localhost:9/hook",
            "http://127.0.0.1:9/hook",
            "http://[::1]:9/hook",
        ] {
            let call = Call {
                method: Method::POST,
                url,
                target: "t",
                headers: Vec::new(),
                body: Bytes::new(),
                timeout: None,
            };
            let err = guarded.send(call).await.expect_err("refused");
            assert_eq!(err.reason, Reason::Private, "{url}: {}", err.message);
            assert!(err.message.contains("private address"), "{}", err.message);
        }
        // Without the guard the same call is made (and finds nothing listening).
        let open = HttpClient::new(OutboundConfig::default());
        let call = Call {
            method: Method::POST,
            url: "http://127.0.0.1:9/hook",
            target: "t",
            headers: Vec::new(),
            body: Bytes::new(),
            timeout: None,
        };
        assert_eq!(
            open.send(call).await.expect_err("nothing there").reason,
            Reason::Connect
        );
    }
}
