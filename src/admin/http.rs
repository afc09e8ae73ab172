//! The statistics listener (`[admin] listen`): a small HTTP/1.1 server on the control
//! thread, one request per connection.
//!
//! - `GET /metrics`: Prometheus text exposition format.
//! - `GET /stats.json`: the same data as JSON.
//! - `GET /`: the stats page (one self-contained HTML file, no external resources) that
//!   polls `stats.json` and draws the tables and latency charts.
//!
//! Blocking I/O under one deadline for the whole exchange (`CLIENT_TIMEOUT` from the
//! accept, however the client trickles its bytes): a slow client delays only the control
//! thread, and by at most that, never a shard. Anything else gets 404 or 405 with a short
//! body.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use super::{Control, CLIENT_TIMEOUT};
use crate::stats::render;

/// The stats page.
pub const PAGE: &str = include_str!("page.html");

/// Longest request head read.
const HEAD_MAX: usize = 8 * 1024;

/// Answers one request on `stream`, then closes it.
pub(super) fn serve(control: &Control, mut stream: TcpStream) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    let deadline = Deadline(Instant::now() + CLIENT_TIMEOUT);
    let mut buf = [0u8; HEAD_MAX];
    let mut len = 0;
    let (method, path) = loop {
        stream.set_read_timeout(Some(deadline.left()?))?;
        let n = stream.read(&mut buf[len..])?;
        if n == 0 {
            return Ok(());
        }
        len += n;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(_)) => {
                let method = req.method.unwrap_or("").to_string();
                let path = req.path.unwrap_or("/").to_string();
                break (method, path);
            }
            Ok(httparse::Status::Partial) if len < buf.len() => continue,
            _ => {
                return respond(
                    &mut stream,
                    deadline,
                    "400 Bad Request",
                    TEXT,
                    b"bad request\n",
                    true,
                );
            }
        }
    };
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return respond(
            &mut stream,
            deadline,
            "405 Method Not Allowed",
            TEXT,
            b"only GET and HEAD\n",
            true,
        );
    }
    let path = path.split('?').next().unwrap_or("/");
    let send_body = !head_only;
    match path {
        "/metrics" => {
            let body = control.render(render::prometheus);
            respond(
                &mut stream,
                deadline,
                "200 OK",
                PROMETHEUS,
                body.as_bytes(),
                send_body,
            )
        }
        "/stats.json" => {
            let body = control.render(render::json);
            respond(
                &mut stream,
                deadline,
                "200 OK",
                JSON,
                body.as_bytes(),
                send_body,
            )
        }
        "/" | "/stats" | "/index.html" => respond(
            &mut stream,
            deadline,
            "200 OK",
            HTML,
            PAGE.as_bytes(),
            send_body,
        ),
        _ => respond(
            &mut stream,
            deadline,
            "404 Not Found",
            TEXT,
            b"not found: try /, /metrics or /stats.json\n",
            send_body,
        ),
    }
}

const TEXT: &str = "text/plain; charset=utf-8";
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";
const JSON: &str = "application/json";
const HTML: &str = "text/html; charset=utf-8";

/// The end of the time a client may hold the control thread.
#[derive(Clone, Copy)]
struct Deadline(Instant);

impl Deadline {
    /// Time left, or `TimedOut` when there is none.
    fn left(self) -> io::Result<std::time::Duration> {
        let left = self.0.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        Ok(left)
    }
}

/// Writes `bytes` whole before `deadline`.
fn write_before(stream: &mut TcpStream, deadline: Deadline, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        stream.set_write_timeout(Some(deadline.left()?))?;
        match stream.write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn respond(
    stream: &mut TcpStream,
    deadline: Deadline,
    status: &str,
    content_type: &str,
    body: &[u8],
    send_body: bool,
) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    write_before(stream, deadline, head.as_bytes())?;
    if send_body {
        write_before(stream, deadline, body)?;
    }
    // FIN first; the client closes after reading the body.
    stream.shutdown(std::net::Shutdown::Write)
}
