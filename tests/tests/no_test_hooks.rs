//! No test-only API can reach the `timed` binary: the core declares no feature that unlocks one
//! (a feature the simulator enabled would be unified into `timed` whenever one `cargo` command
//! builds both, as `cargo test --workspace` does), and `timed`'s own view of the core has none.

use std::path::Path;
use std::process::Command;

fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace root")
}

/// `cargo tree -e features -i timed-core` with `selection`: the core's features as that
/// selection of packages builds it.
fn core_features(selection: &[&str]) -> String {
    let out = Command::new(env!("CARGO"))
        .current_dir(workspace_root())
        .arg("tree")
        .args(selection)
        .args(["-e", "features", "-i", "timed-core"])
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("timed-core"),
        "unexpected cargo tree output:\n{text}"
    );
    text
}

#[test]
fn the_timed_binary_builds_the_core_without_test_hooks() {
    // `timed` alone, and the whole workspace as `cargo test --workspace` builds it: there the
    // simulator's features of the core were unified into the binary's.
    for selection in [&["-p", "timed"][..], &["--workspace"][..]] {
        let text = core_features(selection);
        assert!(
            !text.contains("test-hooks"),
            "with {selection:?}, the timed binary's core has test hooks:\n{text}"
        );
    }
}

/// The names under `[features]` in a manifest (a table header on its own line, as Cargo writes it).
fn features(manifest: &str) -> Vec<String> {
    manifest
        .lines()
        .map(str::trim)
        .skip_while(|l| *l != "[features]")
        .skip(1)
        .take_while(|l| !l.starts_with('['))
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split('=').next())
        .map(|name| name.trim().to_string())
        .collect()
}

#[test]
fn the_core_declares_no_feature_that_unlocks_test_only_api() {
    let manifest = std::fs::read_to_string(workspace_root().join("core/Cargo.toml"))
        .expect("core/Cargo.toml is readable");
    let declared = features(&manifest);
    // A feature added to the core must not unlock test-only API: Cargo unifies the features of
    // every package one command builds, so the simulator's would reach the `timed` binary. Play
    // a Byzantine behaviour in the simulator instead (runtime-sim/src/sim/amnesia.rs).
    assert!(
        declared.is_empty(),
        "timed-core declares features {declared:?}: make sure none unlocks test-only API, then \
         allow it by name in this test"
    );
}

#[test]
fn features_are_read_from_the_features_table() {
    let manifest = "[package]\nname = \"x\"\n\n[features]\n# hooks\ntest-hooks = []\n\n[dependencies]\nserde = \"1\"\n";
    assert_eq!(features(manifest), ["test-hooks"]);
    assert!(features("[package]\nname = \"x\"\n").is_empty());
}
