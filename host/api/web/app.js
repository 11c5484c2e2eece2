// The gridledger web app: market, grid and chain pages over the node's documented HTTP API
// (/openapi.json), kept live by the server-sent block stream (/v1/events).
"use strict";

const TOK = 1e6; // micro-tokens per token
const MAX_POINTS = 120;

// ---------- API ----------

async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  };
  const resp = await fetch(path, init);
  const data = await resp.json();
  if (!resp.ok) throw new Error(`${data.code || resp.status}: ${data.error || ""}`);
  return data;
}

const state = {
  status: null,
  directory: null, // address -> account name
  contracts: {},   // label -> address
  marketConfig: null,
  power: [],       // [{t, gen, load}] from device readings
  latency: [],     // [{height, ms}]
  blocks: [],      // latest committed blocks, newest first
};

async function query(label, msg) {
  const addr = state.contracts[label];
  if (!addr) throw new Error(`no contract ${label}`);
  return api(`/v1/contracts/${addr}/query`, msg);
}

// A settled period is final (a period settles once): its summary, trades and parties are
// fetched once per tab, which keeps the pages' queries per redraw to the open periods.
const settledCache = new Map(); // "what:period" -> answer

async function settledOr(what, period, fetch) {
  const key = `${what}:${period}`;
  if (settledCache.has(key)) return settledCache.get(key);
  const answer = await fetch();
  const summary = what === "period" ? answer : settledCache.get(`period:${period}`);
  if (summary && summary.settled) settledCache.set(key, answer);
  return answer;
}
const periodSummary = (p) => settledOr("period", p, () => query("market", { period: { period: p } }));
const periodTrades = (p) => settledOr("trades", p, () => query("market", { trades: { period: p, limit: 500 } }));
const periodParties = (p) => settledOr("parties", p, () => query("market", { parties: { period: p } }));

async function loadDirectory() {
  const d = await api("/v1/directory");
  state.directory = Object.fromEntries(d.accounts.map((a) => [a.address, a.name]));
  state.contracts = Object.fromEntries(d.contracts.map((c) => [c.label, c.address]));
  if (state.contracts.market) state.marketConfig = await query("market", { config: {} });
}

// ---------- formatting ----------

const el = (html) => { const t = document.createElement("template"); t.innerHTML = html.trim(); return t.content.firstChild; };
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
const name = (addr) => (state.directory && state.directory[addr]) || (addr ? addr.slice(0, 10) + "…" : "–");
const tok = (micro, digits = 3) => (micro / TOK).toFixed(digits);
const kwh = (wh) => (wh / 1000).toLocaleString(undefined, { maximumFractionDigits: 1 });
const kw = (w) => (w / 1000).toLocaleString(undefined, { maximumFractionDigits: 1 });
const fixed = (s) => Number.parseFloat(s);
const short = (h) => (h ? h.slice(0, 10) + "…" : "–");
const time = (ms) => new Date(ms).toLocaleTimeString();

function periodOf(ms) {
  const c = state.marketConfig;
  if (!c || ms < c.start_ms) return null;
  return Math.floor((ms - c.start_ms) / c.period_ms);
}

/// The profile quarter-hour a devnet period stands for (96 per day).
const clock = (p) => { const r = p % 96; return `${String(Math.floor(r / 4)).padStart(2, "0")}:${String((r % 4) * 15).padStart(2, "0")}`; };

function card(label, value, sub = "") {
  // Labels are shown in capitals; a symbol such as μ must keep its case (Μ reads as M).
  const shown = esc(label).replace(/μ/g, `<span class="sym">μ</span>`);
  return `<div class="card"><div class="label">${shown}</div><div class="value">${value}</div><div class="sub">${sub}</div></div>`;
}

function table(headers, rows, empty = "nothing yet") {
  if (!rows.length) return `<div class="empty">${esc(empty)}</div>`;
  const th = headers.map((h) => `<th class="${h.num ? "num" : ""}">${esc(h.label)}</th>`).join("");
  const tr = rows.map((r) => `<tr>${r.map((c, i) => `<td class="${headers[i].num ? "num" : ""}">${c}</td>`).join("")}</tr>`).join("");
  return `<table><thead><tr>${th}</tr></thead><tbody>${tr}</tbody></table>`;
}

// ---------- charts (uPlot) ----------

const charts = {};

/// A uPlot chart, redrawn in place when it exists. `axes.x`: for a count axis (heights,
/// periods), its legend label and how to show a value; without it, the x axis is time.
function chart(id, target, series, data, axes) {
  const width = Math.max(320, target.clientWidth - 8);
  if (charts[id] && charts[id].root.isConnected) {
    charts[id].setData(data);
    return;
  }
  target.innerHTML = "";
  const x = axes.x;
  charts[id] = new uPlot({
    width, height: 240,
    scales: { x: { time: !x } },
    series: [x ? { label: x.label, value: (u, v) => (v == null ? "–" : x.fmt(v)) } : { label: "time" }, ...series],
    axes: [x ? { space: 70, incrs: [1, 2, 4, 8, 16, 32, 64, 128], values: (u, vs) => vs.map(x.fmt) } : {}, ...(axes.y || [{}])],
    legend: { live: true },
  }, data, target);
}

// ---------- the community and the network ----------

/// kW a period's Wh stand for (a period stands for the field time `energy_period_ms`).
const periodKw = (wh) => {
  const ms = (state.marketConfig && state.marketConfig.energy_period_ms) || 900000;
  return (wh * 3600) / ms;
};
const pct = (a, b) => (b ? `${((100 * a) / b).toFixed(0)} %` : "–");

/// Self-sufficiency, self-consumption, renewable share and fees over settled periods, and
/// each feeder's peak scheduled flow against its transformer.
function communityDay(periods) {
  const settled = periods.filter((s) => s.settled);
  if (!settled.length) return `<div class="empty">no settled period yet</div>`;
  const sum = (f) => settled.reduce((a, s) => a + (s[f] || 0), 0);
  const delivered = sum("delivered_wh");
  const cards = `<div class="cards">
    ${card("Self-sufficiency", pct(delivered, sum("consumed_wh")), "of metered consumption bought from peers and delivered")}
    ${card("Self-consumption", pct(delivered, sum("produced_wh")), "of metered production sold to peers and delivered")}
    ${card("Renewable share", pct(sum("renewable_delivered_wh"), delivered), "of the energy delivered between peers")}
    ${card("Fees", `${tok(sum("fees"))} <small>tok</small>`, `wheeling ${tok(sum("wheeling_fees"))} · transaction ${tok(sum("transaction_fees"))} · congestion ${tok(sum("congestion_fees"))}`)}
  </div>`;
  const peaks = new Map();
  for (const s of periods) {
    for (const f of s.feeders || []) {
      const p = peaks.get(f.name) || { import: 0, export: 0, importLimit: f.import_limit_wh, exportLimit: f.export_limit_wh, full: 0 };
      p.import = Math.max(p.import, f.import_wh);
      p.export = Math.max(p.export, f.export_wh);
      if ((f.import_wh > 0 && f.import_wh === f.import_limit_wh) || (f.export_wh > 0 && f.export_wh === f.export_limit_wh)) p.full++;
      peaks.set(f.name, p);
    }
  }
  const rows = [...peaks].map(([n, p]) => [esc(n), `${kw(periodKw(p.import) * 1000)} / ${kw(periodKw(p.importLimit) * 1000)}`,
    `${kw(periodKw(p.export) * 1000)} / ${kw(periodKw(p.exportLimit) * 1000)}`, p.full]);
  return cards + table([{ label: "feeder" }, { label: "peak import / capacity kW", num: true },
    { label: "peak export / capacity kW", num: true }, { label: "periods at a limit", num: true }], rows, "no topology: one bus");
}

/// The topology as an SVG: the PCC on top, a feeder per column, each transformer's scheduled
/// flow in the last cleared period against its limit (green: room; red: at the limit).
function topologySvg(grid, period) {
  const flows = new Map(((period && period.feeders) || []).map((f) => [f.name, f]));
  const n = grid.feeders.length;
  const w = Math.max(640, n * 230), colW = w / n, h = 330;
  const bar = (x, y, used, limit, label) => {
    const frac = limit ? Math.min(1, used / limit) : 0;
    const color = used > 0 && used >= limit ? "#c53030" : "#1f9d55";
    return `<rect x="${x}" y="${y}" width="150" height="12" rx="3" fill="#edf2f7"/>
      <rect x="${x}" y="${y}" width="${150 * frac}" height="12" rx="3" fill="${color}"/>
      <text x="${x}" y="${y - 4}" font-size="11" fill="#4a5568">${esc(label)} ${kw(periodKw(used) * 1000)} / ${kw(periodKw(limit) * 1000)} kW</text>`;
  };
  let out = `<svg class="topology" viewBox="0 0 ${w} ${h}" width="100%" role="img" aria-label="network topology">
    <rect x="${w / 2 - 110}" y="10" width="220" height="40" rx="6" fill="#2b6cb0"/>
    <text x="${w / 2}" y="35" text-anchor="middle" font-size="14" fill="white">${esc(grid.pcc)} (PCC)</text>`;
  grid.feeders.forEach((f, i) => {
    const cx = colW * i + colW / 2, x = cx - 80;
    const flow = flows.get(f.name) || { import_wh: 0, export_wh: 0, local_wh: 0 };
    out += `<line x1="${w / 2}" y1="50" x2="${cx}" y2="120" stroke="#a0aec0" stroke-width="2"/>
      <rect x="${x}" y="120" width="160" height="195" rx="6" fill="white" stroke="#cbd5e0"/>
      <text x="${cx}" y="140" text-anchor="middle" font-size="13" font-weight="bold">${esc(f.name)}</text>
      ${bar(x + 5, 165, flow.export_wh, f.export_wh, "export")}
      ${bar(x + 5, 200, flow.import_wh, f.import_wh, "import")}
      <text x="${x + 5}" y="228" font-size="11" fill="#4a5568">local ${kw(periodKw(flow.local_wh) * 1000)} kW</text>
      ${f.accounts.slice(0, 4).map((a, k) => `<text x="${x + 5}" y="${250 + 13 * k}" font-size="11">${esc(name(a))}</text>`).join("")}
      ${(f.connected || 0) > 4 ? `<text x="${x + 5}" y="${250 + 13 * 4}" font-size="11" fill="#4a5568">… ${f.connected} connected</text>` : ""}`;
  });
  return out + `</svg>`;
}

// ---------- pages ----------

const pages = {
  async market(root) {
    if (!state.contracts.market) { root.innerHTML = `<h2>Market</h2><div class="empty">This chain has no market contract.</div>`; return; }
    const now = state.status.time_ms;
    const current = periodOf(now) ?? 0;
    const next = current + 1;
    const stats = await query("market", { stats: {} });
    const price = await query("market", { price: { period: next } });
    const fees = state.contracts.pricing ? await query("pricing", { fees: {} }) : null;
    // The last 96 periods (a field day), those that cleared, oldest first; the chart shows 48.
    const wanted = [];
    for (let p = current; p >= 0 && p > current - 96; p--) wanted.unshift(p);
    const day = (await Promise.all(wanted.map(periodSummary)))
      .filter((s) => s && s.cleared);
    const recent = day.slice(-48);
    const last = recent[recent.length - 1];
    const orders = await query("market", { orders: { period: next, limit: 500 } });
    const trades = last ? await periodTrades(last.period) : [];

    const share = (s) => (s.traded_wh ? (100 * s.renewable_wh) / s.traded_wh : 0);
    // A period that traded nothing has no clearing price or share: a gap, not a zero.
    const traded = (s, v) => (s.traded_wh ? v : null);
    root.innerHTML = `
      <h2>Market <span class="muted">· period ${current} (${clock(current)}) being delivered</span></h2>
      <div class="cards">
        ${card(`Next period ${next}`, `${tok(price.price)} <small>tok/kWh</small>`, `reference price · band ${tok(price.f_min)}–${tok(price.f_max)}`)}
        ${card("Subsidy factor μ", fixed(price.mu).toFixed(3), fixed(price.mu) > 1 ? "renewables short: producing pays more" : "renewables plentiful: consuming earns points")}
        ${card("Forecasts so far: supply / demand", `${kwh(price.supply_wh)} / ${kwh(price.demand_wh)} <small>kWh</small>`, `<div class="bar"><span style="width:${Math.min(100, (100 * price.supply_wh) / Math.max(1, price.demand_wh))}%;background:var(--green)"></span></div>`)}
        ${card(last ? `Cleared period ${last.period}` : "Cleared", last ? `${tok(last.clearing_price)} <small>tok/kWh</small>` : "–", last ? `${kwh(last.traded_wh)} kWh traded, ${share(last).toFixed(0)} % renewable` : "")}
        ${card("Settled periods", stats.settled_periods, `subsidy pool ${tok(stats.pool, 0)} tok`)}
        ${fees ? card("Network fees", `${tok(fees.wheeling_feeder)} / ${tok(fees.wheeling_island)} <small>tok/kWh</small>`,
          `wheeling inside a feeder / across the island · transaction fee ${tok(fees.transaction_fee)}, ${fees.buyer_share_percent} % paid by the buyer · in force since block ${fees.from_height}${fees.next ? `, next from block ${fees.next.from_height}` : ""}`) : ""}
      </div>
      <div class="panel"><h3>Price, μ and renewable share by period</h3><div id="price-chart"></div></div>
      <div class="panel"><h3>The community's day <span class="muted">· last ${day.filter((s) => s.settled).length} settled periods</span></h3><div id="community"></div></div>
      <div class="grid2">
        <div class="panel"><h3>Order book · period ${next}</h3><div id="book"></div></div>
        <div class="panel"><h3>Trades · period ${last ? last.period : "–"}</h3><div id="trades"></div></div>
      </div>`;

    const xs = recent.map((s) => s.period);
    chart("price", root.querySelector("#price-chart"), [
      { label: "clearing price (tok/kWh)", stroke: "#2b6cb0", width: 2, scale: "tok" },
      { label: "μ", stroke: "#d69e2e", width: 2, scale: "mu" },
      { label: "renewable share (%)", stroke: "#1f9d55", width: 2, scale: "pct" },
    ], [xs, recent.map((s) => traded(s, s.clearing_price / TOK)), recent.map((s) => fixed(s.mu)), recent.map((s) => traded(s, share(s)))],
    { x: { label: "period", fmt: (p) => `${clock(p)}` }, y: [{ scale: "tok", label: "tok/kWh" }, { scale: "mu", side: 1, label: "μ", grid: { show: false } }] });

    const side = (s) => orders.filter((o) => o.side === s);
    const depth = (list, desc) => {
      const byPrice = new Map();
      for (const o of list) byPrice.set(o.price, (byPrice.get(o.price) || 0) + (o.wh - o.filled_wh));
      const prices = [...byPrice.keys()].sort((a, b) => (desc ? b - a : a - b));
      let cum = 0;
      return prices.map((p) => { cum += byPrice.get(p); return [p, byPrice.get(p), cum]; });
    };
    const bids = depth(side("buy"), true);
    const offers = depth(side("sell"), false);
    // A community's book has hundreds of price levels: the best 30 of each side.
    const BOOK_ROWS = 30, TRADE_ROWS = 40;
    const rows = [];
    for (let i = 0; i < Math.min(BOOK_ROWS, Math.max(bids.length, offers.length)); i++) {
      const b = bids[i], o = offers[i];
      rows.push([b ? kwh(b[2]) : "", b ? kwh(b[1]) : "", b ? `<b style="color:var(--blue)">${tok(b[0])}</b>` : "",
        o ? `<b style="color:var(--green)">${tok(o[0])}</b>` : "", o ? kwh(o[1]) : "", o ? kwh(o[2]) : ""]);
    }
    root.querySelector("#book").innerHTML = table([
      { label: "bids Σ kWh", num: true }, { label: "kWh", num: true }, { label: "bid tok/kWh", num: true },
      { label: "offer tok/kWh", num: true }, { label: "kWh", num: true }, { label: "offers Σ kWh", num: true },
    ], rows, "no orders for the next period yet");
    root.querySelector("#trades").innerHTML = (trades.length > TRADE_ROWS
      ? `<p class="muted">the first ${TRADE_ROWS} of ${trades.length} trades</p>` : "") + table([
      { label: "seller" }, { label: "buyer" }, { label: "kWh", num: true }, { label: "tok/kWh", num: true },
      { label: "fees tok", num: true }, { label: "level" }, { label: "" },
    ], trades.slice(0, TRADE_ROWS).map((t) => [esc(name(t.seller)), esc(name(t.buyer)), kwh(t.wh), tok(t.price),
      tok((t.wheeling_fee || 0) + (t.buyer_fee || 0) + (t.seller_fee || 0) + (t.congestion_fee || 0), 4),
      t.level === "feeder" ? `<span class="tag green" title="inside ${esc(t.seller_feeder || "")}">local</span>`
        : `<span class="tag" title="${esc(t.seller_feeder || "PCC")} → ${esc(t.buyer_feeder || "PCC")}">island</span>`,
      t.renewable ? `<span class="tag green">renewable</span>` : `<span class="tag">grid</span>`]), "no trades in the last cleared period");
    root.querySelector("#community").innerHTML = communityDay(day);
  },

  async grid(root) {
    const devices = (await api("/v1/devices")).devices;
    let plugins = [];
    try { plugins = (await api("/v1/plugins")).plugins; } catch (_) { /* this node runs no plugins */ }
    const topology = state.contracts.market ? await query("market", { grid: { accounts: 4 } }) : null;
    // The latest cleared period's schedule on each feeder.
    let topoPeriod = null;
    const current = periodOf(state.status.time_ms) ?? 0;
    for (let p = current; p >= 0 && p > current - 3 && !topoPeriod; p--) {
      const s = await periodSummary(p);
      if (s && s.cleared) topoPeriod = s;
    }
    const gen = devices.reduce((a, d) => a + Math.max(0, (d.last_reading && d.last_reading.power_w) || 0), 0);
    const load = devices.reduce((a, d) => a - Math.min(0, (d.last_reading && d.last_reading.power_w) || 0), 0);
    root.innerHTML = `
      <h2>Grid <span class="muted">· ${devices.length} registered devices</span></h2>
      <div class="cards">
        ${card("Generation now", `${kw(gen)} <small>kW</small>`, "sum of exporting devices")}
        ${card("Load now", `${kw(load)} <small>kW</small>`, "sum of importing devices")}
        ${card("Plugins", plugins.length, plugins.map((p) => `${esc(p.model)} ${esc(p.version)}`).join(", "))}
      </div>
      <div class="panel"><h3>Network <span class="muted">· feeders and their transformers, period ${topoPeriod ? topoPeriod.period : "–"}</span></h3><div id="topology"></div></div>
      <div class="panel"><h3>Generation vs load (signed readings)</h3><div id="power-chart"></div></div>
      <div class="panel"><h3>Devices and their latest signed readings</h3><div id="devices"></div></div>
      <div class="panel"><h3>Plugins</h3><div id="plugins"></div></div>
      <div class="panel"><h3>Swap history</h3><div id="swaps"></div></div>`;
    root.querySelector("#topology").innerHTML = topology ? topologySvg(topology, topoPeriod)
      : `<div class="empty">no topology: every participant on one bus</div>`;
    const series = state.power.slice(-MAX_POINTS);
    chart("power", root.querySelector("#power-chart"), [
      { label: "generation (kW)", stroke: "#1f9d55", width: 2, fill: "rgba(31,157,85,0.08)" },
      { label: "load (kW)", stroke: "#c53030", width: 2 },
    ], [series.map((p) => p.t / 1000), series.map((p) => p.gen / 1000), series.map((p) => p.load / 1000)], {});
    // A community has a thousand meters: the table shows the first ones, the cards count all.
    const DEVICE_ROWS = 60;
    const shownDevices = devices.slice(0, DEVICE_ROWS);
    root.querySelector("#devices").innerHTML = (devices.length > DEVICE_ROWS
      ? `<p class="muted">the first ${DEVICE_ROWS} of ${devices.length} devices (all of them: <a href="/v1/devices">/v1/devices</a>)</p>` : "") + table([
      { label: "device" }, { label: "kind" }, { label: "owner" }, { label: "power kW", num: true },
      { label: "export kWh", num: true }, { label: "import kWh", num: true }, { label: "seq", num: true },
      { label: "rated kW", num: true }, { label: "plugin" }, { label: "" },
    ], shownDevices.map((d) => {
      const r = d.last_reading;
      return [esc(name(d.device)), esc(d.kind), esc(name(d.owner)), r ? kw(r.power_w) : "–", r ? kwh(r.export_wh) : "–",
        r ? kwh(r.import_wh) : "–", r ? r.seq : "–", kw(d.rated_power_w), `<span class="mono">${short(d.plugin)}</span>`,
        d.revoked ? `<span class="tag red">revoked</span>` : `<span class="tag green">active</span>`];
    }));
    root.querySelector("#plugins").innerHTML = table([
      { label: "plugin" }, { label: "model" }, { label: "version" }, { label: "state" }, { label: "polls", num: true },
      { label: "readings", num: true }, { label: "failures", num: true }, { label: "restarts", num: true },
      { label: "code hash" }, { label: "last swap" },
    ], plugins.map((p) => {
      const s = p.swaps[p.swaps.length - 1];
      return [esc(p.id), esc(p.model), esc(p.version),
        p.state === "running" ? `<span class="tag green">running</span>` : `<span class="tag amber">${esc(p.state)}</span>`,
        p.polls, p.readings, p.failures, p.restarts, `<span class="mono">${short(p.code_hash)}</span>`,
        s ? `${esc(s.outcome)} (${s.ms} ms)` : "–"];
    }), "this node runs no plugins");
    const swaps = plugins.flatMap((p) => p.swaps.map((w) => ({ plugin: p.id, ...w }))).sort((a, b) => b.at_ms - a.at_ms);
    root.querySelector("#swaps").innerHTML = table([
      { label: "when" }, { label: "plugin" }, { label: "from" }, { label: "to" }, { label: "version" }, { label: "outcome" }, { label: "ms", num: true },
    ], swaps.map((w) => [time(w.at_ms), esc(w.plugin), `<span class="mono">${short(w.from)}</span>`, `<span class="mono">${short(w.to)}</span>`,
      esc(w.version), w.outcome === "swapped" ? `<span class="tag green">swapped</span>` : `<span class="tag red">${esc(w.outcome)}</span>`, w.ms]),
    "no swaps yet: `gridledger plugin swap <device> <plugin.wasm>`");
  },

  async chain(root) {
    const s = state.status;
    root.innerHTML = `
      <h2>Chain <span class="muted">· ${esc(s.chain_id)}</span></h2>
      <div class="cards">
        ${card("Height", s.height, `finalized ${s.finalized_height}, certified ${s.certified_height ?? "–"} · served by ${s.role === "observer" ? "an observer (votes on nothing, checks everything)" : "a validator"}${s.diverged ? ` · <b>diverged: ${esc(String(s.diverged))}</b>` : ""}`)}
        ${card("Mempool", s.mempool, "transactions waiting")}
        ${card("Validators", s.validators.length, s.validators.length ? "Simplex BFT, BLS-aggregated votes" : "one node makes every block")}
        ${card("Finality latency", state.latency.length ? `${state.latency[state.latency.length - 1].ms} <small>ms</small>` : "–", "block time to commit")}
      </div>
      <div class="panel"><h3>Finality latency per block</h3><div id="latency-chart"></div></div>
      <div class="grid2">
        <div class="panel"><h3>Blocks as they finalize</h3><div id="blocks"></div></div>
        <div class="panel"><h3>Validators</h3><div id="validators"></div></div>
      </div>`;
    const lat = state.latency.slice(-MAX_POINTS);
    chart("latency", root.querySelector("#latency-chart"), [
      { label: "latency (ms)", stroke: "#2b6cb0", width: 2 },
    ], [lat.map((p) => p.height), lat.map((p) => p.ms)], { x: { label: "block", fmt: (h) => String(h) } });
    root.querySelector("#blocks").innerHTML = table([
      { label: "height", num: true }, { label: "time" }, { label: "txs", num: true }, { label: "gas", num: true },
      { label: "proposer" }, { label: "votes", num: true }, { label: "hash" },
    ], state.blocks.slice(0, 20).map((b) => [b.height, time(b.time_ms), b.tx_count, b.gas_used.toLocaleString(),
      esc(name(b.proposer)), b.signers && b.signers.length ? `${b.signers.length}/${s.validators.length}` : "–",
      `<span class="mono">${short(b.hash)}</span>`]), "waiting for the next block");
    // Votes: who signed the finalization certificate of each recent block.
    const recentCerts = state.blocks.filter((b) => Array.isArray(b.signers) && b.signers.length);
    const latest = recentCerts[0];
    root.querySelector("#validators").innerHTML = table([
      { label: "#", num: true }, { label: "account" }, { label: "BLS key" }, { label: "latest finality certificate" },
      { label: `signed, last ${recentCerts.length} blocks`, num: true },
    ], s.validators.map((v) => [v.index, esc(v.account), `<span class="mono">${short(v.bls_public)}</span>`,
      latest ? (latest.signers.includes(v.index) ? `<span class="tag green">in certificate</span>` : `<span class="tag">not counted</span>`) : "–",
      recentCerts.filter((b) => b.signers.includes(v.index)).length]), "no validator set: a single node");
  },
};

// ---------- keys and transactions, in the browser ----------
// The secret key stays in this tab (sessionStorage); transactions are signed here with
// WebCrypto Ed25519 and sent to the node already signed.

const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const unhex = (h) => new Uint8Array(h.match(/../g).map((x) => parseInt(x, 16)));
const cat = (...parts) => { const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0)); let i = 0; for (const p of parts) { out.set(p, i); i += p.length; } return out; };
const le = (n, bytes) => { const b = new Uint8Array(bytes); let v = BigInt(n); for (let i = 0; i < bytes; i++) { b[i] = Number(v & 0xffn); v >>= 8n; } return b; };
const utf8 = (s) => new TextEncoder().encode(s);
const vec = (b) => cat(le(b.length, 4), b);
const PKCS8_ED25519 = unhex("302e020100300506032b657004220420");
const TX_GAS = 30_000_000;

async function importKey(secretHex) {
  const clean = secretHex.trim().replace(/^0x/, "");
  if (!/^[0-9a-fA-F]{64}$/.test(clean)) throw new Error("a key is 64 hex digits (the contents of a .key file)");
  const key = await crypto.subtle.importKey("pkcs8", cat(PKCS8_ED25519, unhex(clean)), { name: "Ed25519" }, true, ["sign"]);
  const jwk = await crypto.subtle.exportKey("jwk", key);
  const pub = Uint8Array.from(atob(jwk.x.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
  return { key, address: hex(pub) };
}

/// Signs and submits `Execute { contract, msg, funds }` (borsh, as `TxBody::signing_bytes`),
/// then waits for its receipt.
async function execute(me, contract, msg, funds) {
  const account = await api(`/v1/accounts/${me.address}`);
  const body = cat(vec(utf8(state.status.chain_id)), unhex(me.address), le(account.nonce, 8), le(TX_GAS, 8),
    new Uint8Array([3]), unhex(contract), vec(utf8(JSON.stringify(msg))), le(funds, 8));
  const signature = new Uint8Array(await crypto.subtle.sign("Ed25519", me.key, cat(utf8("gridledger/tx/v1"), body)));
  const { hash } = await api("/v1/txs", { tx: hex(cat(body, signature)) });
  // Wait up to a minute for its block: giving up sooner would tell the user it failed while
  // it may still be included.
  for (let i = 0; i < 240; i++) {
    const t = await api(`/v1/txs/${hash}`);
    if (t.status === "included") {
      const mine = JSON.parse(sessionStorage.getItem("gridledger-txs") || "[]");
      mine.unshift({ hash, what: Object.keys(msg)[0], ok: t.receipt.success });
      sessionStorage.setItem("gridledger-txs", JSON.stringify(mine.slice(0, 20)));
      if (!t.receipt.success) throw new Error(t.receipt.error.message);
      return t;
    }
    // Accepted, then let go by the node (its sender's earlier transaction was refused, say):
    // it will never be included, so say why now.
    if (t.status === "dropped") throw new Error(`the node dropped it: ${t.reason}`);
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`transaction ${hash} not included yet`);
}

// ---------- proofs of market records ----------
// Trades and settlements are written by the market at period boundaries, not by a transaction
// of their own, so their proof is of the market's storage: the keys below (the SDK's map-key
// encoding, documented with /v1/state/proofs), proven into a finalized header.

const be = (n, bytes) => le(n, bytes).reverse();
const keyPart = (b) => { const out = []; for (const x of b) { out.push(x); if (x === 0) out.push(0xff); } out.push(0, 0); return new Uint8Array(out); };
const marketKey = (namespace, ...parts) => hex(cat(new Uint8Array([4]), unhex(state.contracts.market), keyPart(utf8(namespace)), ...parts));
/// Trades are stored in pages of TRADE_PAGE (contracts/market/src/book.rs): a trade's record is
/// its page, and the trade is at `index % TRADE_PAGE` in it.
const TRADE_PAGE = 32;
const recordKey = {
  trade: (period, index) => marketKey("trp", be(period, 8), be(Math.floor(index / TRADE_PAGE), 8)),
  period: (period) => marketKey("per", be(period, 8)),
  reading: (period, who) => marketKey("rd", be(period, 8), unhex(who)),
};

/// A page of market `Trade`s from its postcard bytes (a varint count, then each trade:
/// varints, addresses as their 32 bytes, a bool or an enum variant as one varint, an option as
/// a 0/1 byte then its value, a string as a varint length then UTF-8, fields in the contract's
/// order).
function decodeTradePage(bytes) {
  let i = 0;
  const byte = () => { if (i >= bytes.length) throw new Error("the proven trade is truncated"); return bytes[i++]; };
  const varint = () => { let v = 0n, shift = 0n; for (;;) { const b = byte(); v |= BigInt(b & 0x7f) << shift; if (!(b & 0x80)) return Number(v); shift += 7n; } };
  const address = () => { if (i + 32 > bytes.length) throw new Error("the proven trade is truncated"); i += 32; return hex(bytes.subarray(i - 32, i)); };
  const option = (f) => (byte() === 1 ? f() : null);
  const string = () => { const n = varint(); if (i + n > bytes.length) throw new Error("the proven trade is truncated"); i += n; return new TextDecoder().decode(bytes.subarray(i - n, i)); };
  const record = (names) => Object.fromEntries(names.map((n) => [n, varint()]));
  const trade = () => {
    const t = { period: varint(), seller: address(), buyer: address(), offer_id: varint(), bid_id: varint(), wh: varint(), price: varint(), renewable: byte() === 1 };
    t.level = ["feeder", "island"][varint()];
    t.seller_feeder = option(string);
    t.buyer_feeder = option(string);
    Object.assign(t, record(["wheeling_fee", "buyer_fee", "seller_fee", "congestion_fee"]));
    t.rates = record(["wheeling", "buyer_fee", "seller_fee", "buyer_congestion", "seller_congestion"]);
    t.settlement = option(() => record(["delivered_wh", "energy", "buyer_paid", "seller_received", "subsidy", "shortfall_penalty"]));
    return t;
  };
  const count = varint();
  if (count > TRADE_PAGE) throw new Error("the proven page holds too many trades");
  const page = Array.from({ length: count }, trade);
  if (i !== bytes.length) throw new Error("the proven trade has trailing bytes");
  return page;
}

/// The hash of a block header, as the node computes it: SHA-256 over a tag and the header's
/// borsh encoding (a length-prefixed chain id, then fixed-width little-endian fields). Each
/// field is checked for its width first: only concatenated bytes are hashed, so a field one
/// byte short and the next one byte long would hash the same, and a forger could slide the
/// real header's bytes into a state root of their choosing.
async function headerHash(h) {
  const hash32 = (name) => {
    const b = strictHex(h[name], `the header's ${name}`);
    if (b.length !== 32) throw new Error(`the header's ${name} is not 32 bytes`);
    return b;
  };
  const int = (name, max) => {
    const n = h[name];
    if (!Number.isSafeInteger(n) || n < 0 || n > max) throw new Error(`the header's ${name} is not a number in range`);
    return n;
  };
  if (typeof h.chain_id !== "string") throw new Error("the header's chain_id is not text");
  const id = utf8(h.chain_id);
  const bytes = cat(utf8("gridledger/header/v1"), le(id.length, 4), id, le(int("height", Number.MAX_SAFE_INTEGER), 8), hash32("parent_hash"),
    le(int("time_ms", Number.MAX_SAFE_INTEGER), 8), hash32("proposer"), hash32("tx_root"), le(int("tx_count", 2 ** 32 - 1), 4), hash32("state_root"),
    hash32("receipts_root"), le(int("receipt_count", 2 ** 32 - 1), 4));
  return hex(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)));
}

// ---------- checking proof bundles in the page ----------
// The checks `gridledger verify` makes of a state-proof bundle, made here too: each key's
// Jellyfish Merkle path into the header's state root, and the header's execution certificate
// (its kind, height and header hash, a quorum of signers in its bitmap, and their aggregated
// BLS signature, by @noble/curves in vendor/bls12-381.iife.min.js). The validators are the
// ones this node lists in /v1/status; `gridledger verify --genesis` checks against the
// genesis file, which a page served by the node cannot do for itself.

const JMT_LEAF = utf8("JMT::LeafNode");
const JMT_INTERNAL = utf8("JMT::IntrnalNode");
const JMT_PLACEHOLDER = utf8("SPARSE_MERKLE_PLACEHOLDER_HASH__");
const EXECUTE_TAG = utf8("gridledger/consensus/executed/v1");
const VOTE_DST = "GRIDLEDGER-V1-VOTE_BLS12381G2_XMD:SHA-256_SSWU_RO_";
const sha256 = async (...parts) => new Uint8Array(await crypto.subtle.digest("SHA-256", cat(...parts)));
const sameBytes = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
const bitOf = (bytes, i) => (bytes[i >> 3] >> (7 - (i & 7))) & 1;

/// Hex from a file someone handed us: even length, hex digits only.
function strictHex(h, what) {
  if (typeof h !== "string" || h.length % 2 || !/^[0-9a-fA-F]*$/.test(h)) throw new Error(`${what} is not hex`);
  return h.length ? unhex(h) : new Uint8Array();
}

/// A reader over borsh bytes that refuses to read past the end.
function reader(bytes, what) {
  let i = 0;
  const take = (n) => { if (i + n > bytes.length) throw new Error(`${what} is truncated`); i += n; return bytes.subarray(i - n, i); };
  return {
    take,
    u8: () => take(1)[0],
    u32: () => { const b = take(4); return (b[0] | (b[1] << 8) | (b[2] << 16)) + b[3] * 2 ** 24; },
    u64: () => new DataView(take(8).slice().buffer).getBigUint64(0, true),
    end: () => { if (i !== bytes.length) throw new Error(`${what} has trailing bytes`); },
  };
}

/// Checks a Jellyfish sparse Merkle proof (borsh `SparseMerkleProof<Sha256>`) that `key` holds
/// `value` (or, `value` null, is absent) in the tree whose root is `root`.
async function checkMerklePath(proof, key, value, root) {
  const r = reader(proof, "the Merkle proof");
  const leafNode = () => ({ key: r.take(32), value: r.take(32) });
  const leafHash = (l) => sha256(JMT_LEAF, l.key, l.value);
  const hasLeaf = r.u8();
  if (hasLeaf > 1) throw new Error("the Merkle proof does not decode");
  const leaf = hasLeaf ? leafNode() : null;
  const count = r.u32();
  if (count > 256) throw new Error("the Merkle proof has more than 256 siblings");
  const siblings = [];
  for (let s = 0; s < count; s++) {
    const kind = r.u8();
    if (kind === 0) siblings.push(JMT_PLACEHOLDER);
    else if (kind === 1) siblings.push(await sha256(JMT_INTERNAL, r.take(32), r.take(32)));
    else if (kind === 2) siblings.push(await leafHash(leafNode()));
    else throw new Error("the Merkle proof does not decode");
  }
  r.end();
  const keyHash = await sha256(key);
  if (value) {
    if (!leaf) throw new Error("the Merkle proof shows the key absent");
    if (!sameBytes(leaf.key, keyHash)) throw new Error("the Merkle proof is for another key");
    if (!sameBytes(leaf.value, await sha256(value))) throw new Error("the Merkle proof is for another value");
  } else if (leaf) {
    if (sameBytes(leaf.key, keyHash)) throw new Error("the Merkle proof shows the key present");
    let common = 0;
    while (common < 256 && bitOf(keyHash, common) === bitOf(leaf.key, common)) common++;
    if (common < count) throw new Error("the Merkle proof's leaf is not where the key would be");
  }
  // Siblings run from the bottom up; the key's bits from the root down say which side we are.
  let hash = leaf ? await leafHash(leaf) : JMT_PLACEHOLDER;
  for (let s = 0; s < count; s++) {
    hash = bitOf(keyHash, count - 1 - s) ? await sha256(JMT_INTERNAL, siblings[s], hash) : await sha256(JMT_INTERNAL, hash, siblings[s]);
  }
  if (!sameBytes(hash, root)) throw new Error("the Merkle proof does not lead to the header's state root");
}

/// Checks that a bundle's certificate is an execution certificate, signed by a quorum of the
/// validators, over exactly its header. Returns who signed (null for a bundle not yet
/// certified); throws what is wrong otherwise.
async function checkFinality(bundle) {
  if (!bundle.finality || bundle.finality.certificate == null) return null;
  const c = strictHex(bundle.finality.certificate, "the certificate");
  // Wire encoding (borsh): message tag 2 (certificate), vote kind 3 (execute), the height,
  // the header hash, the signer bitmap and the signature (each with a u32 length).
  const r = reader(c, "the certificate");
  if (r.u8() !== 2) throw new Error("finality: the certificate does not decode");
  if (r.u8() !== 3) throw new Error("finality: not an execution certificate, so it does not certify a header");
  const height = r.u64();
  const digest = r.take(32);
  const bitmap = r.take(r.u32());
  const signature = r.take(r.u32());
  r.end();
  if (height !== BigInt(bundle.header.height)) throw new Error(`finality: the certificate is for height ${height}, not the header's ${bundle.header.height}`);
  if (bundle.header.chain_id !== state.status.chain_id) throw new Error(`the header is of chain ${bundle.header.chain_id}, not this node's ${state.status.chain_id}`);
  if (hex(digest) !== await headerHash(bundle.header)) throw new Error("finality: the certificate is over another header");
  const validators = (state.status && state.status.validators) || [];
  const n = validators.length;
  if (n === 0) throw new Error("finality: this node lists no validators to check the certificate against");
  if (bitmap.length !== Math.ceil(n / 8)) throw new Error("finality: the signer bitmap does not fit the validator set");
  const signers = [];
  for (let i = 0; i < bitmap.length * 8; i++) {
    if (!(bitmap[i >> 3] & (1 << (i & 7)))) continue;
    if (i >= n) throw new Error(`finality: signer ${i} is not one of the ${n} validators`);
    signers.push(i);
  }
  const quorum = n - Math.floor((n - 1) / 3);
  if (signers.length < quorum) throw new Error(`finality: ${signers.length} signers, fewer than a quorum of ${quorum}`);
  const namespace = utf8(state.status.chain_id);
  const message = cat(EXECUTE_TAG, new Uint8Array([namespace.length]), namespace, be(height, 8), digest);
  if (!globalThis.gridledgerBls.verifyAggregate(signers.map((i) => unhex(validators[i].bls_public)), message, signature, VOTE_DST)) {
    throw new Error("finality: the aggregated signature does not verify");
  }
  return { signers: signers.length, validators: n };
}

/// Checks a state-proof bundle (`/v1/state/proofs`, or one key's `/v1/state/{key}/proof`): every
/// Merkle path into its header's state root, then its finality. Returns what it proves.
async function checkStateBundle(bundle) {
  if (!bundle || typeof bundle !== "object" || !bundle.header) throw new Error("not a proof bundle");
  if (bundle.tx) throw new Error("a transaction bundle: check it with gridledger verify");
  const proofs = Array.isArray(bundle.proofs) ? bundle.proofs : bundle.proof ? [bundle.proof] : [];
  if (!proofs.length) throw new Error("the bundle proves no key");
  await headerHash(bundle.header); // every header field well-formed before any is used
  const root = strictHex(bundle.header.state_root, "the header's state root");
  for (const p of proofs) {
    if (!p || typeof p !== "object" || !("value" in p)) throw new Error("a proof without a value (or null for an absent key)");
    if (p.height !== bundle.header.height) throw new Error(`key ${p.key}: the proof is for height ${p.height}, the header is ${bundle.header.height}`);
    try {
      await checkMerklePath(strictHex(p.proof, "the Merkle proof"), strictHex(p.key, "the key"), p.value == null ? null : strictHex(p.value, "the value"), root);
    } catch (e) { throw new Error(`key ${String(p.key).slice(0, 24)}…: ${e.message}`); }
  }
  return { keys: proofs.length, height: bundle.header.height, final: await checkFinality(bundle) };
}

function saveJson(file, value) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([JSON.stringify(value, null, 2)], { type: "application/json" }));
  link.download = file;
  link.click();
}

// What "verify" found per record (by its keys), kept across the pages' live redraws.
const proofMarks = new Map();

/// A "verify" link for a record: its state keys (each once: trades share pages), the file name,
/// and the trade shown with its index in its period (if any).
/// A trade's mark is its own: the 32 trades of a page share their key, not their check.
const proofLink = (keys, file, trade, index) => {
  keys = [...new Set(keys)];
  const markKey = keys.join(",") + (trade ? `@${index}` : "");
  return proofMarks.get(markKey) ||
    `<a href="#" class="record-proof" data-keys="${keys.join(",")}" data-mark="${markKey}" data-file="${esc(file)}"${trade ? ` data-trade="${esc(JSON.stringify(trade))}" data-index="${index}"` : ""}>verify</a>`;
};

/// Wires the "verify" links under `root`. A click fetches the bundle, checks here that it
/// proves exactly the record's keys, that every one holds a value, that a trade's proven value
/// is the row shown, and the bundle itself (`checkStateBundle`: Merkle paths and the
/// certificate's BLS signature); then saves it for `gridledger verify --genesis`.
function wireRecordProofs(root) {
  const mark = (a, html) => {
    proofMarks.set(a.dataset.mark, html);
    // The page may have been redrawn by a live update while the proof was on its way.
    if (a.parentElement) a.outerHTML = html;
  };
  for (const a of root.querySelectorAll("a.record-proof")) {
    a.onclick = async (ev) => {
      ev.preventDefault();
      try {
        const keys = a.dataset.keys.split(",");
        const bundle = await api(`/v1/state/proofs?keys=${a.dataset.keys}`);
        if (bundle.proofs.map((p) => p.key).join(",") !== keys.join(",")) throw new Error("the node proved other keys");
        if (bundle.proofs.some((p) => p.value == null)) throw new Error("the record is not in the chain's state");
        if (a.dataset.trade) {
          const shown = JSON.parse(a.dataset.trade);
          const proven = decodeTradePage(unhex(bundle.proofs[0].value))[Number(a.dataset.index) % TRADE_PAGE];
          if (!proven) throw new Error("the proven page does not hold the trade");
          for (const k of Object.keys(proven)) if (JSON.stringify(proven[k]) !== JSON.stringify(shown[k] ?? null)) throw new Error(`the proven trade differs in ${k}`);
        }
        const checked = await checkStateBundle(bundle);
        saveJson(a.dataset.file, bundle);
        mark(a, `<span class="tag green" title="saved ${esc(a.dataset.file)}: check it with gridledger verify --genesis">✓ block ${checked.height}${checked.final ? ", final" : ", not yet certified"}</span>`);
      } catch (e) {
        mark(a, `<span class="tag red" title="${esc(e.message)}">✗ ${esc(e.message)}</span>`);
      }
    };
  }
}

let me = null;

async function restoreKey() {
  const saved = sessionStorage.getItem("gridledger-key");
  if (saved && !me) me = await importKey(saved);
}

/// Where a node error belongs in the order form.
function fieldOf(message) {
  if (/price|band/i.test(message)) return "price";
  if (/balance|funds|insufficient|escrow|margin|bond/i.test(message)) return "energy";
  return "form";
}

pages.participant = async function (root) {
  await restoreKey();
  if (!me) {
    if (!root.querySelector("#key-form")) {
      root.innerHTML = `
        <h2>Participant</h2>
        <div class="panel" id="key-form">
          <h3>Use your key</h3>
          <p class="muted">Paste your secret key (64 hex digits, e.g. the devnet's <span class="mono">target/devnet/keys/household-demo.key</span>).
          It stays in this browser tab: transactions are signed here and only signed transactions reach the node.</p>
          <input id="secret" type="password" placeholder="secret key, hex" size="70" autocomplete="off">
          <button id="use-key">Use key</button> <span id="key-error" class="error"></span>
        </div>`;
      root.querySelector("#use-key").onclick = async () => {
        try {
          const value = root.querySelector("#secret").value;
          me = await importKey(value);
          sessionStorage.setItem("gridledger-key", value.trim());
          root.innerHTML = "";
          render();
        } catch (e) { root.querySelector("#key-error").textContent = e.message; }
      };
    }
    return;
  }
  const current = periodOf(state.status.time_ms) ?? 0;
  const next = current + 1;
  const account = await api(`/v1/accounts/${me.address}`);
  const points = await query("market", { points: { account: me.address } });
  const price = await query("market", { price: { period: next } });
  const openPeriods = [next, next + 1];
  const open = (await Promise.all(openPeriods.map((p) => query("market", { orders: { period: p, limit: 500 } }))))
    .flat().filter((o) => o.owner === me.address);
  const past = [];
  for (let p = current; p >= 0 && p > current - 12; p--) past.push(p);
  // A trade's index within its period is its position in the `trades` answer; its record is
  // its page (recordKey.trade).
  await Promise.all(past.map(periodSummary));
  const trades = (await Promise.all(past.map(periodTrades)))
    .flatMap((list) => list.map((t, index) => ({ trade: t, index })))
    .filter(({ trade: t }) => t.buyer === me.address || t.seller === me.address);
  const txs = JSON.parse(sessionStorage.getItem("gridledger-txs") || "[]");
  const today = new Date(state.status.time_ms).toISOString().slice(0, 10);
  const statement = await api(`/v1/statements/${me.address}?day=${today}`);
  // Settlement: what I sold or bought in each recent period against what my meter reported.
  const [mySummaries, myParties] = await Promise.all([
    Promise.all(past.map(periodSummary)),
    Promise.all(past.map(periodParties)),
  ]);
  const settlements = [];
  past.forEach((p, i) => {
    const mine = myParties[i].find((x) => x.participant === me.address);
    if (mine) settlements.push({ period: p, settled: !!(mySummaries[i] && mySummaries[i].settled), ...mine });
  });

  // The page is drawn once and then only its parts are redrawn: the order form is never taken
  // out of the document, so a live refresh keeps what the user typed and where the caret is
  // (detaching a focused input moves the focus to the body, and the next keys go nowhere).
  if (!root.querySelector("#order-panel")) {
    root.innerHTML = `
    <div id="participant-head"></div>
    <div class="grid2">
      <div class="panel" id="order-panel"><h3 id="order-title"></h3>
        <div class="form">
          <label>Side <select id="side"><option value="buy">bid (buy)</option><option value="sell">offer (sell)</option></select></label>
          <label>Energy, kWh <input id="energy" type="number" step="0.001" value="5"><span class="field-error" id="energy-error"></span></label>
          <label>Price, tok/kWh <input id="price" type="number" step="0.001" value="${tok(price.f_max, 3)}"><span class="field-error" id="price-error"></span></label>
          <label class="muted" id="band"></label>
          <button id="place">Place order</button>
        </div>
        <div id="form-message"></div>
      </div>
      <div class="panel"><h3>Open orders</h3><div id="open"></div></div>
    </div>
    <div id="participant-records"></div>`;
  }
  root.querySelector("#participant-head").innerHTML = `
    <h2>Participant <span class="muted">· ${esc(name(me.address))}</span> <button id="forget" class="small">forget key</button></h2>
    <div class="cards">
      ${card("Balance", `${tok(account.balance)} <small>tok</small>`, `<span class="mono">${short(me.address)}</span>`)}
      ${card("Incentive points", points, "1 per renewable Wh bought when μ < 1")}
      ${card("In escrow", `${tok(open.reduce((a, o) => a + o.escrow, 0))} <small>tok</small>`, "margins and bonds of open orders")}
      ${card("Open orders", open.length, `periods ${next}–${next + 1}`)}
    </div>`;
  root.querySelector("#participant-records").innerHTML = `
    <div class="grid2">
      <div class="panel"><h3>Trades</h3><div id="my-trades"></div></div>
      <div class="panel"><h3>Settlement <span class="muted">· kWh</span></h3><div id="my-settlement"></div></div>
    </div>
    <div class="panel"><h3>Statement <span class="muted">· ${today} (UTC, settled periods)</span> <a href="#" id="statement-csv" class="small">CSV</a></h3><div id="statement"></div></div>
    <div class="panel"><h3>Your transactions</h3><div id="my-txs"></div></div>`;
  root.querySelector("#forget").onclick = () => { sessionStorage.removeItem("gridledger-key"); me = null; root.innerHTML = ""; render(); };
  root.querySelector("#order-title").textContent = `Place an order for period ${next}`;
  root.querySelector("#band").textContent = `band ${tok(price.f_min)}–${tok(price.f_max)} tok/kWh`;
  root.querySelector("#place").onclick = () => placeOrder(root, next, price);

  root.querySelector("#open").innerHTML = table([
    { label: "period", num: true }, { label: "side" }, { label: "kWh", num: true }, { label: "tok/kWh", num: true },
    { label: "escrow tok", num: true }, { label: "" },
  ], open.map((o) => [o.period, o.side === "buy" ? "bid" : "offer", kwh(o.wh), tok(o.price), tok(o.escrow),
    `<button class="small cancel" data-period="${o.period}" data-id="${o.id}">cancel</button>`]), "no open orders");
  for (const b of root.querySelectorAll("button.cancel")) {
    b.onclick = async () => {
      b.disabled = true;
      try { await execute(me, state.contracts.market, { cancel: { period: Number(b.dataset.period), id: Number(b.dataset.id) } }, 0); }
      catch (e) { root.querySelector("#form-message").innerHTML = `<span class="error">${esc(e.message)}</span>`; }
      render();
    };
  }
  root.querySelector("#my-trades").innerHTML = table([
    { label: "period", num: true }, { label: "side" }, { label: "with" }, { label: "kWh", num: true }, { label: "tok/kWh", num: true },
    { label: "my fees tok", num: true }, { label: "proof" },
  ], trades.map(({ trade: t, index }) => [t.period, t.buyer === me.address ? "bought" : "sold",
    esc(name(t.buyer === me.address ? t.seller : t.buyer)), kwh(t.wh), tok(t.price),
    tok(t.buyer === me.address ? (t.wheeling_fee || 0) + (t.buyer_fee || 0) : (t.seller_fee || 0), 4),
    proofLink([recordKey.trade(t.period, index)], `trade-${t.period}-${index}.json`, t, index)]), "no trades in the last 12 periods");
  root.querySelector("#my-settlement").innerHTML = table([
    { label: "period", num: true }, { label: "sold", num: true }, { label: "metered out", num: true },
    { label: "bought", num: true }, { label: "metered in", num: true }, { label: "status" },
  ], settlements.map((x) => [x.period, kwh(x.sold_wh), x.produced_wh == null ? "–" : kwh(x.produced_wh), kwh(x.bought_wh),
    x.consumed_wh == null ? "–" : kwh(x.consumed_wh),
    // A settled period's proof: the period's summary, my meter reading and my trades in it.
    !x.settled ? `<span class="tag amber">awaiting readings</span>`
      : x.produced_wh == null && x.consumed_wh == null ? `<span class="tag green">settled</span>`
        : `<span class="tag green">settled</span> ${proofLink([recordKey.period(x.period), recordKey.reading(x.period, me.address),
          ...trades.filter(({ trade: t }) => t.period === x.period).map(({ index }) => recordKey.trade(x.period, index))],
        `settlement-${x.period}.json`)}`]),
  "nothing to settle in the last 12 periods");
  const t = statement.totals;
  const line = (label, value, note = "") => [esc(label), value, note];
  const out = (micro, digits = 3) => (micro ? `−${tok(micro, digits)}` : tok(0, digits));
  root.querySelector("#statement").innerHTML = statement.periods ? table([{ label: "" }, { label: "", num: true }, { label: "" }], [
    line("energy sold", `${kwh(t.delivered_wh || 0)} kWh`, `${kwh(t.sold_wh || 0)} kWh contracted · average ${tok(statement.average_sale_price)} tok/kWh`),
    line("energy bought", `${kwh(t.received_wh || 0)} kWh`, `${kwh(t.bought_wh || 0)} kWh contracted · average ${tok(statement.average_purchase_price)} tok/kWh`),
    line("sales", `${tok(t.sales || 0)} tok`), line("purchases", `${out(t.purchases || 0)} tok`),
    line("wheeling fees", `${out(t.wheeling_fees || 0, 4)} tok`, "to the grid company"),
    line("transaction fees", `${out(t.transaction_fees || 0, 4)} tok`, "to the market operator"),
    line("congestion", `${out(t.congestion_fees || 0, 4)} tok`, "full transformers"),
    line("subsidy", `${tok(t.subsidy || 0)} tok`), line("penalties", `${out((t.shortfall_penalties || 0) + (t.overdraw_penalties || 0))} tok`),
    line("grid energy", `${out(t.grid_energy || 0)} tok`, "bought but not delivered, and over-draw, at the tariff"),
    ...(t.fees_received || t.grid_receipts ? [line("received", `${tok((t.fees_received || 0) + (t.grid_receipts || 0))} tok`,
      `fees ${tok(t.fees_received || 0)} · tariffs and penalties ${tok(t.grid_receipts || 0)}`)] : []),
    line("points", t.points || 0), line("net", `<b>${(statement.net / TOK).toFixed(3)} tok</b>`, `${statement.periods} periods${t.debt_recorded ? ` · debt recorded ${tok(t.debt_recorded)} tok` : ""}`),
  ]) : `<div class="empty">no settled trades today</div>`;
  root.querySelector("#statement-csv").onclick = (ev) => {
    ev.preventDefault();
    const cols = ["sold_wh", "delivered_wh", "bought_wh", "received_wh", "sales", "purchases", "wheeling_fees", "transaction_fees",
      "congestion_fees", "subsidy", "shortfall_penalties", "grid_energy", "overdraw_penalties", "debt_recorded", "points",
      "fees_received", "grid_receipts"];
    const rows = [["period", ...cols, "net"], ...statement.by_period.map((p) => [p.period, ...cols.map((c) => p.lines[c] || 0), p.net]),
      ["total", ...cols.map((c) => t[c] || 0), statement.net]];
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([rows.map((r) => r.join(",")).join("\n") + "\n"], { type: "text/csv" }));
    link.download = `statement-${today}.csv`;
    link.click();
  };
  root.querySelector("#my-txs").innerHTML = table([
    { label: "what" }, { label: "result" }, { label: "transaction" }, { label: "proof" },
  ], txs.map((t) => [esc(t.what), t.ok ? `<span class="tag green">ok</span>` : `<span class="tag red">failed</span>`,
    `<span class="mono">${short(t.hash)}</span>`, `<a href="#" class="proof" data-hash="${t.hash}">download</a>`]),
  "none yet; each one can be downloaded with its Merkle and finality proofs for gridledger verify");
  for (const a of root.querySelectorAll("a.proof")) {
    a.onclick = async (ev) => {
      ev.preventDefault();
      const t = await api(`/v1/txs/${a.dataset.hash}`);
      saveJson(`tx-${a.dataset.hash.slice(0, 12)}.json`, t.proof);
    };
  }
  wireRecordProofs(root);
};

async function placeOrder(root, period, price) {
  const show = (field, message) => {
    for (const f of ["energy", "price"]) root.querySelector(`#${f}-error`).textContent = "";
    root.querySelector("#form-message").innerHTML = "";
    if (field === "form") root.querySelector("#form-message").innerHTML = `<span class="error">${esc(message)}</span>`;
    else if (field) root.querySelector(`#${field}-error`).textContent = message;
  };
  const side = root.querySelector("#side").value;
  const wh = Math.round(Number(root.querySelector("#energy").value) * 1000);
  const perKwh = Math.round(Number(root.querySelector("#price").value) * TOK);
  if (!(wh > 0)) return show("energy", "enter a positive amount of energy");
  if (!(perKwh > 0)) return show("price", "enter a positive price");
  const button = root.querySelector("#place");
  button.disabled = true;
  show(null);
  try {
    // The next period, unless its gate closes before the order could be in a block.
    const head = (await api("/v1/status")).time_ms;
    const c = state.marketConfig;
    const now = periodOf(head) ?? 0;
    const left = c.start_ms + (now + 1) * c.period_ms - head;
    period = now + (left < 2000 ? 2 : 1);
    const rate = side === "buy" ? perKwh : price.shortfall_penalty;
    const escrow = await query("market", { escrow: { side, wh, price: rate } });
    const msg = side === "buy"
      ? { bid: { period, wh, max_price: perKwh } }
      : { offer: { period, wh, min_price: perKwh } };
    await execute(me, state.contracts.market, msg, escrow);
    root.querySelector("#form-message").innerHTML = `<span class="ok">${side === "buy" ? "Bid" : "Offer"} placed for period ${period}: ${tok(escrow)} tok held in escrow.</span>`;
  } catch (e) {
    show(fieldOf(e.message), e.message);
  }
  button.disabled = false;
  render();
}

// ---------- supervision (regulator) ----------

const HISTORY = 24; // periods the supervision page looks back over
const fromHex = (h) => { try { return new TextDecoder().decode(unhex(h)); } catch (_) { return h; } };
let auditFilter = { text: "", kind: "all" };

function describeAction(a) {
  if (a.upgrade) return `upgrade ${name(a.upgrade.contract)} to code ${short(a.upgrade.code_hash)}${a.upgrade.rollback ? " (rollback)" : ""}`;
  if (a.execute) return `on ${name(a.execute.contract)}: ${fromHex(a.execute.msg)}`;
  return JSON.stringify(a);
}

function csvCell(v) {
  const t = String(v);
  return /[",\n]/.test(t) ? `"${t.replace(/"/g, '""')}"` : t;
}

pages.supervision = async function (root) {
  const current = periodOf(state.status.time_ms) ?? 0;
  const { proposals } = await api("/v1/proposals");
  const params = await query("pricing", { params: {} });
  const periods = [];
  for (let p = current; p >= 0 && p > current - HISTORY; p--) periods.push(p);
  const [summaries, parties, trades] = await Promise.all([
    Promise.all(periods.map(periodSummary)),
    Promise.all(periods.map(periodParties)),
    Promise.all(periods.map(periodTrades)),
  ]);

  // Delivery reliability per participant, over the settled periods.
  const settled = new Set(summaries.filter((s) => s && s.settled).map((s) => s.period));
  const agg = new Map();
  parties.forEach((list, i) => {
    if (!settled.has(periods[i])) return;
    for (const p of list) {
      const a = agg.get(p.participant) || { sold: 0, delivered: 0, bought: 0, overdraw: 0, missing: 0 };
      a.sold += p.sold_wh;
      a.bought += p.bought_wh;
      if (p.sold_wh > 0) {
        if (p.produced_wh == null) a.missing++;
        a.delivered += Math.min(p.sold_wh, p.produced_wh || 0);
      }
      if (p.bought_wh > 0 && p.consumed_wh != null) a.overdraw += Math.max(0, p.consumed_wh - p.bought_wh);
      agg.set(p.participant, a);
    }
  });
  const reliability = [...agg.entries()].sort((x, y) => name(x[0]).localeCompare(name(y[0])));

  // The audit log: every trade and every settlement of the periods looked at.
  const rows = [];
  trades.forEach((list) => list.forEach((t, index) => rows.push({
    period: t.period, kind: "trade", seller: name(t.seller), buyer: name(t.buyer), kwh: t.wh / 1000,
    price: t.price / TOK, value: Math.floor((t.wh * t.price) / 1000) / TOK, note: t.renewable ? "renewable" : "",
    proof: () => proofLink([recordKey.trade(t.period, index)], `trade-${t.period}-${index}.json`, t, index),
  })));
  summaries.forEach((s) => { if (s && s.settled) rows.push({
    period: s.period, kind: "settlement", seller: "", buyer: "", kwh: s.delivered_wh / 1000, price: s.clearing_price / TOK,
    value: s.settled_value / TOK, note: `subsidy ${tok(s.subsidy_paid)} · penalties ${tok(s.penalties)} · imbalance ${tok(s.imbalance_paid)}`,
    proof: () => proofLink([recordKey.period(s.period)], `settlement-${s.period}.json`),
  }); });
  rows.sort((a, b) => b.period - a.period || a.kind.localeCompare(b.kind));

  // Drawn once, then redrawn in parts: the audit filter stays in the document, so a live
  // refresh keeps its focus and caret while the regulator types.
  if (!root.querySelector("#audit-filter")) {
    root.innerHTML = `
    <div id="supervision-head"></div>
    <div class="panel"><h3>Proposals and votes</h3><div id="proposals"></div></div>
    <div class="panel"><h3>Delivery reliability and penalties per participant</h3><div id="reliability"></div>
      <p class="muted">Penalties estimated at today's rates from contracted energy, metered delivery and over-draw.</p></div>
    <div class="panel"><h3>Audit log</h3>
      <div class="toolbar"><input id="audit-filter" placeholder="filter: name, period, kind…" size="40">
        <select id="audit-kind"><option value="all">trades and settlements</option><option value="trade">trades</option><option value="settlement">settlements</option></select>
        <button id="audit-csv">Export CSV</button> <span id="audit-count" class="muted"></span></div>
      <div id="audit"></div></div>
    <div class="panel"><h3>Check a proof bundle</h3>
      <p class="muted">A record's bundle saved by "verify" (or fetched from <span class="mono">/v1/state/proofs</span>), checked in this page:
      its Merkle paths into the header, and the header's execution certificate against the validators this node lists.</p>
      <input type="file" id="bundle-file" accept=".json,application/json"> <span id="bundle-result"></span></div>`;
    const file = root.querySelector("#bundle-file");
    file.onchange = async () => {
      const out = root.querySelector("#bundle-result");
      out.innerHTML = "checking…";
      try {
        const c = await checkStateBundle(JSON.parse(await file.files[0].text()));
        out.innerHTML = `<span class="tag green">valid</span> ${c.keys} key${c.keys === 1 ? "" : "s"} at height ${c.height}; `
          + (c.final ? `<b>final</b>: ${c.final.signers} of ${c.final.validators} validators signed this header's hash after executing the chain up to it`
            : "not final: no execution certificate yet");
      } catch (e) {
        out.innerHTML = `<span class="tag red">INVALID</span> ${esc(e.message)}`;
      }
    };
  }
  root.querySelector("#supervision-head").innerHTML = `
    <h2>Supervision <span class="muted">· the regulator's view of the last ${HISTORY} periods</span></h2>
    <div class="cards">
      ${card("Price band", `${tok(params.f_min)}–${tok(params.f_max)}`, "tok/kWh, set by the regulators")}
      ${card("μ range", `${fixed(params.mu_min).toFixed(2)}–${fixed(params.mu_max).toFixed(2)}`, `slope ${fixed(params.mu_slope)}`)}
      ${card("Penalties", `${tok(params.shortfall_penalty)} / ${tok(params.overdraw_penalty)}`, "shortfall / over-draw, tok/kWh")}
      ${card("Proposals", proposals.length, proposals.filter((p) => p.status.status === "voting").length + " open for votes")}
    </div>
`;

  root.querySelector("#proposals").innerHTML = table([
    { label: "#", num: true }, { label: "proposer" }, { label: "action" }, { label: "enact at", num: true },
    { label: "for" }, { label: "against" }, { label: "status" },
  ], proposals.map((p) => [p.id, esc(name(p.proposer)), esc(describeAction(p.action)), p.enact_height,
    esc(p.approvals.map(name).join(", ")), esc(p.rejections.map(name).join(", ")),
    `<span class="tag ${p.status.status === "enacted" ? "green" : p.status.status === "voting" ? "amber" : p.status.status === "passed" ? "green" : "red"}">${esc(p.status.status)}</span>`]),
  "no proposals yet: the regulators propose with `gridledger gov`");

  root.querySelector("#reliability").innerHTML = table([
    { label: "participant" }, { label: "sold kWh", num: true }, { label: "delivered kWh", num: true }, { label: "reliability", num: true },
    { label: "bought kWh", num: true }, { label: "over-draw kWh", num: true }, { label: "penalties tok", num: true }, { label: "missing readings", num: true },
  ], reliability.map(([who, a]) => {
    const pct = a.sold ? (100 * a.delivered) / a.sold : null;
    const penalty = ((a.sold - a.delivered) * params.shortfall_penalty + a.overdraw * params.overdraw_penalty) / 1000;
    return [esc(name(who)), kwh(a.sold), kwh(a.delivered),
      pct == null ? "–" : `<span class="tag ${pct >= 98 ? "green" : pct >= 90 ? "amber" : "red"}">${pct.toFixed(1)} %</span>`,
      kwh(a.bought), kwh(a.overdraw), tok(penalty), a.missing];
  }), "no settled periods yet");

  const filterInput = root.querySelector("#audit-filter");
  const kindSelect = root.querySelector("#audit-kind");
  // Set only when the page is first drawn: afterwards the fields are what the user typed.
  if (filterInput.value !== auditFilter.text) filterInput.value = auditFilter.text;
  kindSelect.value = auditFilter.kind;
  const shown = () => rows.filter((r) => (auditFilter.kind === "all" || r.kind === auditFilter.kind)
    && (!auditFilter.text || [r.period, r.kind, r.seller, r.buyer, r.note].join(" ").toLowerCase().includes(auditFilter.text.toLowerCase())));
  const draw = () => {
    const list = shown();
    root.querySelector("#audit-count").textContent = `${list.length} of ${rows.length} records`;
    root.querySelector("#audit").innerHTML = table([
      { label: "period", num: true }, { label: "kind" }, { label: "seller" }, { label: "buyer" }, { label: "kWh", num: true },
      { label: "tok/kWh", num: true }, { label: "value tok", num: true }, { label: "" }, { label: "proof" },
    ], list.slice(0, 300).map((r) => [r.period, r.kind, esc(r.seller), esc(r.buyer), r.kwh.toFixed(3), r.price.toFixed(6),
      r.value.toFixed(6), esc(r.note), r.proof()]), "no records match");
    wireRecordProofs(root.querySelector("#audit"));
  };
  filterInput.oninput = () => { auditFilter.text = filterInput.value; draw(); };
  kindSelect.onchange = () => { auditFilter.kind = kindSelect.value; draw(); };
  root.querySelector("#audit-csv").onclick = () => {
    const head = ["period", "kind", "seller", "buyer", "kwh", "price_tok_per_kwh", "value_tok", "note"];
    const lines = [head.join(","), ...shown().map((r) => [r.period, r.kind, r.seller, r.buyer, r.kwh, r.price, r.value, r.note].map(csvCell).join(","))];
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([lines.join("\n") + "\n"], { type: "text/csv" }));
    link.download = `gridledger-audit-${periods[periods.length - 1]}-${periods[0]}.csv`;
    link.click();
  };
  draw();
};

// ---------- live updates ----------

let current = null;
let rendering = false;
let again = false;

async function render() {
  if (rendering) { again = true; return; }
  rendering = true;
  const page = (location.hash || "#market").slice(1);
  const root = document.getElementById("page");
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.page === page);
  try {
    state.status = await api("/v1/status");
    document.getElementById("chain-id").textContent = state.status.chain_id;
    document.getElementById("head-height").textContent = state.status.height;
    document.getElementById("final-height").textContent = state.status.finalized_height;
    if (current !== page) { root.innerHTML = ""; current = page; }
    await (pages[page] || pages.market)(root);
    document.getElementById("page-error").textContent = "";
  } catch (e) {
    // A page already on screen stays as it is (with what the user typed into its forms): a
    // redraw that failed, say one query the node was too busy to answer, says so above it and
    // the next block's redraw tries again. Only a page that never loaded shows the error alone.
    if (root.childElementCount) document.getElementById("page-error").textContent = `Could not refresh this page: ${e.message}`;
    else root.innerHTML = `<div class="panel error">Could not load this page: ${esc(e.message)}</div>`;
  }
  rendering = false;
  if (again) { again = false; render(); }
}

async function sampleDevices() {
  try {
    const devices = (await api("/v1/devices")).devices;
    let gen = 0, load = 0;
    for (const d of devices) {
      const w = (d.last_reading && d.last_reading.power_w) || 0;
      if (w > 0) gen += w; else load -= w;
    }
    state.power.push({ t: Date.now(), gen, load });
    if (state.power.length > MAX_POINTS) state.power.shift();
  } catch (_) { /* devices are optional */ }
}

function live() {
  const dot = document.getElementById("live-dot");
  const events = new EventSource("/v1/events");
  let last = 0;
  events.addEventListener("block", (m) => {
    const b = JSON.parse(m.data);
    dot.classList.add("on");
    state.blocks.unshift(b);
    state.blocks.length = Math.min(state.blocks.length, 50);
    state.latency.push({ height: b.height, ms: b.finality_latency_ms });
    if (state.latency.length > MAX_POINTS) state.latency.shift();
    // Redraw at most once a second: blocks can come faster than pages load.
    const now = Date.now();
    if (now - last > 1000) { last = now; sampleDevices().then(render); }
  });
  events.onerror = () => dot.classList.remove("on");
}

window.addEventListener("hashchange", render);
loadDirectory().then(() => { render(); live(); sampleDevices(); }).catch((e) => {
  document.getElementById("page").innerHTML = `<div class="panel error">Could not reach the node: ${esc(e.message)}</div>`;
});
