//! The strict origin of the desync test, and the lenient reference reading of what a
//! client sent (see `main.rs`).

use std::sync::{Arc, Mutex};

use super::common::*;

/// Longest body the strict origin reads before calling a case broken (no case sends more).
const ORIGIN_BODY_MAX: u64 = 1 << 20;

// ---------------------------------------------------------------------------------------
// Requests as each side understood them.

/// How a request's body was delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delimited {
    None,
    Length(u64),
    Chunked,
}

/// One request, as the origin (or the lenient reference reading of the client's bytes)
/// understood it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub version: String,
    /// Every field as (name, value without surrounding whitespace), in order.
    pub fields: Vec<(String, String)>,
    pub delimited: Delimited,
    pub payload: Vec<u8>,
}

impl Seen {
    /// What the origin answers, and the client checks it got: names the request.
    pub fn answer_body(&self) -> String {
        format!("{} {} {}", self.method, self.target, self.payload.len())
    }

    /// The fields that must cross a proxy unchanged: all but the hop-by-hop ones (and
    /// those `Connection` names) and the framing ones (which the proxy rewrites).
    pub fn end_to_end(&self) -> Vec<(String, String)> {
        const DROPPED: [&str; 8] = [
            "connection",
            "keep-alive",
            "te",
            "trailer",
            "proxy-connection",
            "upgrade",
            "content-length",
            "transfer-encoding",
        ];
        let named: Vec<String> = self
            .fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
            .flat_map(|(_, v)| v.split(',').map(|t| t.trim().to_ascii_lowercase()))
            .collect();
        self.fields
            .iter()
            .filter(|(n, _)| {
                let n = n.to_ascii_lowercase();
                !DROPPED.contains(&n.as_str()) && !named.contains(&n)
            })
            .cloned()
            .collect()
    }
}

/// What the origin recorded, in order, per connection.
#[derive(Debug, Clone)]
pub enum Event {
    Request(Seen),
    /// Bytes the strict parser refuses: ringproxy forwarded something malformed.
    Malformed {
        conn: usize,
        reason: String,
        rest: Vec<u8>,
    },
    /// The connection ended inside a message.
    Truncated {
        conn: usize,
        got: Vec<u8>,
    },
}

/// Why the strict parser stopped.
enum Stop {
    /// End of stream before a message started: a clean end.
    Clean,
    /// End of stream inside a message.
    Truncated,
    Malformed(String),
}

fn malformed(reason: impl Into<String>) -> Stop {
    Stop::Malformed(reason.into())
}

// ---------------------------------------------------------------------------------------
// The strict origin.

/// The origin's reading of one connection: strict RFC 9112, nothing tolerated that a
/// proxy should have normalised or refused.
struct StrictReader<'a> {
    conn: &'a mut RecordedConn,
    /// Bytes of the current message so far (for the record of a truncated one).
    message: Vec<u8>,
}

impl StrictReader<'_> {
    /// Makes at least `n` bytes pending; `false` at end of stream.
    fn want(&mut self, n: usize) -> bool {
        while self.conn.pending.len() < n {
            match self.conn.fill() {
                Ok(0) | Err(_) => return false,
                Ok(_) => {}
            }
        }
        true
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        let taken: Vec<u8> = self.conn.pending.drain(..n).collect();
        self.message.extend_from_slice(&taken);
        taken
    }

    /// One line ended by CRLF (returned without it). A bare CR or a bare LF is malformed.
    fn line(&mut self) -> Result<Vec<u8>, Stop> {
        let mut scanned = 0;
        loop {
            let pending = &self.conn.pending;
            if let Some(i) = pending[scanned..]
                .iter()
                .position(|&b| b == b'\r' || b == b'\n')
            {
                let at = scanned + i;
                if pending[at] == b'\n' {
                    return Err(malformed("bare LF"));
                }
                if at + 1 < pending.len() {
                    if pending[at + 1] != b'\n' {
                        return Err(malformed("bare CR"));
                    }
                    let mut line = self.take(at + 2);
                    line.truncate(at);
                    return Ok(line);
                }
                scanned = at;
            } else {
                scanned = pending.len();
            }
            if !self.want(self.conn.pending.len() + 1) {
                return Err(if self.message.is_empty() && self.conn.pending.is_empty() {
                    Stop::Clean
                } else {
                    Stop::Truncated
                });
            }
        }
    }

    /// The next request, whole.
    fn request(&mut self) -> Result<Seen, Stop> {
        self.message.clear();
        let line = self.line()?;
        let line = String::from_utf8(line).map_err(|_| malformed("request line not ASCII"))?;
        let parts: Vec<&str> = line.split(' ').collect();
        let [method, target, version] = parts[..] else {
            return Err(malformed(format!("request line {line:?}")));
        };
        if method.is_empty() || !method.bytes().all(is_tchar) {
            return Err(malformed(format!("method {method:?}")));
        }
        if target.is_empty() || !target.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(malformed(format!("target {target:?}")));
        }
        if version != "HTTP/1.1" && version != "HTTP/1.0" {
            return Err(malformed(format!("version {version:?}")));
        }
        let fields = self.fields()?;
        let delimited = framing_of(&fields)?;
        let payload = match delimited {
            Delimited::None => Vec::new(),
            Delimited::Length(n) => {
                if n > ORIGIN_BODY_MAX {
                    // Read what comes (a test client never sends that much): the message
                    // cannot complete.
                    while self.want(self.conn.pending.len() + 1) {}
                    let all = self.conn.pending.len();
                    self.take(all);
                    return Err(Stop::Truncated);
                }
                if !self.want(n as usize) {
                    let all = self.conn.pending.len();
                    self.take(all);
                    return Err(Stop::Truncated);
                }
                self.take(n as usize)
            }
            Delimited::Chunked => self.chunked()?,
        };
        Ok(Seen {
            method: method.into(),
            target: target.into(),
            version: version.into(),
            fields,
            delimited,
            payload,
        })
    }

    /// Field lines up to the empty line.
    fn fields(&mut self) -> Result<Vec<(String, String)>, Stop> {
        let mut fields = Vec::new();
        loop {
            let line = self.line()?;
            if line.is_empty() {
                return Ok(fields);
            }
            fields.push(field_line(&line)?);
        }
    }

    /// A chunked body (RFC 9112 7.1), strictly: the payload.
    fn chunked(&mut self) -> Result<Vec<u8>, Stop> {
        let mut payload = Vec::new();
        loop {
            let line = self.line()?;
            let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
            if digits == 0 || digits > 16 {
                return Err(malformed(format!(
                    "chunk size line {:?}",
                    String::from_utf8_lossy(&line)
                )));
            }
            let rest = &line[digits..];
            let ext = rest.iter().position(|&b| b != b' ' && b != b'\t');
            if let Some(e) = ext {
                if rest[e] != b';'
                    || !rest[e..]
                        .iter()
                        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80)
                {
                    return Err(malformed(format!(
                        "chunk extension {:?}",
                        String::from_utf8_lossy(&line)
                    )));
                }
            }
            let size = u64::from_str_radix(std::str::from_utf8(&line[..digits]).unwrap(), 16)
                .expect("16 hex digits fit");
            if size == 0 {
                // Trailer section, then the empty line.
                self.fields()?;
                return Ok(payload);
            }
            if size > ORIGIN_BODY_MAX {
                while self.want(self.conn.pending.len() + 1) {}
                let all = self.conn.pending.len();
                self.take(all);
                return Err(Stop::Truncated);
            }
            let size = size as usize;
            if !self.want(size + 2) {
                let all = self.conn.pending.len();
                self.take(all);
                return Err(Stop::Truncated);
            }
            let data = self.take(size + 2);
            if &data[size..] != b"\r\n" {
                return Err(malformed("chunk data not followed by CRLF"));
            }
            payload.extend_from_slice(&data[..size]);
        }
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `name: value`, strictly: a token name, the colon at once, visible characters, spaces
/// and tabs in the value, no obs-fold.
fn field_line(line: &[u8]) -> Result<(String, String), Stop> {
    let text = || String::from_utf8_lossy(line).into_owned();
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or_else(|| malformed(format!("field without colon {:?}", text())))?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(malformed(format!("field name {:?}", text())));
    }
    if !value
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80)
    {
        return Err(malformed(format!("field value {:?}", text())));
    }
    let value = String::from_utf8_lossy(value);
    Ok((
        String::from_utf8_lossy(name).into_owned(),
        value.trim_matches([' ', '\t']).to_owned(),
    ))
}

/// The framing a strict server accepts: one `Content-Length` of plain digits, or one
/// `Transfer-Encoding: chunked`; never both, never a list.
fn framing_of(fields: &[(String, String)]) -> Result<Delimited, Stop> {
    let of = |name: &str| -> Vec<&str> {
        fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    };
    match (&of("content-length")[..], &of("transfer-encoding")[..]) {
        ([], []) => Ok(Delimited::None),
        ([cl], []) => {
            if cl.is_empty() || !cl.bytes().all(|b| b.is_ascii_digit()) {
                return Err(malformed(format!("Content-Length {cl:?}")));
            }
            cl.parse()
                .map(Delimited::Length)
                .map_err(|_| malformed(format!("Content-Length {cl:?} overflows")))
        }
        ([], [te]) if te.eq_ignore_ascii_case("chunked") => Ok(Delimited::Chunked),
        (cl, te) => Err(malformed(format!(
            "framing fields: Content-Length {cl:?}, Transfer-Encoding {te:?}"
        ))),
    }
}

/// The recording origin: its event log, and the recording server under it.
pub struct StrictOrigin {
    pub recorder: Recorder,
    events: Arc<Mutex<Vec<Event>>>,
}

impl StrictOrigin {
    pub fn start() -> StrictOrigin {
        let events: Arc<Mutex<Vec<Event>>> = Arc::default();
        let log = Arc::clone(&events);
        let recorder = recording_server(move |c| {
            let conn = c.index;
            loop {
                let mut reader = StrictReader {
                    conn: &mut *c,
                    message: Vec::new(),
                };
                let event = match reader.request() {
                    Ok(seen) => Event::Request(seen),
                    Err(Stop::Clean) => return,
                    Err(Stop::Truncated) => Event::Truncated {
                        conn,
                        got: reader.message,
                    },
                    Err(Stop::Malformed(reason)) => Event::Malformed {
                        conn,
                        reason,
                        rest: [reader.message, std::mem::take(&mut c.pending)].concat(),
                    },
                };
                let answer = match &event {
                    Event::Request(seen) => Some(seen.answer_body()),
                    _ => None,
                };
                log.lock().unwrap().push(event);
                let Some(body) = answer else { return };
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                if c.write_all(response.as_bytes()).is_err() {
                    return;
                }
            }
        });
        StrictOrigin { recorder, events }
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }
}

// ---------------------------------------------------------------------------------------
// The reference reading of the client's bytes (lenient where README says ringproxy is).

/// The first `n` requests of `raw` as the client meant them: lines end with LF (CR
/// before it optional), empty lines before a request are skipped, a `Content-Length`
/// list of equal values is one length, `Transfer-Encoding` means chunked.
pub fn intended(raw: &[u8], n: usize) -> Vec<Seen> {
    let mut at = 0;
    let line = |at: &mut usize| -> String {
        let end = raw[*at..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(raw.len(), |i| *at + i);
        let text = String::from_utf8_lossy(&raw[*at..end])
            .trim_end_matches('\r')
            .to_owned();
        *at = (end + 1).min(raw.len());
        text
    };
    let mut out = Vec::new();
    for _ in 0..n {
        let mut start = line(&mut at);
        while start.is_empty() {
            start = line(&mut at);
        }
        let parts: Vec<&str> = start.split(' ').collect();
        let mut fields = Vec::new();
        loop {
            let l = line(&mut at);
            if l.is_empty() {
                break;
            }
            let (name, value) = l.split_once(':').expect("a field");
            fields.push((name.to_owned(), value.trim_matches([' ', '\t']).to_owned()));
        }
        let has = |name: &str| fields.iter().find(|(n, _)| n.eq_ignore_ascii_case(name));
        let (delimited, payload) = if has("transfer-encoding").is_some() {
            let mut payload = Vec::new();
            loop {
                let size_line = line(&mut at);
                let digits: String = size_line
                    .chars()
                    .take_while(char::is_ascii_hexdigit)
                    .collect();
                let size = usize::from_str_radix(&digits, 16).expect("a chunk size");
                if size == 0 {
                    while !line(&mut at).is_empty() {}
                    break;
                }
                payload.extend_from_slice(&raw[at..at + size]);
                at += size + 2;
            }
            (Delimited::Chunked, payload)
        } else if let Some((_, v)) = has("content-length") {
            let len: usize = v.split(',').next().unwrap().trim().parse().unwrap();
            let payload = raw[at..at + len].to_vec();
            at += len;
            (Delimited::Length(len as u64), payload)
        } else {
            (Delimited::None, Vec::new())
        };
        out.push(Seen {
            method: parts[0].into(),
            target: parts[1].into(),
            version: parts[2].into(),
            fields,
            delimited,
            payload,
        });
    }
    out
}
