//! Writing results: stdout for results (tables or JSON), stderr for notes and progress.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Standard output, in table or JSON mode. A closed pipe (`| head`) ends the program quietly.
pub(crate) struct Out {
    json: bool,
    stdout: std::io::Stdout,
}

impl Out {
    pub(crate) fn new(json: bool) -> Out {
        Out {
            json,
            stdout: std::io::stdout(),
        }
    }

    pub(crate) fn json(&self) -> bool {
        self.json
    }

    fn write(&mut self, text: &str) -> anyhow::Result<()> {
        let mut lock = self.stdout.lock();
        match lock.write_all(text.as_bytes()).and_then(|()| lock.flush()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
            Err(e) => Err(e.into()),
        }
    }

    /// A block of text as it is.
    pub(crate) fn text(&mut self, text: &str) -> anyhow::Result<()> {
        self.write(text)
    }

    /// One line.
    pub(crate) fn line(&mut self, line: &str) -> anyhow::Result<()> {
        self.write(&format!("{line}\n"))
    }

    /// A JSON document, pretty-printed.
    pub(crate) fn json_value(&mut self, value: &Value) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(value)?;
        self.line(&text)
    }

    /// A JSON document on one line (streams).
    pub(crate) fn json_line(&mut self, value: &Value) -> anyhow::Result<()> {
        self.line(&value.to_string())
    }

    /// A note for people (to stderr, so stdout stays the result).
    pub(crate) fn note(&mut self, note: &str) -> anyhow::Result<()> {
        writeln!(std::io::stderr(), "{note}")?;
        Ok(())
    }
}

/// Longest cell shown; longer ones are cut with `…`.
const MAX_CELL: usize = 60;

fn cell(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.chars().count() > MAX_CELL {
        let cut: String = one_line.chars().take(MAX_CELL - 1).collect();
        format!("{cut}…")
    } else {
        one_line
    }
}

/// A table with a header row (none when `headers` is empty), columns as wide as their widest
/// cell, two spaces apart; the last column is not padded.
pub(crate) fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut all: Vec<Vec<String>> = Vec::with_capacity(rows.len() + 1);
    if !headers.is_empty() {
        all.push(headers.iter().map(|h| (*h).to_owned()).collect());
    }
    all.extend(rows.iter().map(|r| r.iter().map(|c| cell(c)).collect()));
    if all.is_empty() || (all.len() == 1 && !headers.is_empty()) {
        if headers.is_empty() {
            return String::new();
        }
        return "(none)\n".to_owned();
    }
    let columns = all.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            all.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = String::new();
    for row in &all {
        let mut line = String::new();
        for (i, c) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(c);
            } else {
                line.push_str(c);
                line.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// Progress of a long operation on stderr, only when stderr is a terminal, at most every
/// 100 ms; `finish` ends the line.
pub(crate) struct Progress {
    what: &'static str,
    shown: bool,
    last: Option<Instant>,
    enabled: bool,
}

impl Progress {
    pub(crate) fn new(what: &'static str) -> Progress {
        Progress {
            what,
            shown: false,
            last: None,
            enabled: std::io::stderr().is_terminal(),
        }
    }

    pub(crate) fn update(&mut self, done: u64, total: Option<u64>) {
        if !self.enabled {
            return;
        }
        let complete = total.is_some_and(|t| done >= t);
        if !complete
            && self
                .last
                .is_some_and(|l| l.elapsed() < Duration::from_millis(100))
        {
            return;
        }
        self.last = Some(Instant::now());
        self.shown = true;
        let text = match total {
            Some(t) => format!("\r{} {done}/{t}", self.what),
            None => format!("\r{} {done}", self.what),
        };
        let _ = write!(std::io::stderr(), "{text}\x1b[K");
    }

    pub(crate) fn finish(&mut self) {
        if self.shown {
            let _ = writeln!(std::io::stderr());
            self.shown = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_and_cut_long_cells() {
        let t = table(
            &["ID", "URL", "EVENTS"],
            vec![
                vec!["1".into(), "http://a".into(), "X".into()],
                vec!["22".into(), "http://bb".into(), "Y,Z".into()],
            ],
        );
        assert_eq!(
            t,
            "ID  URL        EVENTS\n1   http://a   X\n22  http://bb  Y,Z\n"
        );
        assert_eq!(table(&["A"], Vec::new()), "(none)\n");
        let long = "x".repeat(100);
        let t = table(&[], vec![vec!["k".into(), long]]);
        assert_eq!(t.trim_end().chars().count(), 3 + MAX_CELL);
        assert!(t.trim_end().ends_with('…'));
        let t = table(&[], vec![vec!["k".into(), "line\nbreak".into()]]);
        assert_eq!(t, "k  line break\n");
    }
}
