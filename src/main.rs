//! The `ringproxy` binary: everything is in the library (`ringproxy::cli`).

fn main() -> std::process::ExitCode {
    ringproxy::cli::main()
}
