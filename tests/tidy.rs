//! The codebase's rules, checked mechanically (in the manner of
//! rust-analyzer's tidy test): the sources are read as text, nothing is
//! built or run. A failure names the file and the rule.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The workspace's members: `crates/*` and `services/*`, as (kind, name,
/// folder).
fn members() -> Vec<(&'static str, String, PathBuf)> {
    let mut out = Vec::new();
    for kind in ["crates", "services"] {
        for e in std::fs::read_dir(root().join(kind)).unwrap().flatten() {
            if e.path().join("Cargo.toml").is_file() {
                let name = e.file_name().to_string_lossy().into_owned();
                out.push((kind, name, e.path()));
            }
        }
    }
    out.sort();
    out
}

/// The text of a source file up to its test module (`#[cfg(test)]`).
fn non_test_code(text: &str) -> &str {
    text.find("#[cfg(test)]").map_or(text, |i| &text[..i])
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Only `crates/bus` names subjects: no other program code holds a subject
/// literal (`"cinema.…"`, `"$KV.…"`, `"$JS.…"`, `"$SRV.…"`, `"_INBOX.…"`).
/// Type names (`"cinema.v1.…"`) are not subjects; tests may spell
/// subjects out.
#[test]
fn only_bus_names_subjects() {
    let mut found = Vec::new();
    for (_, name, dir) in members() {
        if name == "bus" {
            continue;
        }
        for file in rust_files(&dir.join("src")) {
            let text = std::fs::read_to_string(&file).unwrap();
            for (n, line) in non_test_code(&text).lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                for prefix in ["\"cinema.", "\"$KV.", "\"$JS.", "\"$SRV.", "\"_INBOX."] {
                    let mut rest = code;
                    while let Some(i) = rest.find(prefix) {
                        let literal = &rest[i..];
                        if !literal.starts_with("\"cinema.v1.") {
                            found.push(format!("{}:{}: {}", relative(&file), n + 1, line.trim()));
                        }
                        rest = &rest[i + prefix.len()..];
                    }
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "subjects named outside crates/bus (use bus::subjects / bus::names):\n{}",
        found.join("\n")
    );
}

/// The `[dependencies]` and `[build-dependencies]` of a manifest that are
/// members of this workspace, by name.
fn workspace_deps(manifest: &Path, members: &[String]) -> Vec<String> {
    let text = std::fs::read_to_string(manifest).unwrap();
    let mut section = String::new();
    let mut deps = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            section = line.to_string();
            continue;
        }
        if section != "[dependencies]" && section != "[build-dependencies]" {
            continue;
        }
        let Some(name) = line
            .split(['=', '.', ' '])
            .next()
            .filter(|n| !n.is_empty() && !n.starts_with('#'))
        else {
            continue;
        };
        if members.iter().any(|m| m == name) {
            deps.push(name.to_string());
        }
    }
    deps
}

/// No service depends on a service, and no crate on a service: services
/// meet on the bus, and shared code lives in `crates/`.
#[test]
fn nothing_depends_on_a_service() {
    let all = members();
    let services: Vec<String> = all
        .iter()
        .filter(|(kind, _, _)| *kind == "services")
        .map(|(_, name, _)| name.clone())
        .collect();
    let mut found = Vec::new();
    for (kind, name, dir) in &all {
        for dep in workspace_deps(&dir.join("Cargo.toml"), &services) {
            found.push(format!("{kind}/{name} depends on services/{dep}"));
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// `crates/library` knows nothing of NATS: neither it nor any workspace
/// crate it depends on (however deep) depends on `bus`, `plumbing`, the
/// test kit or `async-nats`.
#[test]
fn the_library_knows_nothing_of_nats() {
    let all = members();
    let names: Vec<String> = all.iter().map(|(_, name, _)| name.clone()).collect();
    let dir_of = |name: &str| {
        all.iter()
            .find(|(_, n, _)| n == name)
            .map(|(_, _, dir)| dir.clone())
            .unwrap()
    };
    let mut seen = vec!["library".to_string()];
    let mut todo = vec!["library".to_string()];
    let mut found = Vec::new();
    while let Some(name) = todo.pop() {
        let manifest = dir_of(&name).join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest).unwrap();
        let normal = text
            .split("\n[")
            .filter(|section| section.starts_with("dependencies]"))
            .collect::<String>();
        if normal
            .lines()
            .any(|l| l.trim_start().starts_with("async-nats"))
        {
            found.push(format!("{name} depends on async-nats"));
        }
        for dep in workspace_deps(&manifest, &names) {
            if ["bus", "plumbing", "testkit"].contains(&dep.as_str()) {
                found.push(format!("{name} depends on {dep}"));
            }
            if !seen.contains(&dep) {
                seen.push(dep.clone());
                todo.push(dep);
            }
        }
    }
    assert!(
        seen.len() > 1,
        "library's own crates were not found: {seen:?}"
    );
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// Every source file of the program says what it is for in its first
/// line (`//!`).
#[test]
fn every_module_is_documented() {
    let mut found = Vec::new();
    for (_, _, dir) in members() {
        for file in rust_files(&dir.join("src")) {
            let text = std::fs::read_to_string(&file).unwrap();
            if !text.trim_start().starts_with("//!") {
                found.push(relative(&file));
            }
        }
    }
    assert!(
        found.is_empty(),
        "modules without a `//!` line:\n{}",
        found.join("\n")
    );
}

/// `unsafe` is forbidden in every member (the workspace lint, which no
/// member may leave or loosen).
#[test]
fn unsafe_code_is_forbidden() {
    let workspace = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    assert!(
        workspace.contains("unsafe_code = \"forbid\""),
        "the workspace's lints must forbid unsafe_code"
    );
    let mut found = Vec::new();
    let mut manifests: Vec<PathBuf> = members()
        .into_iter()
        .map(|(_, _, dir)| dir.join("Cargo.toml"))
        .collect();
    manifests.push(root().join("tests/Cargo.toml"));
    for manifest in manifests {
        let text = std::fs::read_to_string(&manifest).unwrap();
        if !text.contains("[lints]\nworkspace = true") {
            found.push(format!(
                "{}: no `[lints] workspace = true`",
                relative(&manifest)
            ));
        }
    }
    for (_, _, dir) in members() {
        for file in rust_files(&dir.join("src")) {
            let text = std::fs::read_to_string(&file).unwrap();
            if text.contains("unsafe_code") {
                found.push(format!("{}: mentions unsafe_code", relative(&file)));
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// The sources are formatted (`cargo fmt --check`).
#[test]
fn the_sources_are_formatted() {
    let out = Command::new(env!("CARGO"))
        .args(["fmt", "--all", "--check"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo fmt --check found unformatted code (run `cargo fmt --all`):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
