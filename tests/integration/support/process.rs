//! The real binaries of the workspace (`nexus-server`, `nexus-cli`) as child processes.
//!
//! Cargo gives `CARGO_BIN_EXE_*` only to tests of the package that owns the binary, so these
//! are found next to the test binary (`target/<profile>/`). `cargo test --workspace` (what
//! `.ci/run` runs) builds them first; a run of this test binary alone needs
//! `cargo build -p nexus-server -p nexus-cli` before it, or it runs whatever is there.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const SECRET: &str = "process-node-secret-0123456789abcdef";
pub const ADMIN: &str = "process-admin-token-0123456789abcdef";

/// The path of a workspace binary.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build -p {name}` first (`cargo test --workspace` builds it)",
        path.display()
    );
    path
}

/// A `nexus-server` process with a data directory and a port that outlive it, so it can be
/// killed and started again on the same data and address.
pub struct ServerProcess {
    child: Option<Child>,
    pub port: u16,
    pub base: String,
    log: Arc<Mutex<Vec<String>>>,
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl ServerProcess {
    /// Starts it on a free port (`PORT=0`) with a fresh data directory.
    pub fn start() -> Self {
        Self::start_with(&[], &[])
    }

    /// Like `start`, with more environment variables and files (name, content) written into its
    /// working directory first (a `NEXUS_CONFIG` file, say).
    pub fn start_with(env: &[(&str, &str)], files: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("data")).expect("data dir");
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).expect("write a file of the server");
        }
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (child, port) = spawn(dir.path(), 0, &log, &env).expect("nexus-server starts");
        ServerProcess {
            child: Some(child),
            port,
            base: format!("http://127.0.0.1:{port}"),
            log,
            dir,
            env,
        }
    }

    /// SIGKILL: no drain, no goodbye; what was acknowledged is on disk.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("reaped");
        }
    }

    /// SIGTERM and wait (bounded) for the drain to end; returns the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit within 40 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts it again on the same port and data directory. The port may take a moment to be
    /// free again; a bounded number of attempts.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop it first");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match spawn(self.dir.path(), self.port, &self.log, &self.env) {
                Ok((child, port)) => {
                    assert_eq!(port, self.port);
                    self.child = Some(child);
                    return;
                }
                Err(e) => {
                    assert!(Instant::now() < deadline, "cannot restart: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    /// Its process id (to read `/proc/<pid>/status`, say).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Its standard error so far (for failure messages).
    pub fn log(&self) -> String {
        self.log.lock().expect("log").join("\n")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Spawns the server; the port it listens on, or what it said when it did not start.
fn spawn(
    dir: &Path,
    port: u16,
    log: &Arc<Mutex<Vec<String>>>,
    env: &[(String, String)],
) -> Result<(Child, u16), String> {
    let mut child = Command::new(bin("nexus-server"))
        .current_dir(dir)
        .env_clear()
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("DATA_DIR", dir.join("data"))
        .env("NEXUS_SECRET", SECRET)
        .env("NEXUS_ADMIN_TOKEN", ADMIN)
        .env("LOG_FORMAT", "json")
        .env("LOG_LEVEL", "warn")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nexus-server");
    let stderr = child.stderr.take().expect("stderr");
    let sink = Arc::clone(log);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().expect("log").push(line);
        }
    });
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    let _ = stdout.read_line(&mut line);
    // With LOG_FORMAT=json the listening line is a JSON object whose `url` is the address.
    let base = serde_json::from_str::<serde_json::Value>(&line)
        .ok()
        .and_then(|line| line["url"].as_str().map(str::to_owned));
    let Some(base) = base else {
        let status = child.wait().expect("exited");
        // Give the stderr thread a moment to collect the last line it printed.
        let deadline = Instant::now() + Duration::from_secs(2);
        while log.lock().expect("log").is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        return Err(format!(
            "exited with {status} before listening: {}",
            log.lock().expect("log").join("\n")
        ));
    };
    let port = base
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port in the listening line");
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in stdout.lines().map_while(Result::ok) {});
    Ok((child, port))
}
