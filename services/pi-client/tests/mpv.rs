//! The player against the real mpv of this machine, headless: a clip plays
//! its range and ends; a refused command is an error in mpv's own words;
//! `loadfile` works whichever form mpv takes first (0.35 takes its options
//! third, 0.38+ fourth, after an index), falling back to the other.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use pi_client::mpv::{Error, Event, Mpv, Options};
use serde_json::json;

fn headless() -> Options {
    testkit::require("mpv", "apt-get install mpv");
    Options {
        bin: "mpv".into(),
        vo: "null".into(),
        ao: "null".into(),
        extra_args: Vec::new(),
    }
}

/// Waits for the next event that `keep` accepts.
async fn next(
    events: &mut tokio::sync::mpsc::Receiver<Event>,
    keep: impl Fn(&Event) -> bool,
) -> Event {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let ev = events.recv().await.expect("mpv is gone");
            if keep(&ev) {
                return ev;
            }
        }
    })
    .await
    .expect("no such event within 20 s")
}

#[tokio::test]
async fn a_clip_plays_its_range_in_either_loadfile_form() {
    let dir = tempfile::tempdir().unwrap();
    let film = dir.path().join("film.mp4");
    testkit::blank_film(&film, 4);
    let url = film.display().to_string();
    let (mut mpv, mut events) = Mpv::start(&headless()).await.unwrap();
    let reported = mpv.version();
    assert!(reported.is_some(), "mpv did not say its version");
    // As reported, then as if it were the other side of 0.38: the first
    // form is refused there and the other one plays.
    for version in [reported, Some((0, 35)), Some((0, 40))] {
        mpv.set_version(version);
        let entry = mpv.play(&url, 1.0, 1.6).await.unwrap();
        assert!(entry.is_some(), "mpv did not name the playlist entry");
        next(&mut events, |e| *e == Event::StartFile { entry }).await;
        next(&mut events, |e| *e == Event::PlaybackRestart).await;
        let start = mpv
            .command(json!(["get_property", "time-pos"]))
            .await
            .unwrap();
        assert!(start.as_f64().unwrap() >= 0.9, "started at {start}");
        let end = next(&mut events, |e| matches!(e, Event::EndFile { .. })).await;
        assert_eq!(
            end,
            Event::EndFile {
                reason: "eof".into(),
                error: None,
                entry,
            },
            "{version:?}"
        );
    }
    mpv.shutdown().await;
}

#[tokio::test]
async fn a_refused_command_says_why_in_mpvs_words() {
    let (mut mpv, _events) = Mpv::start(&headless()).await.unwrap();
    let e = mpv
        .command(json!(["loadfile", "x.mp4", "no-such-mode"]))
        .await
        .unwrap_err();
    match e {
        Error::Refused { command, message } => {
            assert_eq!(command, "loadfile");
            assert!(!message.is_empty() && message != "success", "{message}");
        }
        other => panic!("not refused: {other}"),
    }
    // mpv is still there and answers.
    mpv.command(json!(["get_property", "idle-active"]))
        .await
        .unwrap();
    mpv.shutdown().await;
}
