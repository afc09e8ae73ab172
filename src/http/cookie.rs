//! Cookie stickiness (`[backend.cookie]`): which server a request's persistence cookie
//! names, and the `Cookie` / `Set-Cookie` fields as they leave the proxy.
//!
//! Sans-IO: functions over field values and a reused output buffer. HAProxy's modes:
//! - `insert`: the proxy sets `NAME=<server cookie>` on responses unless the client
//!   already holds the right one (with `indirect`, the cookie is also removed from
//!   requests so the application never sees it; with `nocache`, a response that gets the
//!   cookie also gets `Cache-Control: private`). A server's own cookie of that name is
//!   dropped.
//! - `rewrite`: the server sets `NAME=...`; the proxy replaces the value with the
//!   server's cookie value.
//! - `prefix`: the server's `NAME=v` becomes `NAME=<server cookie>~v` for the client,
//!   and `NAME=<server cookie>~v` from the client goes back to the server as `NAME=v`.
//!
//! Cookie values never contain `;`, `,` or spaces (config-validated), so a pair is found
//! by splitting on `;` and the separator `~` cannot be confused in prefix mode.

use super::head::trim;
use super::rewrite::write_field as field;
use crate::config::{CookieMode, CookieSettings};

/// The separator between the server's cookie and the application's value (`prefix`).
pub const PREFIX_SEPARATOR: u8 = b'~';

/// The value of cookie `name` in one `Cookie` field value (`a=1; NAME=v; b=2`).
fn find<'a>(field: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    field.split(|&b| b == b';').find_map(|pair| {
        let pair = trim(pair);
        let eq = pair.iter().position(|&b| b == b'=')?;
        (trim(&pair[..eq]) == name).then(|| trim(&pair[eq + 1..]))
    })
}

/// The server cookie a request's persistence cookie names (in prefix mode, the part
/// before `~`), looked up in every `Cookie` field in order.
pub fn requested<'a>(
    cookie_fields: impl Iterator<Item = &'a [u8]>,
    settings: &CookieSettings,
) -> Option<&'a [u8]> {
    let name = settings.name.as_bytes();
    cookie_fields
        .filter_map(|f| find(f, name))
        .find_map(|v| match settings.mode {
            CookieMode::Prefix => v
                .iter()
                .position(|&b| b == PREFIX_SEPARATOR)
                .map(|i| &v[..i]),
            CookieMode::Insert | CookieMode::Rewrite => Some(v),
        })
}

/// Writes a request's `Cookie` field as the server must see it: in `insert` mode with
/// `indirect`, without the persistence cookie (and not at all if nothing is left); in
/// `prefix` mode, with the server part and `~` removed from its value; else unchanged.
pub fn request_field(out: &mut Vec<u8>, name: &[u8], value: &[u8], settings: &CookieSettings) {
    let remove = settings.mode == CookieMode::Insert && settings.indirect;
    let strip = settings.mode == CookieMode::Prefix;
    if !remove && !strip {
        field(out, name, value);
        return;
    }
    let start = out.len();
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    let after_name = out.len();
    for pair in value.split(|&b| b == b';') {
        let pair = trim(pair);
        if pair.is_empty() {
            continue;
        }
        let eq = pair.iter().position(|&b| b == b'=');
        let is_ours = eq.is_some_and(|i| trim(&pair[..i]) == settings.name.as_bytes());
        if is_ours && remove {
            continue;
        }
        if out.len() > after_name {
            out.extend_from_slice(b"; ");
        }
        match eq {
            Some(i) if is_ours => {
                let v = trim(&pair[i + 1..]);
                let v = v
                    .iter()
                    .position(|&b| b == PREFIX_SEPARATOR)
                    .map_or(v, |s| &v[s + 1..]);
                out.extend_from_slice(&pair[..=i]);
                out.extend_from_slice(v);
            }
            _ => out.extend_from_slice(pair),
        }
    }
    if out.len() == after_name {
        out.truncate(start);
    } else {
        out.extend_from_slice(b"\r\n");
    }
}

/// Writes a response's `Set-Cookie` field for the client: in `insert` mode a server's
/// cookie of the persistence name is dropped (the proxy sets its own); in `rewrite` mode
/// its value becomes `server_cookie`; in `prefix` mode `server_cookie~` goes before it.
/// Other cookies pass unchanged.
pub fn response_field(
    out: &mut Vec<u8>,
    name: &[u8],
    value: &[u8],
    settings: &CookieSettings,
    server_cookie: &[u8],
) {
    // `NAME=v; attributes`: only the first pair is the cookie.
    let v = trim(value);
    let first_end = v.iter().position(|&b| b == b';').unwrap_or(v.len());
    let ours = v[..first_end]
        .iter()
        .position(|&b| b == b'=')
        .filter(|&eq| trim(&v[..eq]) == settings.name.as_bytes());
    let Some(eq) = ours else {
        field(out, name, value);
        return;
    };
    match settings.mode {
        CookieMode::Insert => {}
        CookieMode::Rewrite | CookieMode::Prefix => {
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(&v[..=eq]);
            out.extend_from_slice(server_cookie);
            if settings.mode == CookieMode::Prefix {
                out.push(PREFIX_SEPARATOR);
                out.extend_from_slice(trim(&v[eq + 1..first_end]));
            }
            out.extend_from_slice(&v[first_end..]);
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// Writes the fields `insert` mode adds to a response: the persistence cookie and, with
/// `nocache`, `Cache-Control: private`.
pub fn insert_fields(out: &mut Vec<u8>, settings: &CookieSettings, server_cookie: &[u8]) {
    out.extend_from_slice(b"Set-Cookie: ");
    out.extend_from_slice(settings.name.as_bytes());
    out.push(b'=');
    out.extend_from_slice(server_cookie);
    out.extend_from_slice(b"; path=/");
    if let Some(d) = &settings.domain {
        out.extend_from_slice(b"; domain=");
        out.extend_from_slice(d.as_bytes());
    }
    if settings.httponly {
        out.extend_from_slice(b"; HttpOnly");
    }
    if settings.secure {
        out.extend_from_slice(b"; Secure");
    }
    out.extend_from_slice(b"\r\n");
    if settings.nocache {
        out.extend_from_slice(b"Cache-Control: private\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(mode: CookieMode, indirect: bool) -> CookieSettings {
        CookieSettings {
            name: "SERVERID".into(),
            mode,
            indirect,
            nocache: true,
            domain: None,
            httponly: false,
            secure: false,
        }
    }

    fn req(value: &str, s: &CookieSettings) -> String {
        let mut out = Vec::new();
        request_field(&mut out, b"Cookie", value.as_bytes(), s);
        String::from_utf8(out).unwrap()
    }

    fn resp(value: &str, s: &CookieSettings) -> String {
        let mut out = Vec::new();
        response_field(&mut out, b"Set-Cookie", value.as_bytes(), s, b"s1");
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn finds_the_named_cookie() {
        assert_eq!(
            find(b"a=1; SERVERID=s2; b=3", b"SERVERID"),
            Some(&b"s2"[..])
        );
        assert_eq!(find(b"SERVERID=s2", b"SERVERID"), Some(&b"s2"[..]));
        assert_eq!(find(b"XSERVERID=s2", b"SERVERID"), None);
        assert_eq!(find(b"a=1;b", b"b"), None);
        let s = settings(CookieMode::Prefix, false);
        let fields = [&b"x=1"[..], &b"SERVERID=s3~abc"[..]];
        assert_eq!(requested(fields.into_iter(), &s), Some(&b"s3"[..]));
        let fields = [&b"SERVERID=abc"[..]];
        assert_eq!(requested(fields.into_iter(), &s), None, "no separator");
    }

    #[test]
    fn request_cookies_as_the_server_sees_them() {
        let indirect = settings(CookieMode::Insert, true);
        assert_eq!(
            req("a=1; SERVERID=s1; b=2", &indirect),
            "Cookie: a=1; b=2\r\n"
        );
        assert_eq!(req("SERVERID=s1", &indirect), "", "nothing left: no field");
        let direct = settings(CookieMode::Insert, false);
        assert_eq!(
            req("SERVERID=s1; a=1", &direct),
            "Cookie: SERVERID=s1; a=1\r\n"
        );
        let prefix = settings(CookieMode::Prefix, false);
        assert_eq!(
            req("a=1; SERVERID=s1~abc", &prefix),
            "Cookie: a=1; SERVERID=abc\r\n"
        );
    }

    #[test]
    fn response_cookies_as_the_client_sees_them() {
        let insert = settings(CookieMode::Insert, true);
        assert_eq!(
            resp("SERVERID=app; path=/", &insert),
            "",
            "the proxy sets its own"
        );
        assert_eq!(resp("other=1", &insert), "Set-Cookie: other=1\r\n");
        let rewrite = settings(CookieMode::Rewrite, false);
        assert_eq!(
            resp("SERVERID=whatever; path=/; HttpOnly", &rewrite),
            "Set-Cookie: SERVERID=s1; path=/; HttpOnly\r\n"
        );
        let prefix = settings(CookieMode::Prefix, false);
        assert_eq!(
            resp("SERVERID=abc; Max-Age=60", &prefix),
            "Set-Cookie: SERVERID=s1~abc; Max-Age=60\r\n"
        );
        let mut out = Vec::new();
        insert_fields(&mut out, &insert, b"s1");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Set-Cookie: SERVERID=s1; path=/\r\nCache-Control: private\r\n"
        );
    }
}
