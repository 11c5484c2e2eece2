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
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";

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
  // A console error names no URL: say which request the node refused, and why.
  page.on("response", async (r) => {
    if (r.status() >= 400) failures.push(`${r.status()} from ${r.request().method()} ${r.url()} ${(r.request().postData() || "").slice(0, 200)}: ${(await r.text().catch(() => "")).slice(0, 300)}`);
  });
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

// Waits until the page's live refresh has redrawn its cards (a block arrived and the page's
// queries were answered).
async function nextRedraw(page) {
  await page.evaluate(() => { document.querySelector("#page .cards").dataset.before = "1"; });
  await page.waitForFunction(() => { const c = document.querySelector("#page .cards"); return c && !c.dataset.before; }, null, { timeout: 30_000 });
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

  // A live refresh redraws the page around the form, never the form itself: the keys typed
  // after a redraw still reach the field. (A redraw that detached the form moved the focus to
  // the body, so the next keys went nowhere and an order could go out with the old price.)
  await page.fill("#price", "0.3");
  await nextRedraw(page);
  await page.keyboard.type("9");
  const price = await page.inputValue("#price");
  if (price !== "0.39") throw new Error(`keys typed across a live refresh were lost: the price field holds "${price}"`);

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
  // Typing across a live refresh: the filter keeps its focus, so no key is lost.
  await page.fill("#audit-filter", "wind");
  await nextRedraw(page);
  await page.keyboard.type("-1");
  const filter = await page.inputValue("#audit-filter");
  if (filter !== "wind-1") throw new Error(`keys typed across a live refresh were lost: the audit filter holds "${filter}"`);
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
  await checkBundles(page, `${outDir}/settlement-proof.json`);
}

// Declared as functions: the checks above run before a `const` here would be initialized.
function sha256(...parts) { const h = createHash("sha256"); for (const p of parts) h.update(p); return h.digest(); }
function u32le(n) { const b = Buffer.alloc(4); b.writeUInt32LE(n); return b; }
function u64le(n) { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(n)); return b; }

/// A header's hash as the node computes it (SHA-256 over a tag and its borsh encoding),
/// written here apart from the page's own.
function headerHash(h) {
  const id = Buffer.from(h.chain_id);
  return sha256(Buffer.from("gridledger/header/v1"), u32le(id.length), id, u64le(h.height), Buffer.from(h.parent_hash, "hex"),
    u64le(h.time_ms), Buffer.from(h.proposer, "hex"), Buffer.from(h.tx_root, "hex"), u32le(h.tx_count), Buffer.from(h.state_root, "hex"),
    Buffer.from(h.receipts_root, "hex"), u32le(h.receipt_count));
}

/// The supervision page's "Check a proof bundle" on the bundle it saved (valid and final) and
/// on forgeries of it, each refused for its own reason. The forgeries are left in `outDir`
/// for the Rust test to show `gridledger verify` refuses them too.
async function checkBundles(page, path) {
  const real = JSON.parse(readFileSync(path, "utf8"));
  const copy = () => JSON.parse(JSON.stringify(real));
  const check = async (name, bundle) => {
    const file = `${outDir}/${name}.json`;
    writeFileSync(file, JSON.stringify(bundle, null, 2));
    await page.evaluate(() => { document.querySelector("#bundle-result").textContent = ""; });
    await page.setInputFiles("#bundle-file", file);
    await page.waitForFunction(() => /^(valid|INVALID)/.test(document.querySelector("#bundle-result")?.textContent || ""), null, { timeout: 30_000 });
    return page.textContent("#bundle-result");
  };
  const flip = (h) => h.slice(0, -2) + (parseInt(h.slice(-2), 16) ^ 1).toString(16).padStart(2, "0");

  const said = await check("bundle-real", real);
  if (!/^valid .*final/.test(said)) failures.push(`bundle check: the page's own proof did not check out: ${said}`);
  // A value changed under the real header: its Merkle path no longer leads to the state root.
  const tampered = copy();
  tampered.proofs[0].value = flip(tampered.proofs[0].value);
  const refused = [["forged-value", tampered, /INVALID.*Merkle/]];
  // A made-up header whose state root is a one-leaf tree holding whatever the forger likes,
  // under the real certificate (which is over the real header)...
  const madeUp = copy();
  const key = Buffer.from(madeUp.proofs[0].key, "hex");
  const value = Buffer.from(flip(madeUp.proofs[0].value), "hex");
  const keyHash = sha256(key), valueHash = sha256(value);
  madeUp.proofs = [{ ...madeUp.proofs[0], value: value.toString("hex"), proof: Buffer.concat([Buffer.from([1]), keyHash, valueHash, u32le(0)]).toString("hex") }];
  madeUp.header.state_root = sha256(Buffer.from("JMT::LeafNode"), keyHash, valueHash).toString("hex");
  refused.push(["forged-header", madeUp, /INVALID.*another header/]);
  // ...and with the certificate rewritten to name the made-up header: only the aggregated BLS
  // signature tells it apart.
  const renamed = JSON.parse(JSON.stringify(madeUp));
  const cert = Buffer.from(renamed.finality.certificate, "hex");
  headerHash(renamed.header).copy(cert, 10);
  renamed.finality.certificate = cert.toString("hex");
  refused.push(["forged-certificate", renamed, /INVALID.*signature/]);
  // The real header and certificate with the header's bytes slid one place across its fields
  // (the parent hash a byte short, the receipts root a byte long): the same bytes, so the
  // same hash, and a different state root. Refused for its field widths before anything else.
  const slid = copy();
  const h = real.header;
  const bytes = Buffer.concat(["parent_hash", "time_ms", "proposer", "tx_root", "tx_count", "state_root", "receipts_root"].map((f) =>
    f === "time_ms" ? u64le(h[f]) : f === "tx_count" ? u32le(h[f]) : Buffer.from(h[f], "hex")));
  const at = (from, to) => bytes.subarray(from, to);
  Object.assign(slid.header, {
    parent_hash: at(0, 31).toString("hex"), time_ms: at(31, 39).readBigUInt64LE().toString(), proposer: at(39, 71).toString("hex"),
    tx_root: at(71, 103).toString("hex"), tx_count: at(103, 107).readUInt32LE(), state_root: at(107, 139).toString("hex"),
    receipts_root: at(139, 172).toString("hex"),
  });
  if (!headerHash(slid.header).equals(headerHash(real.header))) throw new Error("the slid header should hash as the real one");
  refused.push(["forged-slid-header", slid, /INVALID.*32 bytes/]);
  for (const [name, bundle, expected] of refused) {
    const answer = await check(name, bundle);
    if (!expected.test(answer)) failures.push(`bundle check: ${name} was not refused as ${expected}: ${answer}`);
  }
  console.log(`supervision: bundle check ok (1 valid, ${refused.length} forgeries refused)`);
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
