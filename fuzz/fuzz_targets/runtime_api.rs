//! Fuzz target `runtime_api`: the runtime API's command parser (`admin::command`), on
//! any bytes a client could send to the admin socket.
//!
//! Property: for any bytes, taking the line (`command::line`), reading it as the control
//! thread does (lossy UTF-8), cutting it into commands (`command::split`) and parsing each
//! (`command::parse`) never panics; the line is at most `LINE_BYTES_MAX` bytes and holds
//! no LF; every command is non-empty and trimmed; a parsed weight is within its bounds;
//! the targets and backend names a command carries are words of the command; and an
//! error's answer is one line.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringproxy::admin::command::{self, Command, Weight, LINE_BYTES_MAX, WEIGHT_MAX};

fuzz_target!(|data: &[u8]| {
    let line = command::line(data);
    assert!(line.len() <= LINE_BYTES_MAX && !line.contains(&b'\n'));
    let text = String::from_utf8_lossy(line);
    for one in command::split(&text) {
        assert!(!one.is_empty() && one.trim() == one && !one.contains(';'));
        let words: Vec<&str> = one.split_whitespace().collect();
        match command::parse(one) {
            Ok(parsed) => {
                let named = match parsed {
                    Command::ShowServers { backend } => backend,
                    Command::SetAdmin { target, .. } | Command::ShutdownSessions { target } => {
                        Some(target)
                    }
                    Command::SetWeight { target, weight } => {
                        match weight {
                            Some(Weight::Absolute(w)) => assert!(w <= WEIGHT_MAX),
                            Some(Weight::Percent(p)) => {
                                assert!(p <= 100);
                                assert!(Weight::Percent(p).of(WEIGHT_MAX) <= WEIGHT_MAX);
                            }
                            None => {}
                        }
                        Some(target)
                    }
                    Command::Help | Command::ShowInfo | Command::ShowStat | Command::ShowTable => {
                        None
                    }
                };
                if let Some(word) = named {
                    assert!(words.contains(&word), "{word:?} is not a word of {one:?}");
                }
            }
            Err(e) => {
                let answer = e.to_string();
                assert!(
                    answer.ends_with('\n') && answer.matches('\n').count() == 1,
                    "{answer:?}"
                );
            }
        }
    }
});
