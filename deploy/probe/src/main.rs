//! `skein-probe [--timeout SECS] http://HOST:PORT/PATH`: one HTTP/1.1 GET. Prints the response
//! body to stdout and exits 0 on a 2xx status; otherwise prints the status (or the error) to
//! stderr and exits 1.
//!
//! Used as the docker-compose health check of the `FROM scratch` image
//! (`/skein-probe http://127.0.0.1:9652/readyz`), by `deploy/up` to wait for readiness from the
//! host, and to check name resolution inside a container
//! (`docker exec CONTAINER /skein-probe http://node2:9652/healthz`): HOST is resolved with
//! getaddrinfo, exactly like the broker resolves its peers.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut timeout = Duration::from_secs(3);
    let mut url = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--timeout" => match args.next().and_then(|s| s.parse::<f64>().ok()) {
                Some(s) if s > 0.0 => timeout = Duration::from_secs_f64(s),
                _ => return usage("--timeout takes a number of seconds"),
            },
            "-h" | "--help" => {
                println!("usage: skein-probe [--timeout SECS] http://HOST:PORT/PATH");
                return ExitCode::SUCCESS;
            }
            _ if url.is_none() => url = Some(a),
            _ => return usage("one URL only"),
        }
    }
    let Some(url) = url else {
        return usage("missing URL");
    };
    match get(&url, timeout) {
        Ok((status, body)) if (200..300).contains(&status) => {
            let _ = std::io::stdout().write_all(&body);
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            eprintln!(
                "skein-probe: {url}: HTTP {status}: {}",
                String::from_utf8_lossy(&body).trim_end()
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("skein-probe: {url}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage(why: &str) -> ExitCode {
    eprintln!("skein-probe: {why}\nusage: skein-probe [--timeout SECS] http://HOST:PORT/PATH");
    ExitCode::from(2)
}

fn get(url: &str, timeout: Duration) -> Result<(u16, Vec<u8>), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// URLs are supported")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addrs: Vec<_> = authority
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve `{authority}`: {e}"))?
        .collect();
    let mut last_err = format!("`{authority}` resolved to no address");
    let mut stream = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_err = format!("connect {addr}: {e}"),
        }
    }
    let mut stream = stream.ok_or(last_err)?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nUser-Agent: skein-probe\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| format!("read: {e}"))?;
    parse_response(&response)
}

fn parse_response(response: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let head_end = find(response, b"\r\n\r\n").ok_or("truncated response (no end of headers)")?;
    let head = String::from_utf8_lossy(&response[..head_end]);
    let body = &response[head_end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line `{status_line}`"))?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok((status, body))
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = find(data, b"\r\n").ok_or("truncated chunked body")?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size `{size_text}`"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or_default();
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
