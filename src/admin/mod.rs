//! The control thread: the runtime API, a text protocol on a Unix socket
//! (`[admin] socket`), one command per connection as HAProxy's stats socket does
//! (several may be joined with `;`); and the statistics listener (`[admin] listen`):
//! `GET /metrics`, `GET /stats.json` and the stats page `GET /` ([`http`]).
//!
//! Owns the control side of the mesh ([`ControlLink`]): it keeps the table of every
//! server's status from the owners' messages, and sends operator commands to the shards.
//! It owns the statistics aggregation too: it takes the shards' snapshots from their
//! rings ([`crate::stats::aggregate`]). It never touches a shard's state directly.
//! The thread lives as long as the process: at a reload it is handed the new generation
//! of shards ([`Swap`]) and starts over from its configuration (statistics and the
//! server table begin again, as after a HAProxy reload; the operator's weights and
//! states carry over by name, [`carry`]).
//! Blocking I/O on its own thread: a slow admin client delays only other admin clients,
//! never a shard. Every wait is bounded: a client's line by `CLIENT_TIMEOUT`, a command
//! that changes the shards by `SYNC_TIMEOUT` for their confirmation (twice for a server
//! state: its owner, then every shard), a `reload` by `RELOAD_TIMEOUT`; between
//! commands the thread looks at the stop flag and the rings every `POLL_INTERVAL`.
//!
//! Commands:
//! - `show info`, `show stat` (HAProxy's CSV), `show table` (what `ringproxy stats`
//!   prints).
//! - `show servers state [BACKEND]`: one line per server, `backend/server STATE k/n`.
//! - `set server B/S state ready|drain|maint`, `disable server B/S` (maint),
//!   `enable server B/S` (ready), `set weight B/S N|N%`.
//! - `shutdown sessions server B/S`: close the sessions using the server, on every shard.
//! - `reload`: the process reads its configuration file again and applies it (what
//!   `SIGHUP` does); the answer says what was loaded, or why the file was refused.
//! - `help`.
//!
//! The command language is parsed apart from its execution ([`command`], sans-IO).

pub mod carry;
pub mod command;
pub mod http;

use carry::Carried;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::stats::aggregate::Aggregator;
use crate::stats::render::{Process, Report, ServerRow};
use crate::stats::ring::Consumer;
use crate::stats::Snapshot;
use crate::upstream::health::{Admin, Status};
use crate::upstream::{initial_health, owner_shard};
use crate::worker::mesh::{ControlLink, ControlMsg, ShardMsg};
use crate::worker::StopFlag;
use command::{Command, Weight};

/// How often the control thread looks at the stop flag while no client comes.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// A client has this long to send its command line and read the answer.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
pub use command::{LINE_BYTES_MAX, WEIGHT_MAX};

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

/// Binds the statistics listener (`[admin] listen`).
pub fn bind_http(addr: SocketAddr) -> io::Result<TcpListener> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// What the control thread listens on: the runtime API's Unix socket (and its path, removed
/// at the end) and the statistics listener.
pub struct Listeners {
    pub socket: Option<(UnixListener, PathBuf)>,
    pub http: Option<TcpListener>,
    /// Per frontend: the addresses its listeners are bound to (port 0 resolved).
    pub bound: Vec<Vec<SocketAddr>>,
}

/// What the control thread works with for one generation of shards: its configuration,
/// the control side of its mesh, its statistics rings.
pub struct Swap {
    pub config: Arc<Config>,
    pub link: ControlLink,
    pub snapshots: Vec<Consumer<Snapshot>>,
    pub shards: usize,
    /// Per frontend: the addresses bound.
    pub bound: Vec<Vec<SocketAddr>>,
}

/// A `reload` asked through the runtime API, for the thread that owns the running proxy
/// (the binary's main thread); it answers on `reply`: what was loaded, or why not.
pub struct ReloadRequest {
    pub reply: mpsc::Sender<Result<String, String>>,
}

/// How long a `reload` command waits for the main thread's answer.
pub const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts the control thread serving `listeners` and aggregating the shards' snapshots
/// of `first`, then of each generation `swaps` brings, until `stop` is requested; the
/// socket file is removed when it ends. `reload` commands go to `reloads`; weights and
/// administrative states the operator sets are recorded in `carried` for the next reload.
pub fn start(
    listeners: Listeners,
    first: Swap,
    swaps: mpsc::Receiver<Swap>,
    reloads: mpsc::Sender<ReloadRequest>,
    carried: Arc<Mutex<Carried>>,
    stop: Arc<StopFlag>,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("ringproxy-control".into())
        .spawn(move || {
            let mut control = Control::new(first, reloads, carried);
            while let Some(next) = control.serve(&listeners, &stop, &swaps) {
                let started = control.started;
                control = Control::new(next, control.reloads, control.carried);
                control.started = started;
            }
            if let Some((_, path)) = &listeners.socket {
                let _ = std::fs::remove_file(path);
            }
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
    /// `[backend][server]`: its weight now.
    weights: Vec<Vec<u32>>,
    /// `[backend][server]`: how many times it went between up and down.
    transitions: Vec<Vec<u64>>,
    stats: Aggregator,
    started: Instant,
    shards: usize,
    /// Per frontend: the addresses bound.
    bound: Vec<Vec<SocketAddr>>,
    reloads: mpsc::Sender<ReloadRequest>,
    /// The operator's weights and states, for a reload to carry over (shared with the
    /// thread that reloads; control plane only).
    carried: Arc<Mutex<Carried>>,
    /// The last [`ShardMsg::Sync`] sent, and the shards that have not answered it.
    sync_seq: u64,
    sync_waiting: Vec<bool>,
}

/// Locks the record of runtime changes (a panic while it was held left plain data).
pub fn lock(carried: &Mutex<Carried>) -> std::sync::MutexGuard<'_, Carried> {
    carried.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long an operator command waits for the shards to confirm they applied it.
/// Shards read their inbox every 50 ms; twice this (a server state) stays under the CLI's
/// 5 s answer timeout with room for a second such command in the line.
const SYNC_TIMEOUT: Duration = Duration::from_secs(1);

impl Control {
    fn new(
        swap: Swap,
        reloads: mpsc::Sender<ReloadRequest>,
        carried: Arc<Mutex<Carried>>,
    ) -> Control {
        let Swap {
            config,
            link,
            snapshots,
            shards,
            bound,
        } = swap;
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
        let weights = config
            .backends
            .iter()
            .map(|b| {
                b.servers
                    .iter()
                    .map(|s| s.start_weight.unwrap_or(s.weight))
                    .collect()
            })
            .collect();
        let transitions = config
            .backends
            .iter()
            .map(|b| vec![0; b.servers.len()])
            .collect();
        let servers: Vec<usize> = config.backends.iter().map(|b| b.servers.len()).collect();
        let stats = Aggregator::new(
            snapshots,
            config.frontends.len(),
            &servers,
            config.admin.stats_interval,
        );
        Control {
            config,
            link,
            table,
            addressed,
            weights,
            transitions,
            stats,
            started: Instant::now(),
            shards,
            bound,
            reloads,
            carried,
            sync_seq: 0,
            sync_waiting: Vec::new(),
        }
    }

    /// Serves until `stop` is requested (`None`) or a new generation arrives on `swaps`
    /// (returned).
    fn serve(
        &mut self,
        listeners: &Listeners,
        stop: &StopFlag,
        swaps: &mpsc::Receiver<Swap>,
    ) -> Option<Swap> {
        use std::os::fd::AsRawFd;
        let socket = listeners.socket.as_ref().map(|(l, _)| l);
        let fds = [
            socket.map(|l| l.as_raw_fd()),
            listeners.http.as_ref().map(|l| l.as_raw_fd()),
        ];
        while !stop.is_requested() {
            if let Ok(next) = swaps.try_recv() {
                return Some(next);
            }
            self.drain_inbox();
            self.stats.poll(Instant::now());
            let mut pfds: Vec<libc::pollfd> = fds
                .iter()
                .map(|fd| libc::pollfd {
                    // A negative descriptor is ignored by poll(2).
                    fd: fd.unwrap_or(-1),
                    events: libc::POLLIN,
                    revents: 0,
                })
                .collect();
            // SAFETY: valid pollfds for the duration of the call; the descriptors are the
            // listeners', open for as long as `listeners` lives.
            let ready = unsafe {
                libc::poll(
                    pfds.as_mut_ptr(),
                    pfds.len() as libc::nfds_t,
                    POLL_INTERVAL.as_millis() as i32,
                )
            };
            if ready <= 0 {
                continue;
            }
            if pfds[0].revents != 0 {
                if let Some(Ok((stream, _))) = socket.map(|l| l.accept()) {
                    let _ = self.client(stream);
                }
            }
            if pfds[1].revents != 0 {
                if let Some(Ok((stream, _))) = listeners.http.as_ref().map(|l| l.accept()) {
                    self.drain_inbox();
                    let _ = http::serve(self, stream);
                }
            }
        }
        None
    }

    /// Renders the statistics as of the last tick, with what the control thread knows of
    /// the servers.
    fn render<T>(&self, f: impl FnOnce(&Report<'_>) -> T) -> T {
        let rows: Vec<Vec<ServerRow>> = self
            .config
            .backends
            .iter()
            .enumerate()
            .map(|(b, backend)| (0..backend.servers.len()).map(|s| self.row(b, s)).collect())
            .collect();
        f(&Report {
            config: &self.config,
            view: self.stats.view(),
            servers: &rows,
            bound: &self.bound,
            process: self.process(),
        })
    }

    fn row(&self, b: usize, s: usize) -> ServerRow {
        let status = &self.table[b][s];
        let addressed = self.addressed[b][s];
        let cfg = &self.config.backends[b].servers[s];
        ServerRow {
            status: if addressed {
                status.describe()
            } else {
                "NO ADDRESS".into()
            },
            up: addressed && status.usable(),
            admin: match status.admin {
                Admin::Ready => "ready",
                Admin::Drain => "drain",
                Admin::Maint => "maint",
            },
            weight: self.weights[b][s],
            // A discovery slot's address is the shards' to know; the configured one
            // otherwise.
            address: (addressed && cfg.discovery.is_none()).then_some(cfg.address),
            transitions: self.transitions[b][s],
        }
    }

    fn process(&self) -> Process {
        Process {
            pid: std::process::id(),
            uptime: self.started.elapsed(),
            shards: self.shards,
            interval: self.config.admin.stats_interval,
        }
    }

    fn drain_inbox(&mut self) {
        while let Ok(msg) = self.link.inbox.try_recv() {
            self.apply(msg);
        }
    }

    fn apply(&mut self, msg: ControlMsg) {
        match msg {
            ControlMsg::Status {
                backend,
                server,
                status,
            } => {
                let old = self.table[backend][server];
                if old.up != status.up {
                    self.transitions[backend][server] += 1;
                }
                self.table[backend][server] = status;
            }
            ControlMsg::Address {
                backend,
                server,
                addr,
            } => self.addressed[backend][server] = addr.is_some(),
            ControlMsg::Synced { shard, seq } => {
                if seq == self.sync_seq {
                    if let Some(w) = self.sync_waiting.get_mut(shard) {
                        *w = false;
                    }
                }
            }
        }
    }

    /// Waits until the `shards` named have applied every message sent to them so far
    /// (each answers a `Sync` on its control tick), at most [`SYNC_TIMEOUT`]; false when
    /// one did not answer in time (a shard of a generation that is stopping no longer
    /// reads its inbox; one that has exited dropped it and is not waited for). Other
    /// messages arriving meanwhile are applied.
    fn sync(&mut self, shards: impl IntoIterator<Item = usize>) -> bool {
        self.sync_seq += 1;
        let seq = self.sync_seq;
        self.sync_waiting = vec![false; self.link.shards.len()];
        for shard in shards {
            if self.link.shards[shard].send(ShardMsg::Sync { seq }).is_ok() {
                self.sync_waiting[shard] = true;
            }
        }
        let deadline = Instant::now() + SYNC_TIMEOUT;
        while self.sync_waiting.contains(&true) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.link.inbox.recv_timeout(left) {
                Ok(msg) => self.apply(msg),
                Err(_) => return false,
            }
        }
        true
    }

    /// [`Control::sync`] on every shard, with a line in `out` when one did not answer.
    fn sync_all(&mut self, out: &mut String) {
        if !self.sync(0..self.link.shards.len()) {
            out.push_str("Sent; not every shard confirmed it in time.\n");
        }
    }

    fn client(&mut self, stream: UnixStream) -> io::Result<()> {
        stream.set_nonblocking(false)?;
        stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
        // One deadline for the whole line, however the client trickles it.
        let deadline = std::time::Instant::now() + CLIENT_TIMEOUT;
        let mut line = Vec::new();
        let mut chunk = [0u8; 512];
        while !line.contains(&b'\n') && line.len() < LINE_BYTES_MAX {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            stream.set_read_timeout(Some(left))?;
            match io::Read::read(&mut &stream, &mut chunk)? {
                0 => break,
                n => line.extend_from_slice(&chunk[..n]),
            }
        }
        self.drain_inbox();
        let text = String::from_utf8_lossy(command::line(&line));
        let mut out = String::new();
        let mut commands = command::split(&text);
        for one in commands.by_ref() {
            match command::parse(one) {
                // The shards the next commands would reach are the old generation's
                // until `serve` takes the new one: the rest of the line is not run.
                Ok(Command::Reload) => {
                    self.run(Command::Reload, &mut out);
                    break;
                }
                Ok(parsed) => self.run(parsed, &mut out),
                Err(e) => out.push_str(&e.to_string()),
            }
        }
        if commands.next().is_some() {
            out.push_str(
                "Commands after 'reload' in the same line were not run: send them again.\n",
            );
        }
        (&stream).write_all(out.as_bytes())
    }

    /// Runs one command, appending its answer to `out`.
    fn run(&mut self, command: Command<'_>, out: &mut String) {
        match command {
            Command::Help => out.push_str(HELP),
            Command::ShowInfo => out.push_str(&self.render(crate::stats::render::info)),
            Command::ShowStat => out.push_str(&self.render(crate::stats::render::csv)),
            Command::ShowTable => out.push_str(&self.render(crate::stats::render::table)),
            Command::SetWeight { target, weight } => self.set_weight(target, weight, out),
            Command::ShowServers { backend } => self.show_servers(backend, out),
            Command::SetAdmin { target, admin } => self.set_admin(target, admin, out),
            Command::Reload => self.reload(out),
            Command::ShutdownSessions { target } => {
                if let Some((b, s)) = self.find(target, out) {
                    for shard in &self.link.shards {
                        let _ = shard.send(ShardMsg::ShutdownSessions {
                            backend: b,
                            server: s,
                        });
                    }
                    self.sync_all(out);
                }
            }
        }
    }

    /// Asks the main thread to reload and waits for its answer.
    fn reload(&self, out: &mut String) {
        let (reply, answer) = mpsc::channel();
        if self.reloads.send(ReloadRequest { reply }).is_err() {
            out.push_str("Reload refused: nothing in this process reloads.\n");
            return;
        }
        match answer.recv_timeout(RELOAD_TIMEOUT) {
            Ok(Ok(done)) => {
                out.push_str(&done);
                out.push('\n');
            }
            Ok(Err(why)) => {
                out.push_str("Reload refused: ");
                out.push_str(&why);
                out.push('\n');
            }
            Err(_) => out.push_str("Reload: no answer in time (the request stays queued).\n"),
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

    /// `set weight B/S N` (0..=256) or `N%` of the configured weight, on every shard.
    fn set_weight(&mut self, target: &str, weight: Option<Weight>, out: &mut String) {
        let Some((b, s)) = self.find(target, out) else {
            return;
        };
        let configured = self.config.backends[b].servers[s].weight;
        let Some(weight) = weight.map(|w| w.of(configured)) else {
            out.push_str(&format!(
                "'set weight' expects a weight from 0 to {WEIGHT_MAX}, or a percentage of the configured weight (0% to 100%).\n"
            ));
            return;
        };
        for shard in &self.link.shards {
            let _ = shard.send(ShardMsg::SetWeight {
                backend: b,
                server: s,
                weight,
            });
        }
        self.weights[b][s] = weight;
        let backend = &self.config.backends[b];
        lock(&self.carried).set_weight(&backend.name, &backend.servers[s], weight);
        self.sync_all(out);
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
        // Shown at once; the owner's own message confirms it.
        self.table[b][s].admin = admin;
        let backend = &self.config.backends[b];
        lock(&self.carried).set_admin(&backend.name, &backend.servers[s], admin);
        // The owner applies it and tells every shard the new status before it answers
        // its sync; the second sync then finds those messages ahead of it in each inbox.
        if !self.sync([owner]) {
            out.push_str("Sent; the server's shard did not confirm it in time.\n");
            return;
        }
        self.sync_all(out);
    }
}

const HELP: &str = "\
show info                           process: version, uptime, shards, connections, rates
show stat                           HAProxy's CSV: one row per frontend, server, backend
show table                          the table `ringproxy stats` prints
show servers state [BACKEND]        one line per server: backend/server STATE k/n
set weight B/S N|N%                 weight 0..256, or a percentage of the configured one
set server B/S state ready|drain|maint
disable server B/S                  same as: set server B/S state maint
enable server B/S                   same as: set server B/S state ready
shutdown sessions server B/S        close the sessions using the server
reload                              read the configuration file again and apply it (SIGHUP)
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
