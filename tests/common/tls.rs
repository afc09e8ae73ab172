//! TLS for the tests: a throwaway PKI made with rcgen at test time (PEM files in a
//! directory of the test's own), a rustls client that reports what each handshake
//! negotiated, and a TLS HTTP origin that records every connection's handshake and
//! requests. Everything uses the aws-lc-rs provider explicitly: no process-wide default
//! provider is installed.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{
    ClientConfig, ClientConnection, ConnectionCommon, DigitallySignedStruct, HandshakeKind,
    ProtocolVersion, RootCertStore, ServerConfig, ServerConnection, SideData, SignatureScheme,
    StreamOwned, SupportedProtocolVersion,
};

use super::http::{ok, read_into, read_request, Msg, Wire};
use super::*;

/// The crypto provider of every test config (the proxy's own, aws-lc-rs).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(aws_lc_rs::default_provider())
}

/// TLS 1.2 and 1.3.
pub const BOTH: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];
pub const TLS12_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];
pub const TLS13_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// A TOML basic string holding `path` (JSON escapes are valid TOML escapes).
pub fn toml_path(path: &Path) -> String {
    assert!(path.is_absolute(), "{} is not absolute", path.display());
    serde_json::to_string(path.to_str().expect("UTF-8 temp path")).unwrap()
}

// ---------------------------------------------------------------------------------------
// The PKI.

/// A directory of the test's own under the system temp dir, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("ringproxy-tls-{}-{n}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        let dir = dir.canonicalize().expect("canonical temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A certificate and its key, as files and as DER.
pub struct Leaf {
    /// PEM file: the leaf, then any intermediates.
    pub cert: PathBuf,
    /// PEM file: the PKCS#8 key.
    pub key: PathBuf,
    /// The leaf certificate itself.
    pub der: CertificateDer<'static>,
    /// Certificates sent after the leaf (intermediates), in order.
    pub intermediates: Vec<CertificateDer<'static>>,
    key_der: Vec<u8>,
}

impl Leaf {
    /// The chain as a server sends it.
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        std::iter::once(self.der.clone())
            .chain(self.intermediates.iter().cloned())
            .collect()
    }

    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }

    /// `{ cert = "...", key = "..." }` for `frontend.tls.certificates`.
    pub fn toml(&self) -> String {
        format!(
            "{{ cert = {}, key = {} }}",
            toml_path(&self.cert),
            toml_path(&self.key)
        )
    }
}

/// One test CA, its files in a temp dir, and leaves it signs on demand.
pub struct Pki {
    dir: TempDir,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
    /// PEM file of the CA certificate.
    pub ca_pem: PathBuf,
    pub ca_der: CertificateDer<'static>,
}

fn ca_params(name: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

/// Validity of a leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validity {
    /// 2020 to 2090.
    Current,
    /// 2020 to 2021: expired.
    Expired,
}

impl Pki {
    /// A new CA named `tag`, its files in a fresh temp dir.
    pub fn new(tag: &str) -> Pki {
        let dir = TempDir::new(tag);
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_params(&format!("ringproxy test CA {tag}"))
            .self_signed(&ca_key)
            .unwrap();
        let ca_pem = dir.path().join("ca.pem");
        std::fs::write(&ca_pem, ca.pem()).unwrap();
        let ca_der = ca.der().clone();
        Pki {
            dir,
            ca,
            ca_key,
            ca_pem,
            ca_der,
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `contents` to `name` in the PKI's directory; returns its absolute path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.dir().join(name);
        std::fs::write(&p, contents).unwrap();
        p
    }

    /// A current leaf for `names` (DNS SANs), files `{stem}.pem` and `{stem}.key`.
    pub fn leaf(&self, stem: &str, names: &[&str]) -> Leaf {
        self.issue(stem, names, Validity::Current)
    }

    /// A leaf for `names` whose validity ended in 2021.
    pub fn expired_leaf(&self, stem: &str, names: &[&str]) -> Leaf {
        self.issue(stem, names, Validity::Expired)
    }

    fn leaf_params(names: &[&str], validity: Validity) -> CertificateParams {
        let mut p = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or("leaf"));
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = match validity {
            Validity::Current => rcgen::date_time_ymd(2090, 1, 1),
            Validity::Expired => rcgen::date_time_ymd(2021, 1, 1),
        };
        p
    }

    pub fn issue(&self, stem: &str, names: &[&str], validity: Validity) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let cert = Self::leaf_params(names, validity)
            .signed_by(&key, &self.ca, &self.ca_key)
            .unwrap();
        Leaf {
            cert: self.write(&format!("{stem}.pem"), cert.pem()),
            key: self.write(&format!("{stem}.key"), key.serialize_pem()),
            der: cert.der().clone(),
            intermediates: Vec::new(),
            key_der: key.serialize_der(),
        }
    }

    /// A current leaf signed by an intermediate CA (itself signed by this CA); the cert
    /// file holds the leaf then the intermediate.
    pub fn chained_leaf(&self, stem: &str, names: &[&str]) -> Leaf {
        let mid_key = KeyPair::generate().unwrap();
        let mid = ca_params(&format!("intermediate for {stem}"))
            .signed_by(&mid_key, &self.ca, &self.ca_key)
            .unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = Self::leaf_params(names, Validity::Current)
            .signed_by(&key, &mid, &mid_key)
            .unwrap();
        Leaf {
            cert: self.write(&format!("{stem}.pem"), cert.pem() + &mid.pem()),
            key: self.write(&format!("{stem}.key"), key.serialize_pem()),
            der: cert.der().clone(),
            intermediates: vec![mid.der().clone()],
            key_der: key.serialize_der(),
        }
    }

    /// A root store holding only this CA.
    pub fn roots(&self) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        Arc::new(roots)
    }
}

/// Whether `cert` is valid for the DNS name `name` (wildcards as webpki reads them).
pub fn valid_for(cert: &CertificateDer<'_>, name: &str) -> bool {
    let parsed = ParsedCertificate::try_from(cert).expect("parsable certificate");
    let name = ServerName::try_from(name.to_string()).expect("DNS name");
    rustls::client::verify_server_name(&parsed, &name).is_ok()
}

// ---------------------------------------------------------------------------------------
// The client.

/// Verifies the server's chain against the test CA, and not the name: tests that send
/// no SNI, or an unknown one, still get to see which certificate came back, and the tests
/// assert the certificate themselves.
#[derive(Debug)]
struct ChainOnly {
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
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

/// A client config trusting `pki`'s CA (chain only, see [`ChainOnly`]), speaking
/// `versions`, offering `alpn`. Its session cache is its own: connections made with the
/// same `Arc` may resume each other's sessions.
pub fn client_config(
    pki: &Pki,
    versions: &[&'static SupportedProtocolVersion],
    alpn: &[&str],
) -> Arc<ClientConfig> {
    let provider = provider();
    let mut config = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions)
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ChainOnly {
            roots: pki.roots(),
            provider,
        }))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Arc::new(config)
}

/// A TLS connection (client or server side) read as a [`Wire`].
pub struct TlsWire<C: Sized> {
    pub stream: StreamOwned<C, TcpStream>,
    pub pending: Vec<u8>,
}

impl<C, S> Wire for TlsWire<C>
where
    C: DerefMut + Deref<Target = ConnectionCommon<S>>,
    S: SideData,
{
    fn pending(&mut self) -> &mut Vec<u8> {
        &mut self.pending
    }

    fn fill(&mut self) -> io::Result<usize> {
        read_into(&mut self.stream, &mut self.pending)
    }
}

pub type TlsClient = TlsWire<ClientConnection>;

/// Runs the handshake of `conn` on `tcp` to its end, and flushes what it left to send.
fn handshake<S: SideData>(conn: &mut ConnectionCommon<S>, tcp: &mut TcpStream) -> io::Result<()> {
    while conn.is_handshaking() {
        conn.complete_io(tcp)?;
    }
    while conn.wants_write() {
        conn.write_tls(tcp)?;
    }
    Ok(())
}

/// Connects to `addr` and completes a TLS handshake, sending `sni` (none when `None`:
/// the server name is then the address, which rustls never sends).
pub fn tls_connect(
    addr: SocketAddr,
    sni: Option<&str>,
    config: &Arc<ClientConfig>,
) -> io::Result<TlsClient> {
    let name = match sni {
        Some(n) => ServerName::try_from(n.to_string()).expect("DNS name"),
        None => ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into()),
    };
    let mut conn = ClientConnection::new(Arc::clone(config), name).map_err(io::Error::other)?;
    let mut tcp = connect(addr);
    handshake(&mut conn, &mut tcp)?;
    Ok(TlsWire {
        stream: StreamOwned::new(conn, tcp),
        pending: Vec::new(),
    })
}

impl TlsWire<ClientConnection> {
    /// The certificate the server presented first (its leaf).
    pub fn peer_leaf(&self) -> CertificateDer<'static> {
        self.peer_chain()[0].clone()
    }

    pub fn peer_chain(&self) -> Vec<CertificateDer<'static>> {
        self.stream
            .conn
            .peer_certificates()
            .expect("a server certificate")
            .to_vec()
    }

    pub fn handshake_kind(&self) -> HandshakeKind {
        self.stream.conn.handshake_kind().expect("handshake done")
    }

    pub fn version(&self) -> ProtocolVersion {
        self.stream.conn.protocol_version().expect("handshake done")
    }

    /// The protocol ALPN settled on, if any.
    pub fn alpn(&self) -> Option<String> {
        self.stream
            .conn
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned())
    }

    pub fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream.write_all(bytes.as_ref()).expect("send");
        self.stream.flush().expect("flush");
    }

    pub fn response(&mut self) -> Msg {
        super::http::read_response(self, false).unwrap_or_else(|e| panic!("no response: {e}"))
    }

    pub fn exchange(&mut self, request: impl AsRef<[u8]>) -> Msg {
        self.send(request);
        self.response()
    }

    /// Sends close_notify and FIN.
    pub fn close(mut self) {
        self.stream.conn.send_close_notify();
        let _ = self.stream.flush();
        let _ = self.stream.sock.shutdown(Shutdown::Write);
    }
}

impl<C, S> TlsWire<C>
where
    C: DerefMut + Deref<Target = ConnectionCommon<S>>,
    S: SideData,
{
    /// Full duplex at once: sends `len` bytes of `Prng::new(seed)` (then close_notify and
    /// FIN) while hashing everything received until the peer closes (close_notify or EOF).
    /// One thread, non-blocking socket: the client never stops reading while it has data
    /// to send, whatever the peer does. Fails when nothing moves for `stall_limit`.
    pub fn duplex(self, seed: u64, len: usize, stall_limit: Duration) -> io::Result<(Fnv, usize)> {
        const CHUNK: usize = 64 * 1024;
        let TlsWire { stream, pending } = self;
        let StreamOwned {
            mut conn,
            sock: mut tcp,
        } = stream;
        tcp.set_nonblocking(true)?;
        conn.set_buffer_limit(Some(4 * CHUNK));
        let (mut hash, mut got) = (Fnv::default(), pending.len());
        hash.update(&pending);
        let mut prng = Prng::new(seed);
        // Same chunking as `send_stream`, so the bytes are the ones `expected` hashes.
        let mut chunk = vec![0u8; CHUNK];
        let (mut chunk_len, mut chunk_off, mut sent) = (0, 0, 0);
        let (mut notified, mut fin_sent, mut peer_done) = (false, false, false);
        let mut buf = vec![0u8; CHUNK];
        let mut last_progress = Instant::now();
        loop {
            let mut progress = false;
            // Plaintext in, as much as the connection's buffer takes.
            while sent < len {
                if chunk_off == chunk_len {
                    chunk_len = (len - sent).min(CHUNK);
                    prng.fill(&mut chunk[..chunk_len]);
                    chunk_off = 0;
                }
                let n = conn.writer().write(&chunk[chunk_off..chunk_len])?;
                if n == 0 {
                    break;
                }
                chunk_off += n;
                sent += n;
                progress = true;
            }
            if sent == len && !notified {
                conn.send_close_notify();
                notified = true;
            }
            // Records out.
            while conn.wants_write() {
                match conn.write_tls(&mut tcp) {
                    Ok(0) => break,
                    Ok(_) => progress = true,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            if notified && !fin_sent && !conn.wants_write() {
                tcp.shutdown(Shutdown::Write)?;
                fin_sent = true;
            }
            // Records in, plaintext out.
            while !peer_done {
                match conn.read_tls(&mut tcp) {
                    Ok(0) => peer_done = true,
                    Ok(_) => progress = true,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
                conn.process_new_packets().map_err(io::Error::other)?;
                loop {
                    match conn.reader().read(&mut buf) {
                        Ok(0) => {
                            peer_done = true;
                            break;
                        }
                        Ok(n) => {
                            hash.update(&buf[..n]);
                            got += n;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        // EOF without close_notify: the peer is done all the same.
                        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                            peer_done = true;
                            break;
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            if peer_done && fin_sent {
                return Ok((hash, got));
            }
            if progress {
                last_progress = Instant::now();
            } else {
                if last_progress.elapsed() > stall_limit {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("duplex: sent {sent} of {len}, received {got}"),
                    ));
                }
                thread::sleep(Duration::from_micros(200));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The TLS origin.

/// What a [`TlsOrigin`] saw on one connection.
#[derive(Clone, Debug, Default)]
pub struct OriginConn {
    /// The SNI the client sent, if any.
    pub sni: Option<String>,
    /// Set once the handshake completed.
    pub kind: Option<HandshakeKind>,
    pub version: Option<ProtocolVersion>,
    /// Why the handshake failed, if it did.
    pub error: Option<String>,
    /// (Host, path) of each request, in order.
    pub requests: Vec<(String, String)>,
    /// The certificate the client presented, if it did.
    pub client_cert: Option<CertificateDer<'static>>,
}

#[derive(Default)]
struct OriginLog {
    accepted: AtomicUsize,
    finished: AtomicUsize,
    /// Connections that ended with a reset from the proxy.
    resets: AtomicUsize,
    conns: Mutex<Vec<OriginConn>>,
}

/// A threaded HTTP/1.1 origin over TLS on `127.0.0.1:0`: keep-alive, answers every
/// request with `200` and the path as body, records each connection (see [`OriginConn`]).
/// When the client closes, it answers with close_notify and FIN.
pub struct TlsOrigin {
    pub addr: SocketAddr,
    log: Arc<OriginLog>,
}

impl TlsOrigin {
    /// TCP connections accepted.
    pub fn accepted(&self) -> usize {
        self.log.accepted.load(Ordering::SeqCst)
    }

    /// Connections over (closed on both sides).
    pub fn finished(&self) -> usize {
        self.log.finished.load(Ordering::SeqCst)
    }

    /// Connections the proxy reset (an RST seen reading, writing, or within
    /// [`RESET_GRACE`] after its FIN).
    pub fn resets(&self) -> usize {
        self.log.resets.load(Ordering::SeqCst)
    }

    pub fn connections(&self) -> Vec<OriginConn> {
        self.log.conns.lock().unwrap().clone()
    }

    /// Handshakes completed, of `kind` (`None`: any kind).
    pub fn handshakes(&self, kind: Option<HandshakeKind>) -> usize {
        self.connections()
            .iter()
            .filter(|c| c.kind.is_some() && (kind.is_none() || c.kind == kind))
            .count()
    }

    /// Requests answered, over all connections.
    pub fn requests(&self) -> usize {
        self.connections().iter().map(|c| c.requests.len()).sum()
    }

    /// Waits until every accepted connection is over.
    pub fn settle(&self) {
        assert!(
            eventually(IO_TIMEOUT, || self.finished() == self.accepted()),
            "origin connections still open: {} of {}",
            self.accepted() - self.finished(),
            self.accepted()
        );
    }
}

/// A [`TlsOrigin`] presenting `leaf` (and its intermediates), TLS 1.2 and 1.3, with
/// session-id resumption and tickets.
pub fn tls_origin(leaf: &Leaf) -> TlsOrigin {
    tls_origin_with(leaf, None)
}

/// A [`TlsOrigin`] that, given `client_ca`, requires a client certificate signed by it.
pub fn tls_origin_with(leaf: &Leaf, client_ca: Option<&Pki>) -> TlsOrigin {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(BOTH)
        .unwrap();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(pki) => builder.with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(pki.roots(), provider())
                .build()
                .expect("client verifier"),
        ),
    };
    let mut config = builder
        .with_single_cert(leaf.chain(), leaf.private_key())
        .expect("origin certificate");
    config.ticketer = aws_lc_rs::Ticketer::new().unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(OriginLog::default());
    let shared = Arc::clone(&log);
    thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { continue };
            let index = {
                let mut conns = shared.conns.lock().unwrap();
                conns.push(OriginConn::default());
                conns.len() - 1
            };
            shared.accepted.fetch_add(1, Ordering::SeqCst);
            let (config, log) = (Arc::clone(&config), Arc::clone(&shared));
            thread::spawn(move || {
                serve_tls(tcp, config, &log, index);
                log.finished.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    TlsOrigin { addr, log }
}

fn serve_tls(mut tcp: TcpStream, config: Arc<ServerConfig>, log: &OriginLog, index: usize) {
    tcp.set_read_timeout(Some(IO_TIMEOUT)).ok();
    tcp.set_write_timeout(Some(IO_TIMEOUT)).ok();
    let record = |f: &mut dyn FnMut(&mut OriginConn)| f(&mut log.conns.lock().unwrap()[index]);
    let mut conn = ServerConnection::new(config).expect("server connection");
    let shaken = handshake(&mut conn, &mut tcp);
    record(&mut |c| {
        c.sni = conn.server_name().map(str::to_string);
        match &shaken {
            Ok(()) => {
                c.kind = conn.handshake_kind();
                c.version = conn.protocol_version();
                c.client_cert = conn.peer_certificates().map(|certs| certs[0].clone());
            }
            Err(e) => c.error = Some(e.to_string()),
        }
    });
    if shaken.is_err() {
        // Whatever alert the handshake left to send, then FIN.
        let _ = conn.write_tls(&mut tcp);
        let _ = tcp.shutdown(Shutdown::Write);
        return;
    }
    let mut wire = TlsWire {
        stream: StreamOwned::new(conn, tcp),
        pending: Vec::new(),
    };
    while let Ok(Some(req)) = read_request(&mut wire) {
        let path = req.start_line().split(' ').nth(1).unwrap_or("").to_string();
        let host = req.header("Host").unwrap_or("").to_string();
        record(&mut |c| c.requests.push((host.clone(), path.clone())));
        if wire.stream.write_all(&ok(&path)).is_err() || wire.stream.flush().is_err() {
            break;
        }
    }
    // The client closed (or failed): close_notify, FIN, and wait for its FIN. A reset
    // anywhere here, or one that follows the FIN (the proxy closed with our close_notify
    // unread), is counted.
    let is_reset = |e: &io::Error| {
        matches!(
            e.kind(),
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
        )
    };
    let mut reset = false;
    wire.stream.conn.send_close_notify();
    if let Err(e) = wire.stream.flush() {
        reset |= is_reset(&e);
    }
    let _ = wire.stream.sock.shutdown(Shutdown::Write);
    let mut sink = [0u8; 4096];
    loop {
        match wire.stream.sock.read(&mut sink) {
            Ok(n) if n > 0 => {}
            Ok(_) => break,
            Err(e) => {
                reset |= is_reset(&e);
                break;
            }
        }
    }
    thread::sleep(RESET_GRACE);
    if let Ok(Some(e)) = wire.stream.sock.take_error() {
        reset |= is_reset(&e);
    }
    if reset {
        log.resets.fetch_add(1, Ordering::SeqCst);
    }
}
