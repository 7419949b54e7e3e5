//! What the fuzz targets share: reading an input as an HTTP request's headers and body.
//!
//! An input is written like the head of an HTTP request without its request line: header lines
//! `name: value`, a blank line, then the body (bytes). A line that is not a valid header is
//! skipped, so every input is a request; the corpora stay readable and the seeds are real
//! requests of the tests and API.md.

use http::{HeaderMap, HeaderName, HeaderValue};

/// The request an input stands for.
pub struct Request<'a> {
    /// Its headers (a name given twice keeps both values, as HTTP does).
    pub headers: HeaderMap,
    /// Its body.
    pub body: &'a [u8],
}

/// Splits `data` at its first blank line (`\n\n` or `\r\n\r\n`) into headers and body; without a
/// blank line the whole input is headers and the body is empty.
pub fn request(data: &[u8]) -> Request<'_> {
    let (head, body) = match find(data, b"\r\n\r\n")
        .map(|at| (at, 4))
        .or_else(|| find(data, b"\n\n").map(|at| (at, 2)))
    {
        Some((at, sep)) => (&data[..at], &data[at + sep..]),
        None => (data, &data[data.len()..]),
    };
    let mut headers = HeaderMap::new();
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let value = trim(&line[colon + 1..]);
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(name, value);
        }
    }
    Request { headers, body }
}

/// The first and the rest of `data`, split at its first newline (both empty-able).
pub fn two_parts(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[]),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn trim(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}
