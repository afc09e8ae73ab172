//! Cookie stickiness settings: `[backend.cookie]` and each server's `cookie` value.
//! Validation only; the cookie handling is `http::cookie`.

use toml::Spanned;

use super::file::FileCookie;
use super::{ConfigError, Ctx, Mode, Server};

/// `mode` of `[backend.cookie]` (HAProxy's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieMode {
    /// The proxy sets the cookie on responses.
    Insert,
    /// The server sets the cookie; the proxy replaces its value.
    Rewrite,
    /// The server's cookie value gets the server's cookie and `~` in front.
    Prefix,
}

/// `[backend.cookie]` after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieSettings {
    pub name: String,
    pub mode: CookieMode,
    /// insert: no cookie set for a client that holds the right one, and the cookie is
    /// removed from requests to the server.
    pub indirect: bool,
    /// insert: a response that sets the cookie also gets `Cache-Control: private`.
    pub nocache: bool,
    pub domain: Option<String>,
    pub httponly: bool,
    pub secure: bool,
}

/// A cookie name: an HTTP token.
fn is_token(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(super::is_token_byte)
}

/// A value that stays one cookie pair and leaves `~` to prefix mode.
fn is_cookie_value(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| (0x21..0x7f).contains(&b) && !matches!(b, b'"' | b',' | b';' | b'\\' | b'~'))
}

impl Ctx<'_> {
    pub(super) fn cookie(
        &self,
        c: Option<&Spanned<FileCookie>>,
        mode: Mode,
    ) -> Result<Option<CookieSettings>, ConfigError> {
        let Some(spanned) = c else { return Ok(None) };
        if mode != Mode::Http {
            return self.err(
                spanned.span(),
                "backend.cookie",
                "needs mode = \"http\" on the backend",
            );
        }
        let c = spanned.get_ref();
        if !is_token(c.name.get_ref()) {
            return self.err(
                c.name.span(),
                "backend.cookie.name",
                format!(
                    "\"{}\" is not a cookie name (an HTTP token)",
                    c.name.get_ref()
                ),
            );
        }
        let mode = self.word(
            c.mode.as_ref(),
            "backend.cookie.mode",
            "mode",
            &[
                ("insert", CookieMode::Insert),
                ("rewrite", CookieMode::Rewrite),
                ("prefix", CookieMode::Prefix),
            ],
            CookieMode::Insert,
        )?;
        if let Some(d) = &c.domain {
            if !is_cookie_value(d.get_ref()) {
                return self.err(
                    d.span(),
                    "backend.cookie.domain",
                    format!("\"{}\" is not a domain", d.get_ref()),
                );
            }
        }
        Ok(Some(CookieSettings {
            name: c.name.get_ref().clone(),
            mode,
            indirect: c.indirect.unwrap_or(false),
            nocache: c.nocache.unwrap_or(false),
            domain: c.domain.as_ref().map(|d| d.get_ref().clone()),
            httponly: c.httponly.unwrap_or(false),
            secure: c.secure.unwrap_or(false),
        }))
    }

    /// A server's cookie value: given, or its name; unique within the backend.
    pub(super) fn server_cookie(
        &self,
        value: Option<&Spanned<String>>,
        name: &str,
        earlier: &[Server],
    ) -> Result<String, ConfigError> {
        let cookie = value.map_or(name, |v| v.get_ref().as_str());
        let span = value.map(|v| v.span()).unwrap_or(0..0);
        if !is_cookie_value(cookie) {
            return self.err(
                span,
                "backend.server.cookie",
                format!("\"{cookie}\" is not a cookie value (no spaces, quotes, ',', ';', '\\\\' or '~')"),
            );
        }
        if let Some(other) = earlier.iter().find(|s| s.cookie == cookie) {
            return self.err(
                span,
                "backend.server.cookie",
                format!("\"{cookie}\" is already server \"{}\"'s cookie", other.name),
            );
        }
        Ok(cookie.to_string())
    }
}
