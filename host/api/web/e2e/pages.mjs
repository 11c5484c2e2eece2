// Loads each page of the web app in headless Chromium against a running node, waits for its
// live content, fails on any console error or page error, and saves a screenshot of each.
//
// Usage: node e2e/pages.mjs <node URL> <screenshot dir>
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";

const [url, outDir] = process.argv.slice(2);
if (!url || !outDir) {
  console.error("usage: node e2e/pages.mjs <node URL> <screenshot dir>");
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });

// What each page shows once its data arrived.
const pages = [
  { name: "market", ready: "#price-chart .uplot", text: ["Order book", "Trades", "Subsidy factor"] },
  { name: "grid", ready: "#devices table", text: ["Generation vs load", "wind_turbine", "island-sim"] },
  { name: "chain", ready: "#blocks table", text: ["Finality latency", "validator-1"] },
];

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const failures = [];
try {
  const page = await browser.newPage({ viewport: { width: 1360, height: 1100 } });
  page.on("console", (m) => { if (m.type() === "error") failures.push(`console error: ${m.text()}`); });
  page.on("pageerror", (e) => failures.push(`page error: ${e.message}`));
  for (const p of pages) {
    await page.goto(`${url}/#${p.name}`);
    await page.waitForSelector(p.ready, { timeout: 60_000 });
    const body = await page.textContent("#page");
    for (const t of p.text) if (!body.includes(t)) failures.push(`${p.name}: missing "${t}"`);
    if (body.includes("Could not")) failures.push(`${p.name}: ${body.slice(0, 200)}`);
    await page.screenshot({ path: `${outDir}/${p.name}.png`, fullPage: true });
    console.log(`${p.name}: ok (${outDir}/${p.name}.png)`);
  }
} finally {
  await browser.close();
}
if (failures.length) {
  console.error(failures.join("\n"));
  process.exit(1);
}
