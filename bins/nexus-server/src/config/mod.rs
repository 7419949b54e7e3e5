//! Configuration: the environment (and `.env`, [`env`](mod@env)), validated at start, the TOML
//! file named by `NEXUS_CONFIG` ([`file`](mod@file), API.md sections 9 and 10) and the secrets
//! both name ([`secrets`]). Every error names the variable or key.

mod env;
mod event_types;
mod file;
mod secrets;

pub(crate) use env::Settings;
pub(crate) use event_types::base_of;
pub(crate) use file::{Checked, FileConfig};
pub(crate) use secrets::{SecretText, Secrets};

/// A setting that stops the start, with the variable or key it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigError {
    /// The variable (`PORT`) or key (`nodes[0].publish`).
    pub(crate) name: String,
    /// What is wrong.
    pub(crate) message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.name, self.message)
    }
}

impl std::error::Error for ConfigError {}

fn err(name: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        name: name.into(),
        message: message.into(),
    }
}

/// A start error naming `name`, with any error's text as its message.
pub(crate) fn config_error(name: &str, e: impl std::fmt::Display) -> ConfigError {
    err(name, e.to_string())
}

/// `NEXUS_ENV`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Generated secrets, pretty logs.
    Development,
    /// Strict secrets, JSON logs, no private targets.
    Production,
    /// As development, for test runs.
    Test,
}

/// `LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable.
    Pretty,
}

/// The environment of a test: the given pairs, nothing else.
#[cfg(test)]
pub(crate) fn test_env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: std::collections::HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
    move |k| map.get(k).cloned()
}
