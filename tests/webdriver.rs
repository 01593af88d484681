//! Headless Chromium driven over WebDriver: Debian's `chromium` and
//! `chromium-driver`, a private `chromedriver` on a free loopback port, and
//! fantoccini as the client. What the browser tests and the dashboard bench
//! need and nothing more: open a page, wait for what it shows, click and
//! type like a person, run a script, answer the page's prompts, take
//! screenshots, and collect everything the page complained about (console
//! errors, uncaught exceptions, HTTP responses of 400 or more) from
//! Chromium's own log.
#![allow(clippy::unwrap_used)]

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use fantoccini::error::CmdError;
use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// The flags every browser of the tests runs with.
const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// Finds an element that is shown (has a box and is not `visibility:
/// hidden`) matching a CSS selector and, when given, containing a text.
/// Defined in the page by every script that needs it.
const FIND: &str = r#"
const __find = (css, text) => [...document.querySelectorAll(css)].find((e) =>
  (text === null || (e.textContent || "").includes(text)) &&
  e.getClientRects().length > 0 && getComputedStyle(e).visibility !== "hidden");
"#;

/// A browser with its own chromedriver and profile; both end on drop.
pub struct Browser {
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
    shots: PathBuf,
    /// What the page's prompts are answered with.
    prompt_answer: String,
    asked: Mutex<usize>,
    problems: Mutex<Vec<String>>,
}

/// How a browser starts.
pub struct Launch<'a> {
    /// Viewport width and height in CSS pixels (device scale 1).
    pub viewport: (u32, u32),
    /// Flags beyond the test set (a fake microphone, say).
    pub flags: &'a [String],
    /// Where screenshots go.
    pub shots: &'a Path,
    /// What every `window.prompt` is answered with (the API token).
    pub prompt_answer: &'a str,
}

/// A chromedriver command fantoccini has no method for: Chromium's log
/// (`POST /session/{id}/se/log`) or a DevTools command
/// (`POST /session/{id}/goog/cdp/execute`).
#[derive(Debug)]
struct Vendor {
    path: &'static str,
    body: Value,
}

impl WebDriverCompatibleCommand for Vendor {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/{}",
            session.unwrap_or_default(),
            self.path
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(self.body.to_string()))
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium. Fails with an install
    /// hint when either is missing.
    pub async fn launch(opts: Launch<'_>) -> Browser {
        let chromium = testkit::require("chromium", "apt-get install chromium");
        let chromedriver = testkit::require("chromedriver", "apt-get install chromium-driver");
        std::fs::create_dir_all(opts.shots).unwrap();
        let profile = tempfile::tempdir().unwrap();
        let port = testkit::free_port();
        let driver_log = profile.path().join("chromedriver.log");
        // Its own process group, so that Chromium ends with it (see Drop).
        let driver = Command::new(chromedriver)
            .process_group(0)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", driver_log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let status = format!("{url}/status");
        testkit::eventually(
            Duration::from_secs(20),
            "chromedriver to answer",
            async || {
                let r = http.get(&status).send().await.ok()?;
                let v: Value = r.json().await.ok()?;
                v["value"]["ready"].as_bool().filter(|r| *r)
            },
        )
        .await;

        let mut args: Vec<String> = FLAGS.iter().map(|s| s.to_string()).collect();
        args.push(format!(
            "--user-data-dir={}",
            profile.path().join("chromium").display()
        ));
        args.push(format!(
            "--window-size={},{}",
            opts.viewport.0, opts.viewport.1
        ));
        args.extend(opts.flags.iter().cloned());
        let caps: Capabilities = serde_json::from_value(json!({
            "browserName": "chrome",
            // Prompts stay open until the test answers them (see `retry`).
            "unhandledPromptBehavior": "ignore",
            "goog:chromeOptions": { "binary": chromium, "args": args },
            "goog:loggingPrefs": { "browser": "ALL" },
        }))
        .unwrap();
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "chromedriver could not start Chromium: {e}\n{}",
                    std::fs::read_to_string(&driver_log).unwrap_or_default()
                )
            });
        let b = Browser {
            client,
            driver,
            _profile: profile,
            shots: opts.shots.to_path_buf(),
            prompt_answer: opts.prompt_answer.to_string(),
            asked: Mutex::new(0),
            problems: Mutex::new(Vec::new()),
        };
        b.set_viewport(opts.viewport.0, opts.viewport.1).await;
        b
    }

    /// How many prompts the page has shown.
    pub fn prompts(&self) -> usize {
        *self.asked.lock().unwrap()
    }

    /// A DevTools command through chromedriver.
    pub async fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.retry(|| {
            self.client.issue_cmd(Vendor {
                path: "goog/cdp/execute",
                body: json!({ "cmd": cmd, "params": params }),
            })
        })
        .await
        .unwrap_or_else(|e| panic!("{cmd}: {e}"))
    }

    /// The viewport in CSS pixels at device scale 1, as a phone or laptop.
    pub async fn set_viewport(&self, width: u32, height: u32) {
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
        )
        .await;
    }

    /// Opens `url` and waits for its DOM.
    pub async fn goto(&self, url: &str) {
        self.retry(|| self.client.goto(url))
            .await
            .unwrap_or_else(|e| panic!("opening {url}: {e}"));
    }

    /// Runs a command; when the page has a prompt open, answers it (as an
    /// operator typing the token) and runs the command again.
    async fn retry<T, F, Fut>(&self, mut f: F) -> Result<T, CmdError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, CmdError>>,
    {
        loop {
            match f().await {
                Err(e) if e.is_unexpected_alert_open() => self.answer_prompt().await,
                other => return other,
            }
        }
    }

    async fn answer_prompt(&self) {
        // Another command may have answered it meanwhile.
        if self.client.get_alert_text().await.is_err() {
            return;
        }
        let _ = self.client.send_alert_text(&self.prompt_answer).await;
        if self.client.accept_alert().await.is_ok() {
            *self.asked.lock().unwrap() += 1;
        }
    }

    /// Runs `body` (a function body: `return …` gives the value) with
    /// `args` as `arguments`.
    pub async fn eval(&self, body: &str, args: Vec<Value>) -> Value {
        let script = format!("{FIND}\n{body}");
        self.retry(|| self.client.execute(&script, args.clone()))
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{body}"))
    }

    /// Polls `body` every `every` until it returns something truthy, and
    /// returns that; panics with `what` (and a failure screenshot) after
    /// `timeout`.
    pub async fn wait_js(
        &self,
        what: &str,
        body: &str,
        args: Vec<Value>,
        timeout: Duration,
        every: Duration,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.eval(body, args.clone()).await;
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return v;
            }
            if Instant::now() > deadline {
                self.fail(&format!("waited {timeout:?} for {what}")).await;
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Waits until an element matching `css` (and containing `text`) is
    /// shown.
    pub async fn wait_for(&self, css: &str, text: Option<&str>, timeout: Duration) {
        let what = match text {
            Some(t) => format!("{css} with {t:?}"),
            None => css.to_string(),
        };
        self.wait_js(
            &what,
            "return !!__find(arguments[0], arguments[1]);",
            vec![json!(css), json!(text)],
            timeout,
            Duration::from_millis(50),
        )
        .await;
    }

    /// Waits until an element matching `outer` and containing `text` holds
    /// a shown element matching `inner`.
    pub async fn wait_within(&self, outer: &str, text: &str, inner: &str, timeout: Duration) {
        self.wait_js(
            &format!("{inner} inside {outer} with {text:?}"),
            "return [...document.querySelectorAll(arguments[0])].some((o) =>
               (o.textContent || '').includes(arguments[1]) &&
               [...o.querySelectorAll(arguments[2])].some((e) => e.getClientRects().length > 0));",
            vec![json!(outer), json!(text), json!(inner)],
            timeout,
            Duration::from_millis(50),
        )
        .await;
    }

    async fn element(&self, css: &str) -> fantoccini::elements::Element {
        self.retry(|| self.client.find(Locator::Css(css)))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"))
    }

    /// Clicks the first element matching `css`, as a mouse would.
    pub async fn click(&self, css: &str) {
        let el = self.element(css).await;
        self.retry(|| el.click())
            .await
            .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
    }

    /// Clicks the first element matching `css` whose text contains `text`.
    pub async fn click_text(&self, css: &str, text: &str) {
        let all = self
            .retry(|| self.client.find_all(Locator::Css(css)))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"));
        for el in all {
            if el.text().await.is_ok_and(|t| t.contains(text)) {
                self.retry(|| el.click())
                    .await
                    .unwrap_or_else(|e| panic!("clicking {css} {text:?}: {e}"));
                return;
            }
        }
        self.fail(&format!("no {css} with {text:?} to click")).await
    }

    /// Clears the field matching `css` and types `text` into it.
    pub async fn fill(&self, css: &str, text: &str) {
        let el = self.element(css).await;
        self.retry(|| el.clear())
            .await
            .unwrap_or_else(|e| panic!("clearing {css}: {e}"));
        self.retry(|| el.send_keys(text))
            .await
            .unwrap_or_else(|e| panic!("typing into {css}: {e}"));
    }

    /// Presses Enter in the field matching `css`.
    pub async fn press_enter(&self, css: &str) {
        let el = self.element(css).await;
        self.retry(|| el.send_keys("\u{E007}"))
            .await
            .unwrap_or_else(|e| panic!("pressing Enter in {css}: {e}"));
    }

    /// Chooses the option with `value` of the `<select>` matching `css`.
    pub async fn select(&self, css: &str, value: &str) {
        let el = self.element(css).await;
        self.retry(|| el.select_by_value(value))
            .await
            .unwrap_or_else(|e| panic!("choosing {value} in {css}: {e}"));
    }

    /// An attribute of the first element matching `css`.
    pub async fn attr(&self, css: &str, name: &str) -> Option<String> {
        let el = self.element(css).await;
        self.retry(|| el.attr(name))
            .await
            .unwrap_or_else(|e| panic!("attribute {name} of {css}: {e}"))
    }

    /// The text content of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        self.eval(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
            vec![json!(css)],
        )
        .await
        .as_str()
        .unwrap_or_else(|| panic!("no element {css}"))
        .to_string()
    }

    /// A PNG screenshot named `name` in the screenshot folder: the whole
    /// page when `full_page`, otherwise the viewport.
    pub async fn shot(&self, name: &str, full_page: bool) -> PathBuf {
        let mut params = json!({ "format": "png" });
        if full_page {
            let m = self.cdp("Page.getLayoutMetrics", json!({})).await;
            let size = &m["cssContentSize"];
            params["captureBeyondViewport"] = json!(true);
            params["clip"] = json!({
                "x": 0, "y": 0,
                "width": size["width"].as_f64().unwrap_or(1280.0).ceil(),
                "height": size["height"].as_f64().unwrap_or(860.0).ceil(),
                "scale": 1,
            });
        }
        let v = self.cdp("Page.captureScreenshot", params).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v["data"].as_str().unwrap_or_default())
            .unwrap();
        let path = self.shots.join(name);
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Everything the page complained about so far: console errors,
    /// uncaught exceptions and HTTP responses of 400 or more (Chromium logs
    /// each at SEVERE).
    pub async fn problems(&self) -> Vec<String> {
        let log = self
            .retry(|| {
                self.client.issue_cmd(Vendor {
                    path: "se/log",
                    body: json!({ "type": "browser" }),
                })
            })
            .await
            .unwrap_or_else(|e| panic!("reading Chromium's log: {e}"));
        let mut problems = self.problems.lock().unwrap();
        for entry in log.as_array().into_iter().flatten() {
            if entry["level"] == "SEVERE" {
                problems.push(entry["message"].as_str().unwrap_or_default().to_string());
            }
        }
        problems.clone()
    }

    /// Panics with `why`, what the page complained about, and a screenshot
    /// of the moment (`failure.png`).
    pub async fn fail(&self, why: &str) -> ! {
        let shot = self.shot("failure.png", true).await;
        let problems = self.problems().await;
        panic!(
            "{why} (screenshot {})\npage problems: {problems:#?}",
            shot.display()
        );
    }

    /// Ends the browser session and the driver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
        // Drop ends the driver and whatever is left of Chromium.
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(self.driver.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
