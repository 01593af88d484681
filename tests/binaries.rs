//! Every binary has `--help`, `--version`, and exits 64 with one line on bad configuration.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use bus::names::service::{ALL, PI_CLIENT};

/// Every service binary, and the per-session pi-client.
fn binaries() -> impl Iterator<Item = &'static str> {
    ALL.into_iter().chain([PI_CLIENT])
}

#[test]
fn help_version_and_bad_configuration() {
    for name in binaries().chain(["cinema"]) {
        let bin = testkit::bin(name);
        let help = Command::new(&bin).arg("--help").output().unwrap();
        assert!(help.status.success(), "{name} --help");
        assert!(
            String::from_utf8_lossy(&help.stdout).contains("Usage"),
            "{name} --help"
        );
        let version = Command::new(&bin).arg("--version").output().unwrap();
        assert!(
            String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")),
            "{name} --version"
        );
    }
    for name in binaries() {
        let out = Command::new(testkit::bin(name))
            .args(["--set", "nats_url=[1,2]"])
            .env("CINEMA_SESSION_ID", "s1")
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(64),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            stderr.trim().lines().count(),
            1,
            "{name}: one line, got {stderr}"
        );
        assert!(
            stderr.starts_with(&format!("{name}: bad configuration:")),
            "{stderr}"
        );
    }
    // Specific checks name the setting.
    let out = Command::new(testkit::bin("pi-client"))
        .env_remove("CINEMA_SESSION_ID")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CINEMA_SESSION_ID"));
    let out = Command::new(testkit::bin("pi-client"))
        .env("CINEMA_SESSION_ID", "s1")
        .env("CINEMA_PI_AUDIO_INPUT", "telepathy")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CINEMA_PI_AUDIO_INPUT"));
    let out = Command::new(testkit::bin("llm"))
        .env("CINEMA_DIRECTOR", "telepathy")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("director"));
    let out = Command::new(testkit::bin("dashboard-gateway"))
        .env("PORT", "http")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}
