//! The dashboard end to end in a real browser: Debian's headless
//! `chromium`, driven over WebDriver (`chromium-driver`) from Rust, over the
//! whole stack with the simulated Pi: start a session on the Pi, type a
//! line, see the clip that answers it in the live view, catch up on a
//! phone-sized second browser, look at every page, end the session. Its
//! screenshots are kept under the target directory and printed.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use tests::World;
use tests::webdriver::{Browser, Launch};

const TOKEN: &str = "dashboard-test-token";
const PI: &str = tests::SIM_PI;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Every `img.thumb` matching `css` has loaded a picture.
const THUMBS_LOADED: &str = "const all = [...document.querySelectorAll(arguments[0])];
  return all.length > 0 && all.every((i) => i.tagName === 'IMG' && i.complete && i.naturalWidth > 0);";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium() {
    let line = tests::FILM.1[2];
    let answer = tests::FILM.1[3];
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    let w = World::start_with(&[("CINEMA_API_TOKEN", TOKEN)]).await;
    println!("screenshots: {}", shots.display());
    let launch = |viewport| Launch {
        viewport,
        flags: &[],
        shots: &shots,
        prompt_answer: TOKEN,
    };
    let page = Browser::launch(launch((1280, 860))).await;
    let mut timings = serde_json::Map::new();

    // Open the dashboard: it asks for the API token once, then goes live.
    page.goto(&w.base).await;
    page.wait_for("#live.on", None, secs(15)).await;
    assert_eq!(
        page.prompts(),
        1,
        "asked for the token {} times, not once",
        page.prompts()
    );

    // Choose the simulated Pi.
    let option = format!("#start-pi option[value=\"{PI}\"]");
    page.wait_js(
        &option,
        "return !!document.querySelector(arguments[0]);",
        vec![json!(option)],
        secs(20),
        Duration::from_millis(100),
    )
    .await;
    page.select("#start-pi", PI).await;

    // Start a session: its card goes active and the greeting clip shows.
    let t0 = Instant::now();
    page.click("#start-btn").await;
    let sid = page
        .wait_js(
            "the first session card active",
            "const c = document.querySelector('.session');
             const a = c && c.querySelector('.state.active');
             return a && a.getClientRects().length > 0 ? c.dataset.sid : null;",
            vec![],
            secs(30),
            Duration::from_millis(50),
        )
        .await
        .as_str()
        .unwrap()
        .to_string();
    timings.insert("start_to_active_ms".into(), json!(t0.elapsed().as_millis()));
    let card = format!(".session[data-sid=\"{sid}\"]");
    page.wait_for(&format!("{card} li.clip"), None, secs(30))
        .await;
    timings.insert(
        "start_to_greeting_ms".into(),
        json!(t0.elapsed().as_millis()),
    );
    page.shot("01-session-started.png", true).await;

    // Say a line: it shows at once, then the clip that answers it.
    let input = format!("{card} input[name=text]");
    page.fill(&input, line).await;
    let t0 = Instant::now();
    page.press_enter(&input).await;
    page.wait_for(&format!("{card} li.visitor"), Some(line), secs(10))
        .await;
    timings.insert(
        "say_to_line_shown_ms".into(),
        json!(t0.elapsed().as_millis()),
    );
    page.wait_for(&format!("{card} li.clip .caption"), Some(answer), secs(30))
        .await;
    timings.insert(
        "say_to_clip_shown_ms".into(),
        json!(t0.elapsed().as_millis()),
    );
    // The whole turn is on screen: its latency, the clip's playback state and
    // the clip's thumbnail, made at ingest and served by clip-selector.
    let clips = format!("{card} li.clip");
    for inner in [".latency", ".playback", "img.thumb"] {
        page.wait_within(&clips, answer, inner, secs(10)).await;
    }
    page.wait_js(
        "every thumbnail loaded",
        THUMBS_LOADED,
        vec![json!(".session li.clip .thumb")],
        secs(15),
        Duration::from_millis(100),
    )
    .await;
    page.shot("02-clip-answered.png", true).await;

    // A phone (its own browser, so its own storage) catches up from the
    // stored record.
    let phone = Browser::launch(launch((390, 844))).await;
    phone.goto(&w.base).await;
    phone
        .wait_for(&format!("{card} li.clip .caption"), Some(answer), secs(15))
        .await;
    phone
        .wait_js(
            "two thumbnails on the phone",
            "return [...document.querySelectorAll(arguments[0])].filter((e) => e.getClientRects().length > 0).length >= 2;",
            vec![json!(format!("{card} li.clip img.thumb"))],
            secs(10),
            Duration::from_millis(100),
        )
        .await;
    phone
        .wait_js(
            "every thumbnail loaded on the phone",
            THUMBS_LOADED,
            vec![json!(".session li.clip img.thumb")],
            secs(15),
            Duration::from_millis(100),
        )
        .await;
    phone.shot("03-phone-caught-up.png", false).await;
    let overflow = phone
        .eval(
            "return document.documentElement.scrollWidth - window.innerWidth;",
            vec![],
        )
        .await
        .as_f64()
        .unwrap();
    assert!(
        overflow <= 2.0,
        "the phone page is {overflow}px wider than the screen"
    );
    let phone_problems = phone.problems().await;
    phone.close().await;

    // The Pis page: the simulated Pi online, with the session.
    page.click("#nav a[data-page=\"pis\"]").await;
    let pi = format!(".pi[data-pi=\"{PI}\"]");
    page.wait_for(&format!("{pi} .presence"), Some("online"), secs(10))
        .await;
    page.wait_for(&format!("{pi} .sessions code"), None, secs(10))
        .await;
    page.shot("04-pis.png", true).await;

    // The Library page: films, a search that finds the answer with its
    // thumbnail, the last ingest, a preview that plays.
    page.click("#nav a[data-page=\"library\"]").await;
    page.wait_for("#films tbody tr", None, secs(10)).await;
    page.fill("#search-q", line).await;
    page.click("#search-form button[type=\"submit\"]").await;
    page.wait_for("#search-results .caption", Some(answer), secs(10))
        .await;
    page.wait_js(
        "the first result's thumbnail",
        "const i = document.querySelector('#search-results img.thumb'); return !!(i && i.complete && i.naturalWidth > 0);",
        vec![],
        secs(10),
        Duration::from_millis(100),
    )
    .await;
    page.wait_for("#library-status", Some("Last ingest"), secs(10))
        .await;
    page.click_text("#search-results button", "Preview").await;
    page.wait_for("#preview video", None, secs(10)).await;
    let starts_at = page
        .wait_js(
            "the preview to load",
            "const v = document.querySelector('#preview video'); return v && v.readyState >= 1 ? String(v.currentTime) : null;",
            vec![],
            secs(15),
            Duration::from_millis(50),
        )
        .await;
    timings.insert("preview_starts_at_s".into(), starts_at);
    page.shot("05-library.png", true).await;

    // The Health page lists the services.
    page.click("#nav a[data-page=\"health\"]").await;
    page.wait_for("#services tbody tr", Some("llm"), secs(10))
        .await;
    page.shot("06-health.png", true).await;

    // End the session from its card.
    page.click("#nav a[data-page=\"sessions\"]").await;
    page.click(&format!("{card} button.end")).await;
    page.wait_for(&format!("{card} .state.ended"), None, secs(30))
        .await;
    page.wait_for(&format!("{card} li.note"), Some("Session ended"), secs(10))
        .await;
    page.wait_for("#past tbody tr", Some(&sid[..8]), secs(10))
        .await;
    page.shot("07-session-ended.png", true).await;

    // Nothing went wrong in either page: no console error, no uncaught
    // exception, no HTTP response of 400 or more.
    let mut problems = page.problems().await;
    problems.extend(phone_problems);
    if !problems.is_empty() {
        page.fail(&format!("the pages reported problems: {problems:#?}"))
            .await;
    }
    assert_eq!(page.prompts(), 1, "asked for the token again");
    page.close().await;
    println!("{}", serde_json::Value::Object(timings));
    for name in [
        "01-session-started.png",
        "02-clip-answered.png",
        "03-phone-caught-up.png",
        "04-pis.png",
        "05-library.png",
        "06-health.png",
        "07-session-ended.png",
    ] {
        assert!(shots.join(name).exists(), "{name} was not saved");
    }
    // The session the browser started and ended is over on the bus too.
    let (code, s) = w.get(&format!("/api/sessions/{sid}")).await;
    assert_eq!((code, s["state"].as_str()), (200, Some("ended")), "{s}");
    w.stop().await;
}

/// The browser kit itself hears what goes wrong in a page: a console error,
/// an uncaught exception and an HTTP error response each become a problem,
/// and a prompt is answered and counted. (Otherwise the dashboard test's
/// "no problem" would prove nothing.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_kit_reports_what_goes_wrong_in_a_page() {
    let w = World::start_with(&[("CINEMA_API_TOKEN", TOKEN)]).await;
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-kit-screenshots");
    let page = Browser::launch(Launch {
        viewport: (800, 600),
        flags: &[],
        shots: &shots,
        prompt_answer: TOKEN,
    })
    .await;
    page.goto(&w.base).await;
    page.wait_for("#live.on", None, secs(15)).await;
    assert_eq!(page.prompts(), 1);
    assert!(
        page.problems().await.is_empty(),
        "{:?}",
        page.problems().await
    );
    page.eval(
        "console.error('kit-console-error');
         setTimeout(() => { throw new Error('kit-uncaught'); }, 0);
         fetch('/api/no-such-thing-kit');
         return null;",
        vec![],
    )
    .await;
    let mut seen = Vec::new();
    for _ in 0..50 {
        seen = page.problems().await;
        let all = seen.join("\n");
        if all.contains("kit-console-error") && all.contains("kit-uncaught") && all.contains("404")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all = seen.join("\n");
    assert!(all.contains("kit-console-error"), "{seen:#?}");
    assert!(all.contains("kit-uncaught"), "{seen:#?}");
    assert!(all.contains("404"), "{seen:#?}");
    // A prompt opened later is answered with the token and counted.
    page.eval(
        "setTimeout(() => { window.kitAnswer = window.prompt('again?'); }, 0); return null;",
        vec![],
    )
    .await;
    let answer = page
        .wait_js(
            "the prompt answered",
            "return window.kitAnswer || null;",
            vec![],
            secs(5),
            Duration::from_millis(50),
        )
        .await;
    assert_eq!(answer, TOKEN);
    assert_eq!(page.prompts(), 2);
    page.close().await;
    w.stop().await;
}
