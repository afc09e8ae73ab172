//! # ringproxy
//!
//! A load balancer and reverse proxy for bare-metal Linux: thread-per-core, io_uring
//! (through glommio), zero-copy L4 forwarding with `splice(2)`, an HTTP/1.x reverse
//! proxy (L7) with exact keep-alive semantics, and TLS (rustls) on either side.
//!
//! ## Thread model
//! One **shard** per CPU. A shard is a glommio `LocalExecutor` pinned to its CPU, with its
//! own `SO_REUSEPORT` listening socket per frontend address (the kernel spreads new
//! connections across shards), its own view of every backend (active counts, balancer
//! state) and its own counters. A connection is accepted, served and closed on one shard;
//! nothing on the data path is shared between shards, so nothing is locked. Inside a shard,
//! tasks share state through `Rc`/`Cell`.
//!
//! ## Control plane and data plane
//! The main thread is the control plane: it validates the configuration, binds every
//! listener (so a port in use fails the start, not a shard), starts the shards and waits
//! for a stop signal. It talks to shards only through explicit cross-thread objects: the
//! stop flag and the mesh of channels ([`worker::mesh`]), both read on a 50 ms tick. More
//! control-plane threads may run: the control thread ([`admin`]: the runtime API, the
//! statistics listener, and the sums of the shards' statistics, which reach it through one
//! lock-free ring per shard, [`stats`]), the access log's logger thread (fed the same
//! way), and the DNS discovery thread ([`upstream::discovery`]). Health checks run in the shards:
//! each server has one owning shard that probes it and sends its status to every shard.
//! The data plane is the shards' accept loops and sessions.
//!
//! ## Decisions are sans-IO
//! Balancing ([`upstream::balance`]), health (rise/fall, [`upstream::health`]), slot
//! assignment of DNS discovery, configuration validation ([`config`]), the
//! per-shard `maxconn` split and HTTP parsing, chunked framing and head rewriting
//! ([`http::head`], [`http::chunked`], [`http::rewrite`]) and the runtime API's command
//! language ([`admin::command`]) are plain code tested without sockets (and fuzzed:
//! `fuzz/`); the glommio tasks ([`worker`], [`l4`], [`http::session`]) are thin shells that
//! do the I/O.
//!
//! ## Module map (in the order a connection meets them)
//! - [`config`]: TOML → validated [`config::Config`]; every refusal names file, line, key.
//! - [`runtime`]: CPU plan, listeners, one executor thread per shard, start errors, signals.
//! - [`worker`]: a shard's accept loops, session spawning and limits (`maxconn`), draining
//!   on stop.
//! - [`tls`]: rustls per shard: TLS termination (SNI certificates, resumption), TLS to
//!   servers, and the [`tls::Stream`] every session reads and writes, plain or TLS.
//! - [`l4`]: tcp mode: connect with retries, then the splice/copy [`l4::relay`].
//! - [`http`]: http mode: request by request, routed, rewritten, bodies copied or spliced.
//! - [`upstream`]: per-shard backend state, the balancer, health checks, the queue, pools
//!   rules, DNS discovery.
//! - [`stats`]: counters and latency histograms per shard, the rings to the control and
//!   logger threads, aggregation, rendering (Prometheus, JSON, CSV), the access log.
//! - [`admin`]: the control thread: the runtime API on a Unix socket, the statistics
//!   listener (`/metrics`, `/stats.json`, the stats page).
//! - [`origin`]: the built-in HTTP/1.1 origin for demos, tests and benchmarks.
//! - [`cli`]: the command line.

pub mod admin;
pub mod cli;
pub mod config;
pub mod http;
pub mod l4;
pub mod origin;
pub mod runtime;
pub mod stats;
pub mod tls;
pub mod upstream;
pub mod worker;
