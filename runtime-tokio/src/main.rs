//! The `timed` validator node. Not built yet (issue 4): it exits with an error rather than pretend.
fn main() {
    eprintln!(
        "timed: the validator node is not implemented yet (see issue 4); use the simulator or the core tests"
    );
    std::process::exit(2);
}
