//! Per-core bootstrap: CPUs, listeners, one pinned glommio executor per shard, stop.
//!
//! Owns the threads. [`start`] does every fallible step it can on the calling thread first
//! (CPU set, descriptor limit, binding every listener, the admin socket and the stats
//! listener, opening the access log), builds the mesh of channels and the statistics and
//! log rings between them, starts the logger thread (when `[log] access` is set), then one
//! executor thread per shard, and waits until each has built its executor, so a startup
//! failure is a [`StartError`] returned to the caller, never a panic in a thread. Then,
//! when configured, the DNS discovery thread and the control thread (runtime API,
//! statistics). [`Running`] is the handle: the addresses actually bound, `stop`, `wait`
//! (which joins every thread, the logger last).

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

/// A started proxy.
pub struct Running {
    stop: Arc<StopFlag>,
    threads: Vec<JoinHandle<()>>,
    /// The control thread (runtime API, statistics), when `[admin] socket` or
    /// `[admin] listen` is set.
    control: Option<JoinHandle<()>>,
    /// The access log's thread, stopped only once every shard has finished (so that it
    /// writes their last records).
    logger: Option<(JoinHandle<()>, Arc<StopFlag>)>,
    /// The statistics listener's address, when `[admin] listen` is set.
    admin_addr: Option<SocketAddr>,
    /// The DNS discovery thread, when a server has `resolve`.
    discovery: Option<JoinHandle<()>>,
    /// Per frontend (config order): the addresses actually bound.
    bound: Vec<Vec<SocketAddr>>,
    shards: usize,
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

    /// Asks every shard to stop accepting and drain (returns at once).
    pub fn stop(&self) {
        self.stop.request();
    }

    /// Waits until every shard has finished.
    pub fn wait(self) {
        for t in self.threads {
            let _ = t.join();
        }
        self.stop.request();
        for t in [self.control, self.discovery].into_iter().flatten() {
            let _ = t.join();
        }
        if let Some((t, stop)) = self.logger {
            stop.request();
            let _ = t.join();
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
    let mut per_shard: Vec<Vec<ShardListener>> = (0..shards).map(|_| Vec::new()).collect();
    let mut bound = Vec::with_capacity(config.frontends.len());
    for (index, fe) in config.frontends.iter().enumerate() {
        let mut addrs = Vec::with_capacity(fe.binds.len());
        for &addr in &fe.binds {
            let listeners =
                sockets::bind_reuseport(addr, shards).map_err(|source| StartError::Bind {
                    frontend: fe.name.clone(),
                    addr,
                    hint: bind_hint(&source),
                    source,
                })?;
            addrs.push(listeners[0].local_addr().unwrap_or(addr));
            for (shard, listener) in listeners.into_iter().enumerate() {
                per_shard[shard].push(ShardListener {
                    frontend: index,
                    listener,
                });
            }
        }
        bound.push(addrs);
    }

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
    let (ready_tx, ready_rx) = mpsc::channel::<Result<usize, StartError>>();
    let mut threads = Vec::with_capacity(shards);
    let links = publishers.into_iter().zip(log_producers);
    let plan = placement.into_iter().zip(per_shard).zip(meshes).zip(links);
    for (id, (((cpu, listeners), mesh), (publisher, log))) in plan.enumerate() {
        let config = Arc::clone(&config);
        let shard_stop = Arc::clone(&stop);
        let ready = ready_tx.clone();
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
                        let _ = ready.send(Err(StartError::Executor {
                            shard: id,
                            message,
                            hint,
                        }));
                        return;
                    }
                };
                let _ = ready.send(Ok(id));
                drop(ready);
                executor.run(async move {
                    let stats = crate::stats::ShardStats::new(&config, publisher, log);
                    let shard = Rc::new(Shard::new(id, shards, config, mesh, stats));
                    worker::run(shard, listeners, shard_stop).await;
                });
            });
        match thread {
            Ok(t) => threads.push(t),
            Err(e) => {
                stop.request();
                threads.into_iter().for_each(|t| drop(t.join()));
                if let Some((t, log_stop)) = logger {
                    log_stop.request();
                    let _ = t.join();
                }
                return Err(StartError::Thread {
                    name: "shard",
                    source: e,
                });
            }
        }
    }
    drop(ready_tx);

    let mut running = Running {
        stop,
        threads,
        control: None,
        logger,
        admin_addr,
        discovery: None,
        bound,
        shards,
    };
    for _ in 0..shards {
        match ready_rx.recv() {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                running.shutdown();
                return Err(e);
            }
            Err(_) => {
                running.shutdown();
                return Err(StartError::Executor {
                    shard: 0,
                    message: "a shard thread exited during startup".into(),
                    hint: "",
                });
            }
        }
    }
    match crate::upstream::discovery::start(Arc::clone(&config), outlets, Arc::clone(&running.stop))
    {
        Ok(handle) => running.discovery = handle,
        Err(e) => {
            running.shutdown();
            return Err(StartError::Thread {
                name: "discovery",
                source: e,
            });
        }
    }
    if let Some(link) = control_link {
        let path = admin.as_ref().map(|(_, p)| p.clone());
        let listeners = crate::admin::Listeners {
            socket: admin,
            http,
            bound: running.bound.clone(),
        };
        let started = crate::admin::start(
            listeners,
            Arc::clone(&config),
            link,
            snapshots,
            shards,
            Arc::clone(&running.stop),
        );
        match started {
            Ok(handle) => running.control = Some(handle),
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
