//! A webhook receiver of the console tests: loopback, an answer status the test changes, every
//! request recorded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A request a receiver got: headers (lowercase names) and body.
#[derive(Debug, Clone)]
pub(super) struct Received {
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: String,
}

impl Received {
    pub(super) fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// A webhook receiver on loopback that answers every request with its current status and
/// records it.
pub(super) struct Receiver {
    pub(super) url: String,
    pub(super) origin: String,
    status: Arc<AtomicU16>,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    pub(super) fn start(status: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let origin = format!("http://{}", listener.local_addr().expect("addr"));
        let status = Arc::new(AtomicU16::new(status));
        let got = Arc::new(Mutex::new(Vec::new()));
        let (answer, record) = (Arc::clone(&status), Arc::clone(&got));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                let mut headers = Vec::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = line.trim().split_once(':') {
                        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
                    }
                }
                let len: usize = headers
                    .iter()
                    .find(|(k, _)| k == "content-length")
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0; len];
                let _ = reader.read_exact(&mut body);
                record.lock().expect("received").push(Received {
                    headers,
                    body: String::from_utf8_lossy(&body).into_owned(),
                });
                let status = answer.load(Ordering::SeqCst);
                let _ = stream.write_all(
                    format!(
                        "HTTP/1.1 {status} Scripted\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    )
                    .as_bytes(),
                );
            }
        });
        Receiver {
            url: format!("{origin}/hook"),
            origin,
            status,
            got,
        }
    }

    pub(super) fn answer_with(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    pub(super) fn got(&self) -> Vec<Received> {
        self.got.lock().expect("received").clone()
    }
}
