//! The shipped deployment files are valid.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

#[test]
fn every_nats_config_passes_nats_server_t() {
    let bin = testkit::nats_server_bin();
    // What the configs read from the environment: every password of the
    // shipped accounts, the Pi's link to the hub, the TLS files.
    let certs = tempfile::tempdir().unwrap();
    let (_, cert, key) = tests::certificates(certs.path());
    let mut env: Vec<(String, String)> = ["services", "status-store", "gateway", "pi-local-pi"]
        .iter()
        .map(|u| (bus::permissions::password_env(u), "secret".to_string()))
        .collect();
    env.push((
        "CINEMA_NATS_HUB_LEAF_URL".into(),
        "nats-leaf://pi-local-pi:secret@hub.local:7422".into(),
    ));
    env.push(("CINEMA_NATS_TLS_CERT".into(), cert.display().to_string()));
    env.push(("CINEMA_NATS_TLS_KEY".into(), key.display().to_string()));
    let mut checked = 0;
    for entry in std::fs::read_dir(root().join("nats")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "conf") {
            let out = Command::new(&bin)
                .envs(env.iter().cloned())
                .arg("-t")
                .arg("-c")
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    assert!(checked > 0, "no NATS config found under nats/");
}

#[test]
fn systemd_units_exist_for_every_service() {
    for s in bus::names::service::ALL {
        let unit = root().join(format!("deploy/systemd/cinema-{s}.service"));
        let text = std::fs::read_to_string(&unit)
            .unwrap_or_else(|_| panic!("{} is missing", unit.display()));
        assert!(
            text.contains(&format!("ExecStart=/usr/local/bin/{s}")),
            "{}",
            unit.display()
        );
        assert!(text.contains("NoNewPrivileges=yes"));
    }
}

#[test]
fn the_compose_file_is_valid() {
    let compose = testkit::require(
        "docker-compose",
        "apt-get install docker-compose (it validates offline; no engine needed)",
    );
    let out = Command::new(compose)
        .current_dir(root())
        .args(["-f", "docker-compose.yml", "config", "-q"])
        .env("CINEMA_API_TOKEN", "test-token")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker-compose config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The gateway is never exposed without a token.
    let out = Command::new("docker-compose")
        .current_dir(root())
        .args(["-f", "docker-compose.yml", "config", "-q"])
        .env_remove("CINEMA_API_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("CINEMA_API_TOKEN"));
}

/// `systemd-analyze verify` on every unit, pointed at the built binaries
/// (it checks that ExecStart exists and is executable).
#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let analyze = testkit::require("systemd-analyze", "apt-get install systemd");
    let dir = tempfile::tempdir().unwrap();
    let mut units = Vec::new();
    for entry in std::fs::read_dir(root().join("deploy/systemd")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "service") {
            continue;
        }
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let bin = name
            .trim_start_matches("cinema-")
            .trim_end_matches(".service");
        let text = std::fs::read_to_string(&path).unwrap().replace(
            &format!("/usr/local/bin/{bin}"),
            testkit::bin(bin).to_str().unwrap(),
        );
        let copy = dir.path().join(&name);
        std::fs::write(&copy, text).unwrap();
        units.push(copy);
    }
    assert!(!units.is_empty());
    let out = Command::new(analyze)
        .arg("verify")
        .args(&units)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
