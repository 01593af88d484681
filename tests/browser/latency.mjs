// Bus event → visible in the dashboard, measured in headless Chromium:
// the page records (wall clock, performance.timeOrigin + now) when each
// marker's entry is put into the DOM and when the next frame after it is
// drawn. Prints "ready" once the page is live, then, once $COUNT markers
// were seen, one JSON line {dom: {marker: ms}, frame: {marker: ms}}.
//
//   BASE=… COUNT=200 PREFIX=m-page- PLAYWRIGHT_PREFIX=… CHROMIUM=… node tests/browser/latency.mjs
import { createRequire } from "node:module";
import path from "node:path";

const env = (k, d) => process.env[k] || d;
const require = createRequire(path.join(env("PLAYWRIGHT_PREFIX", "."), "node_modules", "_"));
const { chromium } = require("playwright-core");
const COUNT = Number(env("COUNT", "200"));
const PREFIX = env("PREFIX", "m-page-");

const browser = await chromium.launch({
  executablePath: env("CHROMIUM", "/usr/bin/chromium"),
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
  page.on("dialog", (d) => d.accept(env("TOKEN", "")));
  await page.goto(env("BASE", "http://127.0.0.1:8765"), { waitUntil: "domcontentloaded" });
  await page.waitForSelector("#live.on", { timeout: 15000 });
  await page.evaluate((prefix) => {
    window.benchDom = {};
    window.benchFrame = {};
    const re = new RegExp(`${prefix}\\d+`);
    new MutationObserver((records) => {
      const now = performance.timeOrigin + performance.now();
      for (const r of records) {
        for (const n of r.addedNodes) {
          const m = re.exec(n.textContent || "");
          if (!m || window.benchDom[m[0]]) continue;
          window.benchDom[m[0]] = now;
          requestAnimationFrame(() => (window.benchFrame[m[0]] = performance.timeOrigin + performance.now()));
        }
      }
    }).observe(document.body, { childList: true, subtree: true });
  }, PREFIX);
  console.log("ready");
  await page.waitForFunction((n) => Object.keys(window.benchFrame).length >= n, COUNT, { timeout: 120000, polling: 100 });
  const result = await page.evaluate(() => ({ dom: window.benchDom, frame: window.benchFrame }));
  console.log(JSON.stringify(result));
  await browser.close();
} catch (e) {
  console.error(`FAILED: ${e.message}`);
  await browser.close().catch(() => {});
  process.exit(1);
}
