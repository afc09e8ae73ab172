//! The `ringproxy` binary run as a child process: [`Proc`] kills and reaps it when
//! dropped, so a failing assertion never leaves a proxy running; configuration files in
//! the temp directory; free ports; an echo server. Every wait is a bounded polling loop.

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_ringproxy");

/// A child process that is killed and reaped when dropped.
pub struct Proc {
    pub child: Child,
}

impl Proc {
    /// Starts `ringproxy ARGS` in the crate root, stdout and stderr captured.
    pub fn spawn(args: &[&str]) -> Proc {
        let child = Command::new(BIN)
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ringproxy");
        Proc { child }
    }

    pub fn pid(&self) -> libc::pid_t {
        libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t")
    }

    /// Exit status if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Waits at most `limit` for the process to end; panics (and the guard kills it) if not.
    pub fn wait_for_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "ringproxy still running after {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything written to stdout (call after the process has ended).
    pub fn stdout(&mut self) -> String {
        read_all(self.child.stdout.take())
    }

    /// Everything written to stderr (call after the process has ended).
    pub fn stderr(&mut self) -> String {
        read_all(self.child.stderr.take())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

pub fn read_all(pipe: Option<impl Read>) -> String {
    let mut out = String::new();
    if let Some(mut p) = pipe {
        p.read_to_string(&mut out).expect("read child output");
    }
    out
}

/// Output of a run that must end within 10 s.
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(args: &[&str]) -> Run {
    let mut p = Proc::spawn(args);
    let status = p.wait_for_exit(Duration::from_secs(10));
    Run {
        status,
        stdout: p.stdout(),
        stderr: p.stderr(),
    }
}

/// A configuration file in the temp directory, removed when dropped.
pub struct TempConfig {
    pub path: PathBuf,
}

impl TempConfig {
    pub fn new(tag: &str, text: &str) -> TempConfig {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "ringproxy-cli-{}-{n}-{tag}.toml",
            std::process::id()
        ));
        std::fs::write(&path, text).expect("write temp config");
        TempConfig { path }
    }

    pub fn arg(&self) -> &str {
        self.path.to_str().expect("temp path is UTF-8")
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A port that was free a moment ago (bound on port 0, then released).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().unwrap().port()
}

/// A loopback echo server on an ephemeral port (one thread per connection; each echoes
/// until EOF, then closes). The threads end with the test process.
pub fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind echo server");
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || super::echo_until_eof(&mut conn));
        }
    });
    addr
}
