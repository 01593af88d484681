// The dashboard in headless Chromium, driven by playwright-core:
// start a session on the simulated Pi, type a line, see the clip that
// answers it in the live view, look at every page, end the session.
// Screenshots go to $SHOTS. Exits non-zero on any failure.
//
//   BASE=http://127.0.0.1:8765 TOKEN=… SHOTS=/tmp/shots \
//   PLAYWRIGHT_PREFIX=~/.cache/cinema-node CHROMIUM=/usr/bin/chromium \
//   node tests/browser/dashboard.mjs
import { createRequire } from "node:module";
import { mkdirSync } from "node:fs";
import path from "node:path";

const env = (k, d) => process.env[k] || d;
const BASE = env("BASE", "http://127.0.0.1:8765");
const TOKEN = env("TOKEN", "");
const SHOTS = env("SHOTS", "/tmp/cinema-dashboard-shots");
const PI = env("PI", "test-pi");
const LINE = env("LINE", "Where is the station?");
const ANSWER = env("ANSWER", "The station is down the road, past the bakery.");
const require = createRequire(path.join(env("PLAYWRIGHT_PREFIX", "."), "node_modules", "_"));
const { chromium } = require("playwright-core");

mkdirSync(SHOTS, { recursive: true });
const timings = {};
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
  ],
});

async function openPage(viewport) {
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1 });
  const page = await context.newPage();
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`console error: ${m.text()}`);
  });
  page.on("response", (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()} from ${r.request().method()} ${r.url()}`);
  });
  // The page asks for the API token once; answer like an operator would.
  let asked = 0;
  page.on("dialog", async (d) => {
    asked += 1;
    await d.accept(TOKEN);
  });
  page.asked = () => asked;
  return page;
}

const shot = (page, name, fullPage = true) => page.screenshot({ path: path.join(SHOTS, name), fullPage });

let page;
try {
  step = "open the dashboard";
  page = await openPage({ width: 1280, height: 860 });
  await page.goto(BASE, { waitUntil: "domcontentloaded" });
  await page.waitForSelector("#live.on", { timeout: 15000 });
  if (TOKEN && page.asked() !== 1) throw new Error(`asked for the token ${page.asked()} times, not once`);

  step = "choose the simulated Pi";
  await page.waitForSelector(`#start-pi option[value="${PI}"]`, { state: "attached", timeout: 20000 });
  await page.selectOption("#start-pi", PI);

  step = "start a session";
  let t0 = Date.now();
  await page.click("#start-btn");
  const card = page.locator(".session").first();
  await card.locator(".state.active").waitFor({ timeout: 30000 });
  timings.start_to_active_ms = Date.now() - t0;
  await card.locator("li.clip").first().waitFor({ timeout: 30000 });
  timings.start_to_greeting_ms = Date.now() - t0;
  const sid = await card.getAttribute("data-sid");
  await shot(page, "01-session-started.png");

  step = "say a line";
  await card.locator("input[name=text]").fill(LINE);
  t0 = Date.now();
  await card.locator("input[name=text]").press("Enter");
  await card.locator("li.visitor", { hasText: LINE }).waitFor({ timeout: 10000 });
  timings.say_to_line_shown_ms = Date.now() - t0;
  await card.locator("li.clip .caption", { hasText: ANSWER }).waitFor({ timeout: 30000 });
  timings.say_to_clip_shown_ms = Date.now() - t0;
  // The whole turn is on screen: its latency, the clip's playback state and
  // the clip's thumbnail, made at ingest and served by clip-selector.
  const answer = card.locator("li.clip", { hasText: ANSWER });
  await answer.locator(".latency").waitFor({ timeout: 10000 });
  await answer.locator(".playback").waitFor({ timeout: 10000 });
  await answer.locator("img.thumb").waitFor({ timeout: 10000 });
  await page.waitForFunction(() => [...document.querySelectorAll(".session li.clip .thumb")].every((i) => i.tagName === "IMG" && i.complete && i.naturalWidth > 0), null, { timeout: 15000 });
  await shot(page, "02-clip-answered.png");

  step = "a phone catches up from the stored record";
  const phone = await openPage({ width: 390, height: 844 });
  await phone.goto(BASE, { waitUntil: "domcontentloaded" });
  await phone.locator(`.session[data-sid="${sid}"] li.clip .caption`, { hasText: ANSWER }).waitFor({ timeout: 15000 });
  await phone.locator(`.session[data-sid="${sid}"] li.clip img.thumb`).nth(1).waitFor({ timeout: 10000 });
  await phone.waitForFunction(() => [...document.querySelectorAll(".session li.clip img.thumb")].every((i) => i.complete && i.naturalWidth > 0), null, { timeout: 15000 });
  await shot(phone, "03-phone-caught-up.png", false);
  const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 2) throw new Error(`the phone page is ${overflow}px wider than the screen`);
  await phone.context().close();

  step = "the Pis page";
  await page.click('#nav a[data-page="pis"]');
  const pi = page.locator(`.pi[data-pi="${PI}"]`);
  await pi.locator(".presence", { hasText: "online" }).waitFor({ timeout: 10000 });
  await pi.locator(".sessions code").first().waitFor({ timeout: 10000 });
  await shot(page, "04-pis.png");

  step = "the Library page";
  await page.click('#nav a[data-page="library"]');
  await page.locator("#films tbody tr").first().waitFor({ timeout: 10000 });
  await page.fill("#search-q", LINE);
  await page.click('#search-form button[type="submit"]');
  await page.locator("#search-results .caption", { hasText: ANSWER }).first().waitFor({ timeout: 10000 });
  await page.waitForFunction(() => {
    const i = document.querySelector("#search-results img.thumb");
    return i && i.complete && i.naturalWidth > 0;
  }, null, { timeout: 10000 });
  await page.locator("#library-status", { hasText: "Last ingest" }).waitFor({ timeout: 10000 });
  await page.locator("#search-results button", { hasText: "Preview" }).first().click();
  await page.waitForSelector("#preview video", { timeout: 10000 });
  const ready = await page.waitForFunction(() => {
    const v = document.querySelector("#preview video");
    return v && v.readyState >= 1 ? v.currentTime : null;
  }, null, { timeout: 15000 });
  timings.preview_starts_at_s = await ready.jsonValue();
  await shot(page, "05-library.png");

  step = "the Health page";
  await page.click('#nav a[data-page="health"]');
  await page.locator("#services tbody tr", { hasText: "llm" }).waitFor({ timeout: 10000 });
  await shot(page, "06-health.png");

  step = "end the session";
  await page.click('#nav a[data-page="sessions"]');
  await card.locator("button.end").click();
  await card.locator(".state.ended").waitFor({ timeout: 30000 });
  await card.locator("li.note", { hasText: "Session ended" }).waitFor({ timeout: 10000 });
  await page.locator("#past tbody tr", { hasText: sid.slice(0, 8) }).waitFor({ timeout: 10000 });
  await shot(page, "07-session-ended.png");

  if (problems.length) throw new Error(problems.join("\n"));
  console.log(JSON.stringify({ ok: true, session: sid, shots: SHOTS, timings }));
  await browser.close();
} catch (e) {
  console.error(`FAILED at "${step}": ${e.message}`);
  if (problems.length) console.error(problems.join("\n"));
  if (page) await page.screenshot({ path: path.join(SHOTS, "failure.png"), fullPage: true }).catch(() => {});
  await browser.close().catch(() => {});
  process.exit(1);
}
