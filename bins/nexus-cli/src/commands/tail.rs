//! `tail`: follows events live over the WebSocket, resuming by itself.

use std::io::{IsTerminal, Write};

use nexus_client::{Error, Incoming, State, Subscriber};
use serde_json::json;

use crate::cli::TailArgs;
use crate::output::Out;

pub(crate) fn tail(url: &str, token: &str, a: TailArgs, out: &mut Out) -> anyhow::Result<()> {
    if a.count == Some(0) {
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut builder = Subscriber::builder(url, token).events(a.events.clone());
        if let Some(since) = a.since {
            builder = builder.since(since);
        }
        let mut sub = builder.connect()?;
        let mut states = sub.watch_state();
        let mut seen = 0u64;
        let interactive = std::io::stderr().is_terminal();
        let result = loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break Ok(()),
                changed = states.changed() => {
                    if changed.is_err() {
                        continue;
                    }
                    let state = *states.borrow_and_update();
                    if state == State::Reconnecting && sub.counters().connects == 0 {
                        // Never connected: the server is not there (exit 3), not a lost connection.
                        break Err(anyhow::Error::new(Error::Network {
                            url: url.to_owned(),
                            reason: "cannot open the WebSocket".into(),
                        }));
                    }
                    if interactive {
                        let note = match state {
                            State::Connected => "connected",
                            State::Reconnecting => "connection lost; reconnecting",
                            _ => continue,
                        };
                        let _ = writeln!(std::io::stderr(), "nexus-cli: {note}");
                    }
                }
                incoming = sub.next() => match incoming {
                    None => break Err(anyhow::Error::new(Error::Closed)),
                    Some(Incoming::ServerError { code, message }) => {
                        if code == "UNAUTHORIZED" || code == "FORBIDDEN" {
                            break Err(anyhow::anyhow!("{code}: {message}"));
                        }
                        let _ = writeln!(std::io::stderr(), "nexus-cli: server error {code}: {message}");
                    }
                    Some(Incoming::Event(e)) => {
                        if out.json() {
                            out.json_line(&json!({
                                "event": e.event_type, "id": e.id, "sequence": e.sequence,
                                "payload": e.payload, "timestamp": e.timestamp_ms,
                            }))?;
                        } else {
                            out.line(&format!("#{:<8} {:<28} {:<38} {}", e.sequence, e.event_type, e.id, e.payload))?;
                        }
                        seen += 1;
                        if a.count.is_some_and(|c| seen >= c) {
                            break Ok(());
                        }
                    }
                    Some(_) => {}
                },
            }
        };
        sub.close().await;
        result
    })
}
