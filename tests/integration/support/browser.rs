//! A headless Chromium for the console's tests: Debian's `chromedriver` on a loopback port,
//! driven through WebDriver with `fantoccini`, behind a blocking API like the rest of the
//! support code.
//!
//! Every command and every wait is bounded: a command that gets no answer within
//! [`COMMAND_TIMEOUT`], or a condition that does not hold within [`WAIT`], fails the test with
//! the page's address, its visible text and what the browser logged. The browser's console log
//! (`goog:loggingPrefs` `{"browser": "ALL"}`, read through chromedriver's `/se/log` endpoint)
//! is collected as the test goes: an error entry (a script error, `console.error`, a failed
//! load, a Content-Security-Policy violation) fails the test unless the test said it expects
//! it. Screenshots go to `target/console-screenshots/<page>-<width>.png`.
//!
//! It uses no other support module, so `examples/console_render.rs` includes it too.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// The longest one WebDriver command may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);
/// The longest a condition is waited for (the machine is small and shared: a few seconds of
/// margin over what a page needs).
pub const WAIT: Duration = Duration::from_secs(10);
/// The desktop and the phone viewports of the screenshots.
pub const DESKTOP: (u32, u32) = (1280, 800);
pub const PHONE: (u32, u32) = (390, 844);

const INSTALL: &str = "install Debian's Chromium and its WebDriver: \
     `apt-get update && apt-get install -y chromium chromium-driver` (.ci/run does it when \
     chromedriver is missing)";

/// One entry of the browser's console log.
#[derive(Debug, Clone)]
pub struct LogEntry {
    /// `SEVERE`, `WARNING`, `INFO`, `DEBUG`.
    pub level: String,
    /// `console-api`, `javascript`, `network`, `security`, ...
    pub source: String,
    pub message: String,
}

impl LogEntry {
    fn from_json(entry: &Value) -> Self {
        let field = |name: &str| entry[name].as_str().unwrap_or_default().to_owned();
        LogEntry {
            level: field("level"),
            source: field("source"),
            message: field("message"),
        }
    }

    fn is_error(&self) -> bool {
        self.level == "SEVERE"
    }
}

/// A Chromium session and the chromedriver that runs it.
pub struct Browser {
    rt: tokio::runtime::Runtime,
    client: Option<Client>,
    driver: Child,
    /// chromedriver's `/session/{id}/se/log`: the browser's log entries since the last read.
    log_url: String,
    /// Error entries nobody expected, with the step they appeared in.
    unexpected: RefCell<Vec<(String, LogEntry)>>,
    /// Every entry so far (for failure messages).
    seen: RefCell<Vec<LogEntry>>,
    screenshots: PathBuf,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free loopback port and opens a headless Chromium session with a
    /// fresh profile and a 1280x800 viewport.
    pub fn start() -> Self {
        let chromedriver = find_program(&["chromedriver"]).unwrap_or_else(|| {
            panic!("chromedriver is not on PATH: {INSTALL}");
        });
        let chromium = find_program(&["chromium", "chromium-browser", "google-chrome"])
            .unwrap_or_else(|| panic!("no Chromium on PATH: {INSTALL}"));
        let profile = tempfile::tempdir().expect("temp dir for the browser profile");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (driver, port) = start_driver(&chromedriver, profile.path());
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--no-default-browser-check",
                    "--disable-extensions",
                    format!("--window-size={},{}", DESKTOP.0, DESKTOP.1),
                    format!("--user-data-dir={}", profile.path().join("profile").display()),
                ],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
            "timeouts": {"pageLoad": 20_000, "script": 10_000, "implicit": 0},
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("an object literal")
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let session = rt.block_on(async {
            tokio::time::timeout(
                COMMAND_TIMEOUT,
                ClientBuilder::new(connector)
                    .capabilities(capabilities)
                    .connect(&format!("http://127.0.0.1:{port}")),
            )
            .await
        });
        let client = match session {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => panic!(
                "chromedriver could not start {} ({e}); its log:\n{}",
                chromium.display(),
                driver_log(profile.path())
            ),
            Err(_) => panic!(
                "no Chromium session within {COMMAND_TIMEOUT:?}; chromedriver's log:\n{}",
                driver_log(profile.path())
            ),
        };
        let session = rt
            .block_on(client.session_id())
            .ok()
            .flatten()
            .expect("a session id");
        let log_url = format!("http://127.0.0.1:{port}/session/{session}/se/log");
        let screenshots = screenshot_dir();
        std::fs::create_dir_all(&screenshots).expect("create the screenshot directory");
        let browser = Browser {
            rt,
            client: Some(client),
            driver,
            log_url,
            unexpected: RefCell::new(Vec::new()),
            seen: RefCell::new(Vec::new()),
            screenshots,
            _profile: profile,
        };
        browser.set_viewport(DESKTOP);
        browser
    }

    fn client(&self) -> &Client {
        self.client
            .as_ref()
            .expect("the session is open until drop")
    }

    /// Runs one WebDriver command, bounded by [`COMMAND_TIMEOUT`].
    fn run<T, E: std::fmt::Display>(
        &self,
        what: &str,
        command: impl Future<Output = Result<T, E>>,
    ) -> T {
        match self
            .rt
            .block_on(async { tokio::time::timeout(COMMAND_TIMEOUT, command).await })
        {
            Ok(Ok(value)) => value,
            Ok(Err(e)) => panic!("WebDriver: {what}: {e}"),
            Err(_) => panic!("WebDriver: {what}: no answer within {COMMAND_TIMEOUT:?}"),
        }
    }

    /// Like `run`, giving the error back (for commands a wait retries).
    fn try_run<T, E>(&self, command: impl Future<Output = Result<T, E>>) -> Option<T> {
        self.rt
            .block_on(async { tokio::time::timeout(COMMAND_TIMEOUT, command).await })
            .ok()?
            .ok()
    }

    /// Sets the viewport (not the window) to `width` x `height` CSS pixels: the window is
    /// resized, then grown by what its frame takes.
    pub fn set_viewport(&self, (width, height): (u32, u32)) {
        let client = self.client();
        self.run(
            "resize the window",
            client.set_window_rect(0, 0, width, height),
        );
        let inner = self.execute("return [window.innerWidth, window.innerHeight]", vec![]);
        let inner =
            |i: usize| u32::try_from(inner[i].as_u64().expect("a size")).expect("a small size");
        let (w, h) = (
            width + width.saturating_sub(inner(0)),
            height + height.saturating_sub(inner(1)),
        );
        self.run("resize the window", client.set_window_rect(0, 0, w, h));
        let inner = self.execute("return [window.innerWidth, window.innerHeight]", vec![]);
        assert_eq!(
            inner,
            json!([width, height]),
            "the viewport should be {width}x{height}"
        );
    }

    /// Opens `url` and waits for the document to have loaded.
    pub fn goto(&self, url: &str) {
        self.run(&format!("open {url}"), self.client().goto(url));
    }

    /// Runs a script in the page and returns its value.
    pub fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.run(
            &format!("execute `{script}`"),
            self.client().execute(script, args),
        )
    }

    /// Runs an asynchronous script (its last argument is the callback) and returns the value
    /// it calls back with; bounded by the session's script timeout (10 s).
    #[allow(
        dead_code,
        reason = "examples/console_render.rs times the pages with it"
    )]
    pub fn execute_async(&self, script: &str, args: Vec<Value>) -> Value {
        self.run(
            &format!("execute async `{script}`"),
            self.client().execute_async(script, args),
        )
    }

    /// Polls `condition` every 50 ms until it holds or [`WAIT`] passes; then the test fails
    /// with `what`, the page's address and text, and the browser's log.
    pub fn wait_until(&self, what: &str, mut condition: impl FnMut(&Self) -> bool) {
        self.wait_within(WAIT, what, &mut condition);
    }

    /// `wait_until` with a deadline of the test's own (a delivery that waits for retries).
    pub fn wait_within(
        &self,
        within: Duration,
        what: &str,
        condition: &mut dyn FnMut(&Self) -> bool,
    ) {
        let start = Instant::now();
        while !condition(self) {
            if start.elapsed() > within {
                panic!("{what}: not within {within:?}\n{}", self.describe_page());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The page's address and visible text, and the log so far: what a failure shows.
    pub fn describe_page(&self) -> String {
        let page = self
            .try_run(self.client().execute(
                "return [location.href, document.body ? document.body.innerText : '']",
                vec![],
            ))
            .unwrap_or(Value::Null);
        let mut text = page[1].as_str().unwrap_or("(no page text)").to_owned();
        if text.len() > 3000 {
            let mut cut = 3000;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str(" [...]");
        }
        self.collect_log();
        let mut out = format!(
            "page: {}\n--- page text ---\n{text}\n--- browser log ---\n",
            page[0].as_str().unwrap_or("(unknown)")
        );
        for entry in self.seen.borrow().iter().rev().take(20).rev() {
            let _ = writeln!(out, "{} {} {}", entry.level, entry.source, entry.message);
        }
        out
    }

    /// The elements `selector` finds now (none is no error). A selector that starts with `/` or
    /// `(` is XPath, anything else CSS.
    pub fn find_all(&self, selector: &str) -> Vec<fantoccini::elements::Element> {
        self.try_run(self.client().find_all(locator(selector)))
            .unwrap_or_default()
    }

    /// Waits for `selector` to find an element, and returns the first.
    pub fn find(&self, selector: &str) -> fantoccini::elements::Element {
        let mut found = None;
        self.wait_until(&format!("an element {selector}"), |b| {
            found = b.find_all(selector).into_iter().next();
            found.is_some()
        });
        found.expect("found by the wait")
    }

    /// Whether `selector` finds an element now.
    pub fn exists(&self, selector: &str) -> bool {
        !self.find_all(selector).is_empty()
    }

    /// Waits for `selector` to find a displayed, enabled element and clicks it.
    pub fn click(&self, selector: &str) {
        self.wait_until(&format!("click {selector}"), |b| {
            b.find_all(selector).into_iter().any(|e| {
                let ready = b.try_run(e.is_displayed()).unwrap_or(false)
                    && b.try_run(e.is_enabled()).unwrap_or(false);
                ready && b.try_run(e.click()).is_some()
            })
        });
    }

    /// Replaces the value of the field `selector` finds by `value`, typed as a user would:
    /// select all, delete, type (WebDriver's element clear fires no `input` event, which a
    /// page that listens to `input` would miss).
    pub fn fill(&self, selector: &str, value: &str) {
        let field = self.find(selector);
        let select_all_and_delete = format!("{}a{}{}", Key::Control, Key::Null, Key::Backspace);
        self.run(
            &format!("empty {selector}"),
            field.send_keys(&select_all_and_delete),
        );
        if !value.is_empty() {
            self.run(&format!("type into {selector}"), field.send_keys(value));
        }
        let now = self.run(&format!("read {selector}"), field.prop("value"));
        assert_eq!(now.as_deref(), Some(value), "the value of {selector}");
    }

    /// Presses Enter in the field `selector` finds (which commits a `change`, or submits).
    pub fn press_enter(&self, selector: &str) {
        let field = self.find(selector);
        self.run(
            &format!("press Enter in {selector}"),
            field.send_keys(&Key::Enter.to_string()),
        );
    }

    /// Presses Tab where the focus is, as a keyboard user moves to the next control.
    pub fn press_tab(&self) {
        let focused = self.run("the focused element", self.client().active_element());
        self.run("press Tab", focused.send_keys(&Key::Tab.to_string()));
    }

    /// The focused element (tag and text) and whether it shows a focus indicator (an outline
    /// or a box shadow).
    pub fn focus(&self) -> (String, bool) {
        let focus = self.execute(
            "const e = document.activeElement;
             const s = getComputedStyle(e);
             const ring = (s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0)
               || s.boxShadow !== 'none';
             return [e.tagName.toLowerCase() + ' ' + (e.innerText || e.id || '').trim().slice(0, 40), ring];",
            vec![],
        );
        (
            focus[0].as_str().unwrap_or_default().to_owned(),
            focus[1] == json!(true),
        )
    }

    /// Ticks or unticks the checkbox `selector` finds.
    pub fn set_checked(&self, selector: &str, checked: bool) {
        let field = self.find(selector);
        if self.run(&format!("read {selector}"), field.is_selected()) != checked {
            self.run(&format!("click {selector}"), field.click());
        }
        let now = self.run(&format!("read {selector}"), field.is_selected());
        assert_eq!(now, checked, "the state of {selector}");
    }

    /// The visible text of the first element `selector` finds (waited for).
    pub fn text(&self, selector: &str) -> String {
        let element = self.find(selector);
        self.run(&format!("read the text of {selector}"), element.text())
    }

    /// The text of the first element `selector` finds now, if any.
    pub fn text_now(&self, selector: &str) -> Option<String> {
        let element = self.find_all(selector).into_iter().next()?;
        self.try_run(element.text())
    }

    /// An attribute of the first element `selector` finds now, if any.
    pub fn attr_now(&self, selector: &str, name: &str) -> Option<String> {
        let element = self.find_all(selector).into_iter().next()?;
        self.try_run(element.attr(name)).flatten()
    }

    /// Waits for the text of `selector` to contain every one of `parts`; returns the text.
    pub fn wait_for_text(&self, selector: &str, parts: &[&str]) -> String {
        let mut text = String::new();
        self.wait_until(&format!("{selector} showing {parts:?}"), |b| {
            text = b.text_now(selector).unwrap_or_default();
            parts.iter().all(|p| text.contains(p))
        });
        text
    }

    /// Waits until the page `<main id="page">` shows has rendered its first data
    /// (`data-ready="true"`) under the heading `h1`.
    pub fn wait_ready(&self, h1: &str) {
        self.wait_until(&format!("the page \"{h1}\" ready"), |b| {
            b.exists("main#page[data-ready='true']")
                && b.text_now("main#page h1").is_some_and(|t| t.trim() == h1)
        });
    }

    /// Fails unless the document fits the viewport's width (no horizontal scrolling of the
    /// page; a table may scroll inside its own box). Names what sticks out.
    pub fn assert_no_overflow(&self, page: &str) {
        let sizes = self.execute(
            "const d = document.documentElement;
             const wide = [];
             for (const e of document.querySelectorAll('body *')) {
               const r = e.getBoundingClientRect();
               if (r.right > window.innerWidth + 0.5 && r.width > 0) {
                 let inside = false;
                 for (let p = e.parentElement; p; p = p.parentElement) {
                   const s = getComputedStyle(p);
                   if (s.overflowX === 'auto' || s.overflowX === 'scroll' || s.overflowX === 'hidden') {
                     inside = true; break;
                   }
                 }
                 if (!inside && wide.length < 8) {
                   wide.push(e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
                     + (e.className && typeof e.className === 'string' ? '.' + e.className.trim().split(/\\s+/).join('.') : '')
                     + ' right=' + Math.round(r.right));
                 }
               }
             }
             return [d.scrollWidth, window.innerWidth, wide];",
            vec![],
        );
        let (scroll, inner) = (
            sizes[0].as_u64().expect("scrollWidth"),
            sizes[1].as_u64().expect("innerWidth"),
        );
        assert!(
            scroll <= inner,
            "{page} at {inner} px: the document is {scroll} px wide; sticking out: {}",
            sizes[2]
        );
    }

    /// Fails unless every visible text on the page meets WCAG AA contrast against the
    /// background it sits on: 4.5:1, or 3:1 for large text (24 px, or 18.66 px bold). Text of
    /// disabled controls is exempt, as WCAG exempts inactive components. The background is the
    /// first opaque one up the tree (white when none), the colours blended by their alpha.
    pub fn assert_contrast(&self, page: &str) {
        let failures = self.execute(
            "const rgba = (c) => {
               const m = c.match(/rgba?\\(([^)]+)\\)/);
               if (!m) return [0, 0, 0, 1];
               const p = m[1].split(/[ ,\\/]+/).filter(Boolean).map(Number);
               return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
             };
             const over = (top, under) => [0, 1, 2].map(i => top[i] * top[3] + under[i] * (1 - top[3])).concat([1]);
             const background = (e) => {
               const layers = [];
               for (let n = e; n; n = n.parentElement) {
                 const c = rgba(getComputedStyle(n).backgroundColor);
                 if (c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
               }
               let colour = [255, 255, 255, 1];
               for (const layer of layers.reverse()) colour = over(layer, colour);
               return colour;
             };
             const luminance = (c) => {
               const [r, g, b] = c.slice(0, 3).map(v => {
                 v /= 255;
                 return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
               });
               return 0.2126 * r + 0.7152 * g + 0.0722 * b;
             };
             const failures = [];
             for (const e of document.querySelectorAll('body *')) {
               const own = [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
               if (!own || e.closest('svg, :disabled, [aria-disabled=\\'true\\'], [hidden]')) continue;
               const r = e.getBoundingClientRect();
               const style = getComputedStyle(e);
               if (r.width === 0 || r.height === 0 || style.visibility === 'hidden' || Number(style.opacity) === 0) continue;
               const bg = background(e);
               const fg = over(rgba(style.color), bg);
               const [hi, lo] = [luminance(fg), luminance(bg)].sort((a, b) => b - a);
               const ratio = (hi + 0.05) / (lo + 0.05);
               const size = parseFloat(style.fontSize);
               const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
               if (ratio < (large ? 3 : 4.5) && failures.length < 10) {
                 failures.push(e.tagName.toLowerCase() + ' ' + JSON.stringify(e.textContent.trim().slice(0, 40)) + ' '
                   + style.color + ' on rgb(' + bg.slice(0, 3).map(Math.round).join(', ') + ') = '
                   + ratio.toFixed(2) + ':1');
               }
             }
             return failures;",
            vec![],
        );
        let failures: Vec<&str> = failures
            .as_array()
            .expect("a list")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            failures.is_empty(),
            "{page}: text below WCAG AA contrast:\n{}",
            failures.join("\n")
        );
    }

    /// Saves a PNG of the viewport as `<page>-<viewport width>.png`; returns its path.
    pub fn screenshot(&self, page: &str) -> PathBuf {
        let width = self.execute("return window.innerWidth", vec![]);
        let png = self.run(&format!("screenshot of {page}"), self.client().screenshot());
        let path = self.screenshots.join(format!("{page}-{width}.png"));
        std::fs::write(&path, png)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }

    /// Reads what the browser logged since the last read; error entries go to the unexpected
    /// list unless `expected` accepts them. Returns how many `expected` accepted.
    fn collect_log_for(&self, step: &str, expected: &dyn Fn(&LogEntry) -> bool) -> usize {
        // chromedriver's log endpoint (not W3C, so not in fantoccini): `{"value": [entries]}`.
        let answer: Value = agent()
            .post(&self.log_url)
            .send_json(json!({"type": "browser"}))
            .and_then(|mut r| r.body_mut().read_json())
            .unwrap_or_else(|e| panic!("chromedriver's browser log: {e}"));
        let entries: Vec<LogEntry> = answer["value"]
            .as_array()
            .unwrap_or_else(|| panic!("the browser log is not a list of entries: {answer}"))
            .iter()
            .map(LogEntry::from_json)
            .collect();
        let mut accepted = 0;
        for entry in entries {
            if entry.is_error() {
                if expected(&entry) {
                    accepted += 1;
                } else {
                    self.unexpected
                        .borrow_mut()
                        .push((step.to_owned(), entry.clone()));
                }
            }
            self.seen.borrow_mut().push(entry);
        }
        accepted
    }

    fn collect_log(&self) {
        self.collect_log_for("(between steps)", &|_| false);
    }

    /// Fails if the browser logged an error entry during `step` or before it.
    pub fn assert_log_clean(&self, step: &str) {
        self.collect_log_for(step, &|_| false);
        let unexpected = self.unexpected.borrow();
        if !unexpected.is_empty() {
            let mut list = String::new();
            for (during, entry) in unexpected.iter() {
                let _ = writeln!(list, "[{during}] {} {}", entry.source, entry.message);
            }
            panic!("the browser logged errors (up to \"{step}\"):\n{list}");
        }
    }

    /// The step `step` makes the browser log errors that `expected` accepts (a refused
    /// token's `401`, say) and no other: at least one, and any other fails the test.
    pub fn expect_log_errors(&self, step: &str, expected: impl Fn(&LogEntry) -> bool) {
        let mut accepted = 0;
        self.wait_until(
            &format!("{step}: the expected error in the browser log"),
            |b| {
                accepted += b.collect_log_for(step, &expected);
                accepted > 0
            },
        );
        self.assert_log_clean(step);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = self.rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(5), client.close()).await
            });
        }
        // chromedriver runs in a process group of its own with the browser under it: end the
        // group, so no Chromium outlives a failed test.
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.driver.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// An XPath selector for a button by its text, optionally inside `scope` (an XPath).
pub fn button(text: &str) -> String {
    format!("//button[normalize-space(.)={}]", xpath_literal(text))
}

/// An XPath selector for a button by its text inside `scope` (an XPath).
pub fn button_in(scope: &str, text: &str) -> String {
    format!("{scope}{}", button(text))
}

/// An XPath selector for a link by its text.
pub fn link(text: &str) -> String {
    format!("//a[normalize-space(.)={}]", xpath_literal(text))
}

/// A string as an XPath literal (the console's texts hold no double quote; a test that passes
/// one gets a clear failure).
fn xpath_literal(text: &str) -> String {
    assert!(!text.contains('"'), "an XPath literal without \": {text}");
    format!("\"{text}\"")
}

fn locator(selector: &str) -> Locator<'_> {
    if selector.starts_with('/') || selector.starts_with('(') {
        Locator::XPath(selector)
    } else {
        Locator::Css(selector)
    }
}

/// A client for chromedriver's own endpoints (status, log), bounded in time.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(COMMAND_TIMEOUT))
        .build()
        .into()
}

/// The first of `names` found on `PATH`.
fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

/// `target/console-screenshots`, beside the profile directories of this build.
fn screenshot_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test> or target/<profile>/examples/<example>
    let target = exe
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .expect("the target directory");
    target.join("console-screenshots")
}

fn driver_log(profile: &Path) -> String {
    std::fs::read_to_string(profile.join("chromedriver.log"))
        .map(|log| {
            let lines: Vec<&str> = log.lines().collect();
            lines[lines.len().saturating_sub(30)..].join("\n")
        })
        .unwrap_or_else(|e| format!("(no log: {e})"))
}

/// Starts chromedriver on a free loopback port (asked of the kernel, then handed over; another
/// process may take it in between, so a few attempts) and waits for it to be ready.
fn start_driver(chromedriver: &Path, profile: &Path) -> (Child, u16) {
    use std::os::unix::process::CommandExt as _;
    let mut last = String::new();
    for _ in 0..3 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = std::fs::File::create(profile.join("chromedriver.log"))
            .expect("chromedriver's log file");
        let mut child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
        let status = format!("http://127.0.0.1:{port}/status");
        let agent = agent();
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Some(exit) = child.try_wait().expect("try_wait") {
                last = format!("chromedriver exited with {exit}: {}", driver_log(profile));
                break;
            }
            let ready = agent
                .get(&status)
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_json::<Value>().ok())
                .is_some_and(|s| s["value"]["ready"] == true);
            if ready {
                return (child, port);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if child.try_wait().expect("try_wait").is_none() {
            last = format!(
                "chromedriver not ready within {WAIT:?}: {}",
                driver_log(profile)
            );
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    panic!("{last}");
}
