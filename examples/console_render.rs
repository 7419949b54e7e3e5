//! How fast the operator console renders against a large log: fills a SQLite store with
//! 1,000,000 events (the store API, in batches), starts the real `nexus-server` on it, opens
//! the console in headless Chromium and prints, for the overview and the event log, the time
//! from the start of the navigation to `data-ready="true"` on `<main id="page">` (the page has
//! rendered its first data), read on the page's own clock (`performance.now()`).
//!
//! ```sh
//! cargo build --release -p nexus-server
//! cargo run --release --example console_render            # 1,000,000 events, 7 runs a page
//! cargo run --release --example console_render -- 100000 3
//! ```
//!
//! Needs Debian's `chromium` and `chromium-driver` (`apt-get install -y chromium
//! chromium-driver`). Two measurements a page: a fresh load of the console at that route (the
//! document, its modules and the page's API calls), and the move to it from another page (the
//! route change and the API calls only).

use std::error::Error;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use nexus_event::{EventType, NewEvent};
use nexus_store::{EventLog, SqliteStore};
use serde_json::{Value, json};

#[allow(dead_code, unreachable_pub)]
#[path = "../tests/integration/support/browser.rs"]
mod browser;

use browser::Browser;

const ADMIN: &str = "console-render-admin-token-0123456789";
const SECRET: &str = "console-render-node-secret-0123456789";
const BATCH: usize = 10_000;

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let events: u64 = args.next().map_or(Ok(1_000_000), |a| a.parse())?;
    let runs: usize = args.next().map_or(Ok(7), |a| a.parse())?;
    if runs == 0 {
        return Err("at least one run".into());
    }

    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let filled = fill(&data, events)?;
    println!(
        "filled {events} events in {:.1} s ({:.0} events/s), database {:.0} MB",
        filled.as_secs_f64(),
        events as f64 / filled.as_secs_f64(),
        dir_size(&data) as f64 / 1e6
    );

    let (mut server, base) = start_server(dir.path(), &data)?;
    let result = measure(&base, runs);
    let _ = server.kill();
    let _ = server.wait();
    result
}

/// Appends `events` events through the store API, `BATCH` a call, and closes the store.
fn fill(data: &Path, events: u64) -> Result<std::time::Duration, Box<dyn Error>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let types = [
        EventType::new("PAYMENT_RECEIVED")?,
        EventType::new("MINT_CONFIRMED")?,
        EventType::new("ORDER_SHIPPED")?,
    ];
    rt.block_on(async {
        let store = SqliteStore::builder(data).create_dir(true).open()?;
        let start = Instant::now();
        let mut appended = 0u64;
        while appended < events {
            let n = (events - appended).min(BATCH as u64);
            let batch = (appended..appended + n)
                .map(|i| {
                    NewEvent::new(types[(i % 3) as usize].clone(), "flowpay").payload(json!({
                        "order": format!("o-{i}"),
                        "amount": i % 100_000,
                        "currency": "EUR",
                    }))
                })
                .collect();
            store.append(batch).await?;
            appended += n;
        }
        let took = start.elapsed();
        store.close().await;
        Ok(took)
    })
}

/// The release (or debug) `nexus-server` beside this example, on a free port over `data`.
fn start_server(dir: &Path, data: &Path) -> Result<(Child, String), Box<dyn Error>> {
    let exe = std::env::current_exe()?;
    // target/<profile>/examples/console_render -> target/<profile>/nexus-server
    let bin: PathBuf = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("the example's directory")?
        .join("nexus-server");
    if !bin.is_file() {
        return Err(format!(
            "{} is missing: `cargo build --release -p nexus-server` first (the same profile as this example)",
            bin.display()
        )
        .into());
    }
    let mut child = Command::new(&bin)
        .current_dir(dir)
        .env_clear()
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("DATA_DIR", data)
        .env("NEXUS_SECRET", SECRET)
        .env("NEXUS_ADMIN_TOKEN", ADMIN)
        .env("LOG_FORMAT", "json")
        .env("LOG_LEVEL", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut stdout = std::io::BufReader::new(child.stdout.take().ok_or("stdout")?);
    let mut line = String::new();
    stdout.read_line(&mut line)?;
    let base = serde_json::from_str::<Value>(&line)
        .ok()
        .and_then(|l| l["url"].as_str().map(str::to_owned))
        .ok_or_else(|| format!("nexus-server did not start: {line:?}"))?;
    std::thread::spawn(move || for _ in stdout.lines().map_while(Result::ok) {});
    Ok((child, base))
}

/// Waits on the page for `<main id="page" data-ready="true">` under the heading `h1`; calls
/// back with `performance.now()` when it holds (at once if it already does).
const READY_AT: &str = "
    const [h1, done] = arguments;
    const ready = () => {
      const main = document.querySelector('main#page');
      const title = main && main.querySelector('h1');
      return main && main.dataset.ready === 'true' && title && title.textContent.trim() === h1;
    };
    if (ready()) { done([performance.now(), true]); return; }
    const watch = new MutationObserver(() => {
      if (ready()) { watch.disconnect(); done([performance.now(), false]); }
    });
    watch.observe(document.documentElement, {subtree: true, childList: true, attributes: true, characterData: true});";

/// Moves to `hash` from the current page and calls back with the milliseconds until its
/// `data-ready="true"` under the heading `h1`.
const MOVE_TO: &str = "
    const [hash, h1, done] = arguments;
    const ready = () => {
      const main = document.querySelector('main#page');
      const title = main && main.querySelector('h1');
      return main && main.dataset.ready === 'true' && title && title.textContent.trim() === h1;
    };
    const start = performance.now();
    const watch = new MutationObserver(() => {
      if (ready()) { watch.disconnect(); done(performance.now() - start); }
    });
    watch.observe(document.documentElement, {subtree: true, childList: true, attributes: true, characterData: true});
    location.hash = hash;";

fn measure(base: &str, runs: usize) -> Result<(), Box<dyn Error>> {
    let browser = Browser::start();
    let ui = format!("{base}/ui/");
    browser.goto(&ui);
    browser.fill("input#token", ADMIN);
    browser.click(&browser::button_in("//form[@id='login']", "Sign in"));
    browser.wait_ready("Overview");

    let pages = [
        ("overview", "#/overview", "Overview"),
        ("event log", "#/events", "Event log"),
    ];
    for (name, route, h1) in pages {
        // A fresh load: a blank page first, so the console's document loads again (the token
        // stays in the tab's sessionStorage).
        let mut fresh = Vec::with_capacity(runs);
        let mut late = 0;
        for _ in 0..runs {
            browser.goto("about:blank");
            browser.goto(&format!("{ui}{route}"));
            let at = browser.execute_async(READY_AT, vec![json!(h1)]);
            fresh.push(at[0].as_f64().ok_or("a time")?);
            if at[1] == json!(true) {
                late += 1;
            }
        }
        // The move from another page.
        let (other, other_h1) = if route == "#/overview" {
            ("#/events", "Event log")
        } else {
            ("#/overview", "Overview")
        };
        let mut moved = Vec::with_capacity(runs);
        for _ in 0..runs {
            browser.execute_async(MOVE_TO, vec![json!(other), json!(other_h1)]);
            let took = browser.execute_async(MOVE_TO, vec![json!(route), json!(h1)]);
            moved.push(took.as_f64().ok_or("a time")?);
        }
        println!(
            "{name}: fresh load to data-ready {} ms{}; from another page {} ms",
            summary(&mut fresh),
            if late > 0 {
                format!(" ({late} runs were ready before the first look: upper bounds)")
            } else {
                String::new()
            },
            summary(&mut moved)
        );
    }
    browser.assert_log_clean("the measurements");
    Ok(())
}

/// `median (min-max)` of `times`.
fn summary(times: &mut [f64]) -> String {
    times.sort_by(f64::total_cmp);
    format!(
        "median {:.0} (min {:.0}, max {:.0}, {} runs)",
        times[times.len() / 2],
        times[0],
        times[times.len() - 1],
        times.len()
    )
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}
