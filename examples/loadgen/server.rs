//! The server the suite starts when it has no `--url`: a fresh data directory, no rate limit,
//! and its resident memory read from `/proc`.

use std::process::{Child, Command, Stdio};

use crate::options::Options;

pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

pub(crate) struct Spawned {
    pub(crate) child: Child,
    pub(crate) url: String,
    _dir: tempfile::TempDir,
}

pub(crate) fn spawn_server(o: &Options) -> Result<Spawned, String> {
    use std::io::BufRead;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut command = Command::new(&o.server_bin);
    if let Some(url) = &o.database_url {
        command.env("DATABASE_URL", url);
    }
    let mut child = command
        .env("PORT", "0")
        .env("DATA_DIR", dir.path().join("data"))
        .env("NEXUS_SECRET", &o.secret)
        .env("NEXUS_ADMIN_TOKEN", &o.admin)
        .env("RATE_LIMIT_MAX_REQUESTS", "0")
        .env("LOG_LEVEL", "warn")
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            format!(
                "cannot start {} ({e}); build it with `cargo build --release -p nexus-server`",
                o.server_bin
            )
        })?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    // With LOG_FORMAT=json the listening line is a JSON object whose `url` is the address.
    let url = serde_json::from_str::<serde_json::Value>(&line)
        .ok()
        .and_then(|line| line["url"].as_str().map(str::to_owned))
        .ok_or_else(|| format!("unexpected first line {line:?}"))?;
    Ok(Spawned {
        child,
        url,
        _dir: dir,
    })
}
