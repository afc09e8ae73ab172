//! Per-core bootstrap: CPUs, listeners, one pinned glommio executor per shard, reload,
//! stop.
//!
//! Owns the threads and the listening sockets. [`start`] does every fallible step it can
//! on the calling thread first (CPU set, descriptor limit, binding every listener, the
//! admin socket and the statistics listener), starts one thread and executor per shard
//! (a [`Host`]) and waits until each is built, so a startup failure is a [`StartError`]
//! returned to the caller, never a panic in a thread. Then it starts the first
//! generation: the mesh of channels, the statistics and log rings, the logger thread
//! (when `[log] access` is set), the DNS discovery thread, and on each host a shard task
//! with duplicates of its listening sockets; then the control thread (runtime API,
//! statistics). [`Running::reload`] starts the next generation on the same hosts and
//! sockets and retires the old one (it drains on its own; a thread joins it).
//! [`Running`] is the handle: the addresses bound, `reload`, `stop`, `wait`.

pub mod signals;
pub mod sockets;

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use glommio::{LocalExecutorBuilder, Placement};

use crate::config::{Config, Shards};
use crate::worker::{self, Shard, ShardListener, StopFlag};

/// Memory each executor registers for io_uring buffers. ringproxy does no file I/O, so it
/// needs little; keeping it small lets non-root users start within `ulimit -l`.
pub const IO_MEMORY_BYTES: usize = 1 << 20;

/// Why the proxy could not start. Each message says the cause and the fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot bind frontend \"{frontend}\" on {addr}: {source}{hint}")]
    Bind {
        frontend: String,
        addr: SocketAddr,
        source: std::io::Error,
        hint: &'static str,
    },
    #[error("global.shards = {wanted}, but only {available} CPU(s) are available to this process ({cpus:?}): lower global.shards, widen the CPU set (taskset), or set global.pin = false")]
    Cpus {
        wanted: usize,
        available: usize,
        cpus: Vec<usize>,
    },
    #[error("cannot start the io_uring executor of shard {shard}: {message}{hint}")]
    Executor {
        shard: usize,
        message: String,
        hint: &'static str,
    },
    #[error("cannot read this process's CPU set: {0}")]
    Affinity(std::io::Error),
    #[error("cannot start the {name} thread: {source}")]
    Thread {
        name: &'static str,
        source: std::io::Error,
    },
    #[error("cannot open the admin socket {path}: {source} (admin.socket: choose another path, or stop the process that uses it)")]
    Admin {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr} for the statistics: {source}{hint} (admin.listen)")]
    AdminListen {
        addr: SocketAddr,
        source: std::io::Error,
        hint: &'static str,
    },
    #[error("cannot open the access log {path}: {source} (log.access: choose a writable path, or \"stdout\")")]
    AccessLog {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Statistics snapshots a shard may have waiting for the control thread (over six seconds
/// at the shortest interval, longer than an admin client may hold the control thread:
/// beyond, the control thread is stalled and snapshots are dropped).
pub const SNAPSHOT_RING: usize = 64;

/// One configuration's shards: a task on each shard's executor, plus the generation's
/// access log thread and DNS discovery thread. A reload starts a new generation on the
/// same executors and retires the old one, which stops accepting and drains.
struct Generation {
    stop: Arc<StopFlag>,
    /// One message per shard whose task has finished.
    done: mpsc::Receiver<()>,
    shards: usize,
    /// The access log's thread, stopped only once every shard has finished (so that it
    /// writes their last records).
    logger: Option<(JoinHandle<()>, Arc<StopFlag>)>,
    /// The DNS discovery thread, when a server has `resolve`.
    discovery: Option<JoinHandle<()>>,
}

impl Generation {
    /// Waits until every shard has finished, then ends the generation's other threads.
    fn wait(self) {
        for _ in 0..self.shards {
            // An error: every sender is gone, so no shard task is left.
            if self.done.recv().is_err() {
                break;
            }
        }
        self.stop.request();
        if let Some(t) = self.discovery {
            let _ = t.join();
        }
        if let Some((t, stop)) = self.logger {
            stop.request();
            let _ = t.join();
        }
    }
}

/// A shard's thread and executor. It outlives generations: a reload gives it the next
/// generation's shard as one more task (glommio 0.9 leaks a descriptor per executor it
/// ever built, so executors are not rebuilt per reload), and it exits once told to and
/// its tasks have ended.
struct Host {
    cpu: Option<usize>,
    inbox: mpsc::Sender<HostMsg>,
    thread: JoinHandle<()>,
}

enum HostMsg {
    Start(Box<Assignment>),
    /// Exit once every task has ended.
    Exit,
}

/// One generation's shard, for a host to run.
struct Assignment {
    id: usize,
    shards: usize,
    config: Arc<Config>,
    listeners: Vec<ShardListener>,
    mesh: worker::mesh::Mesh,
    publisher: Option<crate::stats::ring::Producer<crate::stats::Snapshot>>,
    log: Option<crate::stats::ring::Producer<crate::stats::log::LogRecord>>,
    stop: Arc<StopFlag>,
    started: mpsc::Sender<()>,
    done: mpsc::Sender<()>,
}

/// How often a host looks for new work; bounds how long a reload waits for the new
/// generation to accept.
const HOST_TICK: std::time::Duration = std::time::Duration::from_millis(10);

/// How long a reload waits for every host to start its new shard.
const HOST_START_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl Host {
    /// Starts the thread and executor of shard `id` on `cpu`; returns once the executor
    /// is built (or failed to).
    fn start(id: usize, cpu: Option<usize>) -> Result<Host, StartError> {
        let (inbox, messages) = mpsc::channel::<HostMsg>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), StartError>>();
        let thread = std::thread::Builder::new()
            .name(format!("ringproxy-shard-{id}"))
            .spawn(move || {
                let builder =
                    LocalExecutorBuilder::new(cpu.map_or(Placement::Unbound, Placement::Fixed))
                        .name(&format!("shard-{id}"))
                        .io_memory(IO_MEMORY_BYTES);
                let executor = match builder.make() {
                    Ok(ex) => ex,
                    Err(e) => {
                        let message = e.to_string();
                        let hint = executor_hint(&message);
                        let _ = ready_tx.send(Err(StartError::Executor {
                            shard: id,
                            message,
                            hint,
                        }));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                drop(ready_tx);
                executor.run(host(messages));
            })
            .map_err(|source| StartError::Thread {
                name: "shard",
                source,
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Host { cpu, inbox, thread }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(StartError::Executor {
                    shard: id,
                    message: "the shard thread exited during startup".into(),
                    hint: "",
                })
            }
        }
    }

    fn exit(self) {
        let _ = self.inbox.send(HostMsg::Exit);
        let _ = self.thread.join();
    }
}

/// Starts the hosts `placement` has beyond those already in `hosts` (shard `i` on
/// `placement[i]`); on an error, the ones it started exit again.
fn add_hosts(hosts: &mut Vec<Host>, placement: &[Option<usize>]) -> Result<(), StartError> {
    let before = hosts.len();
    for (id, &cpu) in placement.iter().enumerate().skip(before) {
        match Host::start(id, cpu) {
            Ok(h) => hosts.push(h),
            Err(e) => {
                hosts.drain(before..).for_each(Host::exit);
                return Err(e);
            }
        }
    }
    Ok(())
}

/// A host's main task: runs each shard it is given as a task of its own, until told to
/// exit (or abandoned) with no task left.
async fn host(messages: mpsc::Receiver<HostMsg>) {
    let live = Rc::new(std::cell::Cell::new(0usize));
    let mut exiting = false;
    loop {
        loop {
            match messages.try_recv() {
                Ok(HostMsg::Start(a)) => {
                    let a = *a;
                    live.set(live.get() + 1);
                    let live = Rc::clone(&live);
                    let started = a.started;
                    glommio::spawn_local(async move {
                        let stats = crate::stats::ShardStats::new(&a.config, a.publisher, a.log);
                        let shard = Rc::new(Shard::new(a.id, a.shards, a.config, a.mesh, stats));
                        worker::run(shard, a.listeners, a.stop).await;
                        live.set(live.get() - 1);
                        let _ = a.done.send(());
                    })
                    .detach();
                    // Its accept loops start at the next yield, this one.
                    let _ = started.send(());
                }
                Ok(HostMsg::Exit) | Err(mpsc::TryRecvError::Disconnected) => {
                    exiting = true;
                    break;
                }
                Err(mpsc::TryRecvError::Empty) => break,
            }
        }
        if exiting && live.get() == 0 {
            return;
        }
        glommio::timer::sleep(HOST_TICK).await;
    }
}

/// The listening sockets of one frontend address, one per shard. They belong to the
/// process, not to a generation: each generation's shards accept on duplicates of them,
/// so a reload never closes one that the new configuration still binds.
struct Bound {
    key: BindKey,
    /// The address actually bound (port 0 resolved).
    addr: SocketAddr,
    sockets: Vec<std::net::TcpListener>,
}

/// What makes two binds the same listening sockets across a reload: the address, or for
/// port 0 (a port the kernel picks) the frontend's name and the bind's position.
#[derive(Debug, Clone, PartialEq, Eq)]
enum BindKey {
    Addr(SocketAddr),
    Ephemeral { frontend: String, index: usize },
}

/// What the control thread is given at start and at each reload.
struct ControlSide {
    swaps: mpsc::Sender<crate::admin::Swap>,
    /// Reload requests made through the runtime API, answered by [`Running::reload`]'s
    /// caller.
    reloads: mpsc::Receiver<crate::admin::ReloadRequest>,
    thread: JoinHandle<()>,
    stop: Arc<StopFlag>,
    /// The operator's runtime weights and states, which a reload carries over.
    carried: Arc<std::sync::Mutex<crate::admin::carry::Carried>>,
}

/// A started proxy.
pub struct Running {
    /// Per shard: its thread and executor.
    hosts: Vec<Host>,
    current: Generation,
    /// Generations a reload replaced, draining; each is joined by its own thread.
    retiring: Vec<JoinHandle<()>>,
    /// The stop flags of the generations still draining (a stop reaches them too).
    retiring_flags: Vec<Arc<StopFlag>>,
    /// Shard threads a reload to fewer shards left without work, ending.
    leaving: Vec<JoinHandle<()>>,
    control: Option<ControlSide>,
    /// The statistics listener's address, when `[admin] listen` is set.
    admin_addr: Option<SocketAddr>,
    /// The admin settings the process started with (a reload cannot change them).
    admin: crate::config::Admin,
    listeners: Vec<Bound>,
    /// Per frontend (config order): the addresses actually bound.
    bound: Vec<Vec<SocketAddr>>,
    shards: usize,
    reloads: u64,
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// Reloads so far, this one included.
    pub generation: u64,
    pub frontends: usize,
    pub backends: usize,
    pub shards: usize,
    /// Servers whose runtime weight or state (set through the runtime API) carried over.
    pub carried: usize,
}

impl std::fmt::Display for Reloaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "reload {}: {} frontend(s), {} backend(s) on {} shard(s); established connections finish on the previous configuration",
            self.generation, self.frontends, self.backends, self.shards
        )?;
        if self.carried > 0 {
            write!(
                f,
                "; runtime weight or state kept for {} server(s)",
                self.carried
            )?;
        }
        Ok(())
    }
}

/// Why a reload was refused (the running configuration stays).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Start(#[from] StartError),
    #[error("the [admin] section changed ({0}): a reload keeps the admin socket and listener; restart to change them")]
    Admin(&'static str),
    #[error("shard {shard} would move from CPU {was:?} to {now:?}: a reload keeps each shard on its CPU (global.pin, the CPU set); restart to move them")]
    Placement {
        shard: usize,
        was: Option<usize>,
        now: Option<usize>,
    },
}

impl Running {
    /// Addresses bound for the frontend at `index` (port 0 in the config is resolved here).
    pub fn frontend_addrs(&self, index: usize) -> &[SocketAddr] {
        &self.bound[index]
    }

    /// The address of the statistics listener (`[admin] listen`), as bound.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Number of shards running.
    pub fn shards(&self) -> usize {
        self.shards
    }

    /// Reload requests made through the runtime API (`reload`) since the last call. The
    /// caller reloads, then answers each.
    pub fn reload_requests(&self) -> Vec<crate::admin::ReloadRequest> {
        match &self.control {
            Some(c) => c.reloads.try_iter().collect(),
            None => Vec::new(),
        }
    }

    /// Replaces the running configuration with `config`: binds what is new (keeping every
    /// listening socket the new configuration still uses), starts a new generation of
    /// shards on it, then retires the old generation: it stops accepting (no connection is
    /// lost: both generations poll the same sockets for a moment), closes each kept-alive
    /// client connection after its next response, and drains within `global.grace`.
    /// On error nothing changed.
    pub fn reload(&mut self, mut config: Config) -> Result<Reloaded, ReloadError> {
        if config.admin.socket != self.admin.socket {
            return Err(ReloadError::Admin("admin.socket"));
        }
        if config.admin.listen != self.admin.listen {
            return Err(ReloadError::Admin("admin.listen"));
        }
        let placement = plan_cpus(&config)?;
        let shards = placement.len();
        if let Some(i) =
            (0..shards.min(self.hosts.len())).find(|&i| self.hosts[i].cpu != placement[i])
        {
            return Err(ReloadError::Placement {
                shard: i,
                was: self.hosts[i].cpu,
                now: placement[i],
            });
        }
        let (per_shard, listeners, bound) = bind_all(&config, shards, &self.listeners)?;
        // The operator's runtime weights and states, where the file did not change them.
        let carried = self
            .control
            .as_ref()
            .map(|c| crate::admin::lock(&c.carried).apply(&mut config));
        let summary = Reloaded {
            generation: self.reloads + 1,
            frontends: config.frontends.len(),
            backends: config.backends.len(),
            shards,
            carried: carried.as_ref().map_or(0, |c| c.len()),
        };
        let before = self.hosts.len();
        add_hosts(&mut self.hosts, &placement)?;
        let control = self.control.is_some();
        let (generation, parts) =
            match Generation::start(config, &self.hosts[..shards], per_shard, control) {
                Ok(g) => g,
                Err(e) => {
                    // The hosts this reload started end again.
                    self.hosts.drain(before..).for_each(Host::exit);
                    return Err(e.into());
                }
            };
        let old = std::mem::replace(&mut self.current, generation);
        if let (Some(c), Some(kept)) = (&self.control, carried) {
            *crate::admin::lock(&c.carried) = kept;
        }
        // The new shards accept on the same sockets already; now the old ones stop.
        old.stop.retire();
        self.retiring_flags.retain(|f| Arc::strong_count(f) > 1);
        self.retiring_flags.push(Arc::clone(&old.stop));
        let joiner = std::thread::Builder::new()
            .name("ringproxy-retire".into())
            .spawn(move || old.wait())
            .map_err(|source| StartError::Thread {
                name: "retire",
                source,
            });
        match joiner {
            Ok(j) => self.retiring.push(j),
            // The old generation still drains (its flag is set); only its threads are
            // not joined before the process exits.
            Err(e) => eprintln!("ringproxy: {e}"),
        }
        // Hosts the new configuration has no shard for end once their old shard drained.
        for h in self.hosts.drain(shards..) {
            let _ = h.inbox.send(HostMsg::Exit);
            self.leaving.push(h.thread);
        }
        self.listeners = listeners;
        self.bound = bound;
        self.shards = shards;
        self.reloads += 1;
        if let (Some(c), Some(parts)) = (&self.control, parts) {
            let _ = c.swaps.send(crate::admin::Swap {
                config: parts.config,
                link: parts.link,
                snapshots: parts.snapshots,
                shards,
                bound: self.bound.clone(),
            });
        }
        self.retiring.retain(|j| !j.is_finished());
        Ok(summary)
    }

    /// Asks every shard to stop accepting and drain (returns at once). Generations still
    /// draining after a reload close their idle connections now.
    pub fn stop(&self) {
        self.current.stop.request();
        for f in &self.retiring_flags {
            f.request();
        }
    }

    /// Waits until every shard has finished.
    pub fn wait(self) {
        self.current.wait();
        for j in self.retiring.into_iter().chain(self.leaving) {
            let _ = j.join();
        }
        self.hosts.into_iter().for_each(Host::exit);
        if let Some(c) = self.control {
            c.stop.request();
            let _ = c.thread.join();
        }
    }

    /// `stop` then `wait`.
    pub fn shutdown(self) {
        self.stop();
        self.wait();
    }
}

/// How many shards, on which CPUs (`None` = unpinned).
fn plan_cpus(config: &Config) -> Result<Vec<Option<usize>>, StartError> {
    let cpus = sockets::allowed_cpus().map_err(StartError::Affinity)?;
    let wanted = match config.global.shards {
        Shards::Auto => cpus.len().max(1),
        Shards::Count(n) => n.get(),
    };
    if !config.global.pin {
        return Ok(vec![None; wanted]);
    }
    if wanted > cpus.len() {
        return Err(StartError::Cpus {
            wanted,
            available: cpus.len(),
            cpus,
        });
    }
    Ok(cpus[..wanted].iter().map(|&c| Some(c)).collect())
}

/// Per shard, its listeners; the sockets by bind; per frontend, the addresses bound.
type BindPlan = (Vec<Vec<ShardListener>>, Vec<Bound>, Vec<Vec<SocketAddr>>);

/// Binds every frontend address of `config` on `shards` sockets each, taking the sockets
/// of `kept` that it binds already (a duplicate descriptor of each, so that `kept` stays
/// whole if the caller gives up), and hands each shard a duplicate of its own.
fn bind_all(config: &Config, shards: usize, kept: &[Bound]) -> Result<BindPlan, StartError> {
    let mut per_shard: Vec<Vec<ShardListener>> = (0..shards).map(|_| Vec::new()).collect();
    let mut bound = Vec::with_capacity(config.frontends.len());
    let mut all = Vec::new();
    let error =
        |fe: &crate::config::Frontend, addr: SocketAddr, source: std::io::Error| StartError::Bind {
            frontend: fe.name.clone(),
            addr,
            hint: bind_hint(&source),
            source,
        };
    for (index, fe) in config.frontends.iter().enumerate() {
        let mut addrs = Vec::with_capacity(fe.binds.len());
        for (position, &addr) in fe.binds.iter().enumerate() {
            let key = if addr.port() == 0 {
                BindKey::Ephemeral {
                    frontend: fe.name.clone(),
                    index: position,
                }
            } else {
                BindKey::Addr(addr)
            };
            let mut sockets = Vec::with_capacity(shards);
            let mut actual = addr;
            if let Some(old) = kept.iter().find(|b| b.key == key) {
                actual = old.addr;
                for s in old.sockets.iter().take(shards) {
                    sockets.push(s.try_clone().map_err(|e| error(fe, addr, e))?);
                }
            }
            if sockets.len() < shards {
                let more = sockets::bind_reuseport(actual, shards - sockets.len())
                    .map_err(|e| error(fe, addr, e))?;
                if let Some(first) = more.first() {
                    actual = first.local_addr().unwrap_or(actual);
                }
                sockets.extend(more);
            }
            addrs.push(actual);
            for (shard, socket) in sockets.iter().enumerate() {
                per_shard[shard].push(ShardListener {
                    frontend: index,
                    listener: socket.try_clone().map_err(|e| error(fe, addr, e))?,
                });
            }
            all.push(Bound {
                key,
                addr: actual,
                sockets,
            });
        }
        bound.push(addrs);
    }
    Ok((per_shard, all, bound))
}

/// What the control thread needs of a generation.
struct ControlParts {
    config: Arc<Config>,
    link: worker::mesh::ControlLink,
    snapshots: Vec<crate::stats::ring::Consumer<crate::stats::Snapshot>>,
}

impl Generation {
    /// Starts the shards of `config` as tasks on `hosts` (one per shard), each with its
    /// listeners, and the generation's logger and discovery threads; returns once every
    /// host runs its shard. With `control`, the statistics rings and the mesh's control
    /// link are made and returned for the control thread.
    fn start(
        config: Config,
        hosts: &[Host],
        per_shard: Vec<Vec<ShardListener>>,
        control: bool,
    ) -> Result<(Generation, Option<ControlParts>), StartError> {
        let shards = hosts.len();
        let (meshes, control_link, outlets) = worker::mesh::build(shards, control);
        // The statistics rings, when a control thread reads them.
        let (publishers, snapshots): (Vec<_>, Vec<_>) = (0..shards)
            .map(|_| {
                if control {
                    let (p, c) = crate::stats::ring::ring(SNAPSHOT_RING);
                    (Some(p), Some(c))
                } else {
                    (None, None)
                }
            })
            .unzip();
        let snapshots: Vec<_> = snapshots.into_iter().flatten().collect();
        let config = Arc::new(config);
        let mut log_producers: Vec<Option<_>> = (0..shards).map(|_| None).collect();
        let logger = match &config.log.access {
            Some(sink) => {
                let (producers, consumers): (Vec<_>, Vec<_>) = (0..shards)
                    .map(|_| crate::stats::ring::ring(config.log.ring))
                    .unzip();
                log_producers = producers.into_iter().map(Some).collect();
                let log_stop = Arc::new(StopFlag::default());
                let handle =
                    crate::stats::log::start(Arc::clone(&config), consumers, Arc::clone(&log_stop))
                        .map_err(|source| StartError::AccessLog {
                            path: match sink {
                                crate::config::LogSink::Stdout => "stdout".into(),
                                crate::config::LogSink::File(p) => p.clone(),
                            },
                            source,
                        })?;
                Some((handle, log_stop))
            }
            None => None,
        };

        let stop = Arc::new(StopFlag::default());
        let (started_tx, started_rx) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let links = publishers.into_iter().zip(log_producers);
        let plan = hosts.iter().zip(per_shard).zip(meshes).zip(links);
        let mut sent = 0;
        for (id, (((host, listeners), mesh), (publisher, log))) in plan.enumerate() {
            let assignment = Assignment {
                id,
                shards,
                config: Arc::clone(&config),
                listeners,
                mesh,
                publisher,
                log,
                stop: Arc::clone(&stop),
                started: started_tx.clone(),
                done: done_tx.clone(),
            };
            if host
                .inbox
                .send(HostMsg::Start(Box::new(assignment)))
                .is_ok()
            {
                sent += 1;
            }
        }
        drop((started_tx, done_tx));
        let mut generation = Generation {
            stop,
            done,
            shards: sent,
            logger,
            discovery: None,
        };
        let deadline = std::time::Instant::now() + HOST_START_TIMEOUT;
        let mut running = 0;
        while running < sent {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match started_rx.recv_timeout(left) {
                Ok(()) => running += 1,
                Err(_) => break,
            }
        }
        if running < shards {
            generation.stop.request();
            generation.wait();
            return Err(StartError::Executor {
                shard: running,
                message: format!("{running} of {shards} shard thread(s) took their work"),
                hint: " (a shard thread exited or is stuck)",
            });
        }
        match crate::upstream::discovery::start(
            Arc::clone(&config),
            outlets,
            Arc::clone(&generation.stop),
        ) {
            Ok(handle) => generation.discovery = handle,
            Err(e) => {
                generation.stop.request();
                generation.wait();
                return Err(StartError::Thread {
                    name: "discovery",
                    source: e,
                });
            }
        }
        let parts = control_link.map(|link| ControlParts {
            config,
            link,
            snapshots,
        });
        Ok((generation, parts))
    }
}

/// Starts the proxy described by `config`.
pub fn start(config: Config) -> Result<Running, StartError> {
    let placement = plan_cpus(&config)?;
    // A write to a socket the peer has closed must be an EPIPE error, never a signal that
    // kills the process (Rust binaries ignore SIGPIPE already; a host program may not).
    // SAFETY: installing SIG_IGN for SIGPIPE has no handler code to be unsafe in.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let shards = placement.len();
    if let Err(e) = sockets::raise_fd_limit() {
        eprintln!("ringproxy: warning: cannot raise the open-file limit: {e}");
    }

    // Bind everything before any shard starts: a port in use fails the whole start.
    let (per_shard, listeners, bound) = bind_all(&config, shards, &[])?;

    let admin = match &config.admin.socket {
        Some(path) => Some((
            crate::admin::bind(path).map_err(|source| StartError::Admin {
                path: path.clone(),
                source,
            })?,
            path.clone(),
        )),
        None => None,
    };
    let http = match config.admin.listen {
        Some(addr) => {
            Some(
                crate::admin::bind_http(addr).map_err(|source| StartError::AdminListen {
                    addr,
                    hint: bind_hint(&source),
                    source,
                })?,
            )
        }
        None => None,
    };
    let admin_addr = http.as_ref().and_then(|l| l.local_addr().ok());
    let control = admin.is_some() || http.is_some();
    let admin_settings = config.admin.clone();
    let mut hosts = Vec::with_capacity(shards);
    add_hosts(&mut hosts, &placement)?;
    let (generation, parts) = match Generation::start(config, &hosts, per_shard, control) {
        Ok(g) => g,
        Err(e) => {
            hosts.into_iter().for_each(Host::exit);
            return Err(e);
        }
    };
    let mut running = Running {
        hosts,
        current: generation,
        retiring: Vec::new(),
        retiring_flags: Vec::new(),
        leaving: Vec::new(),
        control: None,
        admin_addr,
        admin: admin_settings,
        listeners,
        bound,
        shards,
        reloads: 0,
    };
    if let Some(parts) = parts {
        let path = admin.as_ref().map(|(_, p)| p.clone());
        let listeners = crate::admin::Listeners {
            socket: admin,
            http,
            bound: running.bound.clone(),
        };
        let (swap_tx, swap_rx) = mpsc::channel();
        let (reload_tx, reload_rx) = mpsc::channel();
        let stop = Arc::new(StopFlag::default());
        let carried = Arc::default();
        let started = crate::admin::start(
            listeners,
            crate::admin::Swap {
                config: parts.config,
                link: parts.link,
                snapshots: parts.snapshots,
                shards,
                bound: running.bound.clone(),
            },
            swap_rx,
            reload_tx,
            Arc::clone(&carried),
            Arc::clone(&stop),
        );
        match started {
            Ok(thread) => {
                running.control = Some(ControlSide {
                    swaps: swap_tx,
                    reloads: reload_rx,
                    thread,
                    stop,
                    carried,
                })
            }
            Err(source) => {
                running.shutdown();
                if let Some(path) = path {
                    let _ = std::fs::remove_file(&path);
                }
                return Err(StartError::Thread {
                    name: "control",
                    source,
                });
            }
        }
    }
    Ok(running)
}

fn bind_hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            " (another process listens there: stop it, or change frontend.bind)"
        }
        std::io::ErrorKind::PermissionDenied => {
            " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
        }
        std::io::ErrorKind::AddrNotAvailable => " (no interface of this machine has that address)",
        _ => "",
    }
}

fn executor_hint(message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    if m.contains("memlock") || m.contains("mlock") {
        " (the locked-memory limit is too low: raise `ulimit -l` to at least 2 MiB per shard, or run as root)"
    } else if m.contains("cpu") {
        " (that CPU does not exist or is offline: check global.shards and the CPU set)"
    } else if m.contains("operation not permitted") || m.contains("function not implemented") {
        " (io_uring is unavailable: Linux >= 5.8 is needed, and sysctl kernel.io_uring_disabled must be 0)"
    } else {
        ""
    }
}
