// The dashboard of one timed node: polls /dashboard.json and draws it. No dependencies.
// The explorer (search, block, transaction and account pages) is explorer.js, which uses the
// helpers here (el, row, time, short).
"use strict";

const UNITS = 100000000n;

function $(id) { return document.getElementById(id); }

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) tr.appendChild(c instanceof Node ? wrap(c) : el("td", c));
  return tr;
}

function wrap(node) { const td = document.createElement("td"); td.appendChild(node); return td; }

// Units (integer) as TIME with up to 8 decimals, without floating point.
function time(units) {
  const u = BigInt(units || 0);
  const whole = u / UNITS;
  const frac = (u % UNITS).toString().padStart(8, "0").replace(/0+$/, "");
  return frac ? `${whole}.${frac}` : `${whole}`;
}

function short(hex) { return hex ? hex.slice(0, 12) + "…" : "–"; }

function ago(ms) {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms ago`;
  if (ms < 120000) return `${(ms / 1000).toFixed(1)} s ago`;
  return `${Math.round(ms / 60000)} min ago`;
}

function replace(id, rows) {
  const body = $(id);
  body.replaceChildren(...rows);
}

function drawChart(blocks) {
  const svg = $("chart");
  const ns = "http://www.w3.org/2000/svg";
  const W = 600, H = 160, pad = 18;
  // A block this node caught up on has no finality (null): it is left out, not drawn as 0.
  const pts = blocks.filter(b => b.finality_ms !== null).map(b => [b.height, b.finality_ms]);
  const parts = [];
  const max = Math.max(1, ...pts.map(p => p[1]));
  for (const frac of [0, 0.5, 1]) {
    const y = H - pad - frac * (H - 2 * pad);
    const line = document.createElementNS(ns, "line");
    line.setAttribute("x1", "0"); line.setAttribute("x2", String(W));
    line.setAttribute("y1", String(y)); line.setAttribute("y2", String(y));
    parts.push(line);
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", "4"); label.setAttribute("y", String(y - 2));
    label.textContent = `${Math.round(max * frac)} ms`;
    parts.push(label);
  }
  if (pts.length > 0) {
    const h0 = pts[0][0], h1 = pts[pts.length - 1][0];
    const span = Math.max(1, h1 - h0);
    const poly = document.createElementNS(ns, "polyline");
    poly.setAttribute("points", pts.map(([h, f]) =>
      `${(((h - h0) / span) * (W - 2 * pad) + pad).toFixed(1)},${(H - pad - (f / max) * (H - 2 * pad)).toFixed(1)}`).join(" "));
    parts.push(poly);
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", String(W - 120)); label.setAttribute("y", String(H - 4));
    label.textContent = `heights ${h0}–${h1}`;
    parts.push(label);
  }
  svg.replaceChildren(...parts);
}

function median(values) {
  if (values.length === 0) return null;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)];
}

function render(d) {
  $("node").textContent = d.node ? `· ${d.node}` : "";
  $("chain").textContent = d.chain_id
    ? `chain ${d.chain_id} · genesis ${short(d.genesis_hash)} · quorum ${d.quorum} of ${d.total_stake} stake`
    : (d.note || "no genesis yet");
  $("height").textContent = String(d.height);
  if (d.last_block_time_ms) {
    $("last-block").textContent = ago(d.now_ms - d.last_block_time_ms);
    $("last-block-at").textContent = new Date(d.last_block_time_ms).toISOString().replace("T", " ").replace("Z", " UTC");
  }
  const blocks = d.blocks || [];
  const measured = blocks.filter(b => b.finality_ms !== null);
  const lastMeasured = measured[measured.length - 1];
  $("finality").textContent = lastMeasured ? `${lastMeasured.finality_ms} ms` : "–";
  const p50 = median(measured.map(b => b.finality_ms));
  $("finality-p50").textContent = p50 === null ? "" : `median ${p50} ms over ${measured.length} blocks decided live`;
  $("pending").textContent = String(d.pending_transactions ?? "–");
  $("round").textContent = d.step ? `deciding ${d.height + 1}, round ${d.round}, ${d.step}` : "";

  renderSet(d.validator_set);

  replace("validators", (d.validators || []).map(v => row([
    el("strong", v.name),
    String(v.stake),
    el("span", v.online ? "online" : "offline", v.online ? "online" : "offline"),
    v.last_signed_height ? `height ${v.last_signed_height}` : "–",
    el("span", short(v.public_key), "hash"),
  ])));

  replace("blocks", blocks.slice(-15).reverse().map(b => {
    const txs = el("div");
    txs.appendChild(el("span", String(b.txs)));
    for (const t of b.tx_preview || []) {
      txs.appendChild(el("div", `${short(t.from)} → ${short(t.to)}: ${time(t.amount)} TIME`, "txs"));
    }
    if (b.txs > (b.tx_preview || []).length) txs.appendChild(el("div", "…", "txs"));
    return row([
      String(b.height),
      el("span", short(b.hash), "hash"),
      b.proposer,
      `${b.signatures}/${(d.validators || []).length} (${b.signers.join(", ")})`,
      `${time(b.reward)} TIME`,
      txs,
      b.finality_ms === null ? "caught up" : `${b.finality_ms} ms`,
    ]);
  }));

  drawChart(blocks);
  const peers = d.peers || [];
  $("peers").replaceChildren(...(peers.length ? peers.map(p => el("li", p)) : [el("li", "no peer connected")]));
}

// The set that signs the next height and what the registry will change (`validators.rs`).
function renderSet(s) {
  if (!s) return;
  const c = s.current, p = s.pending;
  $("set-epoch").textContent = String(c.epoch);
  $("set-next").textContent = `${c.epoch_blocks} heights each; the next starts at height ${c.next_epoch_height}`;
  $("set-size").textContent = String(c.size);
  $("set-hash").textContent = `hash ${short(c.hash)} · quorum ${c.quorum} of ${c.total_stake} stake`;
  $("set-pending").textContent = p.next_hash
    ? `next set ${short(p.next_hash)}: ${p.joining} joining, ${p.leaving} leaving`
    : "no change elected for the next epoch";
  $("set-queue").textContent = `${p.registered_not_elected} registered, not elected · ${p.unbonding} unbonding · ${p.jailed} jailed`;
}

async function poll() {
  try {
    const r = await fetch("/dashboard.json", { cache: "no-store" });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    render(await r.json());
    $("error").hidden = true;
  } catch (e) {
    $("error").textContent = `cannot reach the node: ${e.message}`;
    $("error").hidden = false;
  } finally {
    setTimeout(poll, 1000);
  }
}

poll();
