//! The control thread and its runtime API: a text protocol on a Unix socket
//! (`[admin] socket`), one command per connection as HAProxy's stats socket does
//! (several may be joined with `;`).
//!
//! Owns the control side of the mesh ([`ControlLink`]): it keeps the table of every
//! server's status from the owners' messages, and sends operator commands to the shards.
//! It never touches a shard's state directly. Blocking I/O on its own thread: a slow
//! admin client delays only other admin clients, never a shard. Every wait is bounded
//! (`CLIENT_TIMEOUT`), and the thread looks at the stop flag at least every
//! `POLL_INTERVAL`.
//!
//! Commands:
//! - `show servers state [BACKEND]`: one line per server, `backend/server STATE k/n`.
//! - `set server B/S state ready|drain|maint`, `disable server B/S` (maint),
//!   `enable server B/S` (ready).
//! - `shutdown sessions server B/S`: close the sessions using the server, on every shard.
//! - `help`.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::config::Config;
use crate::upstream::health::{Admin, Status};
use crate::upstream::{initial_health, owner_shard};
use crate::worker::mesh::{ControlLink, ControlMsg, ShardMsg};
use crate::worker::StopFlag;

/// How often the control thread looks at the stop flag while no client comes.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// A client has this long to send its command line and read the answer.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest command line accepted.
pub const LINE_BYTES_MAX: usize = 4096;

/// Binds the admin socket (replacing a stale socket file, refusing one a live process
/// listens on), readable and writable by the owner only.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                "another process answers on this socket",
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Starts the control thread serving `listener` until `stop` is requested; the socket
/// file is removed when it ends.
pub fn start(
    listener: UnixListener,
    path: PathBuf,
    config: Arc<Config>,
    link: ControlLink,
    stop: Arc<StopFlag>,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("ringproxy-control".into())
        .spawn(move || {
            let mut control = Control::new(config, link);
            control.serve(&listener, &stop);
            let _ = std::fs::remove_file(&path);
        })
}

/// The control thread's state.
struct Control {
    config: Arc<Config>,
    link: ControlLink,
    /// `[backend][server]`: the status last sent by each server's owner.
    table: Vec<Vec<Status>>,
    /// `[backend][server]`: whether it has an address (DNS discovery slots may not).
    addressed: Vec<Vec<bool>>,
}

impl Control {
    fn new(config: Arc<Config>, link: ControlLink) -> Control {
        let table = config
            .backends
            .iter()
            .map(|b| {
                (0..b.servers.len())
                    .map(|s| initial_health(b, s).status())
                    .collect()
            })
            .collect();
        let addressed = config
            .backends
            .iter()
            .map(|b| b.servers.iter().map(|s| s.has_address).collect())
            .collect();
        Control {
            config,
            link,
            table,
            addressed,
        }
    }

    fn serve(&mut self, listener: &UnixListener, stop: &StopFlag) {
        let fd = std::os::fd::AsRawFd::as_raw_fd(listener);
        while !stop.is_requested() {
            self.drain_inbox();
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd for the duration of the call; `fd` is the
            // listener's, open for as long as `listener` lives.
            let ready = unsafe { libc::poll(&mut pfd, 1, POLL_INTERVAL.as_millis() as i32) };
            if ready <= 0 {
                continue;
            }
            if let Ok((stream, _)) = listener.accept() {
                let _ = self.client(stream);
            }
        }
    }

    fn drain_inbox(&mut self) {
        while let Ok(msg) = self.link.inbox.try_recv() {
            match msg {
                ControlMsg::Status {
                    backend,
                    server,
                    status,
                } => self.table[backend][server] = status,
                ControlMsg::Address {
                    backend,
                    server,
                    addr,
                } => self.addressed[backend][server] = addr.is_some(),
            }
        }
    }

    fn client(&mut self, stream: UnixStream) -> io::Result<()> {
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
        stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
        let mut line = Vec::new();
        BufReader::new(io::Read::take(&stream, LINE_BYTES_MAX as u64))
            .read_until(b'\n', &mut line)?;
        self.drain_inbox();
        let text = String::from_utf8_lossy(&line);
        let mut out = String::new();
        for command in text.trim_end_matches(['\r', '\n']).split(';') {
            let command = command.trim();
            if !command.is_empty() {
                self.run(command, &mut out);
            }
        }
        (&stream).write_all(out.as_bytes())
    }

    /// Runs one command, appending its answer to `out`.
    fn run(&mut self, command: &str, out: &mut String) {
        let words: Vec<&str> = command.split_whitespace().collect();
        match words.as_slice() {
            ["help"] => out.push_str(HELP),
            ["show", "servers", "state"] => self.show_servers(None, out),
            ["show", "servers", "state", backend] => self.show_servers(Some(backend), out),
            ["set", "server", target, "state", state] => match Admin::parse(state) {
                Some(admin) => self.set_admin(target, admin, out),
                None => out
                    .push_str("'set server <b>/<s> state' expects 'ready', 'drain' or 'maint'.\n"),
            },
            ["disable", "server", target] => self.set_admin(target, Admin::Maint, out),
            ["enable", "server", target] => self.set_admin(target, Admin::Ready, out),
            ["shutdown", "sessions", "server", target] => {
                if let Some((b, s)) = self.find(target, out) {
                    for shard in &self.link.shards {
                        let _ = shard.send(ShardMsg::ShutdownSessions {
                            backend: b,
                            server: s,
                        });
                    }
                }
            }
            _ => out.push_str(&format!("Unknown command: '{command}' (try 'help').\n")),
        }
    }

    fn show_servers(&self, only: Option<&str>, out: &mut String) {
        if let Some(name) = only {
            if self.config.backend_index(name).is_none() {
                out.push_str(&format!("No such backend: '{name}'.\n"));
                return;
            }
        }
        for (b, backend) in self.config.backends.iter().enumerate() {
            if only.is_some_and(|n| n != backend.name) {
                continue;
            }
            for (s, server) in backend.servers.iter().enumerate() {
                let state = if self.addressed[b][s] {
                    self.table[b][s].describe()
                } else {
                    "MAINT (resolution)".to_string()
                };
                out.push_str(&format!("{}/{} {state}\n", backend.name, server.name));
            }
        }
    }

    /// `backend/server` → indexes, or an error line in `out`.
    fn find(&self, target: &str, out: &mut String) -> Option<(usize, usize)> {
        let found = target.split_once('/').and_then(|(b, s)| {
            let bi = self.config.backend_index(b)?;
            let si = self.config.backends[bi]
                .servers
                .iter()
                .position(|x| x.name == s)?;
            Some((bi, si))
        });
        if found.is_none() {
            out.push_str(&format!(
                "No such server: '{target}' (write backend/server).\n"
            ));
        }
        found
    }

    fn set_admin(&mut self, target: &str, admin: Admin, out: &mut String) {
        let Some((b, s)) = self.find(target, out) else {
            return;
        };
        let owner = owner_shard(&self.config, b, s, self.link.shards.len());
        let _ = self.link.shards[owner].send(ShardMsg::SetAdmin {
            backend: b,
            server: s,
            admin,
        });
        // Shown at once; the owner's own message confirms it a tick later.
        self.table[b][s].admin = admin;
    }
}

const HELP: &str = "\
show servers state [BACKEND]        one line per server: backend/server STATE k/n
set server B/S state ready|drain|maint
disable server B/S                  same as: set server B/S state maint
enable server B/S                   same as: set server B/S state ready
shutdown sessions server B/S        close the sessions using the server
help                                this list
";

/// Sends one command line to the admin socket at `path`; the answer.
pub fn request(path: &Path, command: &str) -> io::Result<String> {
    let mut stream = UnixStream::connect(path)?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    stream.write_all(command.as_bytes())?;
    stream.write_all(b"\n")?;
    let mut answer = String::new();
    io::Read::read_to_string(&mut stream, &mut answer)?;
    Ok(answer)
}
