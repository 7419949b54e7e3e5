//! `health`: the server's health; exit code 1 unless it is ok.

use std::time::Duration;

use nexus_client::Admin;

use crate::exit::Unhealthy;
use crate::output::{Out, table};

pub(crate) fn health(
    url: &str,
    token: Option<&str>,
    timeout: Duration,
    out: &mut Out,
) -> anyhow::Result<()> {
    // Health needs no token; any non-empty placeholder satisfies the client's check.
    let admin = Admin::with_timeout(url, token.unwrap_or("-"), timeout)?;
    let h = admin.health()?;
    let status = h["status"].as_str().unwrap_or("unknown").to_owned();
    if out.json() {
        out.json_value(&h)?;
    } else {
        let get = |path: &str| {
            h.pointer(path).map_or("-".to_owned(), |v| {
                v.to_string().trim_matches('"').to_owned()
            })
        };
        let rows = [
            ("status", "/status"),
            ("version", "/version"),
            ("uptime (s)", "/uptimeSeconds"),
            ("database (bytes)", "/database/sizeBytes"),
            ("retry pending", "/retry/pending"),
            ("dead letters", "/retry/deadLetters"),
            ("breakers open", "/breakers/open"),
            ("breakers half-open", "/breakers/halfOpen"),
            ("websockets", "/websocket/connections"),
            ("memory rss (bytes)", "/memory/rssBytes"),
            ("store", "/store/kind"),
            ("instances", "/instances"),
        ]
        .iter()
        .map(|(k, p)| vec![(*k).to_owned(), get(p)])
        .collect();
        out.text(&table(&[], rows))?;
    }
    if status == "ok" {
        Ok(())
    } else {
        Err(anyhow::Error::new(Unhealthy(status)))
    }
}
