//! TLS settings: `[frontend.tls]` (termination) and the `tls` table of a backend or server
//! (TLS to the servers). Validation and loading only: certificates, keys and CA bundles
//! are read and checked here, at load, so a bad file is refused with its path and the
//! reason; the per-shard rustls configurations are built from these by [`crate::tls`].
//!
//! Paths are relative to the directory of the configuration file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::aws_lc_rs;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::ProducesTickets;
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use toml::Spanned;

use super::file::{FileFrontendTls, FileServerTls};
use super::{ConfigError, Ctx, Mode};

/// Where the system's CA bundle is (Debian); the default `ca` of a verifying `tls`.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Default of `session_cache`: TLS 1.2 session ids remembered per shard.
pub const SESSION_CACHE: usize = 4096;
/// Most `session_cache` entries: the cache is allocated whole, per shard and frontend.
pub const SESSION_CACHE_MAX: i64 = 1_000_000;

/// `min_version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// `[frontend.tls]` after validation.
#[derive(Debug, Clone)]
pub struct FrontendTls {
    /// The first is the default certificate.
    pub certificates: Vec<Certificate>,
    pub min_version: TlsVersion,
    /// ALPN protocols offered, in preference order; empty: no ALPN.
    pub alpn: Vec<Vec<u8>>,
    /// TLS 1.2 session ids kept per shard; 0: none.
    pub session_cache: usize,
    /// Session tickets, with one key for every shard (a ticket one shard issued resumes on
    /// any other); `None`: no tickets.
    pub ticketer: Option<Arc<dyn ProducesTickets>>,
}

/// One certificate chain with its key.
#[derive(Debug, Clone)]
pub struct Certificate {
    /// The file it came from (for messages).
    pub path: PathBuf,
    pub key: Arc<CertifiedKey>,
    /// The DNS names of its leaf (subject alternative names), lower case; a wildcard
    /// is written `*.example.com`.
    pub names: Vec<String>,
    /// The leaf's validity (Unix seconds, `notBefore` and `notAfter`), when readable.
    pub validity: Option<(i64, i64)>,
}

/// TLS to a server (the `tls` table of its backend, or its own).
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// Trusted roots the server's chain must lead to; `None`: `verify = "none"`.
    pub roots: Option<Arc<RootCertStore>>,
    pub sni: Sni,
    /// A client certificate to present.
    pub client_auth: Option<Arc<ClientAuth>>,
    pub alpn: Vec<Vec<u8>>,
    /// Remember sessions so a new connection after a pool miss is a short handshake.
    pub resumption: bool,
}

/// What SNI the proxy sends (and what name the server's certificate must have).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sni {
    /// No SNI; only the certificate chain is verified, not the name.
    None,
    /// This name (lower case).
    Fixed(ServerName<'static>),
    /// The request's `Host` without its port (http mode); a request without one gets no
    /// SNI.
    FromHost,
}

/// A client certificate chain and its key.
#[derive(Debug)]
pub struct ClientAuth {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

/// Reads every certificate of a PEM file.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let iter = CertificateDer::pem_file_iter(path).map_err(|e| pem_error(path, e))?;
    let certs = iter
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(format!(
            "{}: no certificate in it (expected PEM \"BEGIN CERTIFICATE\")",
            path.display()
        ));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => format!(
            "{}: no private key in it (expected PEM \"BEGIN PRIVATE KEY\", RSA or EC)",
            path.display()
        ),
        e => pem_error(path, e),
    })
}

fn pem_error(path: &Path, e: rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) => format!("{}: cannot read: {io}", path.display()),
        e => format!("{}: not valid PEM: {e:?}", path.display()),
    }
}

/// Loads a certificate chain and its key, checking that they belong together.
pub fn load_certificate(cert: &Path, key: &Path) -> Result<Certificate, String> {
    let chain = read_certs(cert)?;
    let names = leaf_names(&chain[0]).map_err(|e| format!("{}: {e}", cert.display()))?;
    let validity = validity(&chain[0]);
    let certified = certified(chain, read_key(key)?, cert, key)?;
    Ok(Certificate {
        path: cert.to_path_buf(),
        key: Arc::new(certified),
        names,
        validity,
    })
}

/// A chain and its key as rustls signs with them, refused when they do not match.
fn certified(
    chain: Vec<CertificateDer<'static>>,
    der: PrivateKeyDer<'static>,
    cert: &Path,
    key: &Path,
) -> Result<CertifiedKey, String> {
    let provider = aws_lc_rs::default_provider();
    CertifiedKey::from_der(chain, der, &provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => format!(
            "{} is not the key of {} (they do not match)",
            key.display(),
            cert.display()
        ),
        e => format!("{}: unusable key: {e}", key.display()),
    })
}

/// Why a certificate is not valid at `now` (Unix seconds), if it is not: it has expired
/// or is not valid yet. Such a certificate is loaded (a restart must not take every other
/// name down with it) and reported.
pub fn validity_problem(validity: Option<(i64, i64)>, now: i64) -> Option<String> {
    let (not_before, not_after) = validity?;
    if now > not_after {
        Some(format!("expired on {}", date(not_after)))
    } else if now < not_before {
        Some(format!("not valid before {}", date(not_before)))
    } else {
        None
    }
}

/// `YYYY-MM-DD` of Unix seconds (UTC).
fn date(secs: i64) -> String {
    // Howard Hinnant's civil-from-days.
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Unix seconds of a civil date and time (UTC).
fn unix(y: i64, m: i64, d: i64, hh: i64, mm: i64, ss: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe - 719_468) * 86_400 + hh * 3600 + mm * 60 + ss
}

/// One DER element at the start of `der`: its tag, its contents and what follows.
fn der_element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |a, &b| (a << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// A UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`) in Unix seconds.
fn der_time(tag: u8, text: &[u8]) -> Option<i64> {
    let digits = |t: &[u8]| -> Option<i64> {
        t.iter().try_fold(0i64, |a, &b| {
            b.is_ascii_digit().then(|| a * 10 + i64::from(b - b'0'))
        })
    };
    let (year, rest) = match (tag, text.len()) {
        (0x17, 13) => {
            let yy = digits(&text[..2])?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &text[2..])
        }
        (0x18, 15) => (digits(&text[..4])?, &text[4..]),
        _ => return None,
    };
    if rest[10] != b'Z' {
        return None;
    }
    let f = |i: usize| digits(&rest[i..i + 2]);
    Some(unix(year, f(0)?, f(2)?, f(4)?, f(6)?, f(8)?))
}

/// The validity of an X.509 certificate: `Certificate → tbsCertificate → [version],
/// serialNumber, signature, issuer, validity { notBefore, notAfter }`.
pub fn validity(der: &[u8]) -> Option<(i64, i64)> {
    let (_, cert, _) = der_element(der)?;
    let (_, tbs, _) = der_element(cert)?;
    let mut rest = tbs;
    let (tag, _, after) = der_element(rest)?;
    if tag == 0xa0 {
        rest = after; // version
    }
    for _ in 0..3 {
        rest = der_element(rest)?.2; // serialNumber, signature, issuer
    }
    let (_, validity, _) = der_element(rest)?;
    let (t1, before, rest) = der_element(validity)?;
    let (t2, after, _) = der_element(rest)?;
    Some((der_time(t1, before)?, der_time(t2, after)?))
}

/// The DNS names of a leaf certificate, lower case.
fn leaf_names(der: &CertificateDer<'_>) -> Result<Vec<String>, String> {
    let cert = webpki::EndEntityCert::try_from(der)
        .map_err(|e| format!("not a valid X.509 certificate: {e}"))?;
    Ok(cert
        .valid_dns_names()
        .map(|n| n.to_ascii_lowercase())
        .collect())
}

/// ALPN protocol names: 1..=255 bytes each.
fn alpn(
    ctx: &Ctx<'_>,
    v: &Spanned<Vec<Spanned<String>>>,
    key: &str,
) -> Result<Vec<Vec<u8>>, ConfigError> {
    let mut out = Vec::new();
    for p in v.get_ref() {
        let name = p.get_ref();
        if name.is_empty() || name.len() > 255 {
            return ctx.err(
                p.span(),
                key,
                "a protocol name is 1 to 255 bytes, e.g. \"http/1.1\"",
            );
        }
        out.push(name.as_bytes().to_vec());
    }
    Ok(out)
}

impl Ctx<'_> {
    /// A path as written, relative to the configuration file's directory.
    fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        match self.source.parent() {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p.to_path_buf(),
        }
    }

    pub(super) fn frontend_tls(
        &self,
        t: Option<&Spanned<FileFrontendTls>>,
        mode: Mode,
    ) -> Result<Option<Arc<FrontendTls>>, ConfigError> {
        const KEY: &str = "frontend.tls";
        let Some(spanned) = t else { return Ok(None) };
        let t = spanned.get_ref();
        if t.certificates.get_ref().is_empty() {
            return self.err(
                t.certificates.span(),
                "frontend.tls.certificates",
                "needs at least one { cert = \"file.pem\", key = \"file.key\" }",
            );
        }
        let mut certificates = Vec::new();
        for c in t.certificates.get_ref() {
            let c = c.get_ref();
            let cert = self.path(c.cert.get_ref());
            let key = self.path(c.key.get_ref());
            match load_certificate(&cert, &key) {
                Ok(loaded) => {
                    if let Some(problem) = validity_problem(loaded.validity, now()) {
                        eprintln!(
                            "ringproxy: warning: {}:{}: frontend.tls.certificates: {}: {problem}",
                            self.source.display(),
                            self.line_of(c.cert.span().start),
                            cert.display()
                        );
                    }
                    certificates.push(loaded)
                }
                Err(reason) => return self.err(c.cert.span(), "frontend.tls.certificates", reason),
            }
        }
        let min_version = self.word(
            t.min_version.as_ref(),
            "frontend.tls.min_version",
            "TLS version",
            &[("1.2", TlsVersion::Tls12), ("1.3", TlsVersion::Tls13)],
            TlsVersion::Tls12,
        )?;
        let alpn = match &t.alpn {
            Some(v) => alpn(self, v, "frontend.tls.alpn")?,
            None if mode == Mode::Http => vec![b"http/1.1".to_vec()],
            None => Vec::new(),
        };
        if mode == Mode::Http {
            if let Some(v) = &t.alpn {
                if !alpn_ok_for_http(v.get_ref()) {
                    return self.err(
                        v.span(),
                        "frontend.tls.alpn",
                        "an http frontend speaks HTTP/1.x: offer \"http/1.1\" (and \"http/1.0\"), not other protocols",
                    );
                }
            }
        }
        let session_cache = self.int_in(
            t.session_cache.as_ref(),
            "frontend.tls.session_cache",
            (0, SESSION_CACHE_MAX),
            SESSION_CACHE as i64,
        )? as usize;
        let ticketer = if t.tickets.unwrap_or(true) {
            match aws_lc_rs::Ticketer::new() {
                Ok(t) => Some(t),
                Err(e) => {
                    return self.err(
                        spanned.span(),
                        KEY,
                        format!("cannot make a ticket key: {e}"),
                    )
                }
            }
        } else {
            None
        };
        Ok(Some(Arc::new(FrontendTls {
            certificates,
            min_version,
            alpn,
            session_cache,
            ticketer,
        })))
    }

    /// The `tls` of a server: its own table, else its backend's; `None` when neither
    /// says `enabled = true` (a table without `enabled` enables TLS).
    pub(super) fn server_tls(
        &self,
        own: Option<&Spanned<FileServerTls>>,
        backend: Option<&Spanned<FileServerTls>>,
        mode: Mode,
    ) -> Result<Option<Arc<ServerTls>>, ConfigError> {
        let (spanned, key) = match (own, backend) {
            (Some(t), _) => (t, "backend.server.tls"),
            (None, Some(t)) => (t, "backend.tls"),
            (None, None) => return Ok(None),
        };
        let t = spanned.get_ref();
        if !t.enabled.unwrap_or(true) {
            return Ok(None);
        }
        let verify = self.word(
            t.verify.as_ref(),
            &format!("{key}.verify"),
            "verification",
            &[("required", true), ("none", false)],
            true,
        )?;
        let roots = if verify {
            let (path, span) = match &t.ca {
                Some(ca) => (self.path(ca.get_ref()), ca.span()),
                None if Path::new(SYSTEM_CA_BUNDLE).exists() => {
                    (PathBuf::from(SYSTEM_CA_BUNDLE), spanned.span())
                }
                None => {
                    return self.err(
                        spanned.span(),
                        key,
                        format!("no CA to verify servers with ({SYSTEM_CA_BUNDLE} is missing): set ca = \"<file.pem>\", or verify = \"none\""),
                    )
                }
            };
            let certs =
                read_certs(&path).or_else(|e| self.err(span.clone(), &format!("{key}.ca"), e))?;
            let mut store = RootCertStore::empty();
            let (added, _ignored) = store.add_parsable_certificates(certs);
            if added == 0 {
                return self.err(
                    span,
                    &format!("{key}.ca"),
                    format!("{}: no usable CA certificate in it", path.display()),
                );
            }
            Some(Arc::new(store))
        } else {
            // A `ca` left in place while verification is off (as HAProxy's `verify none`
            // with a `ca-file`) is not read.
            None
        };
        let sni = match (&t.sni, t.sni_from_host.unwrap_or(false)) {
            (Some(s), true) => {
                return self.err(
                    s.span(),
                    &format!("{key}.sni"),
                    "set either sni or sni_from_host, not both",
                )
            }
            (Some(s), false) => match ServerName::try_from(s.get_ref().to_ascii_lowercase()) {
                Ok(ServerName::DnsName(n)) => Sni::Fixed(ServerName::DnsName(n)),
                _ => {
                    return self.err(
                        s.span(),
                        &format!("{key}.sni"),
                        format!("\"{}\" is not a DNS name", s.get_ref()),
                    )
                }
            },
            (None, true) if mode != Mode::Http => {
                return self.err(
                    spanned.span(),
                    &format!("{key}.sni_from_host"),
                    "needs mode = \"http\" on the backend (the Host header is HTTP's)",
                )
            }
            (None, true) => Sni::FromHost,
            (None, false) => Sni::None,
        };
        let client_auth = match (&t.client_cert, &t.client_key) {
            (None, None) => None,
            (Some(c), Some(k)) => {
                let (cert, keyp) = (self.path(c.get_ref()), self.path(k.get_ref()));
                let chain = read_certs(&cert)
                    .or_else(|e| self.err(c.span(), &format!("{key}.client_cert"), e))?;
                let der = read_key(&keyp)
                    .or_else(|e| self.err(k.span(), &format!("{key}.client_key"), e))?;
                // The two must belong together.
                certified(chain.clone(), der.clone_key(), &cert, &keyp)
                    .or_else(|e| self.err(c.span(), &format!("{key}.client_cert"), e))?;
                Some(Arc::new(ClientAuth { chain, key: der }))
            }
            (Some(c), None) => {
                return self.err(
                    c.span(),
                    &format!("{key}.client_key"),
                    "client_cert needs client_key",
                )
            }
            (None, Some(k)) => {
                return self.err(
                    k.span(),
                    &format!("{key}.client_cert"),
                    "client_key needs client_cert",
                )
            }
        };
        let alpn = match &t.alpn {
            Some(v) if mode == Mode::Http && !alpn_ok_for_http(v.get_ref()) => {
                return self.err(
                    v.span(),
                    &format!("{key}.alpn"),
                    "an http backend speaks HTTP/1.x to its servers: offer \"http/1.1\" (and \"http/1.0\"), not other protocols",
                )
            }
            Some(v) => alpn(self, v, &format!("{key}.alpn"))?,
            None => Vec::new(),
        };
        Ok(Some(Arc::new(ServerTls {
            roots,
            sni,
            client_auth,
            alpn,
            resumption: t.resumption.unwrap_or(true),
        })))
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Whether every protocol of an http frontend's ALPN list is HTTP/1.x.
fn alpn_ok_for_http(v: &[Spanned<String>]) -> bool {
    v.iter()
        .all(|p| matches!(p.get_ref().as_str(), "http/1.1" | "http/1.0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        assert_eq!(unix(1970, 1, 1, 0, 0, 0), 0);
        assert_eq!(unix(2000, 3, 1, 0, 0, 0), 951_868_800);
        assert_eq!(unix(2024, 2, 29, 12, 0, 1), 1_709_208_001);
        assert_eq!(date(1_709_208_001), "2024-02-29");
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(unix(2049, 12, 31, 23, 59, 59)), "2049-12-31");
    }

    #[test]
    fn der_times() {
        assert_eq!(der_time(0x17, b"240229120001Z"), Some(1_709_208_001));
        assert_eq!(der_time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(der_time(0x18, b"20240229120001Z"), Some(1_709_208_001));
        assert_eq!(der_time(0x17, b"240229120001+"), None);
        assert_eq!(der_time(0x17, b"24022912000Z"), None);
        assert_eq!(der_time(0x18, b"2024022912000xZ"), None);
    }

    #[test]
    fn validity_of_a_certificate_and_of_garbage() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["a.test".into()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 2);
        params.not_after = rcgen::date_time_ymd(2051, 3, 4);
        let cert = params.self_signed(&key).unwrap();
        let (nb, na) = validity(cert.der()).expect("readable");
        assert_eq!(date(nb), "2020-01-02");
        assert_eq!(date(na), "2051-03-04");
        assert_eq!(
            validity_problem(Some((nb, na)), unix(2030, 1, 1, 0, 0, 0)),
            None
        );
        assert_eq!(
            validity_problem(Some((nb, na)), unix(2052, 1, 1, 0, 0, 0)).as_deref(),
            Some("expired on 2051-03-04")
        );
        assert_eq!(
            validity_problem(Some((nb, na)), unix(2019, 1, 1, 0, 0, 0)).as_deref(),
            Some("not valid before 2020-01-02")
        );
        assert_eq!(validity(b""), None);
        assert_eq!(validity(&[0x30, 0x82, 0xff]), None);
        assert_eq!(validity(&cert.der()[..40]), None);
    }
}
