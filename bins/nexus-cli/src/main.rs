//! `nexus-cli`: the Nexus operator tool over the ingress, admin and WebSocket APIs.
//!
//! Every command talks to one server (`--server`, `NEXUS_URL`) with the admin token (`--token`,
//! `NEXUS_ADMIN_TOKEN`); `publish` signs as a node (`--node`/`NEXUS_NODE`,
//! `--secret`/`NEXUS_SECRET`). Output is a human table by default and JSON with `--json`;
//! progress of long operations goes to standard error when it is a terminal. Exit codes are in
//! [`exit::EXIT_CODES`].

mod cli;
mod commands;
mod exit;
mod output;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use nexus_client::Error;
use serde_json::json;

use crate::cli::Cli;
use crate::exit::exit_code;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = exit_code(&e);
            let mut stderr = std::io::stderr().lock();
            if json {
                let mut error = json!({ "message": format!("{e:#}"), "exitCode": code });
                if let Some(api) = e.downcast_ref::<Error>().and_then(Error::api) {
                    error["status"] = json!(api.status);
                    error["code"] = json!(api.code);
                    error["requestId"] = json!(api.request_id);
                    error["details"] = json!(api.details);
                }
                let _ = writeln!(stderr, "{}", json!({ "error": error }));
            } else {
                let _ = writeln!(stderr, "nexus-cli: {e:#}");
            }
            ExitCode::from(code)
        }
    }
}
