//! Who is calling: publishing nodes (two signature schemes, API.md section 2) and bearer tokens
//! (admin API, WebSocket).

use std::collections::HashMap;

use axum::http::HeaderMap;
pub use nexus_api::signature::{MAX_SKEW_SECS, Secret};
use nexus_event::TypeFilter;
pub use nexus_event::valid_node_name;

use crate::envelope::ApiError;

/// A publishing node.
#[derive(Debug, Clone)]
pub struct Node {
    /// Its name (`flowpay`, `factory`, ...).
    pub name: String,
    /// Its signing secret.
    pub secret: Secret,
    /// The types it may publish.
    pub publish: TypeFilter,
}

/// The nodes that may publish.
#[derive(Debug, Clone)]
pub enum Nodes {
    /// Only these (a config file names them).
    Configured(HashMap<String, Node>),
    /// Development without a config: any node name, signed with this secret, any type.
    Open(Secret),
}

impl Nodes {
    /// The configured nodes.
    pub fn configured(nodes: impl IntoIterator<Item = Node>) -> Self {
        Nodes::Configured(nodes.into_iter().map(|n| (n.name.clone(), n)).collect())
    }

    /// Looks a node up by name.
    pub fn get(&self, name: &str) -> Option<Node> {
        match self {
            Nodes::Configured(map) => map.get(name).cloned(),
            // `nexus` is the source of reactor output: no node may publish as it.
            Nodes::Open(secret) => (valid_node_name(name) && name != nexus_event::NEXUS_SOURCE)
                .then(|| Node {
                    name: name.to_owned(),
                    secret: secret.clone(),
                    publish: TypeFilter::all(),
                }),
        }
    }

    /// Every configured node, by name (empty when open).
    pub fn list(&self) -> Vec<&Node> {
        match self {
            Nodes::Configured(map) => {
                let mut nodes: Vec<&Node> = map.values().collect();
                nodes.sort_by(|a, b| a.name.cmp(&b.name));
                nodes
            }
            Nodes::Open(_) => Vec::new(),
        }
    }
}

/// A request whose signature checked out.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The node that signed it.
    pub node: Node,
    /// The `webhook-id` of a Standard Webhooks request.
    pub webhook_id: Option<String>,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The timestamp header as sent (the signature covers these exact bytes), once it is checked to
/// be Unix seconds within the window.
fn timestamp<'a>(headers: &'a HeaderMap, name: &str, now_secs: i64) -> Result<&'a str, ApiError> {
    let raw = header(headers, name)
        .ok_or_else(|| ApiError::unauthorized(format!("{name} header is missing")))?;
    let ts: i64 = raw
        .parse()
        .map_err(|_| ApiError::unauthorized(format!("{name} must be Unix seconds")))?;
    if now_secs.abs_diff(ts) > MAX_SKEW_SECS.unsigned_abs() {
        return Err(ApiError::unauthorized(format!(
            "{name} is more than {MAX_SKEW_SECS} s from the server's clock"
        )));
    }
    Ok(raw)
}

/// A publishing request whose headers checked out, waiting for its body: the node exists, the
/// request is signed by one of the two schemes and its timestamp is inside the window.
/// [`Signed::verify`] checks the signature once the body is read.
#[derive(Debug, Clone)]
pub struct Signed {
    node: Node,
    scheme: Scheme,
}

#[derive(Debug, Clone)]
enum Scheme {
    Nexus {
        signature: String,
        timestamp: String,
    },
    Standard {
        signatures: String,
        id: String,
        timestamp: String,
    },
}

/// Checks what a publishing request's headers alone can tell, before its body is read: which
/// node (`path_node` is the node named by `/webhook/{node}`), which scheme, and the timestamp
/// window. An unknown node, a missing signature or a stale timestamp is `401` at once.
pub fn precheck(
    nodes: &Nodes,
    headers: &HeaderMap,
    path_node: Option<&str>,
    now_secs: i64,
) -> Result<Signed, ApiError> {
    let named = header(headers, "x-nexus-node");
    let name = match (path_node, named) {
        (Some(path), Some(named)) if path != named => {
            return Err(ApiError::unauthorized(format!(
                "X-Nexus-Node names {named:?} but the path names {path:?}"
            )));
        }
        (Some(path), _) => path,
        (None, Some(named)) => named,
        (None, None) => return Err(ApiError::unauthorized("X-Nexus-Node header is missing")),
    };
    let node = nodes
        .get(name)
        .ok_or_else(|| ApiError::unauthorized(format!("unknown node {name:?}")))?;
    if let Some(signature) = header(headers, "x-nexus-signature") {
        let ts = timestamp(headers, "x-nexus-timestamp", now_secs)?;
        if !signature.starts_with("sha256=") {
            return Err(ApiError::unauthorized(
                "X-Nexus-Signature must be sha256=<hex>",
            ));
        }
        return Ok(Signed {
            node,
            scheme: Scheme::Nexus {
                signature: signature.to_owned(),
                timestamp: ts.to_owned(),
            },
        });
    }
    if let Some(signatures) = header(headers, "webhook-signature") {
        let id = header(headers, "webhook-id")
            .filter(|id| !id.is_empty())
            .ok_or_else(|| ApiError::unauthorized("webhook-id header is missing"))?;
        let ts = timestamp(headers, "webhook-timestamp", now_secs)?;
        return Ok(Signed {
            node,
            scheme: Scheme::Standard {
                signatures: signatures.to_owned(),
                id: id.to_owned(),
                timestamp: ts.to_owned(),
            },
        });
    }
    Err(ApiError::unauthorized(
        "the request is not signed (X-Nexus-Signature or webhook-signature)",
    ))
}

impl Signed {
    /// The node the headers name.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Checks the signature over the body as the application wrote it (decompressed, when it
    /// came gzip-encoded).
    pub fn verify(self, body: &[u8]) -> Result<Verified, ApiError> {
        match self.scheme {
            Scheme::Nexus {
                signature,
                timestamp,
            } => {
                if !self.node.secret.verify_nexus(&signature, &timestamp, body) {
                    return Err(ApiError::unauthorized("signature does not match"));
                }
                Ok(Verified {
                    node: self.node,
                    webhook_id: None,
                })
            }
            Scheme::Standard {
                signatures,
                id,
                timestamp,
            } => {
                if !self
                    .node
                    .secret
                    .verify_standard(&signatures, &id, &timestamp, body)
                {
                    return Err(ApiError::unauthorized("no webhook-signature matches"));
                }
                Ok(Verified {
                    node: self.node,
                    webhook_id: Some(id),
                })
            }
        }
    }
}

/// Checks a publishing request: which node, which scheme, the timestamp window and the
/// signature over the raw body. `path_node` is the node named by `/webhook/{node}`.
/// The same as [`precheck`] then [`Signed::verify`].
pub fn verify(
    nodes: &Nodes,
    headers: &HeaderMap,
    body: &[u8],
    path_node: Option<&str>,
    now_secs: i64,
) -> Result<Verified, ApiError> {
    precheck(nodes, headers, path_node, now_secs)?.verify(body)
}

/// Signs `<id>.<timestamp>.<body>` the Standard Webhooks way: `v1,<base64>`
/// ([`Secret::sign_standard`]).
pub fn sign_standard(secret: &Secret, id: &str, timestamp: i64, body: &[u8]) -> String {
    secret.sign_standard(id, timestamp, body)
}

/// Signs `<timestamp>.<body>` the Nexus way: `sha256=<lowercase hex>` ([`Secret::sign_nexus`]).
pub fn sign_nexus(secret: &Secret, timestamp: i64, body: &[u8]) -> String {
    secret.sign_nexus(timestamp, body)
}

/// Checks `Authorization: Bearer <token>` against the accepted tokens in constant time; returns
/// the index of the one that matched.
pub fn bearer(headers: &HeaderMap, tokens: &[&Secret]) -> Option<usize> {
    let value = header(headers, "authorization")?;
    let (scheme, presented) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    tokens
        .iter()
        .position(|t| t.matches(presented.trim().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    /// The example of the Standard Webhooks specification (its published test vector).
    #[test]
    fn standard_webhooks_published_example() {
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("valid");
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign_standard(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).expect("valid header"));
        }
        h
    }

    #[test]
    fn both_schemes_verify_and_reject() {
        let secret = Secret::parse("s3cret").expect("valid");
        let nodes = Nodes::configured([Node {
            name: "flowpay".into(),
            secret: secret.clone(),
            publish: TypeFilter::parse(["PAYMENT_*"]).expect("valid"),
        }]);
        let body = br#"{"type":"PAYMENT_RECEIVED"}"#;
        let now = 1_800_000_000;
        let nexus = headers(&[
            ("x-nexus-node", "flowpay".into()),
            ("x-nexus-timestamp", now.to_string()),
            ("x-nexus-signature", sign_nexus(&secret, now, body)),
        ]);
        assert_eq!(
            verify(&nodes, &nexus, body, None, now)
                .map(|v| v.node.name)
                .ok(),
            Some("flowpay".into())
        );
        assert!(verify(&nodes, &nexus, b"tampered", None, now).is_err());
        assert!(
            verify(&nodes, &nexus, body, None, now + 301).is_err(),
            "stale"
        );
        assert!(
            verify(&nodes, &nexus, body, Some("factory"), now).is_err(),
            "path names another node"
        );
        let standard = headers(&[
            ("webhook-id", "evt-1".into()),
            ("webhook-timestamp", now.to_string()),
            (
                "webhook-signature",
                format!("v1,bm90LWl0 {}", sign_standard(&secret, "evt-1", now, body)),
            ),
        ]);
        let v = verify(&nodes, &standard, body, Some("flowpay"), now).expect("valid");
        assert_eq!(v.webhook_id.as_deref(), Some("evt-1"));
        assert!(verify(&nodes, &standard, body, Some("nobody"), now).is_err());
        assert!(verify(&nodes, &HeaderMap::new(), body, Some("flowpay"), now).is_err());
    }

    #[test]
    fn secrets_and_tokens() {
        assert_eq!(
            Secret::parse("whsec_AAEC").map(|s| s.bytes().to_vec()).ok(),
            Some(vec![0, 1, 2])
        );
        assert!(Secret::parse("whsec_!!").is_err());
        let token = Secret::parse("admin-token").expect("valid");
        let h = headers(&[("authorization", "Bearer admin-token".into())]);
        assert_eq!(bearer(&h, &[&token]), Some(0));
        let bad = headers(&[("authorization", "Bearer nope".into())]);
        assert_eq!(bearer(&bad, &[&token]), None);
        // Bearer tokens are compared as written, whsec_ prefix and all; the scheme name is
        // case-insensitive.
        let (_, written) = Secret::generate().expect("the system RNG");
        let generated = Secret::token(&written);
        let h = headers(&[("authorization", format!("bearer {written}"))]);
        assert_eq!(bearer(&h, &[&token, &generated]), Some(1));
    }

    #[test]
    fn odd_timestamps_are_refused_or_signed_as_sent() {
        let secret = Secret::parse("s3cret").expect("valid");
        let nodes = Nodes::Open(secret.clone());
        let body = b"{}";
        let now = 1_800_000_000;
        let extreme = headers(&[
            ("x-nexus-node", "n".into()),
            ("x-nexus-timestamp", i64::MIN.to_string()),
            ("x-nexus-signature", "sha256=00".into()),
        ]);
        assert!(
            verify(&nodes, &extreme, body, None, now).is_err(),
            "no overflow, a 401"
        );
        // The signature covers the header as sent, leading zero included.
        let raw = format!("0{now}");
        use ring::hmac;
        let mut ctx = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, secret.bytes()));
        ctx.update(raw.as_bytes());
        ctx.update(b".");
        ctx.update(body);
        let hex: String = ctx
            .sign()
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let padded = headers(&[
            ("x-nexus-node", "n".into()),
            ("x-nexus-timestamp", raw),
            ("x-nexus-signature", format!("sha256={hex}")),
        ]);
        assert!(verify(&nodes, &padded, body, None, now).is_ok());
    }

    #[test]
    fn no_node_may_publish_as_nexus() {
        let open = Nodes::Open(Secret::token("s"));
        assert!(open.get("flowpay").is_some());
        assert!(
            open.get("nexus").is_none(),
            "reactor output's source is reserved"
        );
    }
}
