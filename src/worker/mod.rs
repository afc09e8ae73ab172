//! A shard at work: its listeners, accept loops and sessions.
//!
//! Owns everything one shard holds: its `SO_REUSEPORT` listeners (one per frontend bind),
//! its view of the backends, its counters. All of it lives in one executor thread and is
//! shared between that thread's tasks with `Rc`/`Cell`, never with another thread. The only
//! thing that crosses threads is the stop request ([`StopFlag`]), read on a control tick.
//!
//! Stopping: the accept loops are cancelled (their listeners close), established sessions
//! run on until they end or `global.grace` has passed, then the shard returns and whatever
//! is left is closed with it.

use std::cell::Cell;
use std::os::fd::IntoRawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use glommio::net::TcpListener;
use glommio::sync::Gate;

use crate::config::{Config, Mode};
use crate::upstream::{shard_backends, BackendState};

/// How often a shard looks at the stop flag. Control plane only; bounds stop latency.
pub const STOP_POLL_INTERVAL: Duration = Duration::from_millis(50);

/// After an accept error such as `EMFILE`, wait this long before accepting again, so an
/// exhausted process backs off instead of spinning.
pub const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// The cross-thread stop request: set once by the control side, read by every shard.
#[derive(Debug, Default)]
pub struct StopFlag(AtomicBool);

impl StopFlag {
    pub fn request(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_requested(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Counters of one shard (plain cells: only this shard writes them).
#[derive(Debug, Default)]
pub struct ShardCounters {
    pub accepted: Cell<u64>,
    pub accept_errors: Cell<u64>,
    /// Sessions currently open on this shard.
    pub active: Cell<u64>,
    pub relay_timeouts: Cell<u64>,
    pub relay_errors: Cell<u64>,
    pub bytes_in: Cell<u64>,
    pub bytes_out: Cell<u64>,
}

/// Everything one shard owns.
pub struct Shard {
    pub id: usize,
    pub config: Arc<Config>,
    /// Indexed like `config.backends`.
    pub backends: Vec<Rc<BackendState>>,
    pub counters: ShardCounters,
    /// Spare pipes for the splice relay.
    pub pipes: crate::l4::splice::PipePool,
}

impl Shard {
    pub fn new(id: usize, shards: usize, config: Arc<Config>) -> Shard {
        let backends = shard_backends(&config, id, shards);
        Shard {
            id,
            config,
            backends,
            counters: ShardCounters::default(),
            pipes: Default::default(),
        }
    }
}

/// A listening socket handed to a shard, with the frontend it serves.
pub struct ShardListener {
    pub frontend: usize,
    pub listener: std::net::TcpListener,
}

/// Runs a shard until `stop` is requested and its sessions have drained (or the grace
/// period ran out).
pub async fn run(shard: Rc<Shard>, listeners: Vec<ShardListener>, stop: Arc<StopFlag>) {
    let gate = Gate::new();
    let mut loops = Vec::with_capacity(listeners.len());
    for l in listeners {
        // SAFETY-free conversion: the std listener's descriptor is handed over whole.
        let fd = l.listener.into_raw_fd();
        // SAFETY: `fd` is a bound, listening TCP socket we own and give to glommio.
        let listener = unsafe { <TcpListener as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let task = glommio::spawn_local(accept_loop(
            Rc::clone(&shard),
            l.frontend,
            listener,
            gate.clone(),
        ));
        loops.push(task);
    }
    while !stop.is_requested() {
        glommio::timer::sleep(STOP_POLL_INTERVAL).await;
    }
    for task in loops {
        task.cancel().await;
    }
    let grace = shard.config.global.grace;
    let drained = glommio::timer::timeout(grace, async {
        gate.close()
            .await
            .map_err(|e| glommio::GlommioError::<()>::IoError(e.into()))
    })
    .await;
    if drained.is_err() {
        eprintln!(
            "ringproxy: shard {}: grace period of {:?} over, closing {} session(s)",
            shard.id,
            grace,
            shard.counters.active.get()
        );
    }
}

async fn accept_loop(shard: Rc<Shard>, frontend: usize, listener: TcpListener, gate: Gate) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let c = &shard.counters;
                c.accepted.set(c.accepted.get() + 1);
                c.active.set(c.active.get() + 1);
                let shard = Rc::clone(&shard);
                let session = async move {
                    match shard.config.frontends[frontend].mode {
                        Mode::Tcp => crate::l4::serve(Rc::clone(&shard), frontend, stream).await,
                    }
                    shard.counters.active.set(shard.counters.active.get() - 1);
                };
                match gate.spawn(session) {
                    Ok(task) => task.detach(),
                    // The gate closes only once the accept loops are cancelled.
                    Err(_) => return,
                };
            }
            Err(e) => {
                let c = &shard.counters;
                c.accept_errors.set(c.accept_errors.get() + 1);
                if c.accept_errors.get() == 1 || c.accept_errors.get().is_multiple_of(1000) {
                    eprintln!("ringproxy: shard {}: accept: {e} (backing off)", shard.id);
                }
                glommio::timer::sleep(ACCEPT_ERROR_BACKOFF).await;
            }
        }
    }
}
