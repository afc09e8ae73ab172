//! Configuration of TLS to servers (`tls`, `check_tls`) and of TLS frontends: every
//! refusal that needs no certificate file, with its line and key, and the values a valid
//! table yields (inheritance from the backend, a server's table replacing it whole,
//! `enabled = false`). Certificate files and the handshakes are `tests/tls.rs`'s.
//!
//! As in `tests/config.rs`, test texts start on line 1 of a raw string, so the line
//! numbers asserted can be read off the text itself.

mod config_common;
use config_common::*;

use ringproxy::config::{default, Sni};

/// An http backend "be" with `lines` on line 4, then two servers: `s1` (named on line 7)
/// with `server1` lines from line 9, and `s2` with none.
fn backend(lines: &str, server1: &str) -> String {
    format!(
        "[[backend]]\nname = \"be\"\nmode = \"http\"\n{lines}\n\n\
         [[backend.server]]\nname = \"s1\"\naddress = \"127.0.0.1:7000\"\n{server1}\n\n\
         [[backend.server]]\nname = \"s2\"\naddress = \"127.0.0.1:7001\"\n"
    )
}

#[test]
fn backend_tls_is_inherited_and_a_server_table_replaces_it() {
    let c = accepted(&backend(
        r#"tls = { verify = "none", sni = "App.Example" }"#,
        r#"tls = { verify = "none", sni_from_host = true }"#,
    ));
    let be = &c.backends[0];
    let s1 = be.servers[0].tls.as_deref().expect("s1 has tls");
    let s2 = be.servers[1].tls.as_deref().expect("s2 inherits tls");
    assert_eq!(s1.sni, Sni::FromHost);
    assert!(
        matches!(&s2.sni, Sni::Fixed(n) if n.to_str() == "app.example"),
        "{:?}",
        s2.sni
    );
    assert!(s1.roots.is_none() && s2.roots.is_none());
    assert!(s2.resumption, "resumption is on by default");
    assert!(be.sni_from_host, "one server takes its SNI from the host");
    assert!(!be.servers[0].check_tls);
}

#[test]
fn enabled_false_turns_tls_off_for_one_server() {
    let c = accepted(&backend(
        r#"tls = { verify = "none" }"#,
        "tls = { enabled = false }",
    ));
    let be = &c.backends[0];
    assert!(be.servers[0].tls.is_none());
    let s2 = be.servers[1].tls.as_deref().expect("s2 inherits tls");
    assert_eq!(s2.sni, Sni::None);
    assert!(!be.sni_from_host);
}

#[test]
fn no_tls_without_a_table() {
    let c = accepted(&backend("", ""));
    assert!(c.backends[0].servers.iter().all(|s| s.tls.is_none()));
}

#[test]
fn sni_and_sni_from_host_together_are_refused() {
    let text = backend(
        r#"tls = { verify = "none", sni = "a.example", sni_from_host = true }"#,
        "",
    );
    refused_at(&text, 4, "backend.tls.sni");
}

#[test]
fn sni_must_be_a_dns_name() {
    let text = backend("", r#"tls = { verify = "none", sni = "not a name" }"#);
    let e = refused_at(&text, 9, "backend.server.tls.sni");
    assert!(e.reason.contains("not a DNS name"), "{e}");
}

#[test]
fn sni_from_host_needs_http_mode() {
    let text = "[[backend]]\nname = \"be\"\nmode = \"tcp\"\n\
                tls = { verify = \"none\", sni_from_host = true }\n\n\
                [[backend.server]]\nname = \"s1\"\naddress = \"127.0.0.1:7000\"\n";
    let e = refused_at(text, 4, "backend.tls.sni_from_host");
    assert!(e.reason.contains("http"), "{e}");
}

#[test]
fn unknown_verify_value_is_refused() {
    let text = backend(r#"tls = { verify = "maybe" }"#, "");
    let e = refused_at(&text, 4, "backend.tls.verify");
    assert!(e.reason.contains("\"required\" or \"none\""), "{e}");
}

#[test]
fn a_ca_left_with_verify_none_is_not_read() {
    let c = accepted(&backend(
        r#"tls = { verify = "none", ca = "/nonexistent/ca.pem" }"#,
        "",
    ));
    assert!(c.backends[0].servers[0]
        .tls
        .as_ref()
        .unwrap()
        .roots
        .is_none());
}

#[test]
fn a_missing_ca_file_is_refused_with_its_path() {
    let text = backend(r#"tls = { ca = "/nonexistent/ca.pem" }"#, "");
    let e = refused_at(&text, 4, "backend.tls.ca");
    assert!(e.reason.contains("/nonexistent/ca.pem"), "{e}");
}

#[test]
fn client_cert_and_key_go_together() {
    let text = backend(r#"tls = { verify = "none", client_cert = "c.pem" }"#, "");
    refused_at(&text, 4, "backend.tls.client_key");
    let text = backend(r#"tls = { verify = "none", client_key = "c.key" }"#, "");
    refused_at(&text, 4, "backend.tls.client_cert");
}

#[test]
fn check_tls_needs_tls() {
    let text = backend("check_tls = true", "");
    let e = refused_at(&text, 7, "backend.server.check_tls");
    assert!(e.reason.contains("no tls"), "{e}");
    let c = accepted(&backend(
        "check_tls = true\ntls = { verify = \"none\" }",
        "",
    ));
    assert!(c.backends[0].servers.iter().all(|s| s.check_tls));
}

#[test]
fn unknown_tls_key_is_refused() {
    let text = backend(r#"tls = { verify = "none", sni_form_host = true }"#, "");
    let e = refused(&text);
    assert!(e.to_string().contains("sni_form_host"), "{e}");
}

#[test]
fn frontend_tls_needs_certificates() {
    let text = "[[frontend]]\nname = \"f\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"be\"\n\
                [frontend.tls]\ncertificates = []\n\n\
                [[backend]]\nname = \"be\"\n[[backend.server]]\nname = \"s\"\naddress = \"127.0.0.1:7000\"\n";
    refused_at(text, 6, "frontend.tls.certificates");
}

#[test]
fn frontend_certificate_files_must_exist() {
    let text = "[[frontend]]\nname = \"f\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"be\"\n\
                [frontend.tls]\ncertificates = [{ cert = \"/nonexistent/a.pem\", key = \"/nonexistent/a.key\" }]\n\n\
                [[backend]]\nname = \"be\"\n[[backend.server]]\nname = \"s\"\naddress = \"127.0.0.1:7000\"\n";
    let e = refused_at(text, 6, "frontend.tls.certificates");
    assert!(e.reason.contains("/nonexistent/a.pem"), "{e}");
    assert!(e.reason.contains("cannot read"), "{e}");
}

#[test]
fn timeout_client_handshake_defaults_and_is_inherited() {
    let front = |extra: &str| {
        format!(
            "[defaults]\n{extra}\n[[frontend]]\nname = \"f\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"be\"\n\n\
             [[backend]]\nname = \"be\"\n[[backend.server]]\nname = \"s\"\naddress = \"127.0.0.1:7000\"\n"
        )
    };
    let c = accepted(&front(""));
    assert_eq!(
        c.frontends[0].timeout_client_handshake,
        default::TIMEOUT_CLIENT_HANDSHAKE
    );
    let c = accepted(&front("timeout_client_handshake = \"3s\""));
    assert_eq!(
        c.frontends[0].timeout_client_handshake,
        std::time::Duration::from_secs(3)
    );
    refused_at(
        &front("timeout_client_handshake = \"soon\""),
        2,
        "defaults.timeout_client_handshake",
    );
}
