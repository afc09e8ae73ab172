//! SIGINT/SIGTERM (stop) and SIGHUP (reload) for the binary: blocked in every thread,
//! taken synchronously by one.
//!
//! [`block_stop_signals`] must run on the main thread before any other thread starts, so
//! every thread inherits the blocked mask and no shard is ever interrupted; the main thread
//! then waits in [`wait_stop_signal`]. No async-signal-safety concerns arise because no
//! handler runs at all.

use std::io;

fn set_of(signals: &[i32]) -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a sigset_t we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

fn stop_set() -> libc::sigset_t {
    set_of(&[libc::SIGINT, libc::SIGTERM])
}

/// Blocks SIGINT, SIGTERM and SIGHUP in the calling thread (and the threads it starts
/// later). A blocked SIGHUP nobody waits for stays pending: it never ends the process.
pub fn block_stop_signals() -> io::Result<()> {
    let set = set_of(&[libc::SIGINT, libc::SIGTERM, libc::SIGHUP]);
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

/// Waits up to `timeout` for SIGINT, SIGTERM or SIGHUP; `None` when none came.
pub fn wait_signal(timeout: std::time::Duration) -> io::Result<Option<i32>> {
    let set = set_of(&[libc::SIGINT, libc::SIGTERM, libc::SIGHUP]);
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: sigtimedwait reads a valid set and timespec; no siginfo is requested.
    let r = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
    if r >= 0 {
        return Ok(Some(r));
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(None),
        _ => Err(e),
    }
}
