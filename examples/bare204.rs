//! The machine's baseline for HTTP in Rust: a bare hyper server answering `204` to every request,
//! on the stack `nexus-server` serves with (tokio's multi-thread runtime with its default
//! workers, hyper's HTTP/1.1 connection builder, keep-alive, `TCP_NODELAY`) and nothing behind
//! it: no router, no signature, no store, and none of the server's own edge (header and idle
//! timers, the connection bound, upgrades, jemalloc), so it is a little kinder than the server
//! could ever be. `ops/scripts/wrk-publish.sh hyper` runs `wrk` against it in the same run as
//! the server, beside nginx `return 204` (issue 17's first goal names either baseline).
//!
//! Run it with `cargo run --release --example bare204 -- [ADDR]` (default `127.0.0.1:0`); it
//! prints `listening on http://ADDR` once bound. The body of each request is read to its end
//! before the answer, as the server reads a publish's body.

use std::convert::Infallible;
use std::net::SocketAddr;

use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

async fn answer(request: Request<Incoming>) -> Result<Response<Empty<Bytes>>, Infallible> {
    // A body that fails to arrive ends the connection anyway; the answer is the same.
    let _ = request.into_body().collect().await;
    let mut response = Response::new(Empty::new());
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr: SocketAddr = match std::env::args().nth(1) {
        Some(a) => a.parse().map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("bare204: {a:?} is not an address (IP:PORT): {e}"),
            )
        })?,
        None => SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    let builder = std::sync::Arc::new(hyper::server::conn::http1::Builder::new());
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                eprintln!("bare204: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        if let Err(e) = tcp.set_nodelay(true) {
            eprintln!("bare204: TCP_NODELAY: {e}");
        }
        let builder = std::sync::Arc::clone(&builder);
        tokio::spawn(async move {
            // A client that goes away mid-request is its own business.
            let _ = builder
                .serve_connection(TokioIo::new(tcp), hyper::service::service_fn(answer))
                .await;
        });
    }
}
