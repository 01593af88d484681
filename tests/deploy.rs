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
    let (ca, cert, key) = tests::certificates(certs.path());
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
    env.push(("CINEMA_NATS_HUB_CA".into(), ca.display().to_string()));
    // A node of the cluster: its name, its routes, their password.
    env.push(("CINEMA_NATS_NODE".into(), "cinema-hub-2".into()));
    env.push(("CINEMA_NATS_CLUSTER_PASSWORD".into(), "route".into()));
    for (i, node) in ["nats", "nats-2", "nats-3"].iter().enumerate() {
        env.push((
            format!("CINEMA_NATS_ROUTE_{}", i + 1),
            format!("nats-route://route:route@{node}:6222"),
        ));
    }
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

/// The NATS passwords the compose file requires.
fn compose_passwords() -> Vec<(String, String)> {
    ["services", "status-store", "gateway", "pi-local-pi"]
        .iter()
        .map(|u| (bus::permissions::password_env(u), "secret".to_string()))
        .collect()
}

#[test]
fn the_compose_file_is_valid() {
    let compose = testkit::require(
        "docker-compose",
        "apt-get install docker-compose (it validates offline; no engine needed)",
    );
    // `docker-compose ARGS` here, with the token and the passwords set,
    // then `unset` removed and `set` given.
    let run = |args: &[&str], unset: &[&str], set: &[(&str, &str)]| {
        let mut cmd = Command::new(&compose);
        cmd.current_dir(root())
            .args(args)
            .env("CINEMA_API_TOKEN", "test-token")
            .envs(compose_passwords());
        for key in unset {
            cmd.env_remove(key);
        }
        cmd.envs(set.iter().copied());
        cmd.output().unwrap()
    };
    let out = run(&["-f", "docker-compose.yml", "config", "-q"], &[], &[]);
    assert!(
        out.status.success(),
        "docker-compose config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The GPU profile (stt built with CUDA) and the demo Pi host: the
    // configuration holds (building the CUDA image needs a GPU machine).
    let out = run(
        &[
            "-f",
            "docker-compose.yml",
            "--profile",
            "gpu",
            "--profile",
            "demo-pi",
            "config",
        ],
        &[],
        &[],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "target: stt-cuda",
        "WHISPER_DEVICE: cuda",
        "capabilities:",
        "target: pi",
    ] {
        assert!(text.contains(want), "{want} missing from:\n{text}");
    }
    // An empty setting is dropped by the services, never a default
    // overridden by compose itself: no service gets a variable set to '',
    // but the CA of TLS on NATS, whose empty value means no TLS (and which
    // has no default to override).
    let empty: Vec<&str> = text
        .lines()
        .filter(|l| l.ends_with(": ''"))
        .map(str::trim)
        .filter(|l| !["NATS_CA: ''", "CINEMA_PI_HUB_CA: ''"].contains(l))
        .collect();
    assert!(empty.is_empty(), "{empty:?}");
    // The gateway is never exposed without a token.
    let out = run(
        &["-f", "docker-compose.yml", "config", "-q"],
        &["CINEMA_API_TOKEN"],
        &[],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("CINEMA_API_TOKEN"));
    // Nor NATS without its passwords.
    let out = run(
        &["-f", "docker-compose.yml", "config", "-q"],
        &["CINEMA_NATS_SERVICES_PASSWORD"],
        &[],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("NATS passwords"));
    // The three-node cluster: every service given the three URLs and three
    // replicas; it needs the route password.
    let cluster = |password: Option<&str>| {
        let set: Vec<(&str, &str)> = password
            .map(|p| ("CINEMA_NATS_CLUSTER_PASSWORD", p))
            .into_iter()
            .collect();
        run(
            &[
                "-f",
                "docker-compose.yml",
                "-f",
                "docker-compose.cluster.yml",
                "config",
            ],
            &["CINEMA_NATS_CLUSTER_PASSWORD"],
            &set,
        )
    };
    let out = cluster(Some("route"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for service in [
        "clip-selector",
        "status-store",
        "room-manager",
        "llm",
        "stt",
        "dashboard-gateway",
    ] {
        let block = text
            .split(&format!("\n  {service}:\n"))
            .nth(1)
            .unwrap_or_else(|| panic!("{service} missing"));
        // Up to the next service (two spaces, then its name).
        let block: String = block
            .lines()
            .take_while(|l| !l.starts_with("  ") || l.starts_with("   "))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            block.contains("@nats:4222,nats://nats-2:4222,nats://nats-3:4222"),
            "{service}: {block}"
        );
        assert!(
            block.contains("CINEMA_NATS_REPLICAS: '3'"),
            "{service}: {block}"
        );
    }
    assert!(
        text.contains("cluster.conf") && text.contains("nats-3-data"),
        "{text}"
    );
    let out = cluster(None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("CINEMA_NATS_CLUSTER_PASSWORD"));
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
        let text = std::fs::read_to_string(&path).unwrap();
        let text = if bin == "nats-leaf" {
            text.replace(
                "/usr/local/bin/nats-server",
                testkit::nats_server_bin().to_str().unwrap(),
            )
        } else {
            text.replace(
                &format!("/usr/local/bin/{bin}"),
                testkit::bin(bin).to_str().unwrap(),
            )
        };
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

/// The Pi's install script, into a scratch tree: binaries, units, the
/// leaf server's config and the environment files (not world-readable: they
/// hold the Pi's password).
#[test]
fn the_pi_install_script_lays_out_a_pi() {
    let nats = testkit::nats_server_bin();
    let dest = tempfile::tempdir().unwrap();
    let bin_dir = testkit::bin("pi-spawner").parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        nats.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = |args: &[&str]| {
        Command::new(root().join("deploy/install-pi"))
            .args(args)
            .env("DESTDIR", dest.path())
            .env("PATH", &path)
            .output()
            .unwrap()
    };
    let out = run(&[
        "--pi-id",
        "lobby-tv",
        "--hub",
        "hub.example",
        "--password",
        "s3cret",
        "--bin-dir",
        bin_dir.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d = dest.path();
    for f in [
        "usr/local/bin/pi-spawner",
        "usr/local/bin/pi-client",
        "usr/local/bin/nats-server",
        "etc/systemd/system/cinema-pi-spawner.service",
        "etc/systemd/system/cinema-nats-leaf.service",
        "etc/cinema/nats/leaf.conf",
    ] {
        assert!(d.join(f).is_file(), "{f} missing");
    }
    let env = std::fs::read_to_string(d.join("etc/cinema/pi.env")).unwrap();
    assert!(env.contains("NATS_URL=nats://127.0.0.1:4222"), "{env}");
    assert!(env.contains("NATS_INBOX_PREFIX=_INBOX_lobby-tv"), "{env}");
    assert!(env.contains("NATS_JS_DOMAIN=cinema"), "{env}");
    let leaf = d.join("etc/cinema/nats-leaf.env");
    assert_eq!(
        std::fs::read_to_string(&leaf).unwrap().trim(),
        "CINEMA_NATS_HUB_LEAF_URL=nats-leaf://pi-lobby-tv:s3cret@hub.example:7422"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&leaf).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o007,
        0,
        "the password file is world-readable: {mode:o}"
    );
    // The shipped leaf config accepts what the script wrote.
    let check = Command::new(&nats)
        .args(["-t", "-c"])
        .arg(d.join("etc/cinema/nats/leaf.conf"))
        .env(
            "CINEMA_NATS_HUB_LEAF_URL",
            "nats-leaf://pi-lobby-tv:s3cret@hub.example:7422",
        )
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    // Bad input: one clear line, exit 64.
    let bad = run(&["--pi-id", "a.b", "--hub", "h", "--password", "p"]);
    assert_eq!(bad.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--pi-id"));

    // A hub with TLS on NATS (--hub-ca): the leaf link trusts that CA, and
    // the shipped TLS leaf config accepts what the script wrote.
    let certs = tempfile::tempdir().unwrap();
    let (ca, _, _) = tests::certificates(certs.path());
    let pi = [
        "--pi-id",
        "lobby-tv",
        "--hub",
        "hub.example",
        "--password",
        "s3cret",
    ];
    let with_ca = |extra: &[&str]| {
        let mut args = pi.to_vec();
        args.extend([
            "--bin-dir",
            bin_dir.to_str().unwrap(),
            "--hub-ca",
            ca.to_str().unwrap(),
        ]);
        args.extend(extra);
        run(&args)
    };
    let out = with_ca(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let leaf_env = std::fs::read_to_string(&leaf).unwrap();
    assert!(
        leaf_env.contains("CINEMA_NATS_HUB_CA=/etc/cinema/hub-ca.pem"),
        "{leaf_env}"
    );
    assert_eq!(
        std::fs::read(d.join("etc/cinema/hub-ca.pem")).unwrap(),
        std::fs::read(&ca).unwrap()
    );
    let conf = std::fs::read_to_string(d.join("etc/cinema/nats/leaf.conf")).unwrap();
    assert!(conf.contains("ca_file"), "{conf}");
    let check = Command::new(&nats)
        .args(["-t", "-c"])
        .arg(d.join("etc/cinema/nats/leaf.conf"))
        .env(
            "CINEMA_NATS_HUB_LEAF_URL",
            "nats-leaf://pi-lobby-tv:s3cret@hub.example:7422",
        )
        .env("CINEMA_NATS_HUB_CA", &ca)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    // Straight to the hub (--no-leaf): a tls:// URL and the CA.
    let out = with_ca(&["--no-leaf"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let env = std::fs::read_to_string(d.join("etc/cinema/pi.env")).unwrap();
    assert!(
        env.contains("NATS_URL=tls://pi-lobby-tv:s3cret@hub.example:4222"),
        "{env}"
    );
    assert!(env.contains("NATS_CA=/etc/cinema/hub-ca.pem"), "{env}");
    // A file that holds no certificate is refused with the reason.
    let bad = run(&[
        &pi[..],
        &[
            "--bin-dir",
            bin_dir.to_str().unwrap(),
            "--hub-ca",
            "/etc/hostname",
        ],
    ]
    .concat());
    assert_eq!(bad.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("no PEM certificate"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    // The TV and the microphone: options kept in the operator's file; a
    // re-run without them (an upgrade) keeps them; bad values are refused
    // with the rule.
    let with = |extra: &[&str]| {
        let mut args = pi.to_vec();
        args.extend(["--bin-dir", bin_dir.to_str().unwrap()]);
        args.extend(extra);
        run(&args)
    };
    let out = with(&[
        "--audio-input",
        "alsa:hw:1,0",
        "--vo",
        "drm",
        "--ao",
        "alsa",
        "--mpv-args",
        "--hwdec=auto-safe --audio-device=alsa/hdmi:CARD=vc4hdmi0",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = with(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let local = std::fs::read_to_string(d.join("etc/cinema/pi.local.env")).unwrap();
    for line in [
        "CINEMA_PI_AUDIO_INPUT=alsa:hw:1,0",
        "CINEMA_PI_CLIENT_VO=drm",
        "CINEMA_PI_CLIENT_AO=alsa",
        "CINEMA_PI_CLIENT_MPV_ARGS=--hwdec=auto-safe --audio-device=alsa/hdmi:CARD=vc4hdmi0",
    ] {
        assert!(local.lines().any(|l| l == line), "{line} not in {local}");
    }
    for (bad, rule) in [
        (&["--audio-input", "mic"][..], "--audio-input takes"),
        (&["--vo", "drm; reboot"][..], "--vo takes"),
        (&["--mpv-args", "rm -rf /"][..], "--mpv-args takes"),
    ] {
        let out = with(bad);
        assert_eq!(out.status.code(), Some(64), "{bad:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(rule),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
