//! Running the `timed` binary built for these tests and reading what it printed.

use std::process::{Command, Output};

/// `timed ARGS…`, to completion.
pub fn timed(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_timed"))
        .args(args)
        .output()
        .unwrap()
}

/// Its standard output as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Its standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
