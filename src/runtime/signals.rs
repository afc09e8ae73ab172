//! SIGINT/SIGTERM for the binary: blocked in every thread, taken synchronously by one.
//!
//! [`block_stop_signals`] must run on the main thread before any other thread starts, so
//! every thread inherits the blocked mask and no shard is ever interrupted; the main thread
//! then waits in [`wait_stop_signal`]. No async-signal-safety concerns arise because no
//! handler runs at all.

use std::io;

fn stop_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a sigset_t we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        set
    }
}

/// Blocks SIGINT and SIGTERM in the calling thread (and the threads it starts later).
pub fn block_stop_signals() -> io::Result<()> {
    let set = stop_set();
    // SAFETY: pthread_sigmask reads a valid set; the old mask is not requested.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// Waits until SIGINT or SIGTERM arrives; returns its number.
pub fn wait_stop_signal() -> io::Result<i32> {
    let set = stop_set();
    let mut sig: libc::c_int = 0;
    // SAFETY: sigwait reads a valid set and writes the signal number into `sig`.
    let r = unsafe { libc::sigwait(&set, &mut sig) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(sig)
}
