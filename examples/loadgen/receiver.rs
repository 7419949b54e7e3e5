//! A webhook receiver for the delivery phase and the soak: answers every request with one fixed
//! status (`204`, or `500` for a failing receiver) over keep-alive HTTP/1.1 connections and
//! counts them, with the time of the last one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// What the receiver has seen.
pub(crate) struct Received {
    start: Instant,
    count: AtomicU64,
    /// Microseconds after `start` of the last request.
    last_us: AtomicU64,
}

impl Received {
    /// Requests answered so far.
    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    /// When the last request was answered.
    pub(crate) fn last(&self) -> Instant {
        self.start + std::time::Duration::from_micros(self.last_us.load(Ordering::Acquire))
    }
}

/// Starts a receiver answering `204` on 127.0.0.1, port chosen by the system; its URL and its
/// counts. It runs until the process ends.
pub(crate) async fn start() -> std::io::Result<(String, Arc<Received>)> {
    start_answering(Answer::NoContent).await
}

/// The status a receiver answers every request with.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Answer {
    /// `204 No Content`: a delivery that succeeds.
    NoContent,
    /// `500 Internal Server Error`: a delivery that fails and is retried.
    ServerError,
}

impl Answer {
    fn response(self) -> &'static [u8] {
        match self {
            Answer::NoContent => b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n",
            Answer::ServerError => {
                b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n"
            }
        }
    }
}

/// Starts a receiver answering `answer` on 127.0.0.1, port chosen by the system; its URL and its
/// counts. It runs until the process ends.
pub(crate) async fn start_answering(answer: Answer) -> std::io::Result<(String, Arc<Received>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let received = Arc::new(Received {
        start: Instant::now(),
        count: AtomicU64::new(0),
        last_us: AtomicU64::new(0),
    });
    let seen = Arc::clone(&received);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                let (read, mut write) = stream.into_split();
                let mut reader = BufReader::new(read);
                let mut line = String::new();
                loop {
                    // Request line and headers; only content-length matters.
                    let mut length = 0usize;
                    let mut first = true;
                    loop {
                        line.clear();
                        match reader.read_line(&mut line).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                        let header = line.trim_end();
                        if header.is_empty() && !first {
                            break;
                        }
                        first = false;
                        if let Some((k, v)) = header.split_once(':')
                            && k.eq_ignore_ascii_case("content-length")
                        {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    if write.write_all(answer.response()).await.is_err() {
                        return;
                    }
                    let us = seen.start.elapsed().as_micros() as u64;
                    seen.last_us.fetch_max(us, Ordering::AcqRel);
                    seen.count.fetch_add(1, Ordering::AcqRel);
                }
            });
        }
    });
    Ok((url, received))
}
