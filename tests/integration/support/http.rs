//! A small HTTP/1.1 client for the API tests: any method, headers and body,
//! and the response's status, headers and body. One connection per request
//! (`Connection: close`), which is all the tests need and keeps the client
//! free of pooling surprises.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A request body and how to send it.
pub enum Body<'a> {
    None,
    /// Sent with Content-Length.
    Sized(&'a [u8]),
    /// Sent with Transfer-Encoding: chunked, so the server cannot know its size up front.
    Chunked(&'a [u8]),
}

/// What came back.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    pub body: String,
    pub elapsed: Duration,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// Sends one request and reads the whole response. Panics when nothing answers.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Body<'_>,
) -> Response {
    let started = Instant::now();
    let mut stream =
        tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
            .await
            .unwrap_or_else(|_| panic!("connect to {addr} timed out"))
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    match body {
        Body::None => {}
        Body::Sized(b) => head.push_str(&format!("Content-Length: {}\r\n", b.len())),
        Body::Chunked(_) => head.push_str("Transfer-Encoding: chunked\r\n"),
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    match body {
        Body::None => {}
        Body::Sized(b) => out.extend_from_slice(b),
        Body::Chunked(b) => {
            for chunk in b.chunks(4096) {
                out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                out.extend_from_slice(chunk);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
        }
    }
    // The server may answer (413) and close before reading everything; a
    // write error then is expected, and the response is still there to read.
    let _ = stream.write_all(&out).await;
    let mut raw = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut raw)).await;
    match read {
        Ok(Ok(_)) => {}
        // A reset after the server answered early still leaves the answer in `raw`.
        Ok(Err(_)) if !raw.is_empty() => {}
        Ok(Err(e)) => panic!("{method} {path}: read failed: {e}"),
        Err(_) => panic!("{method} {path}: no response within 20s"),
    }
    let elapsed = started.elapsed();
    parse(&raw, elapsed).unwrap_or_else(|| {
        panic!(
            "{method} {path}: unparseable response: {}",
            String::from_utf8_lossy(&raw)
        )
    })
}

fn parse(raw: &[u8], elapsed: Duration) -> Option<Response> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let mut headers = BTreeMap::new();
    for line in lines {
        let (name, value) = line.split_once(':')?;
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    let mut body = raw[split + 4..].to_vec();
    if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        body = dechunk(&body)?;
    }
    Some(Response {
        status,
        headers,
        body: String::from_utf8(body).ok()?,
        elapsed,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}
