//! Request signatures of publishing nodes (API.md section 2) on the client's side: a thin use of
//! `nexus_api::signature`, the one signing module the server verifies with.

use nexus_api::signature::Secret;

use crate::Error;

/// How a publisher signs its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Scheme {
    /// `X-Nexus-Node`, `X-Nexus-Timestamp` and `X-Nexus-Signature: sha256=<hex>` over
    /// `<timestamp>.<body>`. The default.
    #[default]
    Nexus,
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp` and `webhook-signature: v1,<base64>`
    /// over `<id>.<timestamp>.<body>`, plus `X-Nexus-Node`.
    StandardWebhooks,
}

impl std::str::FromStr for Scheme {
    type Err = Error;

    /// `nexus` or `standard` (also `standard-webhooks`).
    fn from_str(s: &str) -> Result<Scheme, Error> {
        match s {
            "nexus" => Ok(Scheme::Nexus),
            "standard" | "standard-webhooks" => Ok(Scheme::StandardWebhooks),
            other => Err(Error::invalid(
                "signature scheme",
                format!("{other:?}: expected \"nexus\" or \"standard\""),
            )),
        }
    }
}

/// A node's signing key: a secret written `whsec_<base64>` is its decoded bytes, any other
/// secret its UTF-8 bytes, as the server reads it. Never printed.
#[derive(Clone)]
pub struct SigningKey(Secret);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(***)")
    }
}

impl SigningKey {
    /// Reads a secret as written in the server's configuration.
    ///
    /// ```
    /// use nexus_client::SigningKey;
    /// assert!(SigningKey::parse("whsec_bm90aWZpZXItc2VjcmV0").is_ok());
    /// assert!(SigningKey::parse("whsec_not base64!").is_err());
    /// assert!(SigningKey::parse("").is_err());
    /// ```
    pub fn parse(written: &str) -> Result<SigningKey, Error> {
        Secret::parse(written)
            .map(SigningKey)
            .map_err(|e| Error::invalid("secret", e.to_string()))
    }

    /// `X-Nexus-Signature` for `body` sent at `timestamp` (Unix seconds): `sha256=<hex>`.
    pub fn sign_nexus(&self, timestamp: i64, body: &[u8]) -> String {
        self.0.sign_nexus(timestamp, body)
    }

    /// `webhook-signature` for message `id` with `body` sent at `timestamp`: `v1,<base64>`.
    pub fn sign_standard(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        self.0.sign_standard(id, timestamp, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_signs_as_the_server_verifies() {
        let key = SigningKey::parse("whsec_bm90aWZpZXItc2VjcmV0").expect("valid");
        let server = Secret::parse("notifier-secret").expect("valid");
        let nexus = key.sign_nexus(1_700_000_000, b"{}");
        assert!(server.verify_nexus(&nexus, "1700000000", b"{}"));
        let standard = key.sign_standard("msg-1", 1_700_000_000, b"{\"a\":1}");
        assert!(server.verify_standard(&standard, "msg-1", "1700000000", b"{\"a\":1}"));
        assert!(!server.verify_standard(&standard, "msg-2", "1700000000", b"{\"a\":1}"));
        assert_eq!(format!("{key:?}"), "SigningKey(***)");
    }

    #[test]
    fn bad_secrets_are_invalid_input() {
        for written in ["", "whsec_", "whsec_%%"] {
            let e = SigningKey::parse(written).expect_err("refused");
            assert!(e.to_string().contains("secret"), "{written:?}: {e}");
        }
    }

    #[test]
    fn schemes_parse_by_name_and_refuse_others() {
        assert_eq!("nexus".parse::<Scheme>().expect("ok"), Scheme::Nexus);
        assert_eq!(
            "standard".parse::<Scheme>().expect("ok"),
            Scheme::StandardWebhooks
        );
        let e = "hmac".parse::<Scheme>().expect_err("refused");
        assert!(e.to_string().contains("\"hmac\""), "{e}");
    }
}
