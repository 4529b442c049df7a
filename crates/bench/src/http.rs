//! A minimal HTTP/1.1 keep-alive client: one request in flight per
//! connection, like a browser tab, and nothing a client library would add,
//! so what the REST figures measure is the server.

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

pub fn request(method: &str, path: &str, body: &str) -> Vec<u8> {
    request_with(method, path, body, "")
}

/// A request with extra header lines (each ending in CRLF).
pub fn request_with(method: &str, path: &str, body: &str, headers: &str) -> Vec<u8> {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

pub async fn connect(address: &str) -> std::io::Result<BufReader<TcpStream>> {
    let tcp = TcpStream::connect(address).await?;
    tcp.set_nodelay(true)?;
    Ok(BufReader::new(tcp))
}

/// One request/response on a kept-alive connection; returns the body, or
/// an error carrying it when the status is not 2xx.
pub async fn exchange(conn: &mut BufReader<TcpStream>, request: &[u8]) -> std::io::Result<Vec<u8>> {
    conn.get_mut().write_all(request).await?;
    let mut length = 0usize;
    let mut line = String::new();
    let mut status_ok = false;
    loop {
        line.clear();
        if conn.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line.starts_with("HTTP/1.1 ") {
            status_ok = line.as_bytes().get(9) == Some(&b'2');
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0u8; length];
    conn.read_exact(&mut body).await?;
    if !status_ok {
        return Err(std::io::Error::other(
            String::from_utf8_lossy(&body).into_owned(),
        ));
    }
    Ok(body)
}

/// One GET on a fresh connection, body as text.
pub async fn get(address: &str, path: &str) -> Result<String, String> {
    let mut conn = connect(address)
        .await
        .map_err(|e| format!("GET {path}: {e}"))?;
    let body = exchange(&mut conn, &request("GET", path, ""))
        .await
        .map_err(|e| format!("GET {path}: {e}"))?;
    String::from_utf8(body).map_err(|e| format!("GET {path}: {e}"))
}
