//! Secrets: the one resolution of every secret the config file names (`secret_env`, `token_env`
//! or an inline `secret`), the production rules for secrets, and the process's own secrets
//! (`NEXUS_SECRET`, `NEXUS_ADMIN_TOKEN`), generated in development when missing.

use nexus_transport::auth::Secret;
use serde::Deserialize;

use super::{Checked, ConfigError, Mode, Settings, err};

/// Placeholders shipped in `.env.example`; in production a secret equal to one is refused.
pub(crate) const PLACEHOLDERS: &[&str] = &[
    "change-me-to-a-random-secret-of-32-bytes-or-more",
    "change-me-to-a-random-admin-token-of-32-bytes-or-more",
    "change-me-to-a-random-dashboard-token-of-32-bytes",
];

/// Production rule for secrets: at least 32 bytes (decoded for `whsec_`), not a placeholder.
pub(crate) fn strong(name: &str, secret: &str) -> Result<(), ConfigError> {
    if PLACEHOLDERS.contains(&secret) {
        return Err(err(
            name,
            "is the placeholder from .env.example; set a real secret",
        ));
    }
    let bytes = Secret::parse(secret).map_err(|e| err(name, e.to_string()))?;
    if bytes.bytes().len() < 32 {
        return Err(err(
            name,
            format!(
                "must be at least 32 bytes in production, got {}",
                bytes.bytes().len()
            ),
        ));
    }
    Ok(())
}

/// A secret's text (an HMAC key as written, a token), whose `Debug` never shows it.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub(crate) struct SecretText(String);

impl SecretText {
    /// Holds `text`.
    pub(crate) fn new(text: impl Into<String>) -> SecretText {
        SecretText(text.into())
    }

    /// The secret itself, for the one place that uses it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretText(***)")
    }
}

/// What a secret is used for, which decides how it is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Use {
    /// An HMAC key: it must parse as one (`whsec_<base64>` or the bytes of the text).
    Signing,
    /// A bearer token, compared as written.
    Token,
}

/// A secret of the file, before resolution: the entry it belongs to and where it comes from.
pub(crate) struct FileSecret<'a> {
    /// The entry's key: `nodes[0]`, `reactors[1].http`.
    pub(crate) at: String,
    /// The field naming the variable: `secret_env` or `token_env`.
    pub(crate) env_field: &'static str,
    /// The variable holding the secret.
    pub(crate) env: Option<&'a str>,
    /// The secret written in the file (`secret`), refused in production.
    pub(crate) inline: Option<&'a str>,
    /// How the value is checked.
    pub(crate) usage: Use,
}

/// A resolved secret and where it came from (its variable, or its key in the file), for errors.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    /// The secret as written.
    pub(crate) value: SecretText,
    /// Its variable (`FLOWPAY_SECRET`) or key (`nodes[0].secret`).
    pub(crate) name: String,
}

impl FileSecret<'_> {
    fn key(&self, field: &str) -> String {
        format!("{}.{field}", self.at)
    }

    /// Reads the secret from its variable or the file and checks it: `None` when the entry
    /// names none (the server's `NEXUS_SECRET` applies, or one is generated).
    pub(crate) fn resolve(
        &self,
        mode: Mode,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Resolved>, ConfigError> {
        let resolved = match (self.env, self.inline) {
            (Some(_), Some(_)) => {
                return Err(err(
                    self.key("secret"),
                    format!("give {} or secret, not both", self.env_field),
                ));
            }
            // An empty name, or one with `=` or NUL, can name no variable (and would leave the
            // errors below about the secret's value naming nothing).
            (Some(var), None) if var.is_empty() || var.contains(['=', '\0']) => {
                return Err(err(
                    self.key(self.env_field),
                    format!("{var:?} is not the name of an environment variable"),
                ));
            }
            (Some(var), None) => {
                let value = get(var).filter(|v| !v.is_empty()).ok_or_else(|| {
                    err(
                        self.key(self.env_field),
                        format!("the variable {var} is not set"),
                    )
                })?;
                Resolved {
                    value: SecretText(value),
                    name: var.to_owned(),
                }
            }
            (None, Some(_)) if mode == Mode::Production => {
                return Err(err(
                    self.key("secret"),
                    "a secret in the file is refused in production; use secret_env",
                ));
            }
            (None, Some(value)) => Resolved {
                value: SecretText::new(value),
                name: self.key("secret"),
            },
            (None, None) => return Ok(None),
        };
        if self.usage == Use::Signing {
            Secret::parse(resolved.value.expose())
                .map_err(|e| err(&resolved.name, e.to_string()))?;
        }
        if mode == Mode::Production {
            strong(&resolved.name, resolved.value.expose())?;
        }
        Ok(Some(resolved))
    }
}

/// The process's secrets, resolved: generated in development when missing.
pub(crate) struct Secrets {
    /// `NEXUS_ADMIN_TOKEN`.
    pub(crate) admin: SecretText,
    /// `NEXUS_SECRET`: `None` when nothing signs with it.
    pub(crate) nodes: Option<SecretText>,
}

impl Secrets {
    /// `NEXUS_ADMIN_TOKEN` and, when a node or reactor signs with it, `NEXUS_SECRET`: required
    /// and strong in production, generated in development (each generated one is handed to
    /// `generated` with its variable, to be shown once).
    pub(crate) fn resolve(
        settings: &Settings,
        checked: &Checked,
        mut generated: impl FnMut(&str, &str),
    ) -> Result<Secrets, ConfigError> {
        let needs_shared = settings.config_path.is_none()
            || checked.nodes.iter().any(|n| n.secret.is_none())
            || checked.reactors.iter().any(|r| r.secret.is_none());
        let production = settings.mode == Mode::Production;
        let mut one = |name: &str,
                       value: &Option<SecretText>,
                       needed: bool|
         -> Result<Option<SecretText>, ConfigError> {
            match value {
                Some(v) => {
                    if production && needed {
                        strong(name, v.expose())?;
                    }
                    Ok(Some(v.clone()))
                }
                None if !needed => Ok(None),
                None if production => Err(err(name, "is required in production")),
                None => {
                    let (_, written) = Secret::generate().map_err(|_| {
                        err(
                            name,
                            "cannot be generated: the system random generator failed",
                        )
                    })?;
                    generated(name, &written);
                    Ok(Some(SecretText(written)))
                }
            }
        };
        let admin = one("NEXUS_ADMIN_TOKEN", &settings.admin_token, true)?.unwrap_or_default();
        let nodes = one("NEXUS_SECRET", &settings.secret, needs_shared)?;
        Ok(Secrets { admin, nodes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_env as env;

    #[test]
    fn production_secrets_must_be_strong() {
        assert!(strong("NEXUS_ADMIN_TOKEN", "short").is_err());
        assert!(strong("NEXUS_ADMIN_TOKEN", PLACEHOLDERS[1]).is_err());
        assert!(strong("NEXUS_ADMIN_TOKEN", &"k".repeat(32)).is_ok());
        assert!(strong("X", "whsec_AAAA").is_err(), "3 decoded bytes");
    }

    #[test]
    fn a_file_secret_comes_from_one_place_and_is_checked() {
        let get = env(&[
            ("S", "whsec_!!"),
            ("GOOD", "a-secret-of-thirty-two-bytes-or-more-0123"),
        ]);
        let secret = |env: Option<&'static str>, inline: Option<&'static str>| FileSecret {
            at: "nodes[0]".into(),
            env_field: "secret_env",
            env,
            inline,
            usage: Use::Signing,
        };
        let name = |r: Result<Option<Resolved>, ConfigError>| match r {
            Ok(Some(r)) => format!("ok {}", r.name),
            Ok(None) => "none".into(),
            Err(e) => format!("err {}", e.name),
        };
        let dev = Mode::Development;
        let prod = Mode::Production;
        assert_eq!(name(secret(None, None).resolve(prod, &get)), "none");
        assert_eq!(
            name(secret(Some("GOOD"), None).resolve(prod, &get)),
            "ok GOOD"
        );
        assert_eq!(
            name(secret(None, Some("x")).resolve(dev, &get)),
            "ok nodes[0].secret"
        );
        assert_eq!(
            name(secret(None, Some("x")).resolve(prod, &get)),
            "err nodes[0].secret"
        );
        assert_eq!(
            name(secret(Some("GOOD"), Some("x")).resolve(dev, &get)),
            "err nodes[0].secret"
        );
        assert_eq!(
            name(secret(Some("NOPE"), None).resolve(dev, &get)),
            "err nodes[0].secret_env"
        );
        for var in ["", "A=B", "A\0"] {
            // Refused by name before the variable is read, even where every variable is set.
            let every = |_: &str| Some("a-secret-of-thirty-two-bytes-or-more-0123".to_owned());
            assert_eq!(
                name(secret(Some(var), None).resolve(prod, every)),
                "err nodes[0].secret_env",
                "{var:?}"
            );
        }
        assert_eq!(
            name(secret(Some("S"), None).resolve(dev, &get)),
            "err S",
            "not base64"
        );
        assert_eq!(
            name(secret(Some("GOOD"), None).resolve(prod, env(&[("GOOD", "short")]))),
            "err GOOD",
            "too short in production"
        );
        let token = FileSecret {
            usage: Use::Token,
            ..secret(Some("S"), None)
        };
        assert_eq!(
            name(token.resolve(dev, &get)),
            "ok S",
            "a token is not parsed"
        );
    }
}
