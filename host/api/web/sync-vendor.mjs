// Copies the pinned uPlot build from node_modules into vendor/ (which the node embeds), or with
// --check, fails if vendor/ differs from what package-lock.json pins.
import { readFileSync, writeFileSync } from "node:fs";

const files = ["uPlot.iife.min.js", "uPlot.min.css"];
const check = process.argv.includes("--check");
let stale = 0;
for (const f of files) {
  const pinned = readFileSync(new URL(`node_modules/uplot/dist/${f}`, import.meta.url));
  const vendored = new URL(`vendor/${f}`, import.meta.url);
  if (check) {
    if (!pinned.equals(readFileSync(vendored))) { console.error(`vendor/${f} differs from the pinned uplot`); stale++; }
  } else {
    writeFileSync(vendored, pinned);
  }
}
process.exit(stale ? 1 : 0);
