//! The client of a node's HTTP API that every tool uses (the wallet, the light client, the load
//! generator, the devnet's monitor and the bench's wait for a height): one
//! HTTP/1.1 connection kept alive across requests (reconnected when the node closes it), JSON in
//! and out. Only the shapes the node's API answers with are supported: a `Content-Length` body
//! or a chunked one.
//!
//! A node is named by a URL, `http://HOST:PORT` (a path after it is ignored) or plain
//! `HOST:PORT`.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A response body larger than this is refused (a block of 8,000 transfers is about 3 MB).
const MAX_BODY: usize = 64 * 1024 * 1024;

/// Times a request refused by the node's rate limit (429) is asked again, waiting 1, 2, 4, 8,
/// 8 s: the node allows bursts, a client that keeps going meets it now and then.
const RATE_LIMIT_RETRIES: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0:?} is not a node URL (expected http://HOST:PORT or HOST:PORT)")]
    BadUrl(String),
    #[error("cannot resolve {url}: {reason}")]
    Resolve { url: String, reason: String },
    #[error("node {url} is unreachable: {reason} (is it running, and is the port its HTTP port?)")]
    Unreachable { url: String, reason: String },
    #[error("node {url} did not answer {path} within {secs} s")]
    Timeout {
        url: String,
        path: String,
        secs: u64,
    },
    #[error("node {url} sent a malformed HTTP answer to {path}: {reason}")]
    Malformed {
        url: String,
        path: String,
        reason: String,
    },
    /// The node answered with an error status; `message` is its `error` field when it has one.
    #[error("node {url} answered {path} with HTTP {status}: {message}")]
    Status {
        url: String,
        path: String,
        status: u16,
        message: String,
        body: Value,
    },
}

/// A node's API address.
#[derive(Clone, Debug)]
pub struct NodeUrl {
    /// As the user wrote it (for messages).
    pub shown: String,
    host: String,
    port: u16,
}

impl NodeUrl {
    pub fn parse(text: &str) -> Result<NodeUrl, ClientError> {
        let bad = || ClientError::BadUrl(text.to_string());
        let t = text.trim();
        let rest = match t.split_once("://") {
            Some(("http", rest)) => rest,
            Some(_) => return Err(bad()),
            None => t,
        };
        let authority = rest.split('/').next().unwrap_or("");
        let (host, port) = authority.rsplit_once(':').ok_or_else(bad)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port: u16 = port.parse().map_err(|_| bad())?;
        if host.is_empty() || port == 0 {
            return Err(bad());
        }
        Ok(NodeUrl {
            shown: format!("http://{authority}"),
            host: host.to_string(),
            port,
        })
    }

    /// A node's API on a known socket address (a devnet's or a bench's own node).
    pub fn from_addr(addr: SocketAddr) -> NodeUrl {
        NodeUrl {
            shown: format!("http://{addr}"),
            host: addr.ip().to_string(),
            port: addr.port(),
        }
    }

    async fn resolve(&self) -> Result<SocketAddr, ClientError> {
        let mut addrs = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| ClientError::Resolve {
                url: self.shown.clone(),
                reason: e.to_string(),
            })?;
        addrs.next().ok_or_else(|| ClientError::Resolve {
            url: self.shown.clone(),
            reason: "no address".into(),
        })
    }
}

/// A kept-alive connection to one node.
pub struct Client {
    url: NodeUrl,
    timeout: Duration,
    conn: Option<BufReader<TcpStream>>,
}

impl Client {
    pub fn new(url: NodeUrl) -> Client {
        Client {
            url,
            timeout: Duration::from_secs(10),
            conn: None,
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    pub fn url(&self) -> &NodeUrl {
        &self.url
    }

    /// GET `path`, the answer's JSON decoded as `T`.
    pub async fn get<T: DeserializeOwned>(&mut self, path: &str) -> Result<T, ClientError> {
        let body = self.request("GET", path, None).await?;
        self.decode(path, &body)
    }

    /// GET `path`, the answer's body as it came (at most 64 MiB).
    pub async fn get_bytes(&mut self, path: &str) -> Result<Vec<u8>, ClientError> {
        self.request("GET", path, None).await
    }

    /// POST `body` as JSON to `path`, the answer's JSON decoded as `T`.
    pub async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &mut self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let json = serde_json::to_vec(body).map_err(|e| self.malformed(path, e))?;
        let answer = self.request("POST", path, Some(&json)).await?;
        self.decode(path, &answer)
    }

    /// POST a body already encoded as JSON to `path`, the answer's JSON decoded as `T`.
    pub async fn post_raw<T: DeserializeOwned>(
        &mut self,
        path: &str,
        json: &[u8],
    ) -> Result<T, ClientError> {
        let answer = self.request("POST", path, Some(json)).await?;
        self.decode(path, &answer)
    }

    fn decode<T: DeserializeOwned>(&self, path: &str, body: &[u8]) -> Result<T, ClientError> {
        serde_json::from_slice(body).map_err(|e| self.malformed(path, e))
    }

    fn malformed(&self, path: &str, reason: impl ToString) -> ClientError {
        ClientError::Malformed {
            url: self.url.shown.clone(),
            path: path.to_string(),
            reason: reason.to_string(),
        }
    }

    /// One request; asked again (up to `RATE_LIMIT_RETRIES` times, a second apart and more)
    /// while the node answers 429: its rate limit refuses before doing anything, so a refused
    /// `POST` was not performed.
    async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Vec<u8>, ClientError> {
        let mut wait = Duration::from_secs(1);
        for _ in 0..RATE_LIMIT_RETRIES {
            match self.request_once(method, path, body).await {
                Err(ClientError::Status { status: 429, .. }) => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(8));
                }
                r => return r,
            }
        }
        self.request_once(method, path, body).await
    }

    /// One request; on a connection the node closed meanwhile, one retry on a new connection.
    async fn request_once(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Vec<u8>, ClientError> {
        let secs = self.timeout.as_secs();
        let timeout = self.timeout;
        let reused = self.conn.is_some();
        let first = tokio::time::timeout(timeout, self.exchange(method, path, body)).await;
        let result = match first {
            Ok(Err(Retry::Stale)) if reused => {
                self.conn = None;
                match tokio::time::timeout(timeout, self.exchange(method, path, body)).await {
                    Ok(r) => r,
                    Err(_) => Err(Retry::Fatal(self.timed_out(path, secs))),
                }
            }
            Ok(r) => r,
            Err(_) => Err(Retry::Fatal(self.timed_out(path, secs))),
        };
        match result {
            Ok((status, answer)) if (200..300).contains(&status) => Ok(answer),
            Ok((status, answer)) => {
                let body: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
                let message = body["error"].as_str().map_or_else(
                    || String::from_utf8_lossy(&answer).trim().to_string(),
                    str::to_string,
                );
                Err(ClientError::Status {
                    url: self.url.shown.clone(),
                    path: path.to_string(),
                    status,
                    message,
                    body,
                })
            }
            Err(Retry::Stale) => {
                self.conn = None;
                Err(ClientError::Unreachable {
                    url: self.url.shown.clone(),
                    reason: "the connection was closed".into(),
                })
            }
            Err(Retry::Fatal(e)) => {
                self.conn = None;
                Err(e)
            }
        }
    }

    fn timed_out(&self, path: &str, secs: u64) -> ClientError {
        ClientError::Timeout {
            url: self.url.shown.clone(),
            path: path.to_string(),
            secs,
        }
    }

    async fn exchange(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<(u16, Vec<u8>), Retry> {
        if self.conn.is_none() {
            let addr = self.url.resolve().await.map_err(Retry::Fatal)?;
            let stream = TcpStream::connect(addr).await.map_err(|e| {
                Retry::Fatal(ClientError::Unreachable {
                    url: self.url.shown.clone(),
                    reason: e.to_string(),
                })
            })?;
            let _ = stream.set_nodelay(true);
            self.conn = Some(BufReader::new(stream));
        }
        let url = self.url.clone();
        let conn = self.conn.as_mut().expect("connected above");
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}:{}\r\nAccept: application/json\r\n",
            url.host, url.port
        );
        if let Some(b) = body {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(body.unwrap_or_default());
        // A write or the first read failing on a reused connection: the node closed it.
        conn.get_mut()
            .write_all(&out)
            .await
            .map_err(|_| Retry::Stale)?;
        let malformed = |reason: &str| {
            Retry::Fatal(ClientError::Malformed {
                url: url.shown.clone(),
                path: path.to_string(),
                reason: reason.to_string(),
            })
        };
        let mut line = String::new();
        match conn.read_line(&mut line).await {
            Ok(0) | Err(_) => return Err(Retry::Stale),
            Ok(_) => {}
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| malformed("no status line"))?;
        let mut length: Option<usize> = None;
        let mut chunked = false;
        let mut close = false;
        loop {
            line.clear();
            let n = conn
                .read_line(&mut line)
                .await
                .map_err(|e| malformed(&e.to_string()))?;
            if n == 0 {
                return Err(malformed("the headers end early"));
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let Some((name, value)) = l.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.parse().ok(),
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                "connection" => close = value.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        let body = if chunked {
            read_chunked(conn).await.map_err(|e| malformed(&e))?
        } else if let Some(n) = length {
            if n > MAX_BODY {
                return Err(malformed("the body is too large"));
            }
            let mut b = vec![0; n];
            conn.read_exact(&mut b)
                .await
                .map_err(|e| malformed(&e.to_string()))?;
            b
        } else {
            close = true;
            let mut b = Vec::new();
            conn.take(MAX_BODY as u64)
                .read_to_end(&mut b)
                .await
                .map_err(|e| malformed(&e.to_string()))?;
            b
        };
        if close {
            self.conn = None;
        }
        Ok((status, body))
    }
}

enum Retry {
    /// The connection was closed by the node before an answer: try once more on a new one.
    Stale,
    Fatal(ClientError),
}

async fn read_chunked(conn: &mut BufReader<TcpStream>) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        conn.read_line(&mut line).await.map_err(|e| e.to_string())?;
        let size_text = line.trim().split(';').next().unwrap_or("");
        let size = usize::from_str_radix(size_text, 16).map_err(|_| "bad chunk size")?;
        if body.len() + size > MAX_BODY {
            return Err("the body is too large".into());
        }
        if size == 0 {
            // Trailers, then the empty line.
            loop {
                line.clear();
                let n = conn.read_line(&mut line).await.map_err(|e| e.to_string())?;
                if n == 0 || line.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        conn.read_exact(&mut body[start..])
            .await
            .map_err(|e| e.to_string())?;
        line.clear();
        conn.read_line(&mut line).await.map_err(|e| e.to_string())?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_urls_with_and_without_scheme() {
        let u = NodeUrl::parse("http://127.0.0.1:8001/").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 8001));
        assert_eq!(u.shown, "http://127.0.0.1:8001");
        let u = NodeUrl::parse("localhost:9").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("localhost", 9));
        let u = NodeUrl::parse("http://[::1]:80").unwrap();
        assert_eq!(u.host, "::1");
        for bad in ["", "localhost", "https://a:1", "a:0", "a:99999", ":80"] {
            assert!(NodeUrl::parse(bad).is_err(), "{bad:?}");
        }
    }
}
