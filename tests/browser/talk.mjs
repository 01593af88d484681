// Talking from the browser, in headless Chromium driven by playwright-core.
// The microphone is Chromium's fake capture device playing $WAV in a loop
// (the visitor asks the same question every few seconds). The page starts
// a browser session, the TV greets it with a clip played in the page, the
// spoken question is transcribed and answered with a clip played in the
// page, and the session ends. Screenshots go to $SHOTS; the last line of
// stdout is a JSON summary (the socket's messages with their times, the
// visitor's lines, the clips played). Exits non-zero on any failure.
//
//   BASE=http://127.0.0.1:8765 TOKEN=… SHOTS=/tmp/shots WAV=/tmp/q.wav \
//   PLAYWRIGHT_PREFIX=~/.cache/cinema-node CHROMIUM=/usr/bin/chromium \
//   ANSWER="…" node tests/browser/talk.mjs
import { createRequire } from "node:module";
import { mkdirSync } from "node:fs";
import path from "node:path";

const env = (k, d) => process.env[k] || d;
const BASE = env("BASE", "http://127.0.0.1:8765");
const TOKEN = env("TOKEN", "");
const SHOTS = env("SHOTS", "/tmp/cinema-talk-shots");
const WAV = env("WAV", "");
const ANSWER = env("ANSWER", "The station is down the road, past the bakery.");
const require = createRequire(path.join(env("PLAYWRIGHT_PREFIX", "."), "node_modules", "_"));
const { chromium } = require("playwright-core");

mkdirSync(SHOTS, { recursive: true });
const problems = [];
let step = "launch";

const browser = await chromium.launch({
  executablePath: env("CHROMIUM", "/usr/bin/chromium"),
  headless: true,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    // A microphone that plays the visitor's WAV (looped), allowed without asking.
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    `--use-file-for-fake-audio-capture=${WAV}`,
  ],
});

const shot = (page, name) => page.screenshot({ path: path.join(SHOTS, name), fullPage: true });

// The page's own record of the socket (window.cinemaTalk.log).
const talkLog = (page) => page.evaluate(() => window.cinemaTalk.log);

// Waits until the <video> shows the clip of `commandId` playing: the page
// reported it started and the film's time is inside the clip's range.
async function playingInPage(page, commandId, timeout) {
  await page.waitForFunction(
    (id) => {
      const t = window.cinemaTalk;
      const v = document.querySelector("#talk-video");
      const play = t.log.find((m) => m.type === "play" && m.command_id === id);
      const started = t.log.some((m) => m.dir === "out" && m.type === "playback" && m.command_id === id && m.state === "started");
      return play && started && !v.paused && v.currentTime > play.start_s && v.currentTime < play.end_s + 0.1 && v.readyState >= 2;
    },
    commandId,
    { timeout, polling: 50 },
  );
}

async function finishedInPage(page, commandId, timeout) {
  await page.waitForFunction(
    (id) => window.cinemaTalk.log.some((m) => m.dir === "out" && m.type === "playback" && m.command_id === id && m.state !== "started"),
    commandId,
    { timeout, polling: 50 },
  );
  const log = await talkLog(page);
  const m = log.find((x) => x.dir === "out" && x.type === "playback" && x.command_id === commandId && x.state !== "started");
  if (m.state !== "finished") throw new Error(`clip ${commandId} ended ${m.state}: ${m.error}`);
}

let page;
try {
  step = "open the Talk page";
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 }, deviceScaleFactor: 1 });
  page = await context.newPage();
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`console error: ${m.text()}`);
  });
  page.on("response", (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()} from ${r.request().method()} ${r.url()}`);
  });
  page.on("dialog", (d) => d.accept(TOKEN));
  await page.goto(`${BASE}/#talk`, { waitUntil: "domcontentloaded" });
  await page.waitForSelector("#live.on", { timeout: 15000 });
  await page.waitForSelector("#page-talk:not([hidden])", { timeout: 5000 });

  step = "start talking";
  const t0 = Date.now();
  await page.click("#talk-start");
  await page.waitForFunction(() => window.cinemaTalk.log.some((m) => m.type === "joined"), null, { timeout: 20000 });
  const sid = (await talkLog(page)).find((m) => m.type === "session").session_id;
  const mic = await page.getAttribute("#talk-mic", "aria-pressed");
  if (mic !== "true") throw new Error(`the microphone is not on (${await page.textContent("#talk-msg")})`);

  step = "the greeting plays in the page";
  await page.waitForFunction(() => window.cinemaTalk.log.some((m) => m.type === "play" && m.greeting), null, { timeout: 30000 });
  const greeting = (await talkLog(page)).find((m) => m.type === "play" && m.greeting);
  await playingInPage(page, greeting.command_id, 20000);
  const greetingAtMs = Date.now() - t0;
  await page.waitForSelector("#talk-state.speaking", { timeout: 5000 });
  await shot(page, "01-greeting-playing.png");
  await finishedInPage(page, greeting.command_id, 30000);

  step = "the visitor is heard and transcribed";
  const card = page.locator(`#talk-conversation .session[data-sid="${sid}"]`);
  await card.locator("li.visitor").first().waitFor({ timeout: 60000 });
  await page.waitForSelector("#talk-state.listening, #talk-state.speaking", { timeout: 5000 });

  step = "the answer plays in the page";
  await page.waitForFunction((a) => window.cinemaTalk.log.some((m) => m.type === "play" && m.caption === a), ANSWER, { timeout: 90000 });
  const answer = (await talkLog(page)).find((m) => m.type === "play" && m.caption === ANSWER);
  await playingInPage(page, answer.command_id, 20000);
  const caption = await page.textContent("#talk-caption");
  if (caption !== ANSWER) throw new Error(`the screen's caption is ${JSON.stringify(caption)}`);
  await shot(page, "02-answer-playing.png");
  await finishedInPage(page, answer.command_id, 30000);
  await card.locator("li.clip .caption", { hasText: ANSWER }).first().waitFor({ timeout: 10000 });
  await card.locator("li.clip .playback.finished").first().waitFor({ timeout: 10000 });
  await shot(page, "03-answered.png");

  // The meter showed the visitor's voice, as the gateway heard it.
  const level = await page.evaluate(() => window.cinemaTalk.meterMax);
  if (!(level > 0.3)) throw new Error(`the level meter never moved (loudest ${level})`);

  step = "end the session";
  await page.click("#talk-end");
  await page.waitForFunction(() => window.cinemaTalk.ended, null, { timeout: 20000 });
  await card.locator(".state.ended").waitFor({ timeout: 20000 });
  await shot(page, "04-ended.png");

  if (problems.length) throw new Error(problems.join("\n"));
  const visitor = await card.locator("li.visitor .line").allTextContents();
  // Page times as wall-clock milliseconds, comparable with the bus's.
  const log = await page.evaluate(() => window.cinemaTalk.log.map((m) => ({ ...m, wall_ms: Math.round(performance.timeOrigin + m.at) })));
  console.log(JSON.stringify({ ok: true, session: sid, visitor, greeting_at_ms: greetingAtMs, meter_level: level, log }));
  await browser.close();
} catch (e) {
  console.error(`FAILED at "${step}": ${e.message}`);
  if (problems.length) console.error(problems.join("\n"));
  if (page) {
    await page.screenshot({ path: path.join(SHOTS, "failure.png"), fullPage: true }).catch(() => {});
    const log = await talkLog(page).catch(() => []);
    console.error(JSON.stringify(log));
  }
  await browser.close().catch(() => {});
  process.exit(1);
}
