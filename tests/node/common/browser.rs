//! Headless Chromium for the tests of the dashboard and the explorer: the page's DOM after its
//! scripts ran.

use std::path::PathBuf;
use std::process::Command;

pub fn chromium() -> PathBuf {
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
pub fn rendered(browser: &PathBuf, url: &str) -> String {
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
pub fn span(dom: &str, id: &str) -> Option<String> {
    let start = dom.find(&format!("<span id=\"{id}\">"))?;
    let rest = &dom[start..];
    let text = &rest[rest.find('>')? + 1..];
    Some(text[..text.find('<')?].to_string())
}
