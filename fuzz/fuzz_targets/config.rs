//! Fuzz target `config`: the configuration loader (`config::Config::parse`) on any text.
//!
//! Property: whatever the text (UTF-8, as a file read with `read_to_string` is),
//! `Config::parse` never panics: it returns a validated configuration or a refusal that
//! names a line within the text; and it is deterministic (the same text, the same
//! answer).
//!
//! The loader is not pure: it resolves host names and reads the files a configuration
//! names (TLS certificates, `hosts_file`). `fuzz/run.sh` runs this target without a
//! network (`unshare -rn`, when it may) so that a name fails to resolve at once, and
//! inputs naming a device or kernel file (`/dev`, `/proc`, `/sys`, or a `\u` escape
//! that could spell one) are skipped, so that reading a file always ends.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use ringproxy::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if ["/dev", "/proc", "/sys", "\\u", "\\U"]
        .iter()
        .any(|p| text.contains(p))
    {
        return;
    }
    let source = Path::new("fuzz.toml");
    let first = Config::parse(text, source);
    if let Err(e) = &first {
        let lines = text.lines().count().max(1);
        assert!(
            e.line <= lines + 1,
            "{e}: line past the end ({lines} lines)"
        );
        // The one-line form never breaks a line.
        assert!(!e.to_string().contains('\n'), "{e}");
    }
    let second = Config::parse(text, source);
    assert_eq!(
        first.as_ref().err(),
        second.as_ref().err(),
        "two parses of the same text disagree"
    );
});
