// shoal status page: draws api.Snapshot events from v1/events. Vanilla
// JavaScript, no dependency, nothing fetched from anywhere but this node.
'use strict';

(function () {
  const BUCKETS = 65536;
  const PALETTE = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948',
    '#b07aa1', '#ff9da7', '#9c755f', '#7f7f7f', '#17becf', '#bcbd22'];
  const $ = (id) => document.getElementById(id);

  // Colours are given in the order members are first seen, so a member
  // keeps its colour while this page is open, whatever joins or leaves.
  const colours = new Map();
  function colour(id) {
    if (id === '') return '#c8c8c8'; // buckets nobody can own
    if (!colours.has(id)) colours.set(id, PALETTE[colours.size % PALETTE.length]);
    return colours.get(id);
  }

  function esc(s) {
    return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
  }
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.className = v;
      else if (k.startsWith('data-')) e.setAttribute(k, v);
      else e[k] = v;
    }
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function fmt(n, digits) {
    if (n === undefined || n === null || Number.isNaN(n)) return '—';
    if (typeof n !== 'number') return String(n);
    if (digits !== undefined) return n.toFixed(digits);
    return n.toLocaleString('en');
  }
  function rate(n) {
    if (n === null) return '—';
    if (n >= 1e6) return (n / 1e6).toFixed(2) + ' M';
    if (n >= 1e3) return (n / 1e3).toFixed(1) + ' k';
    return n.toFixed(n < 10 ? 1 : 0);
  }
  function duration(sec) {
    sec = Math.floor(sec);
    const d = Math.floor(sec / 86400), h = Math.floor(sec % 86400 / 3600), m = Math.floor(sec % 3600 / 60), s = sec % 60;
    return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : m ? `${m}m ${s}s` : `${s}s`;
  }

  // ---- the feed -------------------------------------------------------

  let prev = null;          // the previous snapshot, for rates
  const runs = new Map();   // table key → {hash, owners, runs} last received
  let lastEvent = 0;

  function tableKey(t) { return (t.group ? 'group/' : '') + t.name; }

  function setConn(state, text) {
    const c = $('conn');
    c.dataset.state = state;
    c.textContent = text;
  }

  function connect() {
    const es = new EventSource('v1/events');
    es.addEventListener('open', () => setConn('live', 'live'));
    es.addEventListener('error', () => setConn('reconnecting', 'reconnecting…'));
    es.addEventListener('snapshot', (ev) => {
      lastEvent = Date.now();
      setConn('live', 'live');
      let snap;
      try { snap = JSON.parse(ev.data); } catch (e) { setConn('stale', 'bad event: ' + e.message); return; }
      render(snap);
    });
  }
  // A stream that stops delivering (a hung node, a proxy) shows as stale:
  // events come at least once a second.
  setInterval(() => {
    if (lastEvent && Date.now() - lastEvent > 3500) setConn('stale', 'no update for ' + Math.round((Date.now() - lastEvent) / 1000) + ' s');
  }, 1000);

  // ---- drawing --------------------------------------------------------

  function render(snap) {
    const st = snap.status;
    document.title = `shoal ${st.node_id}`;
    $('node').textContent = `${st.node_id} · ${st.address} · VIP ${st.vip}`;
    renderSummary(snap);
    renderMembers(snap);
    renderTables(snap);
    renderCounters(snap);
    renderChecks(snap);
    $('updated').textContent = new Date(snap.time).toLocaleTimeString('en-GB');
    $('seq').textContent = snap.seq;
    document.body.dataset.seq = snap.seq;
    prev = snap;
  }

  function card(k, v, bad) {
    const c = el('div', { class: 'card' + (bad ? ' bad' : '') });
    c.append(el('div', { class: 'k' }, k), el('div', { class: 'v' }, v));
    return c;
  }

  function renderSummary(snap) {
    const st = snap.status, h = snap.health;
    const cards = [
      card('table', (st.table_hash || '').slice(0, 12) + ' #' + st.epoch),
      card('owned buckets', `${fmt(st.owned_buckets)} (${(100 * st.owned_buckets / BUCKETS).toFixed(1)}%)`),
      card('members', String((st.members || []).length)),
      card('agreement', st.gossip ? (st.agreement ? 'yes' : 'no: ' + (st.disagreeing || []).join(', ')) : 'static', st.gossip && !st.agreement),
      card('health', h.healthy ? 'healthy' : 'unhealthy', !h.healthy),
      card('slow start', (100 * h.slow_start_factor).toFixed(0) + '%'),
      card('uptime', duration(st.uptime_sec)),
      card('table age', duration(st.table_age_sec)),
    ];
    if (st.capacity) cards.push(card('draining', st.capacity.draining ? 'yes' : 'no', st.capacity.draining));
    if (st.holding) cards.push(card('holding', 'old buckets until peers agree'));
    $('summary').replaceChildren(...cards);
  }

  function badge(text, cls) { return el('span', { class: 'badge ' + (cls || text) }, text); }

  function renderMembers(snap) {
    const st = snap.status;
    const rows = (st.members || []).map((m) => {
      const tr = el('tr', { 'data-member': m.id, 'data-buckets': String(m.buckets), class: (m.id === st.node_id ? 'self ' : '') + (m.buckets === 0 ? 'nobuckets' : '') });
      const sw = el('span', { class: 'swatch' });
      sw.style.backgroundColor = colour(m.id);
      const td = (v, cls) => { const c = el('td', cls ? { class: cls } : {}); if (v instanceof Node) c.append(v); else c.textContent = v; return c; };
      const slow = m.id === st.node_id ? (100 * snap.health.slow_start_factor).toFixed(0) + '%' : '—';
      tr.append(
        td(sw), td(m.id + (m.id === st.node_id ? ' (this node)' : '')),
        td(m.state ? badge(m.state) : '—'), td(m.health ? badge(m.health) : '—'),
        td(fmt(m.capacity), 'num'), td(fmt(m.availability), 'num'), td(slow, 'num'),
        td(fmt(m.buckets), 'num'), td((100 * m.share).toFixed(2) + '%', 'num'),
        td(m.table_hash ? badge(m.table_hash.slice(0, 8), m.agrees ? 'yes' : 'no') : '—'));
      return tr;
    });
    $('members').tBodies[0].replaceChildren(...rows);
  }

  function renderTables(snap) {
    const box = $('tables');
    const seen = new Set();
    for (const t of snap.tables || []) {
      const key = tableKey(t);
      seen.add(key);
      let div = box.querySelector(`div.table[data-key="${CSS.escape(key)}"]`);
      if (!div) {
        div = el('div', { class: 'table', 'data-key': key });
        const canvas = el('canvas', { class: 'bar' });
        canvas.addEventListener('mousemove', (ev) => hover(canvas, key, ev));
        div.append(el('h3'), canvas, svg('share'), el('div', { class: 'legend' }), el('div', { class: 'intervals', hidden: true }));
        box.append(div);
        new ResizeObserver(() => { const r = runs.get(key); if (r) paintBar(canvas, r); }).observe(canvas);
      }
      if (!t.unchanged) runs.set(key, { hash: t.table_hash, owners: t.owners, runs: t.runs || [] });
      const r = runs.get(key);
      const list = div.querySelector('div.intervals');
      if (r && list.dataset.hash !== r.hash) {
        paintBar(div.querySelector('canvas.bar'), r);
        listIntervals(list, t.name, r);
      }
      const h = div.querySelector('h3');
      h.textContent = (t.group ? 'group ' : '') + t.name + ' ';
      h.append(el('span', { class: 'hash' }, `${(t.table_hash || '').slice(0, 16)} · ${r ? r.runs.length : 0} intervals`));
      drawShare(div.querySelector('svg.share'), div.querySelector('.legend'), t.members || []);
    }
    for (const div of [...box.children]) if (!seen.has(div.dataset.key)) div.remove();
  }

  function svg(cls) {
    const s = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
    s.setAttribute('class', cls);
    s.setAttribute('preserveAspectRatio', 'none');
    return s;
  }

  // column walks the runs and counts each owner's buckets in every slice
  // of the table that one pixel column shows: f(column, counts, first, end).
  function columns(r, width, f) {
    const counts = new Float64Array(r.owners.length);
    let ri = 0, left = r.runs.length ? r.runs[0][1] : 0;
    for (let c = 0; c < width; c++) {
      const first = Math.round(c * BUCKETS / width), end = Math.round((c + 1) * BUCKETS / width);
      let need = end - first;
      counts.fill(0);
      while (need > 0 && ri < r.runs.length) {
        const take = Math.min(need, left);
        counts[r.runs[ri][0]] += take;
        need -= take;
        left -= take;
        if (left === 0) { ri++; left = ri < r.runs.length ? r.runs[ri][1] : 0; }
      }
      f(c, counts, first, end);
    }
  }

  // paintBar draws the table in bucket order: each pixel column is a slice
  // of the buckets, split top to bottom by the owners of its intervals.
  function paintBar(canvas, r) {
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.min(BUCKETS, Math.round(canvas.clientWidth * dpr)));
    const h = Math.max(1, Math.round(canvas.clientHeight * dpr));
    if (canvas.width !== w) canvas.width = w;
    if (canvas.height !== h) canvas.height = h;
    const ctx = canvas.getContext('2d');
    ctx.clearRect(0, 0, w, h);
    const fills = r.owners.map(colour);
    columns(r, w, (c, counts, first, end) => {
      let y = 0;
      for (let o = 0; o < counts.length; o++) {
        if (!counts[o]) continue;
        const hh = counts[o] / (end - first) * h;
        ctx.fillStyle = fills[o];
        ctx.fillRect(c, y, 1, hh);
        y += hh;
      }
    });
  }

  function hover(canvas, key, ev) {
    const r = runs.get(key);
    if (!r) return;
    const rect = canvas.getBoundingClientRect();
    const col = Math.floor((ev.clientX - rect.left) / rect.width * canvas.width);
    columns(r, canvas.width, (c, counts, first, end) => {
      if (c !== col) return;
      const who = r.owners.map((id, o) => counts[o] ? `${id || 'nobody'} ${counts[o]}` : '').filter(Boolean).join(', ');
      canvas.title = `buckets ${first}–${end - 1}: ${who}`;
    });
  }

  // listIntervals keeps the table's intervals in the DOM, one element per
  // interval with its owner and bucket count, for scripts and tests: their
  // data-buckets add up to 65,536 (data-total).
  function listIntervals(list, name, r) {
    const parts = [];
    let x = 0;
    for (const [o, n] of r.runs) {
      parts.push(`<i class="seg" data-owner="${esc(r.owners[o])}" data-from="${x}" data-buckets="${n}"></i>`);
      x += n;
    }
    list.innerHTML = parts.join('');
    list.dataset.table = name;
    list.dataset.hash = r.hash;
    list.dataset.total = String(x);
    list.dataset.segments = String(r.runs.length);
  }

  function drawShare(s, legend, members) {
    s.setAttribute('viewBox', `0 0 ${BUCKETS} 1`);
    const parts = [];
    let x = 0;
    const items = [];
    for (const m of members) {
      if (m.buckets > 0) parts.push(`<rect x="${x}" width="${m.buckets}" height="1" fill="${colour(m.id)}"><title>${esc(m.id)}: ${m.buckets}</title></rect>`);
      x += m.buckets;
      const item = el('span', { 'data-member': m.id, 'data-buckets': String(m.buckets) });
      const sw = el('span', { class: 'swatch' });
      sw.style.backgroundColor = colour(m.id);
      item.append(sw, ` ${m.id} ${fmt(m.buckets)} (${(100 * m.share).toFixed(1)}%)`);
      items.push(item);
    }
    s.innerHTML = parts.join('');
    legend.replaceChildren(...items);
  }

  const DROPS = /dropped|failed|missed|errors|nombuf/;

  function renderCounters(snap) {
    const dt = prev ? (new Date(snap.time) - new Date(prev.time)) / 1000 : 0;
    const per = (cur, old) => (old === undefined || dt <= 0 || cur < old) ? null : (cur - old) / dt;
    const tot = snap.stats.total || {}, ptot = prev ? prev.stats.total || {} : {};
    $('counters').tBodies[0].replaceChildren(...Object.keys(tot).map((k) => {
      const tr = el('tr', { 'data-counter': k });
      tr.append(el('td', {}, k), el('td', { class: 'num' + (DROPS.test(k) && tot[k] ? ' drop' : '') }, fmt(tot[k])), el('td', { class: 'num' }, rate(per(tot[k], ptot[k]))));
      return tr;
    }));
    const fl = snap.stats.flows || {};
    $('flows').tBodies[0].replaceChildren(...Object.keys(fl).map((k) => {
      const tr = el('tr');
      tr.append(el('td', {}, k), el('td', { class: 'num' }, fmt(fl[k])));
      return tr;
    }));
    const rows = [];
    const ports = snap.stats.ports || {}, pports = prev ? prev.stats.ports || {} : {};
    for (const p of Object.keys(ports).sort()) {
      for (const k of Object.keys(ports[p])) {
        const tr = el('tr');
        const old = pports[p] ? pports[p][k] : undefined;
        tr.append(el('td', {}, p), el('td', {}, k), el('td', { class: 'num' + (DROPS.test(k) && ports[p][k] ? ' drop' : '') }, fmt(ports[p][k])), el('td', { class: 'num' }, rate(per(ports[p][k], old))));
        rows.push(tr);
      }
    }
    $('ports').tBodies[0].replaceChildren(...rows);
  }

  function renderChecks(snap) {
    $('checks').tBodies[0].replaceChildren(...(snap.health.checks || []).map((c) => {
      const tr = el('tr');
      tr.append(el('td', {}, `${c.check.name} (${c.check.kind} :${c.check.port})`));
      const td = el('td');
      td.append(badge(c.healthy ? 'healthy' : 'unhealthy'));
      tr.append(td, el('td', { class: 'num' }, fmt(c.latency_ms, 1) + ' ms'), el('td', { class: 'num' }, fmt(c.probes)),
        el('td', { class: 'num' }, fmt(c.failures)), el('td', {}, c.reason || ''));
      return tr;
    }));
  }

  // ---- changes (need the bearer token) ---------------------------------

  async function post(path, body) {
    const out = $('result');
    const token = $('token').value.trim();
    if (!token) { out.className = 'bad'; out.textContent = 'a change needs the admin token'; return; }
    try {
      const resp = await fetch(path, { method: 'POST', headers: { 'Authorization': 'Bearer ' + token, 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
      const text = await resp.text();
      out.className = resp.ok ? '' : 'bad';
      out.textContent = `${path}: ${resp.status} ${resp.statusText}\n${text}`;
    } catch (e) {
      out.className = 'bad';
      out.textContent = `${path}: ${e.message}`;
    }
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('changes').addEventListener('click', (ev) => {
      const act = ev.target.dataset ? ev.target.dataset.act : undefined;
      if (act === 'drain') post('v1/drain', { on: true });
      if (act === 'undrain') post('v1/drain', { on: false });
      if (act === 'reset') post('v1/weight', { reset: true });
      if (act === 'weight') {
        const w = parseFloat($('weight').value);
        if (Number.isNaN(w) || w < 0) { $('result').className = 'bad'; $('result').textContent = 'weight must be a number ≥ 0'; return; }
        post('v1/weight', { weight: w });
      }
    });
    // The page arrives with a snapshot in it: draw it before the stream
    // opens, so the first paint already shows the cluster.
    const first = $('snapshot');
    if (first) {
      try { render(JSON.parse(first.textContent)); } catch (e) { setConn('stale', 'bad snapshot: ' + e.message); }
      first.remove();
    }
    connect();
  });
})();
