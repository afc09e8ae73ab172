//! Shared fixtures for the integration tests: the proxy started in-process on ephemeral
//! ports, and real origin servers (plain threads on `127.0.0.1:0`) that record what they
//! saw. Nothing here is mocked: every byte crosses a real socket.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub mod http;
pub mod process;
pub mod tls;

use ringproxy::config::Config;
use ringproxy::runtime::{self, Running};

/// How long a recording origin watches a connection after its end for a late reset.
pub const RESET_GRACE: Duration = Duration::from_millis(20);

/// Upper bound on any single blocking read or write in a test.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// Starts the proxy described by `toml` (bind ports may be 0).
pub fn proxy(toml: &str) -> Running {
    let config = Config::parse(toml, Path::new("test.toml"))
        .unwrap_or_else(|e| panic!("config refused: {e}"));
    runtime::start(config).unwrap_or_else(|e| panic!("proxy did not start: {e}"))
}

/// A one-frontend, one-backend tcp proxy over `servers`, with extra `[defaults]` lines.
pub fn tcp_proxy(servers: &[SocketAddr], shards: usize, defaults: &str) -> (Running, SocketAddr) {
    let mut toml = format!(
        "[global]\nshards = {shards}\npin = false\ngrace = \"2s\"\n\n[defaults]\n{defaults}\n\n\
         [[frontend]]\nname = \"f\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"b\"\n\n\
         [[backend]]\nname = \"b\"\n"
    );
    for (i, s) in servers.iter().enumerate() {
        toml.push_str(&format!(
            "\n[[backend.server]]\nname = \"s{i}\"\naddress = \"{s}\"\n"
        ));
    }
    let running = proxy(&toml);
    let addr = running.frontend_addrs(0)[0];
    (running, addr)
}

/// Connects with bounded read/write timeouts.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

/// Reads until EOF (bounded by the socket's read timeout).
pub fn read_to_end(s: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut v = Vec::new();
    s.read_to_end(&mut v)?;
    Ok(v)
}

/// An address where nothing listens: connecting is refused at once.
pub fn refused_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A listener whose accept queue is full and never drained: SYNs to it are dropped, so a
/// connect hangs until the connector gives up. Keep the value alive for the test.
pub struct Blackhole {
    pub addr: SocketAddr,
    _listener: socket2::Socket,
    _queued: Vec<TcpStream>,
}

pub fn blackhole() -> Blackhole {
    let l = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    l.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    l.listen(0).unwrap();
    let addr = l.local_addr().unwrap().as_socket().unwrap();
    let mut queued = Vec::new();
    // Fill the queue: connections complete until it is full; then a connect times out.
    for _ in 0..8 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(s) => queued.push(s),
            Err(_) => break,
        }
    }
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_err(),
        "blackhole still answers"
    );
    Blackhole {
        addr,
        _listener: l,
        _queued: queued,
    }
}

/// How a fixture server treats each connection.
#[derive(Clone)]
pub enum Behaviour {
    /// Writes `greeting` (if any), then echoes until EOF, then closes.
    Echo { greeting: Option<String> },
}

/// A threaded origin on `127.0.0.1:0`; counts accepted connections.
pub struct Server {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicUsize>,
}

impl Server {
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

pub fn echo_server() -> Server {
    server(Behaviour::Echo { greeting: None })
}

/// An echo server that first sends `name` and a newline, to show who answered.
pub fn named_server(name: &str) -> Server {
    server(Behaviour::Echo {
        greeting: Some(format!("{name}\n")),
    })
}

pub fn server(behaviour: Behaviour) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            count.fetch_add(1, Ordering::SeqCst);
            let behaviour = behaviour.clone();
            thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    conn.set_read_timeout(Some(IO_TIMEOUT)).ok();
                    match behaviour {
                        Behaviour::Echo { greeting } => {
                            if let Some(g) = greeting {
                                if conn.write_all(g.as_bytes()).is_err() {
                                    return;
                                }
                            }
                            if echo_until_eof(&mut conn) {
                                let _ = conn.shutdown(Shutdown::Write);
                            }
                        }
                    }
                })
                .unwrap();
        }
    });
    Server { addr, accepted }
}

/// Writes back what `conn` reads until its end of stream or a read error (true), or
/// until a write fails (false).
pub fn echo_until_eof(conn: &mut TcpStream) -> bool {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return true,
            Ok(n) => {
                if conn.write_all(&buf[..n]).is_err() {
                    return false;
                }
            }
        }
    }
}

/// Deterministic pseudo-random bytes (xorshift64*), so both ends can agree on content.
pub struct Prng(u64);

impl Prng {
    pub fn new(seed: u64) -> Self {
        Prng(seed.max(1))
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// FNV-1a over a stream of bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fnv(pub u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// Hash and length of `len` bytes from `Prng::new(seed)`, computed without sockets.
pub fn expected(seed: u64, len: usize) -> (Fnv, usize) {
    let mut p = Prng::new(seed);
    let mut h = Fnv::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len());
        p.fill(&mut buf[..n]);
        h.update(&buf[..n]);
        left -= n;
    }
    (h, len)
}

/// Writes `len` bytes from `Prng::new(seed)` to `w`.
pub fn send_stream(w: &mut impl Write, seed: u64, len: usize) -> io::Result<()> {
    let mut p = Prng::new(seed);
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len());
        p.fill(&mut buf[..n]);
        w.write_all(&buf[..n])?;
        left -= n;
    }
    Ok(())
}

/// Reads `r` to EOF; returns hash and length.
pub fn hash_stream(r: &mut impl Read) -> io::Result<(Fnv, usize)> {
    let mut h = Fnv::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok((h, total));
        }
        h.update(&buf[..n]);
        total += n;
    }
}

/// Polls `cond` every 10 ms until it holds or `limit` passes; returns whether it held.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        thread::sleep(Duration::from_millis(10));
    }
    cond()
}

/// A raw TCP origin that records every byte it receives, per connection, and answers as
/// its handler says (one thread per connection). What the handler leaves unsaid is
/// closed with FIN: after the handler returns, the write side is shut down and the
/// connection drained (bounded by its read timeout), so closing never resets.
pub struct Recorder {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    finished: Arc<AtomicUsize>,
    resets: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Recorder {
    /// Reads and writes that failed with `ECONNRESET`: the peer (the proxy) sent an RST
    /// instead of a FIN.
    pub fn resets(&self) -> usize {
        self.resets.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Connections done with: handler returned and the peer closed (or went silent).
    pub fn finished(&self) -> usize {
        self.finished.load(Ordering::SeqCst)
    }

    /// What each connection received so far, in accept order.
    pub fn received(&self) -> Vec<Vec<u8>> {
        self.log.lock().unwrap().clone()
    }

    /// Every byte received on every connection, in accept order.
    pub fn received_all(&self) -> Vec<u8> {
        self.received().concat()
    }
}

/// One connection of a [`Recorder`], as its handler sees it.
pub struct RecordedConn {
    pub stream: TcpStream,
    /// Accept order of this connection (0 for the first).
    pub index: usize,
    /// Bytes received and not yet taken by the handler.
    pub pending: Vec<u8>,
    log: Arc<Mutex<Vec<Vec<u8>>>>,
    resets: Arc<AtomicUsize>,
}

impl RecordedConn {
    /// Waits for more bytes, records them and appends them to `pending`; `Ok(0)` at EOF.
    pub fn fill(&mut self) -> io::Result<usize> {
        let mut buf = [0u8; 64 * 1024];
        let n = self.stream.read(&mut buf).inspect_err(|e| {
            if e.kind() == io::ErrorKind::ConnectionReset {
                self.resets.fetch_add(1, Ordering::SeqCst);
            }
        })?;
        self.log.lock().unwrap()[self.index].extend_from_slice(&buf[..n]);
        self.pending.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    /// Writes `bytes`; a reset seen here is counted like one seen reading.
    pub fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).inspect_err(|e| {
            if e.kind() == io::ErrorKind::ConnectionReset {
                self.resets.fetch_add(1, Ordering::SeqCst);
            }
        })
    }

    /// Sends FIN (the handler may go on reading).
    pub fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

/// Starts a [`Recorder`] on `127.0.0.1:0` whose connections are served by `handler`.
pub fn recording_server(handler: impl Fn(&mut RecordedConn) + Send + Sync + 'static) -> Recorder {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let log: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let resets = Arc::new(AtomicUsize::new(0));
    let handler = Arc::new(handler);
    let (count, done, conns, rst) = (
        Arc::clone(&accepted),
        Arc::clone(&finished),
        Arc::clone(&log),
        Arc::clone(&resets),
    );
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(stream) = conn else { continue };
            let index = {
                let mut log = conns.lock().unwrap();
                log.push(Vec::new());
                log.len() - 1
            };
            count.fetch_add(1, Ordering::SeqCst);
            let (handler, log, done, resets) = (
                Arc::clone(&handler),
                Arc::clone(&conns),
                Arc::clone(&done),
                Arc::clone(&rst),
            );
            thread::spawn(move || {
                stream.set_read_timeout(Some(IO_TIMEOUT)).ok();
                stream.set_write_timeout(Some(IO_TIMEOUT)).ok();
                let mut c = RecordedConn {
                    stream,
                    index,
                    pending: Vec::new(),
                    log,
                    resets,
                };
                handler(&mut c);
                c.shutdown_write();
                while matches!(c.fill(), Ok(n) if n > 0) {}
                // A reset that follows the peer's FIN (it closed with input unread, and
                // this side's unsent bytes then hit the closed socket) shows as a pending
                // socket error a moment later.
                thread::sleep(RESET_GRACE);
                if let Ok(Some(e)) = c.stream.take_error() {
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                    ) {
                        c.resets.fetch_add(1, Ordering::SeqCst);
                    }
                }
                done.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    Recorder {
        addr,
        accepted,
        finished,
        resets,
        log,
    }
}

/// A server that, on its one connection, hashes everything it receives until EOF while
/// sending `len` bytes of seed `seed`, then closes; the hash of what it received goes to
/// the channel.
pub fn sink_source_server(
    seed: u64,
    len: usize,
) -> (SocketAddr, std::sync::mpsc::Receiver<(Fnv, usize)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        conn.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut writer = conn.try_clone().unwrap();
        let w = thread::spawn(move || {
            send_stream(&mut writer, seed, len).unwrap();
            writer.shutdown(Shutdown::Write).unwrap();
        });
        let mut reader = conn;
        let got = hash_stream(&mut reader).unwrap();
        w.join().unwrap();
        tx.send(got).unwrap();
    });
    (addr, rx)
}
