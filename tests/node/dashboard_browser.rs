//! The dashboard in a real headless browser against a running devnet: the page loads from the
//! node alone, shows the validators online, and the height it shows advances.
//!
//! Needs Chromium (`apt-get install -y chromium`; `scripts/test.sh` installs it). Without it this
//! test fails and says so: the dashboard is not checked by anything else. `TIMED_CHROMIUM` names
//! another browser binary.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Net, get};

fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("TIMED_CHROMIUM") {
        return PathBuf::from(p);
    }
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(out) = Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            && out.status.success()
        {
            return PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        }
    }
    panic!(
        "Chromium is not installed, and the dashboard test needs a real browser: install it with \
         `apt-get update && apt-get install -y chromium` (scripts/test.sh does), or point \
         TIMED_CHROMIUM at a Chromium binary"
    );
}

/// The page's DOM after its scripts ran for a while, as Chromium renders it.
fn rendered(browser: &PathBuf, url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--virtual-time-budget=3000", "--dump-dom", url])
        .output()
        .expect("Chromium starts");
    assert!(
        out.status.success(),
        "Chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text of the element `<span id="ID">…</span>`.
fn span(dom: &str, id: &str) -> Option<String> {
    let start = dom.find(&format!("<span id=\"{id}\">"))?;
    let rest = &dom[start..];
    let text = &rest[rest.find('>')? + 1..];
    Some(text[..text.find('<')?].to_string())
}

fn shown_height(dom: &str) -> Option<u64> {
    span(dom, "height")?.trim().parse().ok()
}

#[test]
fn the_dashboard_shows_a_live_height_in_a_real_browser() {
    let browser = chromium();
    let net = Net::start(3, "300ms");
    net.wait_height(0, 2);
    let url = format!("http://127.0.0.1:{}/", net.port(0));

    // Served by the node itself, nothing from elsewhere.
    let (code, html) = get(net.port(0), "/").unwrap();
    assert_eq!(code, 200);
    assert!(html.contains("<span id=\"height\">"), "{html}");
    assert!(
        !html.contains("https://") && !html.contains("http://"),
        "{html}"
    );

    let first = rendered(&browser, &url);
    let h1 = shown_height(&first).unwrap_or_else(|| panic!("no height shown:\n{first}"));
    assert!(h1 >= 2, "{h1}");
    assert_eq!(first.matches(">online<").count(), 3, "{first}");
    for name in ["validator1", "validator2", "validator3"] {
        assert!(first.contains(name), "{name} missing:\n{first}");
    }
    assert!(first.contains("<polyline"), "no finality chart:\n{first}");
    assert!(!first.contains("cannot reach the node"), "{first}");

    // Later, a higher height.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        std::thread::sleep(Duration::from_secs(2));
        let again = rendered(&browser, &url);
        let h2 = shown_height(&again).unwrap_or_else(|| panic!("no height shown:\n{again}"));
        if h2 > h1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the height shown stayed at {h1} (now {h2})"
        );
    }
}
