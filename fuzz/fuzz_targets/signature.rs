//! Signature verification, both schemes (API.md section 2), through the server's own check
//! (`nexus_transport::auth::verify`): node, timestamp window, `X-Nexus-Signature` or
//! `webhook-id` / `webhook-timestamp` / `webhook-signature`. An input is headers, a blank line,
//! the body (see the crate doc); an `x-fuzz-secret` header, when it parses, is the node's secret.
//!
//! Checked: no panic; a refusal is 401; whatever verifies carries a signature the secret makes
//! for exactly these bytes; a request signed by `sign_nexus` / `sign_standard` verifies, and the
//! same signature over another body does not.
#![no_main]

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use nexus_api::signature::Secret;
use nexus_fuzz::request;
use nexus_transport::auth::{Nodes, verify};

/// The server's clock during the run; the seeds are signed at this time.
const NOW: i64 = 1_700_000_000;
const DEFAULT_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).expect("a signature, a timestamp or a node name is a header value")
}

fuzz_target!(|data: &[u8]| {
    let request = request(data);
    let secret = header(&request.headers, "x-fuzz-secret")
        .and_then(|s| Secret::parse(s).ok())
        .unwrap_or_else(|| Secret::parse(DEFAULT_SECRET).expect("the default secret parses"));
    let nodes = Nodes::Open(secret.clone());
    let h = &request.headers;

    match verify(&nodes, h, request.body, None, NOW) {
        Ok(verified) => {
            // Nothing verifies unless the secret signed these bytes. (A timestamp written
            // otherwise than `to_string` writes it, `+17...` or `017...`, is signed as written.)
            let (signatures, ts_text, made): (&str, &str, Box<dyn Fn(i64) -> String>) =
                match header(h, "x-nexus-signature") {
                    Some(signature) => {
                        assert!(verified.webhook_id.is_none());
                        let body = request.body;
                        let secret = secret.clone();
                        (
                            signature,
                            header(h, "x-nexus-timestamp").expect("verified with its timestamp"),
                            Box::new(move |ts| secret.sign_nexus(ts, body)),
                        )
                    }
                    None => {
                        let id = verified
                            .webhook_id
                            .clone()
                            .expect("a verified Standard Webhooks request has its id");
                        assert_eq!(header(h, "webhook-id"), Some(id.as_str()));
                        let body = request.body;
                        let secret = secret.clone();
                        (
                            header(h, "webhook-signature").expect("verified by its signature"),
                            header(h, "webhook-timestamp").expect("verified with its timestamp"),
                            Box::new(move |ts| secret.sign_standard(&id, ts, body)),
                        )
                    }
                };
            let ts: i64 = ts_text
                .parse()
                .expect("a verified timestamp is Unix seconds");
            assert!(
                NOW.abs_diff(ts) <= 300,
                "verified a timestamp outside the window: {ts_text}"
            );
            if ts_text == ts.to_string() {
                let made = made(ts);
                assert!(
                    signatures.split(' ').any(|s| s.eq_ignore_ascii_case(&made)),
                    "verified {signatures:?}, the secret makes {made:?}"
                );
            }
        }
        Err(e) => assert_eq!(e.status, http::StatusCode::UNAUTHORIZED, "{}", e.message),
    }

    // Round trips: what the signer makes, the verifier takes, for these bytes only.
    let id = header(h, "webhook-id")
        .filter(|id| !id.is_empty() && HeaderValue::from_str(id).is_ok())
        .unwrap_or("msg_fuzz");
    let mut other = request.body.to_vec();
    other.push(b'!');

    let mut nexus = HeaderMap::new();
    nexus.insert("x-nexus-node", value("fuzz"));
    nexus.insert("x-nexus-timestamp", value(&NOW.to_string()));
    nexus.insert(
        "x-nexus-signature",
        value(&secret.sign_nexus(NOW, request.body)),
    );
    assert!(
        verify(&nodes, &nexus, request.body, None, NOW).is_ok(),
        "a Nexus signature of the body does not verify"
    );
    assert!(
        verify(&nodes, &nexus, &other, None, NOW).is_err(),
        "a Nexus signature verifies another body"
    );

    let mut standard = HeaderMap::new();
    standard.insert("x-nexus-node", value("fuzz"));
    standard.insert("webhook-id", value(id));
    standard.insert("webhook-timestamp", value(&NOW.to_string()));
    standard.insert(
        "webhook-signature",
        value(&format!(
            "v1,AAAA {}",
            secret.sign_standard(id, NOW, request.body)
        )),
    );
    let verified = verify(&nodes, &standard, request.body, None, NOW)
        .expect("a Standard Webhooks signature of the body verifies");
    assert_eq!(verified.webhook_id.as_deref(), Some(id));
    assert!(
        verify(&nodes, &standard, &other, None, NOW).is_err(),
        "a Standard Webhooks signature verifies another body"
    );
});
