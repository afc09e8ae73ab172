//! http mode: an HTTP/1.0 and 1.1 reverse proxy, request by request.
//!
//! Layout, from the bytes up:
//! - [`head`]: request and response heads parsed in place (`httparse`), checked against
//!   the limits and the smuggling rules, reduced to offsets; the framing of each message
//!   is decided there, once.
//! - [`chunked`]: the chunked coding, read incrementally.
//! - [`rewrite`]: outgoing heads (hop-by-hop fields dropped, framing and `Connection`
//!   written from the proxy's decisions) and the proxy's own error responses.
//! - [`cookie`]: cookie stickiness: which server a request's cookie names, and the
//!   `Cookie` / `Set-Cookie` fields as they leave the proxy.
//! - [`body`]: buffered connections and the forwarding of one body (copy, chunked
//!   decode/encode, or `splice(2)` for long bodies of known length).
//! - [`session`]: one client connection, request after request: routing, reuse and
//!   retries, and the keep-alive decisions of both sides.
//! - [`pool`]: the shard's idle server connections, shared by all its clients, watched
//!   while idle, closed with a FIN.
//!
//! The first four are sans-IO and unit-tested on bytes; the session is tested through
//! real sockets (`tests/http.rs`).

pub mod body;
pub mod chunked;
pub mod cookie;
pub mod head;
pub mod pool;
pub mod rewrite;
pub mod session;

pub use session::serve;
