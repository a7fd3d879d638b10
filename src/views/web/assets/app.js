// devstack dashboard: a view of the running stack. Everything it shows comes from the server's
// events; the only things it does are the POST actions. No dependencies, works offline.
'use strict';
(() => {
  const MAX_LINES = 5000;   // log lines kept in the page
  const SPARK = 30;         // CPU samples in a sparkline
  // The token is in a cookie now; keep it out of the address bar, history and bookmarks.
  if (location.search) history.replaceState(null, '', '/');

  const $ = (id) => document.getElementById(id);
  const logEl = $('log');
  const rows = new Map();   // service -> { tr, cells…, status, cpu: [] }
  const nodes = new Map();  // service -> svg <g>
  let paused = false, filterSvc = '', matcher = null;

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.className = v; else if (k.startsWith('data-')) e.setAttribute(k, v); else e[k] = v;
    }
    e.append(...kids);
    return e;
  }
  function svg(tag, attrs) {
    const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    return e;
  }
  function hue(name) {
    let h = 0x811c9dc5;
    for (let i = 0; i < name.length; i++) { h ^= name.charCodeAt(i); h = Math.imul(h, 0x01000193) >>> 0; }
    return h % 360;
  }
  // A row carries its state flat: `state` is the name, its details (`code`, `reason`,
  // `restart_in_ms`, `crash_loop`) sit beside it.
  const stateName = (r) => (r && typeof r.state === 'string' && r.state) || 'unknown';
  function stateText(r) {
    const s = r;
    switch (stateName(r)) {
      case 'backoff': return `backoff ${s.restart_in_ms} ms` + (s.crash_loop ? ', crash loop' : '');
      case 'crashed': return `crashed (${s.code})`;
      case 'exited': return `exited (${s.code})`;
      case 'failed': return `failed: ${s.reason}`;
      default: return stateName(r);
    }
  }
  function duration(ms) {
    let s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return s + 's';
    let m = Math.floor(s / 60); s %= 60;
    if (m < 60) return `${m}m ${s}s`;
    let h = Math.floor(m / 60); m %= 60;
    return h < 24 ? `${h}h ${m}m` : `${Math.floor(h / 24)}d ${h % 24}h`;
  }
  function bytes(b) {
    if (b == null) return '–';
    const u = ['B', 'KiB', 'MiB', 'GiB']; let i = 0;
    while (b >= 1024 && i < 3) { b /= 1024; i++; }
    return b.toFixed(i ? 1 : 0) + ' ' + u[i];
  }
  function clock(t) {
    const d = new Date(t), p = (n, w = 2) => String(n).padStart(w, '0');
    return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
  }

  async function act(service, action, button) {
    button.disabled = true;
    try {
      const r = await fetch(`/api/services/${encodeURIComponent(service)}/${action}`,
        { method: 'POST', credentials: 'same-origin' });
      button.title = r.ok ? '' : `${r.status}: ${await r.text()}`;
    } catch (e) {
      button.title = String(e);
    } finally {
      button.disabled = false;
    }
  }

  function buildTable(info) {
    for (const s of info.services) addRow(s);
    $('svc-filter').append(el('option', { value: 'devstack' }, 'devstack'));
  }

  /** One service's row (and its entry in the log filter). */
  function addRow(s) {
    const body = document.querySelector('#services tbody');
    const select = $('svc-filter');
    {
      const cell = (cls) => el('td', { class: cls || '' });
      const r = {
        name: el('td', { class: 'name' }, s.name), kind: cell('kind'), state: cell('state st-unknown'),
        restarts: cell('restarts num'), uptime: cell('uptime num'), pid: cell('pid num'), ports: cell('ports'),
        cpu: cell('cpu num'), rss: cell('rss num'), actions: cell('actions'), status: null, cpuHist: [],
      };
      r.name.style.color = `hsl(${hue(s.name)} 70% 65%)`;
      r.kind.textContent = s.kind;
      if (s.image) r.kind.title = s.image;
      r.state.textContent = 'unknown';
      r.state.dataset.state = 'unknown';
      s.ports.forEach((p, i) => {
        if (i) r.ports.append(' ');
        r.ports.append(p.url ? el('a', { href: p.url, target: '_blank', rel: 'noreferrer noopener' }, p.label) : p.label);
      });
      r.cpu.textContent = '–'; r.rss.textContent = '–';
      for (const a of ['restart', 'stop', 'start']) {
        const b = el('button', { type: 'button', 'data-action': a }, a);
        b.addEventListener('click', () => act(s.name, a, b));
        r.actions.append(b, ' ');
      }
      r.tr = el('tr', { 'data-service': s.name }, r.name, r.kind, r.state, r.restarts, r.uptime, r.pid,
        r.ports, r.cpu, r.rss, r.actions);
      body.append(r.tr);
      rows.set(s.name, r);
      select.insertBefore(el('option', { value: s.name }, s.name), select.querySelector('option[value=devstack]'));
    }
  }

  function buildGraph(g) {
    const root = svg('svg', { width: g.width, height: g.height, viewBox: `0 0 ${g.width} ${g.height}` });
    const at = new Map(g.nodes.map((n) => [n.name, n]));
    for (const [from, to] of g.edges) {
      const a = at.get(from), b = at.get(to);
      if (!a || !b) continue;
      const x1 = a.x + a.w, y1 = a.y + a.h / 2, x2 = b.x, y2 = b.y + b.h / 2, mx = (x1 + x2) / 2;
      root.append(svg('path', { class: 'edge', d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}` }));
    }
    for (const n of g.nodes) {
      const node = svg('g', { class: 'node st-unknown', 'data-service': n.name });
      node.append(svg('rect', { x: n.x, y: n.y, width: n.w, height: n.h }));
      const label = svg('text', { x: n.x + 10, y: n.y + n.h / 2 });
      label.textContent = n.name;
      const title = svg('title');
      title.textContent = n.name;
      node.append(label, title);
      root.append(node);
      nodes.set(n.name, node);
    }
    $('graph').append(root);
  }

  function spark(values) {
    const max = Math.max(1, ...values);
    const pts = values.map((v, i) => `${i * 2},${15 - (v / max) * 14}`).join(' ');
    const s = svg('svg', { class: 'spark', width: SPARK * 2, height: 16 });
    s.append(svg('polyline', { points: pts }));
    return s;
  }

  function applyServices(list) {
    // The stack file is live: a service added to it gets a row, a removed one loses its own.
    const now = new Set(list.map((st) => st.service));
    for (const [name, r] of rows) {
      if (list.length && !now.has(name)) { r.tr.remove(); rows.delete(name); }
    }
    for (const st of list) {
      if (!rows.has(st.service)) addRow({ name: st.service, kind: st.kind, image: null, ports: [] });
      const r = rows.get(st.service);
      r.status = st;
      const name = stateName(st);
      r.state.className = 'state st-' + name;
      r.state.dataset.state = name;
      r.state.textContent = stateText(st);
      r.restarts.textContent = st.restarts;
      r.pid.textContent = st.pid != null ? st.pid : st.container ? st.container.slice(0, 12) : '–';
      r.pid.dataset.pid = st.pid != null ? st.pid : '';
      if (st.cpu_percent != null) {
        r.cpuHist.push(st.cpu_percent);
        if (r.cpuHist.length > SPARK) r.cpuHist.shift();
        r.cpu.replaceChildren(st.cpu_percent.toFixed(1) + '%', spark(r.cpuHist));
      } else {
        r.cpu.textContent = '–';
      }
      r.rss.textContent = bytes(st.rss_bytes);
      const n = nodes.get(st.service);
      if (n) {
        n.setAttribute('class', 'node st-' + name);
        n.querySelector('title').textContent = `${st.service}: ${stateText(st)}`;
      }
    }
    tickUptime();
    const all = [...rows.values()];
    const ready = all.filter((r) => ['ready', 'completed'].includes(stateName(r.status))).length;
    $('summary').textContent = `${ready}/${all.length} ready`;
  }

  function tickUptime() {
    const now = Date.now();
    for (const r of rows.values()) {
      const t = r.status && r.status.started_at_ms;
      r.uptime.textContent = t ? duration(now - t) : '–';
    }
  }

  // A line's level (`l`, when it has one) against the level select: that level and above.
  const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];
  let minLevel = -1;
  const levelOk = (l) => minLevel < 0 || LEVELS.indexOf(l) >= minLevel;
  const visible = (s, x, l) => (!filterSvc || s === filterSvc) && levelOk(l) && (!matcher || matcher(x));

  function lineEl(it) {
    const e = el('div', { class: `l k-${it.k}` + (it.l ? ` lv-${it.l}` : '') },
      el('span', { class: 't' }, clock(it.t), ' '),
      el('span', { class: 's' }, it.s), ' ',
      el('span', { class: 'x' }, (it.k === 'out' || it.k === 'err' ? '| ' : '▸ ') + it.x));
    e.querySelector('.s').style.color = `hsl(${hue(it.s)} 70% 65%)`;
    e.dataset.s = it.s;
    if (it.l) e.dataset.l = it.l;
    e._x = it.x;
    e._t = it.t;
    if (!visible(it.s, it.x, it.l)) e.classList.add('hide');
    return e;
  }

  function addItems(items) {
    if (!items || !items.length) return;
    const frag = document.createDocumentFragment();
    for (const it of items.slice(-MAX_LINES)) frag.append(lineEl(it));
    logEl.append(frag);
    for (let extra = logEl.childElementCount - MAX_LINES; extra > 0; extra--) logEl.firstElementChild.remove();
    if (!paused) logEl.scrollTop = logEl.scrollHeight;
    $('logcount').textContent = `${logEl.childElementCount} lines`;
  }

  function refilter() {
    for (const e of logEl.children) e.classList.toggle('hide', !visible(e.dataset.s, e._x, e.dataset.l));
    if (!paused) logEl.scrollTop = logEl.scrollHeight;
  }

  let searchTimer = 0;
  function readSearch() {
    const q = $('search').value, re = $('regex').checked;
    $('searcherr').textContent = '';
    matcher = null;
    if (q) {
      if (re) {
        try { const rx = new RegExp(q, 'i'); matcher = (x) => rx.test(x); }
        catch (e) { $('searcherr').textContent = 'bad regex: ' + e.message; }
      } else {
        const lower = q.toLowerCase();
        matcher = (x) => x.toLowerCase().includes(lower);
      }
    }
    refilter();
  }
  $('search').addEventListener('input', () => { clearTimeout(searchTimer); searchTimer = setTimeout(readSearch, 120); });
  $('regex').addEventListener('change', readSearch);
  $('svc-filter').addEventListener('change', (e) => { filterSvc = e.target.value; refilter(); });
  $('level-filter').addEventListener('change', (e) => { minLevel = e.target.value ? LEVELS.indexOf(e.target.value) : -1; refilter(); });
  $('pause').addEventListener('click', (e) => {
    paused = !paused;
    e.target.textContent = paused ? 'resume' : 'pause';
    e.target.dataset.paused = paused;
    if (!paused) logEl.scrollTop = logEl.scrollHeight;
  });

  function setConn(state) {
    const c = $('conn');
    c.dataset.conn = state;
    c.textContent = { live: 'live', lost: 'reconnecting…', ended: 'stack stopped' }[state] || state;
  }

  function showConfig(error) {
    const box = $('config-error');
    box.hidden = !error;
    box.querySelector('pre').textContent = error || '';
  }

  function connect() {
    const es = new EventSource('/api/events');
    es.addEventListener('init', (e) => {
      const m = JSON.parse(e.data);
      logEl.replaceChildren();
      applyServices(m.services);
      addItems(m.log);
      showConfig(m.config_error);
      setConn(m.ended ? 'ended' : 'live');
    });
    es.addEventListener('batch', (e) => {
      const m = JSON.parse(e.data);
      if (m.services) applyServices(m.services);
      if ('config_error' in m) showConfig(m.config_error);
      addItems(m.log);
      if (m.ended) { setConn('ended'); es.close(); }
    });
    es.onerror = () => { if ($('conn').dataset.conn !== 'ended') setConn('lost'); };
  }

  fetch('/api/stack', { credentials: 'same-origin' })
    .then((r) => { if (!r.ok) throw new Error(`${r.status}`); return r.json(); })
    .then((info) => {
      $('project').textContent = info.project;
      document.title = `devstack · ${info.project}`;
      buildTable(info);
      buildGraph(info.graph);
      setInterval(tickUptime, 1000);
      connect();
    })
    .catch((e) => setConn('error: ' + e.message));
})();
