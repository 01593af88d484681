//! The dashboard end to end in a real browser: headless Chromium (Debian's
//! `chromium`) driven by playwright-core over the whole stack with the
//! simulated Pi. The browser script is `tests/browser/dashboard.mjs`; its
//! screenshots are kept under the target directory and printed.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use tests::World;

const TOKEN: &str = "dashboard-test-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium() {
    let chromium = testkit::require("chromium", "apt-get install chromium");
    let node = testkit::require("node", "apt-get install nodejs npm");
    let prefix = tests::playwright_prefix();
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    let w = World::start_with(&[("CINEMA_API_TOKEN", TOKEN)]).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser/dashboard.mjs");
    println!("screenshots: {}", shots.display());
    let out = tokio::task::spawn_blocking({
        let base = w.base.clone();
        let shots = shots.clone();
        move || {
            Command::new(node)
                .arg(script)
                .env("BASE", base)
                .env("TOKEN", TOKEN)
                .env("SHOTS", shots)
                .env("PLAYWRIGHT_PREFIX", prefix)
                .env("CHROMIUM", chromium)
                .env("PI", "test-pi")
                .env("LINE", tests::FILM.1[2])
                .env("ANSWER", tests::FILM.1[3])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "the browser test failed (screenshots in {}):\n{stderr}",
        shots.display()
    );
    let result: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(result["ok"], true);
    for name in [
        "01-session-started.png",
        "02-clip-answered.png",
        "03-phone-caught-up.png",
        "07-session-ended.png",
    ] {
        assert!(shots.join(name).exists(), "{name} was not saved");
    }
    // The session the browser started and ended is over on the bus too.
    let sid = result["session"].as_str().unwrap();
    let (code, s) = w.get(&format!("/api/sessions/{sid}")).await;
    assert_eq!((code, s["state"].as_str()), (200, Some("ended")), "{s}");
    w.stop().await;
}
