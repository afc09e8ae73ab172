//! Raw syscalls of the zero-copy path: pipes, `splice(2)`, one-byte and short moves,
//! `O_NONBLOCK`, an immediate ACK (`TCP_QUICKACK`); and the per-shard [`RelayBuffers`]
//! that pools the pipes.
//!
//! A leaf module: every `unsafe` block of the L4 path is here, each with its argument.
//! Functions return `io::Result` with `WouldBlock` for `EAGAIN`; none of them blocks,
//! provided the sockets were made non-blocking with [`set_nonblocking`] first.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Capacity asked of each relay pipe (`F_SETPIPE_SZ`), and so the most one `splice` call
/// moves: the default `fs.pipe-max-size`. Larger than the 64 KiB default: fewer `splice`
/// calls and fewer wake-ups of the receiver per GiB. Measured with `wrk -c8` and 1 MiB
/// responses in tcp mode (`perf/compare.sh` pinning): 256 KiB pipes 1 250–1 300 req/s at
/// 440–457 µs of proxy CPU per MiB, 1 MiB pipes 1 455–1 550 req/s at 366–408 µs, 4 MiB
/// pipes 1 170–1 220 req/s. Pages are only allocated while bytes sit in the pipe.
pub const PIPE_BYTES: usize = 1024 * 1024;

/// What an unprivileged process asks instead. The kernel charges a user's pipes by
/// capacity against `fs.pipe-user-pages-soft` (64 MiB by default, for all of the user's
/// processes), and a user over it gets 8 KiB pipes: 1 MiB pipes would exhaust it at 32
/// tunnels, 256 KiB ones at 128 (and the shard's cache keeps pipes charged). A process
/// with `CAP_SYS_RESOURCE` or `CAP_SYS_ADMIN` (root) is not charged.
pub const PIPE_BYTES_UNPRIVILEGED: usize = 256 * 1024;

/// The capacity this process asks of its pipes: decided once from its capabilities, and
/// lowered to [`PIPE_BYTES_UNPRIVILEGED`] for good the first time the kernel refuses it
/// (a process that looks privileged but is charged after all: capabilities inside a user
/// namespace, as in rootless containers, do not exempt it).
pub fn pipe_bytes() -> usize {
    use std::sync::atomic::Ordering;
    match PIPE_TARGET.load(Ordering::Relaxed) {
        0 => {
            let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
            let bytes = if uncharged_for_pipes(&status) {
                PIPE_BYTES
            } else {
                PIPE_BYTES_UNPRIVILEGED
            };
            PIPE_TARGET.store(bytes, Ordering::Relaxed);
            bytes
        }
        bytes => bytes,
    }
}

static PIPE_TARGET: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Whether `/proc/self/status` text shows `CAP_SYS_RESOURCE` (24) or `CAP_SYS_ADMIN` (21)
/// in the effective set: the pipe limits do not apply.
fn uncharged_for_pipes(status: &str) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 24 | 1 << 21) != 0)
}

/// Most pipes a shard keeps for reuse (two per tunnel; each idle pipe holds two
/// descriptors and no data pages).
pub const PIPE_POOL_MAX: usize = 512;

/// A pipe used as the in-kernel buffer of one relay direction.
#[derive(Debug)]
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    capacity: usize,
}

/// What a shard's relays borrow instead of allocating per tunnel: spare, empty pipes
/// (creating and closing two pipes per tunnel costs six syscalls; only pipes known to be
/// empty come back), spare buffers of the copy engine, and one read buffer shared by
/// every relay of the shard.
#[derive(Debug, Default)]
pub struct RelayBuffers {
    spare: std::cell::RefCell<Vec<Pipe>>,
    spare_copy: std::cell::RefCell<Vec<Box<[u8]>>>,
    /// One read buffer for every relay of the shard: a relay poll reads into it and sends
    /// or pipes every byte before it returns, so nothing stays in it between polls.
    scratch: std::cell::RefCell<Vec<u8>>,
}

/// Size of the shard's shared read buffer (the splice engine's small-message path).
pub const SCRATCH_BYTES: usize = 16 * 1024;

impl RelayBuffers {
    /// The shard's scratch buffer (allocated on first use). Hold it for one poll only.
    pub fn scratch(&self) -> std::cell::RefMut<'_, Vec<u8>> {
        let mut s = self.scratch.borrow_mut();
        if s.is_empty() {
            s.resize(SCRATCH_BYTES, 0);
        }
        s
    }

    pub fn get(&self) -> io::Result<Pipe> {
        match self.spare.borrow_mut().pop() {
            Some(p) => Ok(p),
            None => Pipe::new(),
        }
    }

    /// Returns an empty pipe for reuse (dropped, and so closed, past the bound).
    pub fn put(&self, pipe: Pipe) {
        let mut spare = self.spare.borrow_mut();
        if spare.len() < PIPE_POOL_MAX {
            spare.push(pipe);
        }
    }

    /// A buffer of `len` bytes for the copy engine (its contents are stale).
    pub fn copy_buffer(&self, len: usize) -> Box<[u8]> {
        match self.spare_copy.borrow_mut().pop() {
            Some(b) if b.len() == len => b,
            _ => vec![0; len].into_boxed_slice(),
        }
    }

    /// Returns a copy engine's buffer for reuse (dropped past the bound).
    pub fn put_copy_buffer(&self, buf: Box<[u8]>) {
        let mut spare = self.spare_copy.borrow_mut();
        if spare.len() < PIPE_POOL_MAX {
            spare.push(buf);
        }
    }
}

impl Pipe {
    pub fn new() -> io::Result<Pipe> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` is a valid array of two c_int that pipe2 fills on success.
        let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let ask = |bytes: usize| {
            // SAFETY: fcntl on a descriptor we own; no memory is passed.
            let n =
                unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, bytes as libc::c_int) };
            if n > 0 {
                Ok(n)
            } else {
                Err(io::Error::last_os_error())
            }
        };
        let wanted = pipe_bytes();
        let size = match ask(wanted) {
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(libc::EPERM) && wanted > PIPE_BYTES_UNPRIVILEGED => {
                PIPE_TARGET.store(
                    PIPE_BYTES_UNPRIVILEGED,
                    std::sync::atomic::Ordering::Relaxed,
                );
                ask(PIPE_BYTES_UNPRIVILEGED).unwrap_or(0)
            }
            Err(_) => 0,
        };
        // Failure is harmless: the pipe keeps the size the kernel gave it.
        let size = if size > 0 {
            size
        } else {
            // SAFETY: fcntl on a descriptor we own; no memory is passed.
            unsafe { libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ) }
        };
        let capacity = if size > 0 { size as usize } else { 4096 };
        Ok(Pipe {
            read,
            write,
            capacity,
        })
    }

    /// Bytes the pipe holds at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Moves up to `len` bytes from socket `from` into the pipe. `Ok(0)` is end of stream.
    pub fn fill_from(&self, from: RawFd, len: usize) -> io::Result<usize> {
        splice(from, self.write.as_raw_fd(), len)
    }

    /// Moves up to `len` bytes from the pipe into socket `to`.
    pub fn drain_into(&self, to: RawFd, len: usize) -> io::Result<usize> {
        splice(self.read.as_raw_fd(), to, len)
    }

    /// Takes one byte out of the pipe (to push it through an awaitable write).
    pub fn take_byte(&self) -> io::Result<u8> {
        let mut b = 0u8;
        // SAFETY: reads at most one byte into a valid, writable one-byte buffer.
        let r = unsafe { libc::read(self.read.as_raw_fd(), (&mut b as *mut u8).cast(), 1) };
        match r {
            1 => Ok(b),
            0 => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "pipe unexpectedly empty",
            )),
            _ => Err(io::Error::last_os_error()),
        }
    }

    /// Puts `bytes` into the (empty) pipe; they must fit its capacity.
    pub fn put_all(&self, bytes: &[u8]) -> io::Result<()> {
        // SAFETY: writes from a valid, initialised buffer of `bytes.len()` bytes.
        let r = unsafe { libc::write(self.write.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
        match r {
            n if n >= 0 && n as usize == bytes.len() => Ok(()),
            n if n >= 0 => Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "pipe took a partial write",
            )),
            _ => Err(io::Error::last_os_error()),
        }
    }
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: splice takes two descriptors and null offsets (both are pipes or sockets);
    // it does not touch our memory. An invalid descriptor yields EBADF, not UB.
    let r = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Asks the kernel to acknowledge what `fd` received at once rather than on its
/// delayed-ACK timer (`TCP_QUICKACK`; the kernel may go back to delaying later).
pub fn ack_now(fd: RawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads one int we own for the call.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Sets `O_NONBLOCK` on a socket (glommio's sockets are blocking; `splice` needs this).
pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: FIONBIO on a descriptor we hold reads one int we own for the call. One
    // system call (fcntl would need F_GETFL then F_SETFL).
    if unsafe { libc::ioctl(fd, libc::FIONBIO, &on) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `shutdown(fd, SHUT_WR)`: sends FIN after the bytes already queued. A socket the peer has
/// already torn down (`ENOTCONN`) has nothing left to tell and is not an error.
pub fn shutdown_write(fd: RawFd) -> io::Result<()> {
    // SAFETY: shutdown on a descriptor we hold; no memory is passed.
    let r = unsafe { libc::shutdown(fd, libc::SHUT_WR) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ENOTCONN) {
            return Err(e);
        }
    }
    Ok(())
}

/// One non-blocking `send`; returns how much the socket took (0 if it would block).
pub fn send_now(fd: RawFd, bytes: &[u8]) -> io::Result<usize> {
    // SAFETY: sends from a valid, initialised buffer; MSG_NOSIGNAL turns a closed peer
    // into EPIPE instead of a signal.
    let r = unsafe {
        libc::send(
            fd,
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if r >= 0 {
        return Ok(r as usize);
    }
    let e = io::Error::last_os_error();
    if e.kind() == io::ErrorKind::WouldBlock {
        Ok(0)
    } else {
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_decide_the_pipe_size() {
        let root = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert!(uncharged_for_pipes(root));
        let resource_only = "CapEff:\t0000000001000000\n";
        assert!(uncharged_for_pipes(resource_only));
        let user = "CapPrm:\t000001ffffffffff\nCapEff:\t0000000000000000\n";
        assert!(!uncharged_for_pipes(user));
        assert!(!uncharged_for_pipes("no such line"));
    }

    #[test]
    fn a_pipe_gets_the_size_asked_or_says_what_it_has() {
        let pipe = Pipe::new().unwrap();
        // SAFETY: F_GETPIPE_SZ on a descriptor the pipe owns.
        let real = unsafe { libc::fcntl(pipe.write.as_raw_fd(), libc::F_GETPIPE_SZ) };
        assert_eq!(pipe.capacity(), real as usize);
        assert!(pipe.capacity() <= PIPE_BYTES);
        // Unless the user is over `fs.pipe-user-pages-soft`, the size asked is granted.
        assert!(pipe.capacity() >= 64 * 1024, "{}", pipe.capacity());
    }
}
