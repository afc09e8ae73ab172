//! The command line: `ringproxy [-c FILE]`, `check`, `origin`, the demo, and the commands
//! that talk to a running proxy through its admin socket: `status`, `stats`, `admin`.
//!
//! Owns argument parsing (clap), exit codes and what the user reads on the terminal.
//! Exit codes: 0 after a clean stop or a valid `check`; 2 for a refused configuration;
//! 1 for any other startup failure. Signals: the first SIGINT/SIGTERM drains
//! (`global.grace`), a second one exits at once; SIGHUP reloads the configuration file
//! (as `ringproxy reload` does through the admin socket).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::Config;
use crate::origin::{self, OriginOptions};
use crate::runtime::{self, signals};

/// The demo configuration, also shipped as `configs/demo.toml`.
pub const DEMO_CONFIG: &str = include_str!("../configs/demo.toml");
/// Where the demo's two built-in origins listen.
pub const DEMO_ORIGINS: [&str; 2] = ["127.0.0.1:9001", "127.0.0.1:9002"];

#[derive(Debug, Parser)]
#[command(
    name = "ringproxy",
    version,
    about = "A thread-per-core load balancer and reverse proxy on io_uring",
    long_about = "A thread-per-core load balancer and reverse proxy on io_uring.\n\n\
        With no arguments, runs a demo: two built-in origins on 127.0.0.1:9001 and :9002 \
        and the proxy on 127.0.0.1:8080 in front of them.\n\
        With --config FILE, runs the proxy that FILE describes."
)]
pub struct Cli {
    /// Run the proxy with this configuration file (TOML).
    #[arg(short = 'c', long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a configuration file and print a summary (exit 0), or FILE:LINE: key: reason (exit 2).
    Check {
        #[arg(short = 'c', long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Run the built-in HTTP/1.1 origin server (keep-alive; fixed body; GET /bytes/N answers N bytes).
    Origin {
        /// Address to listen on, e.g. 127.0.0.1:9001.
        #[arg(long, value_name = "ADDR")]
        listen: SocketAddr,
        /// Size of the fixed body (default: the 13 bytes "Hello, world!").
        #[arg(long, value_name = "N")]
        body_bytes: Option<usize>,
        /// Executor threads (unpinned).
        #[arg(long, default_value_t = 1)]
        shards: usize,
    },
    /// Print the state of every server of a running proxy, one line each (`web/s1 UP 3/3`),
    /// through its admin socket.
    Status {
        #[command(flatten)]
        target: AdminTarget,
        /// Only this backend's servers.
        #[arg(long, value_name = "NAME")]
        backend: Option<String>,
    },
    /// Print the statistics table of a running proxy (frontends, servers, backends: sessions,
    /// rates, requests, responses, errors, bytes, recent p50/p99) through its admin socket.
    Stats {
        #[command(flatten)]
        target: AdminTarget,
        /// Refresh the table every second until interrupted.
        #[arg(short = 'w', long)]
        watch: bool,
        /// With --watch: stop after this many tables.
        #[arg(long, value_name = "N", requires = "watch")]
        count: Option<u64>,
    },
    /// Make a running proxy read its configuration file again and apply it (as SIGHUP does): new connections use the new configuration, established ones finish on the old one; an invalid file is refused with the reason (exit 2) and the old configuration keeps running.
    Reload {
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Send one runtime API command to a running proxy (e.g. `set server web/s1 state maint`; `help` lists them).
    Admin {
        #[command(flatten)]
        target: AdminTarget,
        /// The command, as words.
        #[arg(required = true, trailing_var_arg = true)]
        command: Vec<String>,
    },
}

/// Which running proxy an admin command talks to: `--socket`, else the `[admin] socket`
/// of `--config`, else /run/ringproxy.sock.
#[derive(Debug, Args)]
pub struct AdminTarget {
    /// The running proxy's configuration (its `[admin] socket` is used).
    #[arg(short = 'c', long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The admin socket itself (default /run/ringproxy.sock).
    #[arg(short = 's', long, value_name = "PATH")]
    socket: Option<PathBuf>,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match (cli.command, cli.config) {
        (Some(Command::Check { config }), _) => check(&config),
        (Some(Command::Status { target, backend }), _) => {
            let command = match backend {
                Some(b) => format!("show servers state {b}"),
                None => "show servers state".to_string(),
            };
            admin_command(&target, &command)
        }
        (Some(Command::Admin { target, command }), _) => admin_command(&target, &command.join(" ")),
        (Some(Command::Reload { target }), _) => reload(&target),
        (
            Some(Command::Stats {
                target,
                watch,
                count,
            }),
            _,
        ) => stats(&target, watch, count),
        (
            Some(Command::Origin {
                listen,
                body_bytes,
                shards,
            }),
            _,
        ) => run_origin(OriginOptions {
            listen,
            body_bytes,
            shards,
        }),
        (None, Some(path)) => match Config::load(&path) {
            Ok(config) => run_proxy(config, Some(&path), None),
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        (None, None) => run_demo(),
    }
}

fn check(path: &Path) -> ExitCode {
    match Config::load(path) {
        Ok(config) => {
            print!("{}", config.summary());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

/// The admin socket `target` names. Exit 2 when the configuration is refused or names
/// no socket.
fn admin_socket(target: &AdminTarget) -> Result<PathBuf, ExitCode> {
    match (target.socket.as_deref(), target.config.as_deref()) {
        (Some(s), _) => Ok(s.to_path_buf()),
        (None, Some(c)) => match Config::load(c) {
            Ok(cfg) => cfg.admin.socket.ok_or_else(|| {
                eprintln!(
                    "ringproxy: {} sets no [admin] socket: add `[admin] socket = \"{DEFAULT_SOCKET}\"`, or give --socket",
                    c.display()
                );
                ExitCode::from(2)
            }),
            Err(e) => {
                eprintln!("{e}");
                Err(ExitCode::from(2))
            }
        },
        (None, None) => Ok(PathBuf::from(DEFAULT_SOCKET)),
    }
}

/// Where `ringproxy stats` looks for the admin socket when told nothing.
pub const DEFAULT_SOCKET: &str = "/run/ringproxy.sock";

fn ask(path: &Path, command: &str) -> Result<String, ExitCode> {
    crate::admin::request(path, command).map_err(|e| {
        eprintln!(
            "ringproxy: cannot reach the admin socket {}: {e} (is the proxy running with this [admin] socket?)",
            path.display()
        );
        ExitCode::FAILURE
    })
}

/// Sends `command` to the admin socket `target` names and prints the answer. Exit 1 when
/// the proxy cannot be reached, 2 when the configuration is refused or names no socket.
fn admin_command(target: &AdminTarget, command: &str) -> ExitCode {
    let answer = admin_socket(target).and_then(|path| ask(&path, command));
    match answer {
        Ok(answer) => {
            print!("{answer}");
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// `ringproxy reload`: exit 0 when the proxy reloaded, 2 when it refused the file, 1 when
/// it could not be asked or did not answer.
fn reload(target: &AdminTarget) -> ExitCode {
    let answer = admin_socket(target).and_then(|path| ask(&path, "reload"));
    match answer {
        Ok(answer) if answer.starts_with("reload ") => {
            print!("{answer}");
            ExitCode::SUCCESS
        }
        Ok(answer) if answer.starts_with("Reload refused") => {
            eprint!("{answer}");
            ExitCode::from(2)
        }
        Ok(answer) => {
            eprint!("{answer}");
            ExitCode::FAILURE
        }
        Err(code) => code,
    }
}

/// `ringproxy stats`: the table once, or every second with `--watch`.
fn stats(target: &AdminTarget, watch: bool, count: Option<u64>) -> ExitCode {
    let path = match admin_socket(target) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let mut shown = 0u64;
    loop {
        let table = match ask(&path, "show table") {
            Ok(t) => t,
            Err(code) => return code,
        };
        if watch {
            // Home and clear, then the table: a terminal redraws in place.
            print!("\x1b[H\x1b[2J");
        }
        print!("{table}");
        let _ = std::io::Write::flush(&mut std::io::stdout());
        shown += 1;
        if !watch || count.is_some_and(|n| shown >= n) {
            return ExitCode::SUCCESS;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// Blocks the stop signals before any thread exists, so every thread inherits the mask.
fn prepare_signals() -> bool {
    if let Err(e) = signals::block_stop_signals() {
        eprintln!("ringproxy: cannot block SIGINT/SIGTERM: {e}");
        return false;
    }
    true
}

/// After the first stop signal, a second one ends the process at once.
fn second_signal_exits() {
    std::thread::spawn(|| {
        if signals::wait_stop_signal().is_ok() {
            eprintln!("ringproxy: second stop signal: exiting now");
            std::process::exit(1);
        }
    });
}

/// Runs the proxy until a stop signal; `source` is the file a reload reads again (`None`:
/// the demo's built-in configuration, which does not reload).
fn run_proxy(config: Config, source: Option<&Path>, banner: Option<String>) -> ExitCode {
    if !prepare_signals() {
        return ExitCode::FAILURE;
    }
    let frontends: Vec<String> = config.frontends.iter().map(|f| f.name.clone()).collect();
    let mut running = match runtime::start(config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ringproxy: {e}");
            return ExitCode::FAILURE;
        }
    };
    for (i, name) in frontends.iter().enumerate() {
        let addrs: Vec<String> = running
            .frontend_addrs(i)
            .iter()
            .map(|a| a.to_string())
            .collect();
        eprintln!(
            "ringproxy: frontend {name} listening on {} ({} shard(s))",
            addrs.join(", "),
            running.shards()
        );
    }
    if let Some(b) = banner {
        eprintln!("{b}");
    }
    loop {
        let signal = signals::wait_signal(SIGNAL_POLL);
        let requests = running.reload_requests();
        match signal {
            Ok(Some(libc::SIGHUP)) => {}
            Ok(Some(sig)) => {
                eprintln!("ringproxy: signal {sig}: draining (second signal exits at once)");
                for r in requests {
                    let _ = r.reply.send(Err("the proxy is stopping".into()));
                }
                break;
            }
            Ok(None) if !requests.is_empty() => {}
            Ok(None) => continue,
            Err(e) => {
                eprintln!("ringproxy: waiting for signals failed: {e}; stopping");
                break;
            }
        }
        let outcome = reload_from(&mut running, source);
        match &outcome {
            Ok(done) => eprintln!("ringproxy: {done}"),
            Err(why) => {
                eprintln!("ringproxy: reload refused, the running configuration stays: {why}")
            }
        }
        for r in requests {
            let _ = r.reply.send(outcome.clone());
        }
    }
    second_signal_exits();
    running.shutdown();
    eprintln!("ringproxy: stopped");
    ExitCode::SUCCESS
}

/// How often the main thread looks for reload requests from the runtime API while no
/// signal comes.
const SIGNAL_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// Reads `source` again and applies it; the answer for the log and the runtime API.
fn reload_from(running: &mut runtime::Running, source: Option<&Path>) -> Result<String, String> {
    let path =
        source.ok_or("the demo runs a built-in configuration: there is no file to reload")?;
    let config = Config::load(path).map_err(|e| e.to_string())?;
    running
        .reload(config)
        .map(|done| done.to_string())
        .map_err(|e| e.to_string())
}

fn run_origin(options: OriginOptions) -> ExitCode {
    if !prepare_signals() {
        return ExitCode::FAILURE;
    }
    let origin = match origin::start(&options) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("ringproxy origin: cannot listen on {}: {e}", options.listen);
            return ExitCode::FAILURE;
        }
    };
    eprintln!("ringproxy origin: listening on {}", origin.addr());
    let _ = signals::wait_stop_signal();
    origin.stop();
    origin.wait();
    ExitCode::SUCCESS
}

fn run_demo() -> ExitCode {
    if !prepare_signals() {
        return ExitCode::FAILURE;
    }
    let config = match Config::parse(DEMO_CONFIG, Path::new("configs/demo.toml")) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ringproxy: built-in demo configuration refused: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut origins = Vec::new();
    for addr in DEMO_ORIGINS {
        let listen: SocketAddr = addr.parse().expect("constant address");
        match origin::start(&OriginOptions {
            listen,
            body_bytes: None,
            shards: 1,
        }) {
            Ok(o) => {
                eprintln!("ringproxy demo: origin listening on {}", o.addr());
                origins.push(o);
            }
            Err(e) => {
                eprintln!("ringproxy demo: cannot start the origin on {addr}: {e} (is another demo running?)");
                return ExitCode::FAILURE;
            }
        }
    }
    let proxy = config.frontends[0].binds[0];
    let banner = format!(
        "ringproxy demo: try\n  curl -v http://{proxy}/\n  wrk -t1 -c64 -d5s http://{proxy}/\n\
         (http mode, round robin over {} and {}; Ctrl-C stops)",
        DEMO_ORIGINS[0], DEMO_ORIGINS[1]
    );
    let code = run_proxy(config, None, Some(banner));
    for o in origins {
        o.stop();
        o.wait();
    }
    code
}
