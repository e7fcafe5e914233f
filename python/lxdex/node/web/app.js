// lxdex trading page: market data and the demo account, live over one
// WebSocket (/stream, Binance-style combined streams; docs/ws.md). Snapshots
// come from the public REST API (/api/v1, docs/api.md); the demo account's
// from /ui/api/demo. Orders go through POST /order and DELETE /order. No
// build step, no dependencies.
"use strict";

const $ = (id) => document.getElementById(id);
const S = {
  markets: [], info: {}, symbol: null, interval: "1m", side: "buy",
  book: { bids: new Map(), asks: new Map(), id: 0, synced: false, buffer: [], gen: 0 },
  trades: [], candles: [], tickers: {}, orders: new Map(), balances: new Map(), fills: [],
  demo: false, ws: null, reqId: 1, waiting: new Map(), backoff: 500, streams: [],
};

// -- formatting ------------------------------------------------------------------------------
const decimals = (s) => (String(s).split(".")[1] || "").length;
const fmt = (x, d) => Number(x).toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d });
const fmtTime = (ms) => new Date(ms).toLocaleTimeString("en-GB", { hour12: false });
const streamSym = (sym) => sym.replace("-", "").toLowerCase();
function pxd() { return S.info[S.symbol] ? S.info[S.symbol].pd : 2; }
function qxd() { return S.info[S.symbol] ? S.info[S.symbol].qd : 4; }
function el(tag, cls, text) { const e = document.createElement(tag); if (cls) e.className = cls; if (text !== undefined) e.textContent = text; return e; }
async function getJSON(url) { const r = await fetch(url); if (!r.ok) throw new Error(url + ": " + r.status); return r.json(); }

// -- rendering is batched per animation frame ----------------------------------------------------
const dirty = new Set();
let frame = 0;
function render(...parts) {
  parts.forEach((p) => dirty.add(p));
  if (!frame) frame = requestAnimationFrame(flush);
}
function flush() {
  frame = 0;
  const d = new Set(dirty); dirty.clear();
  if (d.has("book")) { drawBook(); drawDepth(); }
  if (d.has("trades")) drawTrades();
  if (d.has("candles")) drawCandles();
  if (d.has("markets")) drawMarkets();
  if (d.has("ticker")) drawTicker();
  if (d.has("orders")) drawOrders();
  if (d.has("balances")) drawBalances();
  if (d.has("fills")) drawFills();
}

// -- the WebSocket -----------------------------------------------------------------------------------
function setConn(state, text) {
  const c = $("conn"); c.className = "conn " + state; c.querySelector("span").textContent = text;
}
function request(method, params) {
  if (!S.ws || S.ws.readyState !== WebSocket.OPEN) return Promise.reject(new Error("not connected"));
  const id = S.reqId++;
  const msg = { method, id };
  if (params !== undefined) msg.params = params;
  S.ws.send(JSON.stringify(msg));
  return new Promise((resolve, reject) => S.waiting.set(id, { resolve, reject }));
}
function marketStreams(sym) {
  const s = streamSym(sym);
  return [s + "@depth@100ms", s + "@trade", s + "@kline_" + S.interval];
}
function connect() {
  setConn("", "connecting");
  const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/stream");
  S.ws = ws;
  ws.onopen = async () => {
    S.backoff = 500;
    setConn("up", "live");
    const all = S.markets.map((m) => streamSym(m.symbol) + "@ticker");
    try {
      await request("SUBSCRIBE", all);
      if (S.demo) await request("userDataStream.subscribe");
      if (S.symbol) await openMarket(S.symbol, true);
      if (S.demo) loadAccount();
    } catch (e) { console.warn(e); }
  };
  ws.onmessage = (ev) => onMessage(JSON.parse(ev.data));
  ws.onclose = (ev) => {
    S.ws = null;
    S.streams = [];
    for (const w of S.waiting.values()) w.reject(new Error("closed"));
    S.waiting.clear();
    setConn("down", "reconnecting" + (ev.reason ? " (" + ev.reason + ")" : ""));
    setTimeout(connect, S.backoff);
    S.backoff = Math.min(S.backoff * 2, 10000);
  };
}
function onMessage(m) {
  if (m.id !== undefined && (m.result !== undefined || m.error !== undefined)) {
    const w = S.waiting.get(m.id);
    if (w) { S.waiting.delete(m.id); m.error ? w.reject(new Error(m.error.message)) : w.resolve(m.result); }
    if (m.error) console.warn("ws error", m.error);
    return;
  }
  const d = m.data;
  if (!d) return;
  switch (d.e) {
    case "depthUpdate": onDepth(d); break;
    case "trade": onTrade(d); break;
    case "kline": onKline(d); break;
    case "24hrTicker": onTicker(d); break;
    case "executionReport": onExecution(d); break;
    case "outboundAccountPosition": onBalances(d); break;
    case "notification": showMsg("Notice: " + d.kind + " " + JSON.stringify(d.payload), false); break;
  }
}

// -- markets ---------------------------------------------------------------------------------------
async function openMarket(sym, reconnect) {
  const old = S.streams;
  S.symbol = sym;
  S.streams = marketStreams(sym);
  const b = S.book;
  b.gen++; b.synced = false; b.buffer = []; b.bids.clear(); b.asks.clear(); b.id = 0;
  S.trades = []; S.candles = [];
  const info = S.info[sym];
  $("f-base").textContent = info ? info.base : "";
  $("t-symbol").textContent = sym;
  document.title = sym + " · lxdex";
  render("book", "trades", "candles", "markets", "ticker");
  if (!reconnect && old.length) request("UNSUBSCRIBE", old).catch(() => {});
  await request("SUBSCRIBE", S.streams);
  // subscribed first, then the snapshots: the diffs that follow them are buffered
  resyncBook();
  loadTrades(sym);
  loadCandles(sym, S.interval);
}
async function loadTrades(sym) {
  const ts = await getJSON(`/api/v1/markets/${sym}/trades?limit=80`);
  if (sym !== S.symbol) return;
  const byId = new Map(ts.map((t) => [t.id, { id: t.id, price: t.price, qty: t.qty, ts: t.ts, buy: t.taker_side === "buy" }]));
  for (const t of S.trades) byId.set(t.id, t);  // live ones that came meanwhile
  S.trades = [...byId.values()].sort((a, b) => b.id - a.id).slice(0, 200);
  render("trades");
}
async function loadCandles(sym, iv) {
  const rows = await getJSON(`/api/v1/markets/${sym}/candles?interval=${iv}&limit=300`);
  if (sym !== S.symbol || iv !== S.interval) return;
  const live = S.candles;
  S.candles = rows.map((r) => ({ t: r.start, o: +r.open, h: +r.high, l: +r.low, c: +r.close, v: +r.volume }));
  for (const c of live) mergeCandle(c);
  render("candles");
}
function drawMarkets() {
  const tb = $("markets").tBodies[0];
  tb.replaceChildren();
  for (const m of S.markets) {
    const t = S.tickers[m.symbol] || {};
    const tr = el("tr", m.symbol === S.symbol ? "on" : "");
    tr.appendChild(el("td", "", m.symbol));
    tr.appendChild(el("td", "r", t.last ? fmt(t.last, S.info[m.symbol].pd) : "—"));
    const pct = t.change_pct !== undefined ? Number(t.change_pct) : null;
    tr.appendChild(el("td", "r " + (pct > 0 ? "up" : pct < 0 ? "down" : ""), pct === null ? "—" : (pct > 0 ? "+" : "") + pct.toFixed(2) + "%"));
    tr.onclick = () => { if (m.symbol !== S.symbol) openMarket(m.symbol); };
    tr.dataset.symbol = m.symbol;
    tb.appendChild(tr);
  }
}
function onTicker(d) {
  S.tickers[d.s] = { last: d.c, change_pct: d.P, high: d.h, low: d.l, volume: d.v, change: d.p };
  render("markets", "ticker");
}
function drawTicker() {
  const t = S.tickers[S.symbol] || {};
  const pd = pxd();
  $("t-last").textContent = t.last ? fmt(t.last, pd) : "—";
  const pct = t.change_pct !== undefined ? Number(t.change_pct) : null;
  const ch = $("t-change");
  ch.textContent = pct === null ? "—" : `${Number(t.change) > 0 ? "+" : ""}${fmt(t.change, pd)} (${pct > 0 ? "+" : ""}${pct.toFixed(2)}%)`;
  ch.className = pct > 0 ? "up" : pct < 0 ? "down" : "";
  $("t-high").textContent = t.high ? fmt(t.high, pd) : "—";
  $("t-low").textContent = t.low ? fmt(t.low, pd) : "—";
  $("t-volume").textContent = t.volume ? fmt(t.volume, qxd()) : "—";
}

// -- order book: snapshot + diffs (the resync procedure of docs/ws.md) --------------------------------
async function resyncBook() {
  const b = S.book, sym = S.symbol, gen = ++b.gen;
  b.synced = false; b.bids.clear(); b.asks.clear();
  let snap;
  try { snap = await getJSON(`/api/v1/markets/${sym}/depth?limit=1000`); } catch (e) { setTimeout(() => gen === b.gen && resyncBook(), 1000); return; }
  if (gen !== b.gen) return;
  b.id = snap.last_update_id;
  for (const [p, q] of snap.bids) b.bids.set(p, q);
  for (const [p, q] of snap.asks) b.asks.set(p, q);
  const buffered = b.buffer; b.buffer = [];
  b.synced = true;
  for (const e of buffered) if (!applyDepth(e)) return;
  $("book-id").textContent = "#" + b.id;
  render("book");
}
function onDepth(d) {
  if (d.s !== S.symbol) return;
  const b = S.book;
  if (!b.synced) { b.buffer.push(d); return; }
  if (applyDepth(d)) render("book");
}
function applyDepth(d) {
  const b = S.book;
  if (d.u <= b.id) return true;                       // already in the snapshot
  if (d.U > b.id + 1) { resyncBook(); return false; }  // a gap: start over
  for (const [p, q] of d.b) Number(q) === 0 ? b.bids.delete(p) : b.bids.set(p, q);
  for (const [p, q] of d.a) Number(q) === 0 ? b.asks.delete(p) : b.asks.set(p, q);
  b.id = d.u;
  return true;
}
function sortedBook() {
  const bids = [...S.book.bids].map(([p, q]) => [Number(p), Number(q), p]).sort((x, y) => y[0] - x[0]);
  const asks = [...S.book.asks].map(([p, q]) => [Number(p), Number(q), p]).sort((x, y) => x[0] - y[0]);
  return { bids, asks };
}
function drawBook() {
  const { bids, asks } = sortedBook();
  const pd = pxd(), qd = qxd();
  const boxA = $("asks"), boxB = $("bids");
  const rows = Math.max(3, Math.floor(Math.min(boxA.clientHeight, boxB.clientHeight) / 19));
  const a = asks.slice(0, rows), bb = bids.slice(0, rows);
  let cum = 0; const ca = a.map((l) => (cum += l[1]));
  cum = 0; const cb = bb.map((l) => (cum += l[1]));
  const max = Math.max(ca[ca.length - 1] || 0, cb[cb.length - 1] || 0) || 1;
  const row = (l, total) => {
    const r = el("div", "lvl");
    const bar = el("i", "bar"); bar.style.width = (100 * total / max).toFixed(1) + "%";
    r.append(bar, el("span", "p", fmt(l[0], pd)), el("span", "r", fmt(l[1], qd)), el("span", "r", fmt(total, qd)));
    r.onclick = () => { $("f-price").value = l[2]; updateNotional(); };
    r.dataset.price = l[2];
    return r;
  };
  boxA.replaceChildren(...a.map((l, i) => row(l, ca[i])).reverse());
  boxB.replaceChildren(...bb.map((l, i) => row(l, cb[i])));
  const sp = $("spread");
  if (a.length && bb.length) {
    const spread = a[0][0] - bb[0][0], mid = (a[0][0] + bb[0][0]) / 2;
    sp.replaceChildren(document.createTextNode(fmt(mid, pd + 1)), el("small", "", `spread ${fmt(spread, pd)} (${(100 * spread / mid).toFixed(3)}%)`));
  } else sp.textContent = a.length || bb.length ? "one-sided book" : "empty book";
  $("book-id").textContent = S.book.synced ? "#" + S.book.id : "syncing";
}

// -- canvases ----------------------------------------------------------------------------------------------
function setupCanvas(c) {
  const r = window.devicePixelRatio || 1;
  const w = c.clientWidth, h = c.clientHeight;
  if (c.width !== Math.round(w * r) || c.height !== Math.round(h * r)) { c.width = Math.round(w * r); c.height = Math.round(h * r); }
  const ctx = c.getContext("2d");
  ctx.setTransform(r, 0, 0, r, 0, 0);
  ctx.clearRect(0, 0, w, h);
  ctx.font = "11px ui-monospace, Menlo, Consolas, monospace";
  return { ctx, w, h };
}
function niceStep(range, n) {
  const raw = range / n, p = Math.pow(10, Math.floor(Math.log10(raw))), f = raw / p;
  return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}
const COL = { up: "#20b26c", down: "#ef454a", grid: "#222a33", dim: "#7d8794", text: "#d7dde5" };
let hoverCandle = null;
function drawCandles() {
  const c = $("candles"), { ctx, w, h } = setupCanvas(c);
  const padR = 76, padB = 18, cw = 9;
  const plotW = w - padR, plotH = h - padB;
  const n = Math.max(1, Math.floor(plotW / cw));
  const data = S.candles.slice(-n);
  if (!data.length) {
    ctx.fillStyle = COL.dim; ctx.textAlign = "center";
    ctx.fillText("no trades in this market yet", plotW / 2, plotH / 2);
    $("ohlc").textContent = "";
    return;
  }
  const volH = plotH * 0.18, priceH = plotH - volH - 8;
  let hi = -Infinity, lo = Infinity, vmax = 0;
  for (const k of data) { hi = Math.max(hi, k.h); lo = Math.min(lo, k.l); vmax = Math.max(vmax, k.v); }
  if (hi === lo) { hi += hi * 0.001 || 1; lo -= lo * 0.001 || 1; }
  const pad = (hi - lo) * 0.08; hi += pad; lo -= pad;
  const y = (p) => 6 + (hi - p) / (hi - lo) * (priceH - 6);
  const x0 = plotW - data.length * cw;
  const pd = pxd();
  // grid and price axis
  const step = niceStep(hi - lo, 6);
  ctx.strokeStyle = COL.grid; ctx.fillStyle = COL.dim; ctx.textAlign = "left"; ctx.lineWidth = 1;
  for (let p = Math.ceil(lo / step) * step; p <= hi; p += step) {
    const yy = Math.round(y(p)) + 0.5;
    ctx.beginPath(); ctx.moveTo(0, yy); ctx.lineTo(plotW, yy); ctx.stroke();
    ctx.fillText(fmt(p, pd), plotW + 6, yy + 4);
  }
  // time axis
  const every = Math.max(1, Math.ceil(90 / cw));
  ctx.textAlign = "center";
  data.forEach((k, i) => {
    if ((data.length - 1 - i) % every) return;
    const xx = x0 + i * cw + cw / 2;
    const d = new Date(k.t);
    const label = S.interval === "1d" ? d.toLocaleDateString("en-GB", { day: "2-digit", month: "short" })
      : d.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit", hour12: false });
    ctx.fillStyle = COL.dim; ctx.fillText(label, xx, h - 4);
    ctx.strokeStyle = COL.grid; ctx.beginPath(); ctx.moveTo(Math.round(xx) + 0.5, 0); ctx.lineTo(Math.round(xx) + 0.5, plotH); ctx.stroke();
  });
  // candles and volume
  data.forEach((k, i) => {
    const xx = x0 + i * cw, up = k.c >= k.o, col = up ? COL.up : COL.down;
    ctx.strokeStyle = col; ctx.fillStyle = col;
    const mid = Math.round(xx + cw / 2) + 0.5;
    ctx.beginPath(); ctx.moveTo(mid, y(k.h)); ctx.lineTo(mid, y(k.l)); ctx.stroke();
    const top = y(Math.max(k.o, k.c)), bot = y(Math.min(k.o, k.c));
    ctx.fillRect(xx + 1, top, cw - 2, Math.max(1, bot - top));
    const vh = vmax ? (k.v / vmax) * volH : 0;
    ctx.globalAlpha = 0.35; ctx.fillRect(xx + 1, plotH - vh, cw - 2, vh); ctx.globalAlpha = 1;
  });
  // last price
  const last = data[data.length - 1];
  const ly = Math.round(y(last.c)) + 0.5, lcol = last.c >= last.o ? COL.up : COL.down;
  ctx.setLineDash([3, 3]); ctx.strokeStyle = lcol;
  ctx.beginPath(); ctx.moveTo(0, ly); ctx.lineTo(plotW, ly); ctx.stroke(); ctx.setLineDash([]);
  ctx.fillStyle = lcol; ctx.fillRect(plotW + 1, ly - 8, padR - 2, 16);
  ctx.fillStyle = "#fff"; ctx.textAlign = "left"; ctx.fillText(fmt(last.c, pd), plotW + 6, ly + 4);
  const k = hoverCandle !== null && data[hoverCandle - (S.candles.length - data.length)] || last;
  $("ohlc").textContent = `${new Date(k.t).toLocaleString("en-GB", { hour12: false })}  O ${fmt(k.o, pd)}  H ${fmt(k.h, pd)}  L ${fmt(k.l, pd)}  C ${fmt(k.c, pd)}  V ${fmt(k.v, qxd())}`;
  c.onmousemove = (ev) => {
    const i = Math.floor((ev.offsetX - x0) / cw);
    hoverCandle = i >= 0 && i < data.length ? i + (S.candles.length - data.length) : null;
    render("candles");
  };
  c.onmouseleave = () => { hoverCandle = null; render("candles"); };
}
function drawDepth() {
  const c = $("depth"), { ctx, w, h } = setupCanvas(c);
  const { bids, asks } = sortedBook();
  const padB = 16;
  if (!bids.length && !asks.length) {
    ctx.fillStyle = COL.dim; ctx.textAlign = "center"; ctx.fillText("empty book", w / 2, h / 2); return;
  }
  const mid = bids.length && asks.length ? (bids[0][0] + asks[0][0]) / 2 : (bids[0] || asks[0])[0];
  const b = bids.slice(0, 60), a = asks.slice(0, 60);
  const reach = Math.max(b.length ? mid - b[b.length - 1][0] : 0, a.length ? a[a.length - 1][0] - mid : 0) || mid * 0.001;
  const lo = mid - reach * 1.05, hi = mid + reach * 1.05;
  let cb = 0, ca = 0;
  const bc = b.map((l) => [l[0], (cb += l[1])]), ac = a.map((l) => [l[0], (ca += l[1])]);
  const vmax = Math.max(cb, ca) * 1.1 || 1;
  const x = (p) => (p - lo) / (hi - lo) * w, y = (v) => (h - padB) - v / vmax * (h - padB - 6);
  const area = (pts, col, fill, toLeft) => {
    if (!pts.length) return;
    ctx.beginPath();
    ctx.moveTo(x(pts[0][0]), y(0));
    let prev = 0;
    for (const [p, v] of pts) { ctx.lineTo(x(p), y(prev)); ctx.lineTo(x(p), y(v)); prev = v; }
    ctx.lineTo(toLeft ? 0 : w, y(prev));
    ctx.strokeStyle = col; ctx.lineWidth = 1.5; ctx.stroke();
    ctx.lineTo(toLeft ? 0 : w, y(0)); ctx.closePath();
    ctx.fillStyle = fill; ctx.fill();
  };
  area(bc, COL.up, "rgba(32,178,108,.18)", true);
  area(ac, COL.down, "rgba(239,69,74,.18)", false);
  ctx.strokeStyle = COL.grid; ctx.beginPath(); ctx.moveTo(x(mid), 0); ctx.lineTo(x(mid), h - padB); ctx.stroke();
  ctx.fillStyle = COL.dim; ctx.textAlign = "left"; ctx.fillText(fmt(lo, pxd()), 2, h - 3);
  ctx.textAlign = "right"; ctx.fillText(fmt(hi, pxd()), w - 2, h - 3);
  ctx.textAlign = "center"; ctx.fillStyle = COL.text; ctx.fillText(fmt(mid, pxd() + 1), x(mid), h - 3);
}

// -- trades and klines ----------------------------------------------------------------------------------
function onTrade(d) {
  const t = S.tickers[d.s] || (S.tickers[d.s] = {});
  t.last = d.p;
  render("markets", "ticker");
  if (d.s !== S.symbol) return;
  if (S.trades.length && d.t <= S.trades[0].id) return;
  S.trades.unshift({ id: d.t, price: d.p, qty: d.q, ts: d.T, buy: !d.m });
  if (S.trades.length > 200) S.trades.length = 200;
  render("trades");
}
function drawTrades() {
  const box = $("trades"), pd = pxd(), qd = qxd();
  const n = Math.max(5, Math.floor(box.clientHeight / 18));
  box.replaceChildren(...S.trades.slice(0, n).map((t) => {
    const r = el("div", t.buy ? "b" : "s");
    r.append(el("span", "", fmt(t.price, pd)), el("span", "r", fmt(t.qty, qd)), el("span", "t", fmtTime(t.ts)));
    return r;
  }));
  if (!S.trades.length) box.replaceChildren(el("div", "empty", "no trades yet"));
}
function mergeCandle(k) {
  const cs = S.candles, last = cs[cs.length - 1];
  if (last && last.t === k.t) cs[cs.length - 1] = k;
  else if (!last || k.t > last.t) { cs.push(k); if (cs.length > 1000) cs.shift(); }
}
function onKline(d) {
  if (d.s !== S.symbol || d.k.i !== S.interval) return;
  const k = d.k;
  mergeCandle({ t: k.t, o: +k.o, h: +k.h, l: +k.l, c: +k.c, v: +k.v });
  render("candles");
}

// -- the demo account -----------------------------------------------------------------------------------------
async function loadAccount() {
  let a;
  try { a = await getJSON("/ui/api/demo"); } catch (e) { return; }
  S.balances = new Map(a.balances.map((b) => [b.asset, { free: b.available, locked: b.held }]));
  S.orders = new Map(a.open_orders.map((o) => [o.order_id, {
    id: o.order_id, market: o.market, side: o.side.toUpperCase(),
    type: (o.type || "limit").toUpperCase(), price: o.price, qty: o.remaining_qty, left: o.remaining_qty,
    status: o.status === "open" ? "NEW" : "PENDING_TRIGGER" }]));
  S.fills = a.fills.map((f) => ({ ts: f.ts, market: f.market, order: f.order_id, side: f.side.toUpperCase(),
    price: f.price, qty: f.qty, maker: f.maker, fee: f.fee }));
  $("acct").textContent = "as " + a.name + " (account " + a.account + ")";
  render("orders", "balances", "fills");
}
let refillTimer = 0;
function onExecution(d) {
  const o = S.orders.get(d.i);
  switch (d.x) {
    case "NEW":
      S.orders.set(d.i, { id: d.i, market: d.s, side: d.S, type: d.o, price: d.p, qty: d.q, left: d.q, status: d.X });
      break;
    case "TRADE":
      if (o) { o.left = d.rq; o.status = d.X; if (d.X === "FILLED") S.orders.delete(d.i); }
      S.fills.unshift({ ts: d.T, market: d.s, order: d.i, side: d.S, price: d.L, qty: d.l, maker: d.m, fee: null });
      if (S.fills.length > 100) S.fills.length = 100;
      // fees are not in the stream: take them from the account's fill history shortly after
      clearTimeout(refillTimer); refillTimer = setTimeout(refreshFees, 1500);
      render("fills");
      break;
    case "CANCELED":
      if (d.X === "CANCELED") S.orders.delete(d.i); else if (o) o.left = d.rq;
      break;
    case "AMENDED":
      if (o) { o.price = d.p; o.left = d.rq; }
      break;
    case "TRIGGERED":
      if (o) o.status = "TRIGGERED";
      break;
    case "REJECTED":
      showMsg("Rejected: " + (d.r || "") + (d.msg ? " — " + d.msg : ""), true);
      break;
  }
  render("orders");
}
async function refreshFees() {
  try {
    const a = await getJSON("/ui/api/demo");
    S.fills = a.fills.map((f) => ({ ts: f.ts, market: f.market, order: f.order_id, side: f.side.toUpperCase(),
      price: f.price, qty: f.qty, maker: f.maker, fee: f.fee }));
    render("fills");
  } catch (e) { /* the next fill tries again */ }
}
function onBalances(d) {
  for (const b of d.B) S.balances.set(b.a, { free: b.f, locked: b.l });
  render("balances");
}
function drawOrders() {
  const tb = $("orders").tBodies[0];
  const rows = [...S.orders.values()].sort((a, b) => b.id - a.id);
  $("n-orders").textContent = rows.length ? "(" + rows.length + ")" : "";
  tb.replaceChildren(...rows.map((o) => {
    const tr = el("tr");
    const pd = S.info[o.market] ? S.info[o.market].pd : 2, qd = S.info[o.market] ? S.info[o.market].qd : 4;
    tr.dataset.orderId = o.id;
    tr.append(el("td", "", o.id), el("td", "", o.market), el("td", o.side === "BUY" ? "up" : "down", o.side),
      el("td", "", (o.type || "").toLowerCase().replace("_", " ")), el("td", "r", Number(o.price) ? fmt(o.price, pd) : "market"),
      el("td", "r", fmt(o.qty, qd)), el("td", "r", fmt(o.left, qd)), el("td", "", o.status.toLowerCase().replace("_", " ")));
    const td = el("td", "r"), btn = el("button", "", "Cancel");
    btn.onclick = () => cancelOrder(o.id, btn);
    td.appendChild(btn); tr.appendChild(td);
    return tr;
  }));
  if (!rows.length) { const tr = el("tr"); const td = el("td", "empty", "no open orders"); td.colSpan = 9; tr.appendChild(td); tb.appendChild(tr); }
}
function drawBalances() {
  const tb = $("balances").tBodies[0];
  tb.replaceChildren(...[...S.balances].sort().map(([a, b]) => {
    const tr = el("tr"), d = decimals(b.free);
    tr.append(el("td", "", a), el("td", "r", fmt(b.free, d)), el("td", "r", fmt(b.locked, d)),
      el("td", "r", fmt(Number(b.free) + Number(b.locked), d)));
    return tr;
  }));
}
function drawFills() {
  const tb = $("fills").tBodies[0];
  tb.replaceChildren(...S.fills.slice(0, 100).map((f) => {
    const tr = el("tr");
    const pd = S.info[f.market] ? S.info[f.market].pd : 2, qd = S.info[f.market] ? S.info[f.market].qd : 4;
    tr.append(el("td", "", fmtTime(f.ts)), el("td", "", f.market), el("td", "", f.order),
      el("td", f.side === "BUY" ? "up" : "down", f.side), el("td", "r", fmt(f.price, pd)), el("td", "r", fmt(f.qty, qd)),
      el("td", "", f.maker ? "maker" : "taker"), el("td", "r", f.fee === null ? "…" : f.fee));
    return tr;
  }));
  if (!S.fills.length) { const tr = el("tr"); const td = el("td", "empty", "no fills yet"); td.colSpan = 8; tr.appendChild(td); tb.appendChild(tr); }
}

// -- order entry ----------------------------------------------------------------------------------------------
function showMsg(text, err) { const m = $("f-msg"); m.textContent = text; m.className = "msg " + (err ? "err" : "ok"); }
function setSide(side) {
  S.side = side;
  document.querySelectorAll(".sides button").forEach((b) => b.classList.toggle("on", b.dataset.side === side));
  const btn = $("f-submit");
  btn.className = "submit " + side;
  btn.textContent = (side === "buy" ? "Buy " : "Sell ") + (S.info[S.symbol] ? S.info[S.symbol].base : "");
}
function updateForm() {
  const t = $("f-type").value;
  const market = t === "market" || t === "stop_market";
  $("l-trigger").classList.toggle("hidden", !t.startsWith("stop"));
  $("l-price").classList.toggle("hidden", t === "market");
  $("l-price").firstChild.textContent = t === "stop_market" ? "Protection price (buys) " : "Price ";
  $("f-tif").disabled = market;
  $("f-post").disabled = t !== "limit";
  if (t !== "limit") $("f-post").checked = false;
  updateNotional();
}
function updateNotional() {
  const p = Number($("f-price").value), q = Number($("f-size").value);
  const info = S.info[S.symbol];
  $("f-notional").textContent = p && q && info ? `≈ ${fmt(p * q, 2)} ${info.quote}` : "";
}
async function submitOrder(ev) {
  ev.preventDefault();
  const t = $("f-type").value;
  const body = { symbol: S.symbol, side: S.side, type: t, size: $("f-size").value.trim() };
  const price = $("f-price").value.trim(), trig = $("f-trigger").value.trim();
  if (t !== "market" && price) body.price = price;
  if (t.startsWith("stop")) body.trigger_price = trig;
  if (t === "limit" || t === "stop_limit") body.tif = $("f-tif").value;
  if ($("f-post").checked) body.post_only = true;
  const btn = $("f-submit"); btn.disabled = true;
  try {
    const r = await fetch("/order", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    const j = await r.json();
    if (!r.ok) showMsg(`${j.error.code}: ${j.error.message}`, true);
    else {
      const filled = Number(j.filled) ? ` — filled ${j.filled}` : "";
      showMsg(`Order ${j.order_id} ${j.status.replace("_", " ")}${filled}${j.cancel_reason ? " (" + j.cancel_reason + ")" : ""}`, false);
    }
  } catch (e) { showMsg(String(e), true); }
  btn.disabled = false;
}
async function cancelOrder(id, btn) {
  btn.disabled = true;
  const r = await fetch("/order", { method: "DELETE", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ order_id: id }) });
  const j = await r.json();
  if (!r.ok) { showMsg(`${j.error.code}: ${j.error.message}`, true); btn.disabled = false; }
  else showMsg(`Order ${id} cancelled`, false);
}

// -- start -------------------------------------------------------------------------------------------------------
async function main() {
  document.querySelectorAll(".sides button").forEach((b) => (b.onclick = () => setSide(b.dataset.side)));
  $("f-type").onchange = updateForm;
  $("f-price").oninput = updateNotional; $("f-size").oninput = updateNotional;
  $("order-form").onsubmit = submitOrder;
  document.querySelectorAll("#intervals button").forEach((b) => (b.onclick = async () => {
    if (b.dataset.iv === S.interval) return;
    document.querySelectorAll("#intervals button").forEach((x) => x.classList.toggle("on", x === b));
    const old = streamSym(S.symbol) + "@kline_" + S.interval;
    S.interval = b.dataset.iv;
    S.streams = marketStreams(S.symbol);
    S.candles = []; render("candles");
    request("UNSUBSCRIBE", [old]).catch(() => {});
    await request("SUBSCRIBE", [streamSym(S.symbol) + "@kline_" + S.interval]).catch(() => {});
    loadCandles(S.symbol, S.interval);
  }));
  document.querySelectorAll("#tabs button").forEach((b) => (b.onclick = () => {
    document.querySelectorAll("#tabs button").forEach((x) => x.classList.toggle("on", x === b));
    document.querySelectorAll(".tab").forEach((t) => t.classList.toggle("hidden", t.id !== "tab-" + b.dataset.tab));
  }));
  window.addEventListener("resize", () => render("book", "candles", "trades"));

  S.markets = (await getJSON("/api/v1/markets")).map((m) => ({ ...m, symbol: m.market }));
  for (const m of S.markets) S.info[m.symbol] = { pd: decimals(m.tick_size), qd: decimals(m.lot_size), base: m.base, quote: m.quote };
  for (const t of await getJSON("/api/v1/tickers")) if (t.last) S.tickers[t.market] = t;
  const demo = await fetch("/ui/api/demo");
  S.demo = demo.ok;
  if (!S.demo) {
    $("order-form").querySelectorAll("input, select, button").forEach((x) => (x.disabled = true));
    $("nodemo").classList.remove("hidden");
    document.querySelectorAll(".account .tab, .account .tabs").forEach((x) => x.classList.add("hidden"));
  }
  const want = decodeURIComponent(location.hash.slice(1));
  S.symbol = S.info[want] ? want : S.markets.length ? S.markets[0].symbol : null;
  setSide("buy"); updateForm();
  render("markets", "ticker", "orders", "balances", "fills");
  connect();
}
window.addEventListener("hashchange", () => {
  const want = decodeURIComponent(location.hash.slice(1));
  if (S.info[want] && want !== S.symbol) openMarket(want);
});
main();
