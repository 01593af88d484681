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
    let mut checked = 0;
    for entry in std::fs::read_dir(root().join("nats")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "conf") {
            let out = Command::new(&bin)
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
