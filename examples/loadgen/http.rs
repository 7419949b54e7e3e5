//! Signed publishes over one keep-alive HTTP/1.1 connection.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use nexus_transport::auth::{Secret, sign_nexus};

/// One keep-alive connection.
pub(crate) type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// Opens a connection; the suite has no answer to a server that is not there but to stop.
pub(crate) async fn connection(addr: &str) -> Sender {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    sender
}

/// Posts `body` to `path`, signed as node `loadgen`; the status.
pub(crate) async fn post(
    sender: &mut Sender,
    host: &str,
    path: &str,
    secret: &Secret,
    body: Vec<u8>,
) -> u16 {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let sig = sign_nexus(secret, ts, &body);
    let request = hyper::Request::post(path)
        .header("host", host)
        .header("content-type", "application/json")
        .header("x-nexus-node", "loadgen")
        .header("x-nexus-timestamp", ts.to_string())
        .header("x-nexus-signature", sig)
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    sender.ready().await.expect("connection ready");
    let response = sender.send_request(request).await.expect("response");
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    status
}

/// Posts JSON `body` to an admin route with the admin token; the status and the answer's body.
pub(crate) async fn admin_post(
    sender: &mut Sender,
    host: &str,
    path: &str,
    admin: &str,
    body: String,
) -> (u16, String) {
    let request = hyper::Request::post(path)
        .header("host", host)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {admin}"))
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    sender.ready().await.expect("connection ready");
    let response = sender.send_request(request).await.expect("response");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
        .unwrap_or_default();
    (status, body)
}

/// Gets an admin route with the admin token; the status and the answer's body.
pub(crate) async fn admin_get(
    sender: &mut Sender,
    host: &str,
    path: &str,
    admin: &str,
) -> Result<(u16, String), String> {
    let request = hyper::Request::get(path)
        .header("host", host)
        .header("authorization", format!("Bearer {admin}"))
        .body(Full::new(Bytes::new()))
        .map_err(|e| format!("request: {e}"))?;
    sender
        .ready()
        .await
        .map_err(|_| "connection closed".to_owned())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|_| "connection closed".to_owned())?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|_| "connection closed".to_owned())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
