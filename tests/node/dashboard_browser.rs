//! The dashboard in a real headless browser against a running devnet: the page loads from the
//! node alone, shows the validators online and the validator set, and the height it shows
//! advances.
//!
//! Needs Chromium (`apt-get install -y chromium`; `scripts/test.sh` installs it). Without it this
//! test fails and says so: the dashboard is not checked by anything else. `TIMED_CHROMIUM` names
//! another browser binary.

mod common;

use std::time::{Duration, Instant};

use common::browser::{chromium, rendered, span};
use common::{Net, get};

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
    // The validator set: the genesis's three, the epoch (of 100 heights) of the next height,
    // nothing pending.
    let epoch = (h1 / 100).to_string();
    assert_eq!(
        span(&first, "set-epoch").as_deref(),
        Some(epoch.as_str()),
        "{first}"
    );
    assert_eq!(span(&first, "set-size").as_deref(), Some("3"), "{first}");
    assert_eq!(
        span(&first, "set-pending").as_deref(),
        Some("no change elected for the next epoch"),
        "{first}"
    );
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
