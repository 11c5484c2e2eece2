// Loads each page of the web app in headless Chromium against a running node, waits for its
// live content, fails on any console error or page error, and saves a screenshot of each.
//
// With PARTICIPANT_KEY and PARTICIPANT_ADDRESS set (an account with tokens and no other
// traffic), it also trades on the participant page: bad input is refused next to its field
// with nothing sent (or, for what only the node can judge, with the node's error); a bid
// appears in the order book and, after clearing, among the account's trades.
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
  { name: "market", ready: "#price-chart .uplot", text: ["Order book", "Trades", "Subsidy factor", "Network fees", "The community's day", "Self-sufficiency", "wind-park"] },
  { name: "grid", ready: "#devices table", text: ["Generation vs load", "wind_turbine", "island-sim", "island-substation", "north-village", "export"] },
  { name: "chain", ready: "#blocks table", text: ["Finality latency", "validator-1"] },
  { name: "supervision", ready: "#audit table", text: ["Proposals and votes", "Delivery reliability", "wind-1", "settlement"] },
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
  await auditExport(page);
  if (process.env.PARTICIPANT_KEY) await participant(page);
} finally {
  await browser.close();
}
if (failures.length) {
  console.error(failures.join("\n"));
  process.exit(1);
}

async function nonce() {
  const r = await fetch(`${url}/v1/accounts/${process.env.PARTICIPANT_ADDRESS}`);
  return (await r.json()).nonce;
}

async function participant(page) {
  await page.goto(`${url}/#participant`);
  await page.fill("#secret", process.env.PARTICIPANT_KEY);
  await page.click("#use-key");
  await page.waitForSelector("#place", { timeout: 30_000 });
  const order = async (energy, price) => {
    await page.fill("#energy", energy);
    await page.fill("#price", price);
    // The form a live redraw keeps is the one filled in; if it was replaced in between, say so.
    const typed = await page.evaluate(() => [document.querySelector("#energy")?.value, document.querySelector("#price")?.value]);
    if (typed[0] !== energy || typed[1] !== price) throw new Error(`the form lost what was typed: ${JSON.stringify(typed)}`);
    await page.click("#place");
  };
  // The error an order gets by `field`. An error under the form instead (the node was slow to
  // include the order, or busy) is logged and the order placed once more; a second miss fails
  // with what the page showed, so a message mapped to the wrong field still fails the test.
  const orderError = async (energy, price, field) => {
    for (let attempt = 1; ; attempt++) {
      await order(energy, price);
      await page.waitForFunction(() => ["energy-error", "price-error"].some((id) => document.querySelector(`#${id}`)?.textContent.length > 0)
        || document.querySelector("#form-message .error") || document.querySelector("#form-message .ok"), null, { timeout: 60_000 });
      if (await page.locator("#form-message .ok").count()) {
        const said = await page.evaluate(() => [document.querySelector("#form-message")?.textContent, document.querySelector("#page-error")?.textContent]);
        throw new Error(`an order that must be refused was placed: ${JSON.stringify(said)}`);
      }
      const shown = await page.evaluate(() => Object.fromEntries(["form-message", "energy-error", "price-error"]
        .map((id) => [id, document.querySelector(`#${id}`)?.textContent ?? ""])));
      if (shown[`${field}-error`]) return shown[`${field}-error`];
      if (attempt === 2 || !shown["form-message"]) {
        throw new Error(`no error by the ${field} field; the page showed ${JSON.stringify(shown)}`);
      }
      console.log(`participant: retrying an order after "${shown["form-message"]}"`);
    }
  };

  // A negative amount is refused in the page; nothing reaches the node.
  const before = await nonce();
  const negative = await orderError("-5", "0.3", "energy");
  if (!/positive/.test(negative)) failures.push(`participant: negative energy said "${negative}"`);
  if ((await nonce()) !== before) failures.push("participant: a refused form sent a transaction");

  // A price outside the band, and more than the balance: the node's errors, by their fields.
  const band = await orderError("5", "0.9", "price");
  if (!/band/.test(band)) failures.push(`participant: out-of-band price said "${band}"`);
  const broke = await orderError("100000", "0.39", "energy");
  if (!/insufficient|balance|funds/i.test(broke)) failures.push(`participant: overdraft said "${broke}"`);

  // A good bid: placed, in the order book (or already cleared), then among the trades.
  await order("5", "0.39");
  await page.waitForSelector("#form-message .ok", { timeout: 30_000 });
  await page.screenshot({ path: `${outDir}/participant.png`, fullPage: true });
  // The market page is live: the bid shows in the book once its period is the next one, and in
  // the trades once that period cleared.
  await page.goto(`${url}/#market`);
  try {
    await page.waitForFunction(() => {
      const t = document.querySelector("#page")?.textContent || "";
      return t.includes("0.390") || t.includes("household-demo");
    }, null, { timeout: 30_000 });
  } catch (_) {
    failures.push("market: the bid never showed in the order book or the trades");
  }
  await page.goto(`${url}/#participant`);
  try {
    await page.waitForFunction(() => document.querySelector("#my-trades")?.textContent.includes("bought"), null, { timeout: 45_000 });
  } catch (_) {
    failures.push("participant: the bid never showed up among the trades");
  }
  // The trade's "verify": the page checks the bundle against the row and saves it (the Rust
  // test then checks it with `gridledger verify --genesis`).
  await saveRecordProof(page, "#my-trades", "tr:has-text('bought') a.record-proof", `${outDir}/trade-proof.json`);
  // Today's statement lists the trade once its period settled (two periods later). Only a run
  // that crosses midnight UTC meanwhile may see a new, empty day.
  const day = new Date().toISOString().slice(0, 10);
  try {
    await page.waitForFunction(() => /energy bought[\s\S]*net/.test(document.querySelector("#statement")?.textContent || ""), null, { timeout: 45_000 });
  } catch (_) {
    if (new Date().toISOString().slice(0, 10) === day) failures.push(`participant: the statement never listed the settled bid: ${await page.textContent("#statement")}`);
  }
  await page.screenshot({ path: `${outDir}/participant-trades.png`, fullPage: true });
  await page.goto(`${url}/#market`);
  await page.waitForSelector("#price-chart .uplot", { timeout: 30_000 });
  console.log("participant: ok");
}

/// The audit log filters, and exports what it shows as CSV.
async function auditExport(page) {
  await page.goto(`${url}/#supervision`);
  await page.waitForSelector("#audit table", { timeout: 60_000 });
  await page.fill("#audit-filter", "wind-1");
  await page.selectOption("#audit-kind", "trade");
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#audit-csv")]);
  const path = await download.path();
  const csv = (await import("node:fs")).readFileSync(path, "utf8").trim().split("\n");
  if (csv[0] !== "period,kind,seller,buyer,kwh,price_tok_per_kwh,value_tok,note") failures.push(`audit csv header: ${csv[0]}`);
  if (csv.length < 2) failures.push("audit csv: no rows for wind-1's trades");
  if (!csv.slice(1).every((l) => l.includes(",trade,") && l.includes("wind-1"))) failures.push("audit csv: the filter was not applied");
  console.log(`supervision: csv export ok (${csv.length - 1} rows)`);
  // A settlement's "verify" from the audit log.
  await page.fill("#audit-filter", "");
  await page.selectOption("#audit-kind", "settlement");
  await saveRecordProof(page, "#audit", "a.record-proof", `${outDir}/settlement-proof.json`);
}

/// Clicks the first "verify" link matching `selector` inside `container`, saves the bundle it
/// downloads to `path` and waits for the page's own check to mark the record proven.
async function saveRecordProof(page, container, selector, path) {
  try {
    const link = page.locator(`${container} ${selector}`).first();
    await link.waitFor({ timeout: 30_000 });
    const [download] = await Promise.all([page.waitForEvent("download", { timeout: 30_000 }), link.click()]);
    await download.saveAs(path);
    await page.waitForFunction((c) => document.querySelector(c)?.textContent.includes("✓ block"), container, { timeout: 10_000 });
    // The page's own check: the bundle's execution certificate names this header.
    const mark = await page.locator(`${container} .tag.green`).first().textContent();
    if (!mark.includes(", final")) failures.push(`${container}: the proven record is not marked final (${mark})`);
    if (await page.locator(`${container} .tag.red`).count()) failures.push(`${container}: a record failed its check`);
    console.log(`proof saved: ${path}`);
  } catch (e) {
    failures.push(`${container} ${selector}: no proof, or not marked proven (${e.message.split("\n")[0]})`);
  }
}
