//! `publish`: one event from the arguments, or JSON lines from stdin in batches.

use std::io::BufRead;
use std::time::Duration;

use nexus_client::{Draft, Publisher, RetryPolicy, Scheme};
use serde_json::Value;

use crate::cli::PublishArgs;
use crate::exit::usage;
use crate::output::{Out, Progress, table};

pub(crate) fn publish(
    url: &str,
    timeout: Duration,
    a: PublishArgs,
    out: &mut Out,
) -> anyhow::Result<()> {
    let scheme: Scheme = a.scheme.parse()?;
    if a.attempts == 0 {
        return Err(usage("--attempts must be at least 1"));
    }
    if !(1..=nexus_client::MAX_BATCH).contains(&a.batch_size) {
        return Err(usage(format!(
            "--batch-size must be 1 to {}",
            nexus_client::MAX_BATCH
        )));
    }
    let publisher = Publisher::builder(url, &a.node, &a.secret)
        .scheme(scheme)
        .timeout(timeout)
        .retry(RetryPolicy {
            max_attempts: a.attempts,
            ..RetryPolicy::default()
        })
        .build()?;
    let Some(event_type) = a.event_type else {
        if a.payload.is_some() || a.id.is_some() || a.correlation_id.is_some() {
            return Err(usage(
                "a payload, --id or --correlation-id needs an event type; without one, events are read from stdin",
            ));
        }
        return publish_lines(&publisher, a.batch_size, out);
    };
    let payload = match a.payload.as_deref() {
        None => None,
        Some("-") => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut text)?;
            Some(parse_json("the payload on stdin", &text)?)
        }
        Some(text) => Some(parse_json("the payload", text)?),
    };
    let mut draft = Draft::of_type(&event_type)?;
    if let Some(p) = payload {
        draft = draft.payload(p);
    }
    if let Some(id) = &a.id {
        draft = draft.id(id)?;
    }
    if let Some(c) = &a.correlation_id {
        draft = draft.correlation_id(c)?;
    }
    let ack = publisher.publish(draft)?;
    if out.json() {
        out.json_value(&serde_json::to_value(&ack)?)
    } else {
        let what = if ack.duplicate {
            "already stored (duplicate) as"
        } else {
            "stored as"
        };
        out.line(&format!("{event_type} {} {what} #{}", ack.id, ack.sequence))
    }
}

pub(crate) fn parse_json(what: &str, text: &str) -> anyhow::Result<Value> {
    serde_json::from_str(text).map_err(|e| usage(format!("{what} is not JSON: {e}")))
}

/// Publishes JSON lines from stdin in batches; a bad line stops before anything after it is
/// sent, naming its line number.
pub(crate) fn publish_lines(
    publisher: &Publisher,
    batch_size: usize,
    out: &mut Out,
) -> anyhow::Result<()> {
    let mut acks = Vec::new();
    let mut batch = Vec::new();
    let mut progress = Progress::new("published");
    let stdin = std::io::stdin();
    for (n, line) in stdin.lock().lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let value = parse_json(&format!("line {}", n + 1), &line)?;
        let draft = Draft::from_json(&value).map_err(|e| usage(format!("line {}: {e}", n + 1)))?;
        batch.push(draft);
        if batch.len() == batch_size {
            acks.extend(publisher.publish_batch(std::mem::take(&mut batch))?);
            progress.update(acks.len() as u64, None);
        }
    }
    if !batch.is_empty() {
        acks.extend(publisher.publish_batch(batch)?);
        progress.update(acks.len() as u64, None);
    }
    progress.finish();
    if acks.is_empty() {
        return Err(usage("no events on stdin (one JSON object per line)"));
    }
    if out.json() {
        return out.json_value(&serde_json::to_value(&acks)?);
    }
    let rows = acks
        .iter()
        .map(|a| {
            vec![
                a.sequence.to_string(),
                a.id.clone(),
                if a.duplicate { "yes" } else { "no" }.to_owned(),
            ]
        })
        .collect();
    out.text(&table(&["SEQ", "ID", "DUPLICATE"], rows))
}
