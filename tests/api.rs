//! The gateway's OpenAPI document is its contract: Schemathesis (PyPI)
//! generates requests from it against a running hub (every service, the
//! simulated Pi) and checks every answer against it. Once as it runs on a
//! dev box (no token, loopback), once with a token and a read-only token
//! (every request carries the full one; Schemathesis also checks that
//! leaving it out is refused).
//!
//! Bounded and repeatable: a fixed seed, a fixed number of examples per
//! operation, every check. The two event streams never end, so they are
//! left to the router tests.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use tests::World;

const SEED: &str = "20261205";
const EXAMPLES: &str = "50";
const TOKEN: &str = "contract-token-9d1c";

fn schemathesis() -> PathBuf {
    let st = std::env::var_os("CINEMA_SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("st"));
    let found = Command::new(&st)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "schemathesis is not installed: ./scripts/test installs it (or `pip install schemathesis==4.32.5` and set CINEMA_SCHEMATHESIS to its `st`)"
    );
    st
}

/// Runs Schemathesis against `base`; returns its summary.
fn check(base: &str, headers: &[&str], report: &std::path::Path) -> String {
    let mut cmd = Command::new(schemathesis());
    cmd.arg("--config-file")
        .arg(report.parent().unwrap().join("schemathesis.toml"))
        .arg("run")
        .arg(format!("{base}/api/openapi.json"))
        .args(["--checks", "all"])
        .args(["--seed", SEED, "--max-examples", EXAMPLES])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args([
            "--exclude-path",
            "/api/events",
            "--exclude-path",
            "/api/audio",
        ])
        .args(["--workers", "1", "--request-timeout", "20", "--no-color"])
        .args(["--generation-database", "none"])
        .args(["--report", "junit", "--report-junit-path"])
        .arg(report)
        .env("NO_COLOR", "1")
        .current_dir(report.parent().unwrap());
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "schemathesis found failures against {base} ({:?}):\n{stdout}\n{stderr}",
        out.status
    );
    // The closing summary: operations, phases, test cases, failures.
    stdout
        .split("SUMMARY")
        .nth(1)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('='))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_keeps_to_its_openapi_document() {
    let w = World::start_in_process().await;
    let reports = tempfile::tempdir().unwrap();
    // Half the ids Schemathesis makes up are real ones (a live session, a
    // clip, the Pi), so its requests also reach past "not found".
    let session = w.connect().await["identifier"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, found) = w.get("/api/clips/search?q=hello&limit=1").await;
    let clip = found["hits"][0]["clip"]["id"].as_str().unwrap().to_string();
    std::fs::write(
        reports.path().join("schemathesis.toml"),
        format!(
            "[dictionaries]\nids = {{ values = [{session:?}, {clip:?}] }}\npis = {{ values = [{:?}] }}\n\n\
             [parameters]\n\"path.id\" = {{ dictionary = \"ids\", probability = 0.5 }}\n\
             \"path.pi\" = {{ dictionary = \"pis\", probability = 0.5 }}\n",
            tests::SIM_PI
        ),
    )
    .unwrap();

    let base = w.base.clone();
    let report = reports.path().join("open.xml");
    let open = tokio::task::spawn_blocking(move || check(&base, &[], &report))
        .await
        .unwrap();
    println!("no token:\n{open}");

    // A second gateway on the same hub, with a token and a read-only one.
    let port = testkit::free_port();
    let vars: Vec<(String, String)> = [
        ("NATS_URL", w.nats.url()),
        ("PORT", port.to_string()),
        ("CINEMA_API_TOKEN", TOKEN.to_string()),
        ("CINEMA_API_READ_TOKEN", format!("{TOKEN}-read")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    w.services
        .as_ref()
        .unwrap()
        .start("dashboard-gateway", &vars, dashboard_gateway::run)
        .unwrap();
    let guarded = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    testkit::eventually(Duration::from_secs(20), "the guarded gateway", async || {
        let r = http.get(format!("{guarded}/api/info")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    let report = reports.path().join("token.xml");
    let bearer = format!("Authorization: Bearer {TOKEN}");
    let with_token = tokio::task::spawn_blocking(move || check(&guarded, &[&bearer], &report))
        .await
        .unwrap();
    println!("with a token:\n{with_token}");
}
