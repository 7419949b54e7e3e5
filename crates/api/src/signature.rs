//! Request signatures of API.md: the Nexus scheme (`X-Nexus-Signature: sha256=<hex>` over
//! `<timestamp>.<body>`) and Standard Webhooks (`webhook-signature: v1,<base64>` over
//! `<id>.<timestamp>.<body>`). One implementation for the server's verification, the outbound
//! deliveries and the client's publisher.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::hmac;
use subtle::ConstantTimeEq;

/// Seconds a signed request's timestamp may be away from the server's clock (API.md section 2).
pub const MAX_SKEW_SECS: i64 = 300;

/// Why a written secret cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// `whsec_` followed by something that is not base64.
    #[error("a whsec_ secret must be base64 after the prefix: {0}")]
    NotBase64(String),
    /// Nothing to sign with.
    #[error("the secret is empty")]
    Empty,
    /// Fewer key bytes than the use asks for.
    #[error(
        "the secret is {bytes} bytes long (decoded bytes for whsec_); at least {min} are needed"
    )]
    TooShort {
        /// Its key bytes.
        bytes: usize,
        /// The fewest accepted.
        min: usize,
    },
}

/// The fewest key bytes a subscription's signing secret may have, in every environment (a
/// generated one has 24). Production configuration asks 32 of every secret (API.md section 9).
pub const MIN_SUBSCRIPTION_SECRET_BYTES: usize = 16;

/// A shared secret: `whsec_<base64>` is used as its decoded bytes, anything else as its UTF-8
/// bytes, in both schemes and for outbound signing. Never printed.
#[derive(Clone)]
pub struct Secret {
    bytes: Vec<u8>,
    // Prepared once (the padded key states are about 300 bytes), shared by clones.
    key: Arc<hmac::Key>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Secret {
    /// Reads a secret as written in configuration. An empty secret (or `whsec_` with nothing
    /// after it) is refused.
    ///
    /// ```
    /// use nexus_api::signature::Secret;
    /// assert!(Secret::parse("whsec_bm90aWZpZXItc2VjcmV0").is_ok());
    /// assert!(Secret::parse("whsec_not base64!").is_err());
    /// assert!(Secret::parse("").is_err());
    /// ```
    pub fn parse(written: &str) -> Result<Secret, SecretError> {
        let bytes = match written.strip_prefix("whsec_") {
            Some(b64) => B64
                .decode(b64)
                .map_err(|e| SecretError::NotBase64(e.to_string()))?,
            None => written.as_bytes().to_vec(),
        };
        if bytes.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(Secret::from_bytes(bytes))
    }

    /// [`Secret::parse`], refusing a secret of fewer than `min` key bytes (decoded bytes for
    /// `whsec_`).
    ///
    /// ```
    /// use nexus_api::signature::{MIN_SUBSCRIPTION_SECRET_BYTES as MIN, Secret, SecretError};
    /// assert!(Secret::parse_at_least("a-secret-of-24-bytes-ok!", MIN).is_ok());
    /// assert_eq!(
    ///     Secret::parse_at_least("whsec_AAAA", MIN).err(),
    ///     Some(SecretError::TooShort { bytes: 3, min: MIN })
    /// );
    /// ```
    pub fn parse_at_least(written: &str, min: usize) -> Result<Secret, SecretError> {
        let secret = Secret::parse(written)?;
        if secret.bytes.len() < min {
            return Err(SecretError::TooShort {
                bytes: secret.bytes.len(),
                min,
            });
        }
        Ok(secret)
    }

    /// A bearer token: compared as written, `whsec_` prefix and all (the decoding rule is for
    /// HMAC keys only).
    pub fn token(written: &str) -> Secret {
        Secret::from_bytes(written.as_bytes().to_vec())
    }

    /// A secret of these exact bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Secret {
        let key = Arc::new(hmac::Key::new(hmac::HMAC_SHA256, &bytes));
        Secret { bytes, key }
    }

    /// A new random secret in `whsec_` form (24 bytes of the system RNG), with its written form.
    /// Fails when the system RNG does: a secret is never made of anything weaker.
    pub fn generate() -> Result<(Secret, String), ring::error::Unspecified> {
        use ring::rand::SecureRandom;
        let mut bytes = [0u8; 24];
        ring::rand::SystemRandom::new().fill(&mut bytes)?;
        let written = format!("whsec_{}", B64.encode(bytes));
        Ok((Secret::from_bytes(bytes.to_vec()), written))
    }

    /// The key bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Compares with a presented token in constant time.
    pub fn matches(&self, presented: &[u8]) -> bool {
        self.bytes.ct_eq(presented).into()
    }

    fn tag(&self, parts: &[&[u8]]) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.key);
        for part in parts {
            ctx.update(part);
        }
        ctx.sign()
    }

    /// `X-Nexus-Signature` for `body` sent at `timestamp` (Unix seconds): `sha256=<hex>`.
    pub fn sign_nexus(&self, timestamp: i64, body: &[u8]) -> String {
        let ts = timestamp.to_string();
        let tag = self.tag(&[ts.as_bytes(), b".", body]);
        let mut out = String::with_capacity(7 + 64);
        out.push_str("sha256=");
        for b in tag.as_ref() {
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        }
        out
    }

    /// `webhook-signature` for message `id` with `body` sent at `timestamp`: `v1,<base64>`.
    pub fn sign_standard(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let ts = timestamp.to_string();
        let tag = self.tag(&[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
        format!("v1,{}", B64.encode(tag.as_ref()))
    }

    /// Checks a `sha256=<hex>` signature of `<timestamp>.<body>` in constant time.
    pub fn verify_nexus(&self, signature: &str, timestamp: &str, body: &[u8]) -> bool {
        let Some(hex) = signature.strip_prefix("sha256=") else {
            return false;
        };
        let Some(presented) = decode_hex(hex) else {
            return false;
        };
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(timestamp.as_bytes());
        ctx.update(b".");
        ctx.update(body);
        bool::from(ctx.sign().as_ref().ct_eq(&presented))
    }

    /// Checks a `webhook-signature` header (`v1,<base64>`, several space-separated accepted) of
    /// `<id>.<timestamp>.<body>` in constant time.
    pub fn verify_standard(&self, header: &str, id: &str, timestamp: &str, body: &[u8]) -> bool {
        let tag = self.tag(&[id.as_bytes(), b".", timestamp.as_bytes(), b".", body]);
        header
            .split(' ')
            .filter_map(|s| s.strip_prefix("v1,"))
            .filter_map(|b64| B64.decode(b64).ok())
            .any(|presented| bool::from(tag.as_ref().ct_eq(&presented)))
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.as_bytes()
        .chunks(2)
        .map(|pair| {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            u8::try_from(hi * 16 + lo).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nexus_signature_is_hmac_sha256_hex_over_timestamp_dot_body() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let key = Secret::parse("Jefe").expect("valid");
        let tag = key.tag(&[b"what do ya want for nothing?"]);
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let signed = key.sign_nexus(1_700_000_000, b"{}");
        let expected: String = key
            .tag(&[b"1700000000.{}"])
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(signed, format!("sha256={expected}"));
        assert!(key.verify_nexus(&signed, "1700000000", b"{}"));
        assert!(!key.verify_nexus(&signed, "1700000001", b"{}"));
        assert!(!key.verify_nexus(&signed.to_uppercase(), "1700000000", b"{ }"));
        assert!(!key.verify_nexus("sha256=zz", "1700000000", b"{}"));
    }

    #[test]
    fn standard_webhooks_published_example() {
        // The example of the Standard Webhooks specification.
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("valid");
        let body = br#"{"test": 2432232314}"#;
        let expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        assert_eq!(
            secret.sign_standard("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            expected
        );
        assert!(secret.verify_standard(
            &format!("v1,bm90IGl0 {expected}"),
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            body
        ));
        assert!(!secret.verify_standard(expected, "msg_other", "1614265330", body));
    }

    #[test]
    fn whsec_secrets_are_their_decoded_bytes() {
        let a = Secret::parse("whsec_bm90aWZpZXItc2VjcmV0").expect("valid");
        let b = Secret::parse("notifier-secret").expect("valid");
        assert_eq!(a.bytes(), b.bytes());
        assert_eq!(a.sign_standard("m", 1, b"x"), b.sign_standard("m", 1, b"x"));
        assert_eq!(Secret::parse("whsec_").err(), Some(SecretError::Empty));
        assert!(matches!(
            Secret::parse("whsec_%%"),
            Err(SecretError::NotBase64(_))
        ));
        assert_eq!(format!("{a:?}"), "Secret(***)");
    }

    #[test]
    fn a_minimum_counts_key_bytes() {
        let min = MIN_SUBSCRIPTION_SECRET_BYTES;
        assert_eq!(
            Secret::parse_at_least("whsec_", min).err(),
            Some(SecretError::Empty)
        );
        // "notifier-secret" is 15 bytes, written plain or as whsec_.
        for short in ["notifier-secret", "whsec_bm90aWZpZXItc2VjcmV0"] {
            assert_eq!(
                Secret::parse_at_least(short, min).err(),
                Some(SecretError::TooShort { bytes: 15, min }),
                "{short}"
            );
        }
        assert!(Secret::parse_at_least(&"k".repeat(min), min).is_ok());
        let (_, generated) = Secret::generate().expect("system RNG");
        assert!(Secret::parse_at_least(&generated, min).is_ok());
        let message = Secret::parse_at_least("short", min)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            message.contains("5 bytes") && message.contains("16"),
            "{message}"
        );
    }

    #[test]
    fn tokens_compare_as_written_and_generated_secrets_parse_back() {
        let t = Secret::token("whsec_abc");
        assert!(t.matches(b"whsec_abc"));
        assert!(!t.matches(b"whsec_abd"));
        let (secret, written) = Secret::generate().expect("system RNG");
        assert_eq!(secret.bytes().len(), 24);
        assert_eq!(
            Secret::parse(&written).expect("valid").bytes(),
            secret.bytes()
        );
    }
}
