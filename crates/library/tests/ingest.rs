//! Ingest over real films made with ffmpeg and espeak-ng: sidecar SRT and
//! WebVTT, subtitles inside the container, a film without subtitles, broken
//! inputs, thumbnails, and re-runs that redo only what changed.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use library::ingest::{self, Progress};
use library::{IndexDir, IngestOptions, Library};
use wire::v1::{ClipKind, SearchMode, SearchRequest};

fn ffmpeg(args: &[&str]) {
    let ok = Command::new(testkit::require("ffmpeg", "apt-get install ffmpeg"))
        .args(["-nostdin", "-v", "error", "-y"])
        .args(args)
        .status()
        .unwrap()
        .success();
    assert!(ok, "ffmpeg {args:?}");
}

/// A film with no subtitles and three plainly different shots.
fn three_shots(path: &Path) {
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=red:s=160x120:r=10:d=3",
        "-f",
        "lavfi",
        "-i",
        "color=c=blue:s=160x120:r=10:d=3",
        "-f",
        "lavfi",
        "-i",
        "color=c=white:s=160x120:r=10:d=3",
        "-filter_complex",
        "[0:v][1:v][2:v]concat=n=3:v=1:a=0[v]",
        "-map",
        "[v]",
        "-g",
        "10",
        path.to_str().unwrap(),
    ]);
}

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl Progress for Recorder {
    fn begin(&self, total: usize, todo: usize) {
        self.0.lock().unwrap().push(format!("begin {total} {todo}"));
    }
    fn done(&self, rel: &str, problem: Option<&str>) {
        self.0
            .lock()
            .unwrap()
            .push(format!("done {rel} {}", problem.unwrap_or("-")));
    }
}

fn search(lib: &Library, q: &str, mode: SearchMode) -> Vec<String> {
    lib.search(&SearchRequest {
        query: q.into(),
        mode: mode as i32,
        limit: 3,
        ..Default::default()
    })
    .unwrap()
    .into_iter()
    .map(|(c, _)| c.caption)
    .collect()
}

#[test]
fn a_library_of_every_kind_of_film_is_ingested_and_kept_up_to_date() {
    let dir = testkit::film_library(&[
        ("harbour", &["Where is the ship?", "The ship left at dawn."]),
        (
            "station",
            &["Is this the train to Paris?", "No, it goes north."],
        ),
        (
            "kitchen",
            &["Something smells wonderful.", "It is only soup."],
        ),
    ]);
    let root = dir.path();
    // WebVTT beside the station film instead of SRT.
    let srt = std::fs::read_to_string(root.join("station.srt")).unwrap();
    std::fs::remove_file(root.join("station.srt")).unwrap();
    let vtt = format!("WEBVTT\n\n{}", srt.replace(',', "."));
    std::fs::write(root.join("station.vtt"), vtt).unwrap();
    // The kitchen film's lines inside an MKV, no sidecar.
    ffmpeg(&[
        "-i",
        root.join("kitchen.mp4").to_str().unwrap(),
        "-i",
        root.join("kitchen.srt").to_str().unwrap(),
        "-map",
        "0",
        "-map",
        "1",
        "-c",
        "copy",
        "-c:s",
        "srt",
        "-metadata:s:s:0",
        "language=eng",
        root.join("kitchen.mkv").to_str().unwrap(),
    ]);
    std::fs::remove_file(root.join("kitchen.mp4")).unwrap();
    std::fs::remove_file(root.join("kitchen.srt")).unwrap();
    // No subtitles at all: scenes only.
    three_shots(&root.join("colours.mp4"));
    // Broken: a "film" that is not one, and Windows-1252 subtitles with an
    // overlap and an empty line beside a good film.
    std::fs::write(root.join("broken.mp4"), b"this is not a film at all").unwrap();
    std::fs::write(
        root.join("broken.srt"),
        "1\n00:00:01,000 --> 00:00:02,000\nNever seen\n",
    )
    .unwrap();
    let mut legacy = b"1\n00:00:00,500 --> 00:00:03,000\nCaf".to_vec();
    legacy.extend([0xe9]);
    legacy.extend(b" au lait?\n\n2\n00:00:02,000 --> 00:00:02,000\n\n\n3\n00:00:02,500 --> 00:00:04,000\nPlease.\n");
    std::fs::copy(root.join("harbour.mp4"), root.join("cafe.mp4")).unwrap();
    std::fs::write(root.join("cafe.srt"), legacy).unwrap();

    let index = IndexDir::inside(root);
    let opt = IngestOptions::default();
    let rec = Recorder::default();
    let lib = Library::ingest(root, &index, &opt, &rec, "http://media.test").unwrap();
    let s = lib.summary().clone();
    assert_eq!(
        (s.films, s.added, s.failed, s.unchanged),
        (6, 6, 1, 0),
        "{s:?}"
    );
    assert!(
        s.problems
            .iter()
            .any(|p| p.starts_with("broken.mp4: not playable")),
        "{:?}",
        s.problems
    );
    assert!(
        s.problems.iter().any(|p| p.starts_with("cafe.mp4")
            && p.contains("windows-1252")
            && p.contains("overlapping")),
        "{:?}",
        s.problems
    );
    assert!(rec.0.lock().unwrap().contains(&"begin 6 6".to_string()));

    // Every source of lines is searchable; the broken film is not listed.
    let films: Vec<(String, String)> = lib
        .films()
        .map(|f| (f.title.clone(), f.subtitles.clone()))
        .collect();
    assert_eq!(
        films,
        [
            ("Cafe", "srt"),
            ("Colours", ""),
            ("Harbour", "srt"),
            ("Kitchen", "embedded"),
            ("Station", "vtt")
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    assert_eq!(
        search(&lib, "train to Paris", SearchMode::Description)[0],
        "Is this the train to Paris?"
    );
    assert_eq!(
        search(&lib, "what smells so good", SearchMode::Answer)[0],
        "It is only soup."
    );
    assert_eq!(
        search(&lib, "café", SearchMode::Description)[0],
        "Café au lait?"
    );
    // A film's lines are answered line by line: its scenes (which run its
    // lines together) are not hits; a film without lines is found by scene.
    let hits = lib
        .search(&SearchRequest {
            query: "ship dawn".into(),
            mode: SearchMode::Description as i32,
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert!(!hits.is_empty());
    assert!(
        hits.iter()
            .all(|(c, _)| c.kind == ClipKind::Dialogue as i32),
        "{hits:?}"
    );
    assert!(
        lib.clips()
            .iter()
            .any(|c| c.film_title == "Harbour" && c.kind == ClipKind::Scene as i32)
    );

    // Clips: dialogue and scenes, keyframe starts, thumbnails on disk.
    let colours: Vec<_> = lib
        .clips()
        .iter()
        .filter(|c| c.film_title == "Colours")
        .collect();
    assert_eq!(colours.len(), 3, "three shots, three scenes: {colours:?}");
    for (c, (a, b)) in colours.iter().zip([(0.0, 3.0), (3.0, 6.0), (6.0, 9.0)]) {
        assert_eq!(c.kind, ClipKind::Scene as i32);
        assert!(
            (c.start_s - a).abs() < 0.25 && (c.end_s - b).abs() < 0.25,
            "{c:?}"
        );
    }
    for c in lib.clips() {
        assert!(c.keyframe_start_s <= c.start_s + 1e-6, "{c:?}");
        assert!(c.end_s > c.start_s);
        assert!(
            c.thumbnail.starts_with("http://media.test/thumbnails/"),
            "{c:?}"
        );
        let jpg = std::fs::read(lib.thumbnail_path(&c.id).unwrap()).unwrap();
        assert_eq!(&jpg[..2], &[0xff, 0xd8], "a JPEG");
    }
    let harbour_lines: Vec<_> = lib
        .clips()
        .iter()
        .filter(|c| c.film_title == "Harbour" && c.kind == ClipKind::Dialogue as i32)
        .collect();
    assert_eq!(harbour_lines.len(), 2);
    assert_eq!(harbour_lines[1].cue, "Where is the ship?");

    // A re-run does nothing.
    let again = Library::ingest(root, &index, &opt, &ingest::LogProgress, "").unwrap();
    let s2 = again.summary();
    assert_eq!(
        (s2.unchanged, s2.added, s2.updated, s2.failed),
        (6, 0, 0, 1),
        "{s2:?}"
    );
    assert!(
        s2.problems
            .iter()
            .any(|p| p.starts_with("broken.mp4: not playable"))
    );
    let ids = |l: &Library| {
        let mut v: Vec<String> = l.clips().iter().map(|c| c.id.clone()).collect();
        v.sort();
        v
    };
    assert_eq!(ids(&lib), ids(&again), "stable ids");

    // Touched but unchanged (the hash decides); a changed subtitle file; a
    // deleted film.
    let f = std::fs::File::options()
        .append(true)
        .open(root.join("harbour.mp4"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
        .unwrap();
    drop(f);
    let station = std::fs::read_to_string(root.join("station.vtt")).unwrap();
    std::fs::write(
        root.join("station.vtt"),
        station.replace("it goes north", "it goes south"),
    )
    .unwrap();
    let colour_thumbs: Vec<_> = colours
        .iter()
        .map(|c| lib.thumbnail_path(&c.id).unwrap())
        .collect();
    std::fs::remove_file(root.join("colours.mp4")).unwrap();
    let third = Library::ingest(root, &index, &opt, &ingest::LogProgress, "").unwrap();
    let s3 = third.summary();
    assert_eq!(
        (s3.unchanged, s3.updated, s3.removed, s3.added),
        (4, 1, 1, 0),
        "{s3:?}"
    );
    assert_eq!(
        search(&third, "south", SearchMode::Description)[0],
        "No. it goes south."
    );
    assert!(
        colour_thumbs.iter().all(|p| !p.exists()),
        "thumbnails of a deleted film go"
    );
    assert!(third.films().all(|f| f.title != "Colours"));
}

#[test]
fn a_missing_library_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let err = Library::ingest(
        &missing,
        &IndexDir::inside(&missing),
        &IngestOptions::default(),
        &ingest::LogProgress,
        "",
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("does not exist"), "{err}");
}

/// Entries no film can come from: a FIFO named like a film (opening it
/// would block forever), a link loop, a dangling link. Each is a problem of
/// its own in the summary, and every real film is still ingested.
#[test]
fn hostile_entries_are_told_apart_and_never_stop_the_ingest() {
    let dir = testkit::film_library(&[("hall", &["Welcome to the hall."])]);
    let root = dir.path();
    let ok = Command::new("mkfifo")
        .arg(root.join("pipe.mp4"))
        .status()
        .unwrap()
        .success();
    assert!(ok, "mkfifo");
    std::fs::create_dir(root.join("more")).unwrap();
    std::os::unix::fs::symlink("..", root.join("more/again")).unwrap();
    std::os::unix::fs::symlink("/nowhere/film.mp4", root.join("gone.mp4")).unwrap();
    // A linked film is a film.
    std::os::unix::fs::symlink(root.join("hall.mp4"), root.join("more/linked.mp4")).unwrap();

    let (tx, rx) = std::sync::mpsc::channel();
    let path = root.to_path_buf();
    std::thread::spawn(move || {
        let lib = Library::ingest(
            &path,
            &IndexDir::inside(&path),
            &IngestOptions {
                scenes: false,
                thumbnails: false,
                ..IngestOptions::default()
            },
            &ingest::LogProgress,
            "",
        );
        let _ = tx.send(lib.map(|l| l.summary().clone()));
    });
    let summary = rx
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("the ingest to finish (a FIFO must not hold it)")
        .unwrap();
    assert_eq!(summary.films - summary.failed, 2, "{summary:?}");
    let problems = summary.problems.join("\n");
    assert!(
        problems.contains("pipe.mp4: not a plain file"),
        "{problems}"
    );
    assert!(problems.contains("link loop"), "{problems}");
    assert!(problems.contains("gone.mp4: cannot be read"), "{problems}");
}
