// Writes what the node embeds from npm packages into vendor/: uPlot's build as it is, and the
// page's BLS check (bls.mjs with @noble/curves) bundled by esbuild. With --check, fails if
// vendor/ differs from what package-lock.json pins (esbuild's output is deterministic for a
// given version and input).
import { readFileSync, writeFileSync } from "node:fs";
import { buildSync } from "esbuild";

const at = (path) => new URL(path, import.meta.url);
const bls = buildSync({
  entryPoints: [at("bls.mjs").pathname],
  bundle: true,
  minify: true,
  format: "iife",
  target: "es2022",
  legalComments: "inline",
  write: false,
}).outputFiles[0].contents;
const files = {
  "uPlot.iife.min.js": readFileSync(at("node_modules/uplot/dist/uPlot.iife.min.js")),
  "uPlot.min.css": readFileSync(at("node_modules/uplot/dist/uPlot.min.css")),
  "bls12-381.iife.min.js": Buffer.from(bls),
};
const check = process.argv.includes("--check");
let stale = 0;
for (const [name, pinned] of Object.entries(files)) {
  const vendored = at(`vendor/${name}`);
  if (check) {
    let current = null;
    try { current = readFileSync(vendored); } catch (_) { /* missing counts as stale */ }
    if (!current || !pinned.equals(current)) { console.error(`vendor/${name} differs from what the lockfile pins (npm run sync-vendor)`); stale++; }
  } else {
    writeFileSync(vendored, pinned);
  }
}
process.exit(stale ? 1 : 0);
