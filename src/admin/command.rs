//! The runtime API's command language, parsed from bytes (sans-IO).
//!
//! A client sends one line; [`line`] takes it from what was read (up to the first LF,
//! at most [`LINE_BYTES_MAX`] bytes), [`split`] cuts it into commands at `;`, and
//! [`parse`] turns one command into a [`Command`] or the one-line error to answer. The
//! control thread only executes what was parsed (`super::Control::run`). Words are
//! separated by any whitespace; nothing here allocates beyond the lossy UTF-8 view of
//! the line, and nothing panics whatever the bytes (the `runtime_api` fuzz target).

use crate::upstream::health::Admin;

/// Longest command line accepted.
pub const LINE_BYTES_MAX: usize = 4096;

/// Largest weight `set weight` accepts (HAProxy's).
pub const WEIGHT_MAX: u32 = 256;

/// One command of the runtime API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    Help,
    ShowInfo,
    ShowStat,
    ShowTable,
    /// `show servers state [BACKEND]`.
    ShowServers {
        backend: Option<&'a str>,
    },
    /// `set server B/S state ready|drain|maint`, `disable server B/S`,
    /// `enable server B/S`.
    SetAdmin {
        target: &'a str,
        admin: Admin,
    },
    /// `set weight B/S N|N%`. The weight is checked after the server is found (so that
    /// an unknown server is the error told first): `None` when it is not valid.
    SetWeight {
        target: &'a str,
        weight: Option<Weight>,
    },
    /// `shutdown sessions server B/S`.
    ShutdownSessions {
        target: &'a str,
    },
    /// `reload`: read the configuration file again and apply it.
    Reload,
}

/// A weight as `set weight` gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weight {
    /// 0..=[`WEIGHT_MAX`].
    Absolute(u32),
    /// 0..=100 per cent of the configured weight.
    Percent(u32),
}

impl Weight {
    /// The weight to apply to a server configured with `configured`.
    pub fn of(self, configured: u32) -> u32 {
        match self {
            Weight::Absolute(w) => w,
            Weight::Percent(p) => (u64::from(configured) * u64::from(p) / 100) as u32,
        }
    }

    fn parse(text: &str) -> Option<Weight> {
        match text.strip_suffix('%') {
            Some(p) => p
                .parse::<u32>()
                .ok()
                .filter(|&p| p <= 100)
                .map(Weight::Percent),
            None => text
                .parse::<u32>()
                .ok()
                .filter(|&w| w <= WEIGHT_MAX)
                .map(Weight::Absolute),
        }
    }
}

/// A command that could not be parsed: the line to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandError<'a> {
    Unknown(&'a str),
    /// `set server B/S state` with another word than ready, drain or maint.
    BadState,
}

impl std::fmt::Display for CommandError<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommandError::Unknown(command) => {
                writeln!(f, "Unknown command: '{command}' (try 'help').")
            }
            CommandError::BadState => writeln!(
                f,
                "'set server <b>/<s> state' expects 'ready', 'drain' or 'maint'."
            ),
        }
    }
}

/// The command line in what a client sent: up to the first LF (excluded), at most
/// [`LINE_BYTES_MAX`] bytes.
pub fn line(received: &[u8]) -> &[u8] {
    let end = received
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(received.len());
    &received[..end.min(LINE_BYTES_MAX)]
}

/// The commands of a line: cut at `;`, trimmed, empty ones left out.
pub fn split(line: &str) -> impl Iterator<Item = &str> {
    line.trim_end_matches(['\r', '\n'])
        .split(';')
        .map(str::trim)
        .filter(|c| !c.is_empty())
}

/// Parses one command (as [`split`] gives it).
pub fn parse(command: &str) -> Result<Command<'_>, CommandError<'_>> {
    let mut words = [""; 6];
    let mut count = 0;
    for word in command.split_whitespace() {
        if count == words.len() {
            return Err(CommandError::Unknown(command));
        }
        words[count] = word;
        count += 1;
    }
    Ok(match words[..count] {
        ["help"] => Command::Help,
        ["reload"] => Command::Reload,
        ["show", "info"] => Command::ShowInfo,
        ["show", "stat"] => Command::ShowStat,
        ["show", "table"] => Command::ShowTable,
        ["show", "servers", "state"] => Command::ShowServers { backend: None },
        ["show", "servers", "state", backend] => Command::ShowServers {
            backend: Some(backend),
        },
        ["set", "weight", target, weight] => Command::SetWeight {
            target,
            weight: Weight::parse(weight),
        },
        ["set", "server", target, "state", state] => match Admin::parse(state) {
            Some(admin) => Command::SetAdmin { target, admin },
            None => return Err(CommandError::BadState),
        },
        ["disable", "server", target] => Command::SetAdmin {
            target,
            admin: Admin::Maint,
        },
        ["enable", "server", target] => Command::SetAdmin {
            target,
            admin: Admin::Ready,
        },
        ["shutdown", "sessions", "server", target] => Command::ShutdownSessions { target },
        _ => return Err(CommandError::Unknown(command)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(parse("help"), Ok(Command::Help));
        assert_eq!(parse(" reload "), Ok(Command::Reload));
        assert!(parse("reload now").is_err());
        assert_eq!(
            parse("show  servers\tstate b"),
            Ok(Command::ShowServers { backend: Some("b") })
        );
        assert_eq!(
            parse("set server b/s state drain"),
            Ok(Command::SetAdmin {
                target: "b/s",
                admin: Admin::Drain
            })
        );
        assert_eq!(
            parse("set server b/s state asleep"),
            Err(CommandError::BadState)
        );
        assert_eq!(
            parse("set weight b/s 50%"),
            Ok(Command::SetWeight {
                target: "b/s",
                weight: Some(Weight::Percent(50))
            })
        );
        assert_eq!(
            parse("set weight b/s 257"),
            Ok(Command::SetWeight {
                target: "b/s",
                weight: None
            })
        );
        assert_eq!(
            parse("set weight b/s 101%"),
            Ok(Command::SetWeight {
                target: "b/s",
                weight: None
            })
        );
        assert_eq!(
            parse("frobnicate"),
            Err(CommandError::Unknown("frobnicate"))
        );
        assert_eq!(
            parse("show servers state a b c d"),
            Err(CommandError::Unknown("show servers state a b c d"))
        );
        assert_eq!(
            CommandError::Unknown("x").to_string(),
            "Unknown command: 'x' (try 'help').\n"
        );
    }

    #[test]
    fn weights() {
        assert_eq!(Weight::Percent(50).of(3), 1);
        assert_eq!(Weight::Percent(100).of(256), 256);
        assert_eq!(Weight::Absolute(7).of(256), 7);
        assert_eq!(Weight::parse("4294967296"), None);
        assert_eq!(Weight::parse("-1"), None);
        assert_eq!(Weight::parse("%"), None);
    }

    #[test]
    fn lines() {
        assert_eq!(line(b"show info\nrest"), b"show info");
        assert_eq!(line(&[b'x'; 5000]).len(), LINE_BYTES_MAX);
        let cmds: Vec<&str> = split("a; ;b ;\r\n").collect();
        assert_eq!(cmds, ["a", "b"]);
    }
}
