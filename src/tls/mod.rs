//! TLS with rustls: the per-shard configurations, the handshakes, and why one failed.
//!
//! Owns what turns the loaded settings of [`crate::config::tls`] into rustls
//! configurations, one per shard so that each shard's session caches are its own (the
//! ticket key of a frontend is shared: a ticket issued by one shard resumes on any other,
//! as a client's next connection may land on another shard). Certificates are chosen by
//! SNI ([`CertResolver`]): an exact name, then a `*.` wildcard one label deep, then the
//! frontend's first certificate.
//!
//! Server verification (`Verifier`): the chain must lead to the configured roots, and,
//! when an SNI is sent, the certificate must be valid for that name; without SNI (no
//! `sni`, no `sni_from_host`), only the chain is checked (HAProxy's behaviour without
//! `verifyhost`); with `sni_from_host`, the name is always checked, an address in `Host`
//! (or a request without one: the server's address) included; `verify = "none"` checks
//! nothing but the handshake signatures.
//!
//! A failed handshake hands its TCP socket back, so that it is closed without an RST
//! (the peer's alert or late bytes are read and discarded first); one that ran out of
//! time is dropped with the future that held it.
//!
//! The connection type shared by plain and TLS sockets is [`stream::Stream`].

pub mod stream;

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use glommio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::{
    ClientHello, NoServerSessionStorage, ResolvesServerCert, ServerSessionMemoryCache,
};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, HandshakeKind, ServerConfig,
    SignatureScheme,
};

use crate::config::{Config, FrontendTls, ServerTls, Sni, TlsVersion};
pub use stream::Stream;

/// TLS 1.2 or 1.3 sessions a shard remembers per server, to resume after a pool miss.
pub const CLIENT_SESSIONS: usize = 256;

/// One shard's TLS configurations.
pub struct ShardTls {
    /// Per frontend: `Some` for a TLS frontend.
    pub frontends: Vec<Option<Arc<ServerConfig>>>,
    /// Per `[backend][server]`: `Some` for a server spoken to over TLS. One per server,
    /// so each server's resumable sessions are its own.
    pub servers: Vec<Vec<Option<Arc<ClientConfig>>>>,
}

impl ShardTls {
    pub fn new(config: &Config) -> ShardTls {
        ShardTls {
            frontends: config
                .frontends
                .iter()
                .map(|f| f.tls.as_deref().map(server_config))
                .collect(),
            servers: config
                .backends
                .iter()
                .map(|b| {
                    b.servers
                        .iter()
                        .map(|s| s.tls.as_deref().map(client_config))
                        .collect()
                })
                .collect(),
        }
    }
}

/// The name a connection to a server is made for: the SNI sent and the name its
/// certificate must have, or, without SNI, the server's address (no SNI is sent for an
/// address; `Verifier` then checks the chain only, except with `sni_from_host`).
/// `host`: the request's host, lower case and without port (for `sni_from_host`); an
/// address there (`10.0.0.1`, `[::1]`) is the name, and a host that is neither a DNS
/// name nor an address counts as none.
pub fn server_name(
    tls: &ServerTls,
    address: std::net::IpAddr,
    host: Option<&str>,
) -> ServerName<'static> {
    let by_address = ServerName::IpAddress(address.into());
    match (&tls.sni, host) {
        (Sni::Fixed(name), _) => name.clone(),
        (Sni::FromHost, Some(h)) => {
            let bare = h.trim_start_matches('[').trim_end_matches(']');
            match bare.parse::<std::net::IpAddr>() {
                Ok(ip) => ServerName::IpAddress(ip.into()),
                Err(_) => ServerName::try_from(h.to_string()).unwrap_or(by_address),
            }
        }
        _ => by_address,
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(aws_lc_rs::default_provider())
}

/// Chooses the certificate for a client's SNI.
#[derive(Debug)]
pub struct CertResolver {
    keys: Vec<Arc<CertifiedKey>>,
    /// Lower-case name → index in `keys`.
    exact: HashMap<String, usize>,
    /// `*.example.com` is stored as `example.com`.
    wildcard: HashMap<String, usize>,
}

impl CertResolver {
    pub fn new(certs: &[crate::config::Certificate]) -> CertResolver {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for (i, c) in certs.iter().enumerate() {
            for name in &c.names {
                // The first certificate with a name keeps it.
                match name.strip_prefix("*.") {
                    Some(suffix) => wildcard.entry(suffix.to_string()).or_insert(i),
                    None => exact.entry(name.clone()).or_insert(i),
                };
            }
        }
        CertResolver {
            keys: certs.iter().map(|c| Arc::clone(&c.key)).collect(),
            exact,
            wildcard,
        }
    }

    /// The index of the certificate for `sni` (none, or unknown: the first).
    pub fn pick(&self, sni: Option<&str>) -> usize {
        let Some(name) = sni else { return 0 };
        let mut lower = [0u8; 253];
        let Some(buf) = lower.get_mut(..name.len()) else {
            return 0;
        };
        buf.copy_from_slice(name.as_bytes());
        buf.make_ascii_lowercase();
        let Ok(name) = std::str::from_utf8(buf) else {
            return 0;
        };
        let name = name.trim_end_matches('.');
        if let Some(&i) = self.exact.get(name) {
            return i;
        }
        name.split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
            .copied()
            .unwrap_or(0)
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.keys[self.pick(hello.server_name())]))
    }
}

/// One shard's configuration for a TLS frontend.
pub fn server_config(tls: &FrontendTls) -> Arc<ServerConfig> {
    let versions: &[&rustls::SupportedProtocolVersion] = match tls.min_version {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .expect("the provider supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(CertResolver::new(&tls.certificates)));
    config.alpn_protocols = tls.alpn.clone();
    config.session_storage = if tls.session_cache > 0 {
        ServerSessionMemoryCache::new(tls.session_cache)
    } else {
        Arc::new(NoServerSessionStorage {})
    };
    match &tls.ticketer {
        Some(t) => {
            config.ticketer = Arc::clone(t);
            // One ticket per handshake: a proxy's clients resume one connection at a time.
            config.send_tls13_tickets = 1;
        }
        None if tls.session_cache == 0 => config.send_tls13_tickets = 0,
        None => config.send_tls13_tickets = 1,
    }
    Arc::new(config)
}

/// One shard's configuration for TLS to a server.
pub fn client_config(tls: &ServerTls) -> Arc<ClientConfig> {
    let provider = provider();
    let verifier: Arc<dyn ServerCertVerifier> = match &tls.roots {
        Some(roots) => Arc::new(Verifier {
            inner: Some(
                WebPkiServerVerifier::builder_with_provider(
                    Arc::clone(roots),
                    Arc::clone(&provider),
                )
                .build()
                .expect("roots were checked non-empty at load"),
            ),
            provider: Arc::clone(&provider),
            names_always: tls.sni == Sni::FromHost,
        }),
        None => Arc::new(Verifier {
            inner: None,
            provider: Arc::clone(&provider),
            names_always: false,
        }),
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the provider supports the default versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match &tls.client_auth {
        Some(auth) => builder
            .with_client_auth_cert(auth.chain.clone(), auth.key.clone_key())
            .expect("the client certificate and key were checked at load"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = tls.alpn.clone();
    config.resumption = if tls.resumption {
        Resumption::in_memory_sessions(CLIENT_SESSIONS)
    } else {
        Resumption::disabled()
    };
    Arc::new(config)
}

/// Verifies servers' certificates (see the module header).
#[derive(Debug)]
struct Verifier {
    /// `None`: `verify = "none"`.
    inner: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
    /// The name is checked even when it is an address (`sni_from_host`: the address came
    /// from the request, not from the configuration).
    names_always: bool,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(inner) = &self.inner else {
            return Ok(ServerCertVerified::assertion());
        };
        match inner.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            // No SNI was sent (the name is the server's address): the chain is what counts.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.names_always && matches!(server_name, ServerName::IpAddress(_)) => {
                Ok(ServerCertVerified::assertion())
            }
            r => r,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Why a handshake failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Not complete within its time.
    Timeout,
    /// The peer closed or reset the connection.
    Closed,
    /// A certificate was refused: the server's by the proxy, or the proxy's by the
    /// client.
    Certificate,
    /// No protocol in common (version, cipher suite, ALPN) or a malformed message.
    Protocol,
    /// Anything else (an I/O error).
    Other,
}

impl Failure {
    pub fn of(e: &io::Error) -> Failure {
        if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            use rustls::AlertDescription as A;
            return match tls {
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
                    Failure::Certificate
                }
                rustls::Error::AlertReceived(
                    A::BadCertificate
                    | A::UnsupportedCertificate
                    | A::CertificateRevoked
                    | A::CertificateExpired
                    | A::CertificateUnknown
                    | A::UnknownCA,
                ) => Failure::Certificate,
                _ => Failure::Protocol,
            };
        }
        match e.kind() {
            io::ErrorKind::TimedOut => Failure::Timeout,
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => Failure::Closed,
            _ => Failure::Other,
        }
    }
}

/// A failed handshake: why, what rustls or the socket said (for the log), and the socket
/// when the handshake gave it back (not after a timeout), to be closed cleanly.
#[derive(Debug)]
pub struct HandshakeError {
    pub failure: Failure,
    pub error: io::Error,
    pub tcp: Option<TcpStream>,
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.failure {
            Failure::Timeout => f.write_str("handshake timed out"),
            _ => write!(f, "{}", self.error),
        }
    }
}

/// Runs `handshake` for at most `timeout`.
async fn bounded<T>(
    handshake: impl Future<Output = Result<T, (io::Error, TcpStream)>>,
    timeout: Duration,
) -> Result<T, HandshakeError> {
    let r = futures_lite::future::or(async { Some(handshake.await) }, async {
        glommio::timer::sleep(timeout).await;
        None
    })
    .await;
    match r {
        Some(Ok(t)) => Ok(t),
        Some(Err((error, tcp))) => Err(HandshakeError {
            failure: Failure::of(&error),
            error,
            tcp: Some(tcp),
        }),
        None => Err(HandshakeError {
            failure: Failure::Timeout,
            error: io::ErrorKind::TimedOut.into(),
            tcp: None,
        }),
    }
}

/// The handshake of an accepted client, within `timeout`. `Ok`: the stream and whether
/// the session was resumed.
pub async fn accept(
    tcp: TcpStream,
    config: &Arc<ServerConfig>,
    timeout: Duration,
) -> Result<(Stream, bool), HandshakeError> {
    let acceptor = futures_rustls::TlsAcceptor::from(Arc::clone(config));
    let tls = bounded(acceptor.accept(tcp).into_fallible(), timeout).await?;
    let resumed = tls.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed);
    Ok((Stream::Accepted(Box::new(tls)), resumed))
}

/// The handshake with a server, within `timeout`, sending `name` as SNI when it is a DNS
/// name. `Ok`: the stream and whether the session was resumed.
pub async fn connect(
    tcp: TcpStream,
    config: &Arc<ClientConfig>,
    name: ServerName<'static>,
    timeout: Duration,
) -> Result<(Stream, bool), HandshakeError> {
    let connector = futures_rustls::TlsConnector::from(Arc::clone(config));
    let tls = bounded(connector.connect(name, tcp).into_fallible(), timeout).await?;
    let resumed = tls.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed);
    Ok((Stream::Connected(Box::new(tls)), resumed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolver(names: &[&[&str]]) -> CertResolver {
        // Only the name tables are exercised: keys are never looked at by `pick`.
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for (i, ns) in names.iter().enumerate() {
            for n in *ns {
                match n.strip_prefix("*.") {
                    Some(s) => wildcard.entry(s.to_string()).or_insert(i),
                    None => exact.entry(n.to_string()).or_insert(i),
                };
            }
        }
        CertResolver {
            keys: Vec::new(),
            exact,
            wildcard,
        }
    }

    #[test]
    fn sni_picks_exact_then_wildcard_then_the_first() {
        let r = resolver(&[&["a.test"], &["b.test", "*.b.test"], &["*.wild.test"]]);
        assert_eq!(r.pick(Some("a.test")), 0);
        assert_eq!(r.pick(Some("B.TEST")), 1);
        assert_eq!(r.pick(Some("x.b.test")), 1);
        assert_eq!(r.pick(Some("x.wild.test")), 2);
        assert_eq!(r.pick(Some("x.wild.test.")), 2);
        // A wildcard covers one label only.
        assert_eq!(r.pick(Some("y.x.wild.test")), 0);
        assert_eq!(r.pick(Some("wild.test")), 0);
        assert_eq!(r.pick(Some("unknown.test")), 0);
        assert_eq!(r.pick(None), 0);
        assert_eq!(r.pick(Some(&"a".repeat(300))), 0);
    }

    #[test]
    fn failures_are_classified() {
        let wrap = |e: rustls::Error| io::Error::new(io::ErrorKind::InvalidData, e);
        assert_eq!(
            Failure::of(&wrap(rustls::Error::InvalidCertificate(
                CertificateError::Expired
            ))),
            Failure::Certificate
        );
        assert_eq!(
            Failure::of(&wrap(rustls::Error::AlertReceived(
                rustls::AlertDescription::UnknownCA
            ))),
            Failure::Certificate
        );
        assert_eq!(
            Failure::of(&wrap(rustls::Error::NoApplicationProtocol)),
            Failure::Protocol
        );
        assert_eq!(
            Failure::of(&io::ErrorKind::UnexpectedEof.into()),
            Failure::Closed
        );
        assert_eq!(
            Failure::of(&io::ErrorKind::TimedOut.into()),
            Failure::Timeout
        );
    }
}
