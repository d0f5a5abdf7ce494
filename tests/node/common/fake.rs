//! A fake node for the light client's tests: fixed answers by path (the query included), JSON
//! or bytes, one request per connection. The hostile party of those tests: it serves whatever it is given.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;

use serde_json::Value;

/// Reads a request's head from `s`; its path, the query included ("/" if there is none).
pub fn request_path(s: &mut std::net::TcpStream) -> String {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    let request = String::from_utf8_lossy(&raw);
    request.split_whitespace().nth(1).unwrap_or("/").to_string()
}

/// A node that serves fixed answers, one request per connection; returns its URL.
pub fn fake_node(pages: HashMap<String, Value>) -> String {
    fake_node_with(pages, HashMap::new())
}

/// As `fake_node`, with answers in bytes too (`application/octet-stream`), by path.
pub fn fake_node_with(pages: HashMap<String, Value>, raw: HashMap<String, Vec<u8>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let path = request_path(&mut s);
            let (code, kind, body) = match (pages.get(&path), raw.get(&path)) {
                (_, Some(b)) => ("200 OK", "application/octet-stream", b.clone()),
                (Some(v), None) => ("200 OK", "application/json", v.to_string().into_bytes()),
                (None, None) => (
                    "404 Not Found",
                    "application/json",
                    br#"{"error":"no such page"}"#.to_vec(),
                ),
            };
            let _ = write!(
                s,
                "HTTP/1.1 {code}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(&body);
        }
    });
    format!("http://127.0.0.1:{port}")
}
