//! How an ingress body comes in: what is checked before a byte of it is read (its declared
//! length, its encoding), the room it takes among all bodies in memory, and gzip.
//!
//! A body is read only after the request has shown it may be worth reading: the handler checks
//! the declared `Content-Length` against the limit, the content encoding and type, the node and
//! the signature's timestamp first, so an oversized or unsigned request is answered at once,
//! before hyper sends `100 Continue` (it does so only when the body is first read). The body's
//! bytes then take room in a [`BodyBudget`] shared by every request until the answer is made.
//! A gzip body is decompressed here, with the decompressed size under the same limit; the
//! signature covers the decompressed bytes, the body as the application wrote it before the
//! transport compressed it (as Standard Webhooks signs the payload, not its transfer form).

use std::io::Read as _;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};
use http_body_util::BodyExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::envelope::ApiError;

/// How long a body waits for room in the budget before it is answered `503`.
const BUDGET_WAIT: Duration = Duration::from_secs(1);

/// The most of a refused body read and dropped before its answer ([`discard`]).
const DISCARD_BYTES: usize = 1 << 20;

/// How long [`discard`] reads at most.
const DISCARD_TIME: Duration = Duration::from_secs(2);

/// The content coding of a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coding {
    /// As is (no `Content-Encoding`, or `identity`).
    Identity,
    /// `gzip` (or `x-gzip`).
    Gzip,
}

/// `Content-Encoding`: identity or gzip; anything else, or several codings stacked, is `415`.
pub(crate) fn coding(headers: &HeaderMap) -> Result<Coding, ApiError> {
    let mut coding = Coding::Identity;
    for value in headers.get_all(header::CONTENT_ENCODING) {
        let text = value.to_str().unwrap_or("\u{fffd}");
        for token in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            match token.to_ascii_lowercase().as_str() {
                "identity" => {}
                "gzip" | "x-gzip" if coding == Coding::Identity => coding = Coding::Gzip,
                _ => {
                    return Err(ApiError::unsupported_media_type(format!(
                        "Content-Encoding {text:?} is not accepted: send gzip or no encoding"
                    )));
                }
            }
        }
    }
    Ok(coding)
}

/// The declared `Content-Length`, refused with `413` at once when it is over `limit`, before
/// a byte of the body is read. A value that is not a number is hyper's to refuse (it does, with
/// `400`, before the request gets here).
pub(crate) fn declared_length(headers: &HeaderMap, limit: usize) -> Result<Option<u64>, ApiError> {
    let Some(length) = content_length(headers) else {
        return Ok(None);
    };
    if length > limit as u64 {
        return Err(ApiError::too_large(format!(
            "the body is {length} bytes, more than the limit of {limit}"
        )));
    }
    Ok(Some(length))
}

/// `Content-Length` as a number, when it is one.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// Reads and drops the body of a request refused before its body was read, when the client is
/// sending it anyway: a connection closed with bytes unread is reset (TCP sends RST), and the
/// client then sees a broken connection instead of the answer, and may send it all again (the
/// client crate retries transport errors). Only a body sent unasked (no `Expect:
/// 100-continue`: such a client waits for the answer and sends nothing), of at most 1 MiB
/// (declared or read so far), for at most 2 s; a larger or slower one is answered at once and
/// its connection closed. Nothing read is kept.
pub(crate) async fn discard(headers: &HeaderMap, body: Body) {
    let expects_continue = headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue || content_length(headers).is_some_and(|n| n > DISCARD_BYTES as u64) {
        return;
    }
    let drain = async move {
        let mut body = body;
        let mut read = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            read += frame.data_ref().map_or(0, Bytes::len);
            if read > DISCARD_BYTES {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(DISCARD_TIME, drain).await;
}

/// Room for request bodies in memory, in bytes, shared by every ingress request.
#[derive(Debug)]
pub(crate) struct BodyBudget {
    bytes: std::sync::Arc<Semaphore>,
    total: usize,
}

impl BodyBudget {
    /// A budget of `total` bytes (at least 1, at most 4 GiB - 1: one reservation is a `u32`).
    pub(crate) fn new(total: usize) -> Self {
        let total = total.clamp(1, u32::MAX as usize);
        BodyBudget {
            bytes: std::sync::Arc::new(Semaphore::new(total)),
            total,
        }
    }

    /// Takes `bytes` of room (all of it when more is asked), waiting up to a second for it.
    async fn reserve(&self, bytes: usize) -> Result<OwnedSemaphorePermit, ApiError> {
        let wanted = u32::try_from(bytes.clamp(1, self.total)).unwrap_or(u32::MAX);
        let acquire = std::sync::Arc::clone(&self.bytes).acquire_many_owned(wanted);
        match tokio::time::timeout(BUDGET_WAIT, acquire).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(ApiError::unavailable("the server is shutting down")),
            Err(_) => Err(ApiError::unavailable(format!(
                "request bodies in flight take the whole budget of {} bytes; retry later",
                self.total
            ))),
        }
    }
}

/// A body read into memory, holding its room in the budget until it is dropped.
#[derive(Debug)]
pub(crate) struct Intake {
    bytes: Bytes,
    _room: OwnedSemaphorePermit,
}

impl std::ops::Deref for Intake {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

/// Reads a body of at most `limit` bytes (decompressed, when gzip) once it has room in
/// `budget`: the declared length when there is one, else the limit, plus the decompressed
/// limit for gzip (both are in memory while it is decompressed).
pub(crate) async fn read(
    budget: &BodyBudget,
    body: Body,
    declared: Option<u64>,
    coding: Coding,
    limit: usize,
) -> Result<Intake, ApiError> {
    let raw_room = declared.map_or(limit, |n| usize::try_from(n).unwrap_or(limit).min(limit));
    let room = match coding {
        Coding::Identity => raw_room,
        Coding::Gzip => raw_room.saturating_add(limit),
    };
    let permit = budget.reserve(room).await?;
    let raw = crate::ingress::read_body(body, limit).await?;
    let bytes = match coding {
        Coding::Identity => raw,
        Coding::Gzip => gunzip(&raw, limit)?,
    };
    Ok(Intake {
        bytes,
        _room: permit,
    })
}

/// Decompresses a gzip body (several members allowed, as gzip files may hold), refusing with
/// `413` as soon as the output passes `limit`: a small bomb never grows past it.
pub(crate) fn gunzip(compressed: &[u8], limit: usize) -> Result<Bytes, ApiError> {
    let mut out = Vec::with_capacity(compressed.len().saturating_mul(4).min(limit));
    flate2::read::MultiGzDecoder::new(compressed)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ApiError::bad_request(format!("the gzip body cannot be decompressed: {e}")))?;
    if out.len() > limit {
        return Err(ApiError::too_large(format!(
            "the body decompresses to more than the limit of {limit} bytes"
        )));
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderValue, StatusCode};
    use std::io::Write as _;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).expect("in memory");
        encoder.finish().expect("in memory")
    }

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_str(v).expect("valid"));
        }
        h
    }

    #[test]
    fn codings_are_identity_or_one_gzip() {
        assert_eq!(coding(&HeaderMap::new()).ok(), Some(Coding::Identity));
        for ok in ["gzip", "GZIP", "x-gzip", "identity, gzip"] {
            let h = headers(&[(header::CONTENT_ENCODING, ok)]);
            assert_eq!(coding(&h).ok(), Some(Coding::Gzip), "{ok}");
        }
        for bad in ["br", "deflate", "gzip, gzip", "gzip, br", "compress"] {
            let h = headers(&[(header::CONTENT_ENCODING, bad)]);
            let e = coding(&h).expect_err(bad);
            assert_eq!(e.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{bad}");
        }
    }

    #[test]
    fn a_declared_length_over_the_limit_is_413_before_reading() {
        let h = headers(&[(header::CONTENT_LENGTH, "1000000000000")]);
        let e = declared_length(&h, 1024).expect_err("too long");
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(e.message.contains("1000000000000"), "{}", e.message);
        let h = headers(&[(header::CONTENT_LENGTH, "1024")]);
        assert_eq!(declared_length(&h, 1024).ok(), Some(Some(1024)));
        assert_eq!(declared_length(&HeaderMap::new(), 1024).ok(), Some(None));
    }

    #[test]
    fn gzip_is_bounded_by_the_decompressed_size() {
        let body = br#"{"type":"A","payload":{"n":1}}"#;
        assert_eq!(gunzip(&gzip(body), 1024).ok().as_deref(), Some(&body[..]));
        // 10 MB of zeros compress to about 10 KB: refused once 1 MiB has come out.
        let bomb = gzip(&vec![0u8; 10 << 20]);
        assert!(bomb.len() < 64 << 10, "{}", bomb.len());
        let e = gunzip(&bomb, 1 << 20).expect_err("bomb");
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        let e = gunzip(b"not gzip at all", 1024).expect_err("garbage");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn the_budget_bounds_bytes_in_flight() {
        let budget = BodyBudget::new(100);
        let first = read(
            &budget,
            Body::from(vec![b'x'; 60]),
            Some(60),
            Coding::Identity,
            100,
        )
        .await
        .expect("room");
        let refused = read(
            &budget,
            Body::from(vec![b'x'; 60]),
            Some(60),
            Coding::Identity,
            100,
        )
        .await
        .expect_err("no room while the first is held");
        assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(refused.retry_after.is_some());
        drop(first);
        let again = read(
            &budget,
            Body::from(vec![b'x'; 60]),
            Some(60),
            Coding::Identity,
            100,
        )
        .await
        .expect("room once the first is answered");
        assert_eq!(again.len(), 60);
    }
}
