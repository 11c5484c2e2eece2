// Page load times of the web app, in headless Chromium against a running node: each page
// loaded ROUNDS times (default 5) from a fresh navigation; the time from navigation to the
// page's live content, and to its next live redraw (a block arrived and the page's queries
// were answered). Prints one line per page and a JSON line with the figures (ms).
//
// Usage: [PARTICIPANT_KEY=hex] node e2e/load-times.mjs <node URL> [rounds]
import { chromium } from "playwright-core";

const [url, roundsArg] = process.argv.slice(2);
if (!url) {
  console.error("usage: node e2e/load-times.mjs <node URL> [rounds]");
  process.exit(2);
}
const rounds = Number(roundsArg || 5);
// What each page shows once its data arrived (as e2e/pages.mjs waits for).
const pages = [
  { name: "market", ready: "#price-chart .uplot" },
  { name: "grid", ready: "#devices table" },
  { name: "chain", ready: "#blocks table" },
  { name: "supervision", ready: "#audit table" },
];
// With PARTICIPANT_KEY set, the participant page too: the key pasted, then its records.
if (process.env.PARTICIPANT_KEY) pages.push({ name: "participant", ready: "#participant-records", key: process.env.PARTICIPANT_KEY });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const figures = {};
const errors = [];
try {
  for (const p of pages) {
    const loads = [];
    const redraws = [];
    for (let i = 0; i < rounds; i++) {
      // A new page each round: nothing cached from the last load but what HTTP caching keeps.
      const page = await browser.newPage({ viewport: { width: 1360, height: 1100 } });
      page.on("pageerror", (e) => errors.push(`${p.name}: ${e.message}`));
      const start = Date.now();
      await page.goto(`${url}/#${p.name}`);
      if (p.key) {
        await page.fill("#secret", p.key);
        await page.click("#use-key");
      }
      await page.waitForSelector(p.ready, { timeout: 60_000 });
      loads.push(Date.now() - start);
      const cards = await page.$("#page .cards");
      if (cards) {
        const before = Date.now();
        await page.evaluate(() => { document.querySelector("#page .cards").dataset.before = "1"; });
        await page.waitForFunction(() => { const c = document.querySelector("#page .cards"); return c && !c.dataset.before; }, null, { timeout: 60_000 });
        redraws.push(Date.now() - before);
      }
      await page.close();
    }
    const stats = (xs) => {
      if (!xs.length) return null;
      const s = [...xs].sort((a, b) => a - b);
      return { median: s[Math.floor(s.length / 2)], max: s[s.length - 1] };
    };
    figures[p.name] = { load_ms: stats(loads), next_redraw_ms: stats(redraws) };
    const r = figures[p.name].next_redraw_ms;
    console.log(`${p.name}: loaded in ${figures[p.name].load_ms.median} ms (median of ${rounds}, max ${figures[p.name].load_ms.max})` +
      (r ? `; next live redraw after ${r.median} ms (max ${r.max})` : ""));
  }
} finally {
  await browser.close();
}
if (errors.length) console.error(errors.join("\n"));
console.log(JSON.stringify({ rounds, pages: figures, page_errors: errors.length }));
