//! The configuration file, `timed init` and `timed reset` (issue 16, section 2) on real
//! processes: a folder written by `init` runs a node; a flag overrides the file; a bad key is
//! refused by name; a reset deletes the chain data but keeps the double-sign guard, so the node
//! restarted on it still signs nothing it signed before.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{Net, NodeProc, free_port, wait_for};

fn exe() -> PathBuf {
    std::env::var_os("TIMED_TEST_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_timed").into())
        .into()
}

/// Runs `timed ARGS` to its end, standard input closed.
fn timed(args: &[&str]) -> Output {
    Command::new(exe())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `timed init --dir DIR` and a genesis of its one validator at DIR/genesis.json (200 ms blocks).
fn init_single(dir: &Path) {
    let out = timed(&["init", "--dir", path(dir)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let key = text(&out.stdout).trim().to_string();
    assert_eq!(key.len(), 64, "{key}");
    let genesis = dir.join("genesis.json");
    let out = timed(&[
        "genesis",
        "--block-time",
        "200ms",
        "--validator",
        &format!("v:{key}:100"),
        "--out",
        path(&genesis),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// A network of the one node `timed run --config DIR/timed.toml --listen 127.0.0.1:PORT`.
fn run_from_config(dir: &Path) -> Net {
    let port = free_port();
    let config = dir.join("timed.toml");
    let args = vec![
        "run".to_string(),
        "--config".into(),
        path(&config).into(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
    ];
    let mut net = Net {
        dir: tempfile::tempdir().unwrap(),
        nodes: vec![NodeProc {
            name: "v".into(),
            port,
            args,
            child: None,
            log: dir.join("v.log"),
            wrapper: vec![],
        }],
    };
    net.spawn(0);
    net
}

/// `init` writes a key and a commented file with every key; a node runs with it (its relative
/// paths taken from the file's folder, not the working directory), and `--listen` on the command
/// line wins over the file's `listen = "0.0.0.0:8001"`. A second `init` overwrites nothing.
#[test]
fn init_writes_a_config_a_node_runs_with_and_a_flag_overrides_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("node");
    init_single(&d);
    let file = std::fs::read_to_string(d.join("timed.toml")).unwrap();
    for line in [
        "\ngenesis = \"genesis.json\"\n",
        "\nkey = \"validator.key\"\n",
        "\nlisten = \"0.0.0.0:8001\"\n",
        "\nhttp-idle-timeout = \"10s\"\n",
        "\nhttp-max-connections = 1000\n",
        "\nlog-format = \"text\"\n",
        "\n# peers = [",
        "\n# double-sign-check-ms = 4000\n",
    ] {
        assert!(file.contains(line), "{line:?} missing from:\n{file}");
    }
    assert!(file.contains("# Open HTTP connections at most"), "{file}");
    let net = run_from_config(&d);
    net.wait_height(0, 3);
    assert!(d.join("data").join("timed.redb").exists());
    let log = net.log(0);
    assert!(
        log.contains(&format!("Listening on 127.0.0.1:{}", net.port(0))),
        "{log}"
    );

    let out = timed(&["init", "--dir", path(&d)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("already exists; refusing to overwrite"));
}

/// An unknown key, or a value its flag's parser refuses: exit 2 and one line naming the file,
/// the key and what is allowed.
#[test]
fn a_bad_key_or_value_in_the_config_file_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("timed.toml");
    let cases = [
        (
            "peer = [\"a:1\"]\n",
            "unknown key \"peer\" (did you mean \"peers\"?)",
        ),
        (
            "http-idle-timeout = \"soon\"\n",
            "key \"http-idle-timeout\" = \"soon\"",
        ),
        ("listen = \"localhost:1\"\n", "is not IP:PORT"),
        ("log-format = \"xml\"\n", "allowed: one of text, json"),
    ];
    for (content, expected) in cases {
        std::fs::write(&file, content).unwrap();
        let out = timed(&["run", "--config", path(&file)]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{content}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(&format!("config file {}", file.display())),
            "{stderr}"
        );
        assert!(stderr.contains(expected), "{content}: {stderr}");
    }
    // The flag given on the command line is not read from the file at all.
    std::fs::write(&file, "log-format = \"xml\"\n").unwrap();
    let out = timed(&["run", "--config", path(&file), "--log-format", "text"]);
    assert!(
        !text(&out.stderr).contains("log-format"),
        "{}",
        text(&out.stderr)
    );
}

/// `reset` refuses while the node runs and without --yes; then deletes timed.redb and wal.log,
/// keeping the key, the guard and the genesis. The node restarted on the empty directory is alone
/// at height 1 again, below the heights its guard says it signed: it signs nothing (a node
/// without its guard would sign a second, different block 1, a double sign).
#[test]
fn reset_keeps_the_guard_and_the_restarted_node_signs_nothing_it_signed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("node");
    init_single(&d);
    let mut net = run_from_config(&d);
    net.wait_height(0, 3);
    let data = d.join("data");
    let key = d.join("validator.key");
    let guard = d.join("validator.key.last_signed");
    let reset = |extra: &[&str]| {
        let args = [
            &["reset", "--data-dir", path(&data), "--key", path(&key)],
            extra,
        ]
        .concat();
        timed(&args)
    };

    let out = reset(&["--yes"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("a timed process is running"),
        "{}",
        text(&out.stderr)
    );
    net.stop(0, "-TERM");
    let out = reset(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("give --yes"),
        "{}",
        text(&out.stderr)
    );
    assert!(data.join("timed.redb").exists());

    let out = reset(&["--yes"]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for deleted in ["timed.redb", "wal.log"] {
        assert!(!data.join(deleted).exists(), "{deleted}");
        assert!(
            stderr.contains(&format!("delete {}", path(&data.join(deleted)))),
            "{stderr}"
        );
    }
    for kept in [&guard, &key, &data.join("genesis.json")] {
        assert!(kept.exists(), "{}", kept.display());
        assert!(stderr.contains(&format!("keep {}", path(kept))), "{stderr}");
    }

    net.spawn(0);
    wait_for("the node to start watching", || {
        net.log(0)
            .contains("Started without all of this validator's signed records")
            .then_some(())
    });
    wait_for("the node to withhold its vote at height 1", || {
        net.log(0).contains("not signing at height 1").then_some(())
    });
    // Well past the watch (4 s): still nothing signed, nothing finalized.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(net.height(0), 0, "{}", net.log(0));
    assert!(net.alive(0), "{}", net.log(0));
    let log = net.log(0);
    let restarted = &log[log.rfind("Starting validator node").unwrap()..];
    assert!(!restarted.contains("Proposing block"), "{restarted}");
}

/// `metrics-listen` (here from the file): `/metrics` is served on that address, with every
/// series, and no longer on the API's port, which still answers the rest of the API.
#[test]
fn metrics_listen_moves_the_metrics_off_the_api_port() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("node");
    init_single(&d);
    let metrics_port = free_port();
    let config = d.join("timed.toml");
    let mut file = std::fs::read_to_string(&config).unwrap();
    file.push_str(&format!("metrics-listen = \"127.0.0.1:{metrics_port}\"\n"));
    std::fs::write(&config, file).unwrap();
    let net = run_from_config(&d);
    net.wait_height(0, 2);
    let (code, body) = common::get(metrics_port, "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(
        common::sample(&body, "timed_height").is_some_and(|h| h >= 2.0),
        "{body}"
    );
    assert_eq!(common::get(net.port(0), "/metrics").unwrap().0, 404);
    assert_eq!(common::get(metrics_port, "/status").unwrap().0, 404);
    assert!(net.status(0).is_some());
    let log = net.log(0);
    assert!(
        log.contains(&format!(
            "Metrics on http://127.0.0.1:{metrics_port}/metrics"
        )),
        "{log}"
    );
}

/// `completions` prints a script the shell accepts, naming the subcommands and flags; `man`
/// prints a roff page and writes one per subcommand.
#[test]
fn completions_and_manual_pages_come_from_the_flags() {
    let out = timed(&["completions", "bash"]);
    assert!(out.status.success());
    let script = text(&out.stdout);
    for word in ["reset", "init", "--metrics-listen", "--config"] {
        assert!(script.contains(word), "{word}");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("timed.bash");
    std::fs::write(&file, &script).unwrap();
    let check = Command::new("bash").arg("-n").arg(&file).status().unwrap();
    assert!(check.success());
    let out = timed(&["man"]);
    assert!(text(&out.stdout).contains(".TH timed 1"));
    let out = timed(&["man", "--dir", path(dir.path())]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let page = std::fs::read_to_string(dir.path().join("timed-run.1")).unwrap();
    assert!(page.contains("metrics\\-listen"), "{page}");
}
