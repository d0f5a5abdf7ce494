// The explorer: a search box and pages for a block, a transaction and an account, at hash
// routes (#/search/Q, #/block/HEIGHT-OR-HASH, #/tx/HASH, #/account/ADDRESS), read from this
// node's API (/search, /blocks/..., /tx/..., /accounts/...). Uses dashboard.js's helpers.
// Every string from the API goes in as text (textContent), never as HTML.
"use strict";

function link(route, text) {
  const a = el("a", text);
  a.href = "#/" + route.map(encodeURIComponent).join("/");
  return a;
}

// <span id="ID">text</span>, which the browser test reads.
function field(label, id, value) {
  const p = el("p");
  p.appendChild(el("span", label + ": ", "label"));
  const v = value instanceof Node ? value : el("span", value);
  if (id) v.id = id;
  p.appendChild(v);
  return p;
}

async function getJson(path) {
  const r = await fetch(path, { cache: "no-store" });
  let body = null;
  try { body = await r.json(); } catch (_) { /* not JSON: reported below */ }
  if (!r.ok) throw new Error((body && body.error) || `HTTP ${r.status} for ${path}`);
  return body;
}

function show(title, ...nodes) {
  const view = $("explorer-view");
  view.replaceChildren(el("h3", title), ...nodes);
  view.hidden = false;
}

async function searchRoute(q) {
  const found = await getJson("/search?q=" + encodeURIComponent(q));
  if (found.kind === "block") return blockRoute(String(found.height));
  if (found.kind === "tx") return txRoute(found.hash);
  if (found.kind === "account") return accountRoute(found.address);
  throw new Error(`unknown result kind ${found.kind}`);
}

async function blockRoute(id) {
  const path = /^[0-9]+$/.test(id) ? `/blocks/${id}` : `/blocks/by-hash/${encodeURIComponent(id)}`;
  const b = await getJson(path);
  const h = b.block.header;
  const nav = el("p");
  if (b.height > 1) nav.appendChild(link(["block", h.parent_hash], `← parent (${b.height - 1})`));
  nav.appendChild(el("span", " · "));
  nav.appendChild(link(["block", String(b.height + 1)], `next (${b.height + 1}) →`));
  const txs = document.createElement("tbody");
  b.block.txs.forEach((t, i) => {
    const hash = b.tx_hashes[i];
    txs.appendChild(row([
      link(["tx", hash], short(hash)),
      link(["account", t.transfer.from], short(t.transfer.from)),
      link(["account", t.transfer.to], short(t.transfer.to)),
      `${time(t.transfer.amount)} TIME`,
    ]));
  });
  const table = el("table");
  table.appendChild(row(["hash", "from", "to", "amount"].map(x => el("th", x))));
  table.appendChild(txs);
  show(`Block ${b.height}`,
    field("height", "x-block-height", String(b.height)),
    field("hash", "x-block-hash", b.hash),
    field("parent", null, h.parent_hash),
    field("time", null, new Date(h.timestamp).toISOString()),
    field("proposer", "x-block-proposer", b.proposer),
    field("certificate", "x-block-signers", `${b.signatures} signatures (${b.signers.join(", ")})`),
    field("reward", null, `${time(b.reward)} TIME`),
    field("transactions", "x-block-txs", String(b.block.txs.length)),
    nav, table);
}

async function txRoute(hash) {
  const t = await getJson(`/tx/${encodeURIComponent(hash)}`);
  const x = t.transaction.transfer;
  const nodes = [
    field("hash", "x-tx-hash", t.hash),
    field("status", "x-tx-status", t.status),
  ];
  if (t.status === "finalized") {
    nodes.push(field("block", "x-tx-height", link(["block", String(t.height)], String(t.height))));
  }
  nodes.push(
    field("from", "x-tx-from", link(["account", x.from], x.from)),
    field("to", "x-tx-to", link(["account", x.to], x.to)),
    field("amount", "x-tx-amount", `${time(x.amount)} TIME`),
    field("fee", null, `${time(x.fee)} TIME`),
    field("nonce", null, String(x.nonce)));
  show("Transaction", ...nodes);
}

async function accountRoute(address, before) {
  const a = await getJson(`/accounts/${encodeURIComponent(address)}`);
  const q = before ? `?before=${encodeURIComponent(before)}` : "";
  const list = await getJson(`/accounts/${encodeURIComponent(address)}/transfers${q}`);
  const table = el("table");
  table.appendChild(row(["height", "hash", "", "counterparty", "amount"].map(x => el("th", x))));
  const body = document.createElement("tbody");
  body.id = "x-account-transfers";
  for (const t of list.transfers) {
    const other = t.direction === "sent" ? t.to : t.from;
    body.appendChild(row([
      link(["block", String(t.height)], String(t.height)),
      link(["tx", t.hash], t.hash),
      t.direction === "sent" ? "to" : "from",
      link(["account", other], short(other)),
      `${time(t.amount)} TIME`,
    ]));
  }
  table.appendChild(body);
  const nodes = [
    field("address", "x-account-address", a.address),
    field("balance", "x-account-balance", `${time(a.balance)} TIME`),
    field("nonce", "x-account-nonce", String(a.nonce)),
    el("h4", "Transfers (newest first)"),
    table,
  ];
  if (list.next_before !== null) {
    nodes.push(link(["account", address, String(list.next_before)], "older →"));
  }
  show("Account", ...nodes);
}

async function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const [kind, id, extra] = parts;
  const error = $("explorer-error");
  error.hidden = true;
  if (!kind || !id) { $("explorer-view").hidden = true; return; }
  try {
    if (kind === "search") await searchRoute(id.trim());
    else if (kind === "block") await blockRoute(id);
    else if (kind === "tx") await txRoute(id);
    else if (kind === "account") await accountRoute(id, extra);
    else throw new Error(`no page "${kind}": use #/search/, #/block/, #/tx/ or #/account/`);
  } catch (e) {
    $("explorer-view").hidden = true;
    error.textContent = e.message;
    error.hidden = false;
  }
}

$("search").addEventListener("submit", ev => {
  ev.preventDefault();
  const q = $("search-q").value.trim();
  if (q) location.hash = "#/search/" + encodeURIComponent(q);
});
window.addEventListener("hashchange", route);
route();
