//! Pid files of running clients: `<state>/<session>.pid` holding the client's
//! pid (its process group) and its start time, so a pid reused by another
//! process is never killed.

use std::path::{Path, PathBuf};

/// The state dir of one Pi's spawner.
pub fn state_dir(configured: &Path, pi_id: &str) -> PathBuf {
    let base = if configured.as_os_str().is_empty() {
        std::env::var_os("XDG_STATE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
            .unwrap_or_else(std::env::temp_dir)
            .join("cinema")
    } else {
        configured.to_path_buf()
    };
    base.join(format!("pi-spawner-{pi_id}"))
}

/// Start time of a process in clock ticks since boot (field 22 of /proc/pid/stat).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command may contain spaces and parentheses: count from the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(19)?.parse().ok()
}

pub fn write(dir: &Path, sid: &str, pid: u32) {
    let started = start_time(pid).unwrap_or(0);
    if let Err(e) = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(dir.join(format!("{sid}.pid")), format!("{pid} {started}\n")))
    {
        tracing::warn!(dir = %dir.display(), error = %e, "Cannot write a pid file; a crash could leave this client behind.");
    }
}

pub fn remove(dir: &Path, sid: &str) {
    let _ = std::fs::remove_file(dir.join(format!("{sid}.pid")));
}

/// Sessions with a pid file, and the pid when that process still runs.
pub fn leftovers(dir: &Path) -> Vec<(String, Option<u32>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let path = e.path();
        let (Some(sid), Some("pid")) = (
            path.file_stem().and_then(|s| s.to_str()),
            path.extension().and_then(|x| x.to_str()),
        ) else {
            continue;
        };
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let mut parts = text.split_whitespace();
        let pid: Option<u32> = parts.next().and_then(|p| p.parse().ok());
        let started: Option<u64> = parts.next().and_then(|p| p.parse().ok());
        let alive = pid.filter(|&p| p > 1 && start_time(p).is_some() && start_time(p) == started);
        out.push((sid.to_string(), alive));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_recognises_live_processes() {
        let dir = std::env::temp_dir().join(format!("pidfile-test-{}", std::process::id()));
        write(&dir, "s1", std::process::id());
        std::fs::write(dir.join("s2.pid"), "999999999 1\n").unwrap();
        std::fs::write(dir.join("s3.pid"), "garbage").unwrap();
        let mut found = leftovers(&dir);
        found.sort();
        assert_eq!(
            found,
            vec![
                ("s1".into(), Some(std::process::id())),
                ("s2".into(), None),
                ("s3".into(), None)
            ]
        );
        remove(&dir, "s1");
        assert_eq!(leftovers(&dir).len(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
