//! What the configuration tests share: parsing as `t.toml`, and the check that a text is
//! refused at a given line and key with the documented `FILE:LINE: key: reason` shape.
#![allow(dead_code)]

use std::path::Path;

use ringproxy::config::{Config, ConfigError};

pub fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("t.toml"))
}

#[track_caller]
pub fn accepted(text: &str) -> Config {
    match parse(text) {
        Ok(c) => c,
        Err(e) => panic!("refused: {e}\n--- text ---\n{text}"),
    }
}

#[track_caller]
pub fn refused(text: &str) -> ConfigError {
    match parse(text) {
        Ok(_) => panic!("accepted, should be refused:\n{text}"),
        Err(e) => e,
    }
}

/// Asserts that `text` is refused at `line` under `key`, and that the message has the
/// documented `FILE:LINE: key: reason` shape on one line. Returns the error for further
/// checks.
#[track_caller]
pub fn refused_at(text: &str, line: usize, key: &str) -> ConfigError {
    let e = refused(text);
    assert_eq!(e.key, key, "key of {e}");
    assert_eq!(e.line, line, "line of {e}");
    assert_eq!(e.file, Path::new("t.toml"));
    let prefix = format!("t.toml:{line}: {key}: ");
    let shown = e.to_string();
    assert!(
        shown.starts_with(&prefix),
        "{shown:?} does not start with {prefix:?}"
    );
    assert!(shown.len() > prefix.len(), "empty reason: {shown:?}");
    assert!(!shown.contains('\n'), "message spans lines: {shown:?}");
    e
}
