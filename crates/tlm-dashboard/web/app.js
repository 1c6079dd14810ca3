// tlm-dashboard's page: devices and services, one chart per declared metric, and the control
// panel. Plain JavaScript, no build step; talks only to the dashboard that served it (/api/...).
'use strict';

(() => {
  // ---------------------------------------------------------------- small helpers

  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

  /** An element with attributes (`class`, `dataset`, `on*` handlers, others) and children. */
  function h(tag, attrs = {}, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v == null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'dataset') Object.assign(e.dataset, v);
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else if (k in e && typeof v !== 'string') e[k] = v;
      else e.setAttribute(k, v === true ? '' : v);
    }
    for (const kid of kids.flat()) {
      if (kid != null && kid !== false) e.append(kid instanceof Node ? kid : String(kid));
    }
    return e;
  }

  const store = {
    get(key) {
      try { return sessionStorage.getItem(key); } catch { return null; }
    },
    set(key, value) {
      try {
        if (value == null || value === '') sessionStorage.removeItem(key);
        else sessionStorage.setItem(key, value);
      } catch { /* storage disabled: the value lives in the page only */ }
    },
  };
  const TOKEN_KEY = 'tlm-dashboard.token';
  const TAB_KEY = 'tlm-dashboard.tab';
  const DEVICE_KEY = 'tlm-dashboard.device';

  const pad = (n, w = 2) => String(n).padStart(w, '0');

  /** Local date and time of a Unix time in seconds, with milliseconds when it has any. */
  function fmtTime(ts, withDate = true) {
    if (ts == null || !Number.isFinite(ts)) return '—';
    const d = new Date(ts * 1000);
    const ms = d.getMilliseconds();
    const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}${ms ? '.' + pad(ms, 3) : ''}`;
    return withDate ? `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}` : time;
  }

  function ago(ts) {
    if (ts == null) return 'never';
    const s = Math.max(0, now() - ts);
    if (s < 1.5) return 'just now';
    if (s < 90) return `${Math.round(s)} s ago`;
    if (s < 5400) return `${Math.round(s / 60)} min ago`;
    if (s < 129600) return `${Math.round(s / 3600)} h ago`;
    return `${Math.round(s / 86400)} d ago`;
  }

  function fmtDuration(s) {
    if (s < 120) return `${Math.round(s)} s`;
    if (s < 7200) return `${Math.round(s / 60)} min`;
    if (s < 172800) return `${+(s / 3600).toFixed(1)} h`;
    return `${+(s / 86400).toFixed(1)} days`;
  }

  const UNIT_NAMES = { Cel: '°C', degF: '°F' };
  const unitText = (u) => UNIT_NAMES[u] ?? u ?? '';

  /** A number as read, without float noise (at most 6 decimals). */
  function exact(v) {
    if (typeof v !== 'number' || !Number.isFinite(v)) return String(v);
    return String(Math.round(v * 1e6) / 1e6);
  }

  const short = (v) => String(+v.toPrecision(4));

  /** Compact form for axis ticks and headers: binary prefixes for bytes, k/M/G otherwise. */
  function human(v, unit) {
    if (typeof v !== 'number' || !Number.isFinite(v)) return String(v);
    const a = Math.abs(v);
    if (unit === 'B' || unit === 'B/s') {
      const names = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
      let i = 0;
      while (Math.abs(v) >= 1024 && i < names.length - 1) { v /= 1024; i++; }
      return `${short(v)} ${names[i]}${unit === 'B/s' ? '/s' : ''}`;
    }
    if (a >= 1e9) return short(v / 1e9) + 'G';
    if (a >= 1e6) return short(v / 1e6) + 'M';
    if (a >= 1e4) return short(v / 1e3) + 'k';
    return short(v);
  }

  function withUnit(text, unit) {
    const u = unitText(unit);
    if (!u || unit === 'B' || unit === 'B/s') return text;
    return u.startsWith('°') || u.startsWith('/') || u === '%' ? text + u : `${text} ${u}`;
  }

  async function getJson(url, opts) {
    const res = await fetch(url, { cache: 'no-store', ...opts });
    let body = null;
    const text = await res.text();
    try { body = text ? JSON.parse(text) : null; } catch { body = null; }
    if (!res.ok) {
      const err = body && body.error ? body.error : { code: `http_${res.status}`, message: text.trim() || res.statusText };
      const e = new Error(`${err.code}: ${err.message}`);
      e.code = err.code;
      e.detail = err.message;
      e.status = res.status;
      throw e;
    }
    if (body == null) throw new Error(`${url}: the answer is not JSON`);
    return body;
  }

  // ---------------------------------------------------------------- application state

  const app = {
    state: null,
    /** Server clock minus this browser's, in seconds. */
    skew: 0,
    device: store.get(DEVICE_KEY),
    tab: store.get(TAB_KEY) || 'overview',
    /** The range picked with the buttons: {live: true, span} or {live: false, from, to}. */
    base: { live: true, span: 300 },
    /** The window shown: the base range, or a zoom or pan of it. */
    view: { live: true, span: 300 },
    rate: true,
    filter: '',
    charts: new Map(),
    generation: 0,
  };

  const now = () => Date.now() / 1000 + app.skew;

  function windowOf(r) {
    if (r.live) {
      const to = now();
      return { from: to - r.span, to };
    }
    return { from: r.from, to: r.to };
  }

  /** Live: the window slides with time, or a fixed window that reaches the present. */
  const takesLivePoints = () => app.view.live || app.view.to >= now() - 1;
  const zoomed = () => JSON.stringify(app.view) !== JSON.stringify(app.base);

  function currentDevice() {
    const devices = app.state?.devices ?? [];
    return devices.find((d) => d.serial === app.device) ?? devices[0] ?? null;
  }

  // ---------------------------------------------------------------- tabs

  function showTab(tab) {
    if (!['overview', 'metrics', 'control'].includes(tab)) tab = 'overview';
    app.tab = tab;
    store.set(TAB_KEY, tab);
    for (const b of $$('.tabs [data-tab]')) {
      b.setAttribute('aria-selected', String(b.dataset.tab === tab));
    }
    for (const v of $$('.view')) v.hidden = v.dataset.view !== tab;
    if (tab === 'metrics') {
      resizeCharts();
      for (const c of app.charts.values()) if (c.dirty && !c.loading) c.render();
    }
  }

  // ---------------------------------------------------------------- state: devices and services

  function applyState(state, fromServerNow = true) {
    if (!state || !Array.isArray(state.devices)) return;
    if (fromServerNow && typeof state.now === 'number') app.skew = state.now - Date.now() / 1000;
    const first = app.state == null;
    app.state = state;
    if (!state.devices.some((d) => d.serial === app.device)) {
      app.device = state.devices[0]?.serial ?? null;
    }
    renderDevicePicker();
    renderSummary();
    renderOverview();
    syncCharts();
    renderControlAvailability(first);
  }

  function renderDevicePicker() {
    const sel = $('#device');
    const serials = app.state.devices.map((d) => d.serial);
    const have = Array.from(sel.options).map((o) => o.value);
    if (JSON.stringify(have) !== JSON.stringify(serials)) {
      sel.replaceChildren(...serials.map((s) => h('option', { value: s }, s)));
    }
    sel.value = app.device ?? '';
    sel.disabled = serials.length < 2;
  }

  function renderSummary() {
    const d = currentDevice();
    const box = $('#summary');
    if (!d) {
      box.replaceChildren(h('span', { class: 'muted' }, 'No device seen yet: waiting for telemetry on the broker'));
      return;
    }
    const alive = d.services.filter((s) => s.alive).length;
    box.replaceChildren(
      h('span', { class: 'count' }, `${alive} of ${d.services.length} services alive`),
      ...d.services.map((s) =>
        h('span', { class: `pill ${s.alive ? 'ok' : 'down'}`, title: s.alive ? 'alive' : 'offline' }, s.name)),
      h('span', { class: 'muted small' }, `history: ${app.state.history ?? '?'}`),
    );
  }

  function statusCells(st) {
    if (!st) return [h('td', { colspan: 6, class: 'muted' }, 'no status yet')];
    const healthy = st.healthy === true;
    return [
      h('td', {}, h('span', { class: `badge ${healthy ? 'ok' : 'err'}` }, healthy ? 'healthy' : 'unhealthy'),
        st.detail ? h('div', { class: 'detail' }, st.detail) : null),
      h('td', { class: 'num' }, st.poll_time_ms != null ? `${st.poll_time_ms} ms` : '—'),
      h('td', { class: 'num' }, st.published_records ?? '—'),
      h('td', { class: `num ${st.dropped_records > 0 ? 'bad' : ''}` }, st.dropped_records ?? '—'),
      h('td', { class: 'num' }, st.buffered_records ?? '—'),
      h('td', {}, st.broker_connected === true ? 'connected' : st.broker_connected === false
        ? h('span', { class: 'bad' }, 'disconnected') : '—'),
    ];
  }

  function agoSpan(ts) {
    return h('span', { dataset: { ago: ts ?? '' }, title: ts != null ? fmtTime(ts) : '' }, ago(ts));
  }

  function renderOverview() {
    const box = $('#devices');
    if (!app.state.devices.length) {
      box.replaceChildren(h('p', { class: 'notice' },
        'No device seen yet. The dashboard lists a device when its services publish heartbeats, metric announcements or telemetry on the broker.'));
      return;
    }
    box.replaceChildren(...app.state.devices.map((d) => {
      const alive = d.services.filter((s) => s.alive).length;
      return h('article', { class: 'card device', dataset: { device: d.serial } },
        h('header', {},
          h('h2', {}, d.serial),
          h('span', { class: 'muted' }, `${alive} of ${d.services.length} services alive · ${d.metrics.length} metrics · last seen `, agoSpan(d.last_seen))),
        h('div', { class: 'table-wrap' }, h('table', { class: 'services' },
          h('thead', {}, h('tr', {}, ['service', 'state', 'last heard', 'health', 'poll', 'published', 'dropped', 'buffered', 'broker', 'metrics']
            .map((c) => h('th', {}, c)))),
          h('tbody', {}, d.services.map((s) => h('tr', { dataset: { service: s.name, alive: String(!!s.alive) }, class: s.alive ? '' : 'offline' },
            h('th', { scope: 'row' }, s.name),
            h('td', {}, h('span', { class: `pill ${s.alive ? 'ok' : 'down'}` }, s.alive ? 'alive' : 'offline')),
            h('td', {}, agoSpan(s.last_heartbeat)),
            ...statusCells(s.status),
            h('td', { class: 'num' }, Array.isArray(s.metrics) ? s.metrics.length : '—'),
          ))))));
    }));
  }

  /** Relative times ("3 s ago") move on between updates. */
  function tickAgo() {
    for (const e of $$('[data-ago]')) {
      const ts = e.dataset.ago === '' ? null : Number(e.dataset.ago);
      e.textContent = ago(ts);
    }
  }

  // ---------------------------------------------------------------- charts

  /** Time axis ticks, 24-hour: the date where ticks are days apart or a day begins. */
  function timeTicks(u, splits, axisIdx, space, incr) {
    return splits.map((v, i) => {
      const d = new Date(v * 1000);
      const date = `${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
      if (incr >= 86400) return date;
      const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
      const time = incr < 60 ? `${hm}:${pad(d.getSeconds())}` : hm;
      const prev = i > 0 ? new Date(splits[i - 1] * 1000) : null;
      const newDay = prev && prev.getDate() !== d.getDate();
      return newDay || (i === 0 && u.scales.x.max - u.scales.x.min > 86400) ? `${date}\n${time}` : time;
    });
  }

  const PALETTE = ['#2563eb', '#0d9488', '#c2410c', '#7c3aed', '#be185d', '#15803d', '#b45309', '#0369a1'];
  function colorOf(id) {
    let x = 0;
    for (const c of id) x = (x * 31 + c.charCodeAt(0)) >>> 0;
    return PALETTE[x % PALETTE.length];
  }

  function kindOf(m) {
    if (m.dataType === 0) return 'string';
    if (m.dataType === 2) return 'boolean';
    if (m.type === 1) return app.rate ? 'rate' : 'counter';
    return 'number';
  }

  class Chart {
    constructor(metric) {
      this.metric = metric;
      this.id = metric.id;
      this.kind = kindOf(metric);
      this.t = [];
      this.v = [];
      this.states = [];
      this.lastRaw = null;
      this.loading = false;
      this.pending = [];
      this.appended = 0;
      this.plot = null;
      this.lastValue = h('span', { class: 'last' });
      this.note = h('div', { class: 'chart-note', hidden: true });
      this.plotBox = h('div', { class: 'plot' });
      this.titleName = h('span', { class: 'name' });
      this.sub = h('div', { class: 'sub' });
      this.card = h('article', { class: 'card chart', dataset: { metric: metric.id, points: '0' } },
        h('header', {}, h('div', { class: 'title' }, this.titleName), this.lastValue),
        this.sub, this.plotBox, this.note);
      this.describe();
    }

    /** Header text from the announcement (which may change). */
    describe() {
      const m = this.metric;
      this.card.dataset.kind = this.kind;
      this.card.dataset.metricService = m.service ?? '';
      this.titleName.replaceChildren(m.name || m.id);
      if (m.label) this.titleName.append(h('span', { class: 'tag' }, m.label));
      const what = { number: 'temporal', rate: 'counter, rate per second', counter: 'counter', boolean: 'boolean', string: 'text' }[this.kind];
      this.sub.textContent = [m.name && m.name !== m.id ? m.id : null, unitText(this.unit()) || null, what]
        .filter(Boolean).join(' · ');
      this.card.title = '';
    }

    unit() {
      const u = this.metric.unit || '';
      if (this.kind === 'rate') return u && u !== 'count' ? `${u}/s` : '/s';
      return this.kind === 'boolean' || this.kind === 'string' ? '' : u;
    }

    matches(filter) {
      if (!filter) return true;
      const m = this.metric;
      return [m.id, m.name, m.label, m.service].some((s) => s && s.toLowerCase().includes(filter));
    }

    width() {
      const w = this.plotBox.clientWidth;
      if (w > 0) return w;
      const grid = $('#charts').clientWidth || window.innerWidth - 40;
      return Math.max(240, Math.min(grid, 520) - 24);
    }

    options() {
      const unit = this.unit();
      const kind = this.kind;
      const self = this;
      const y = { auto: true };
      const yAxis = {
        label: unitText(unit) || undefined,
        labelSize: 16,
        labelFont: '12px system-ui, sans-serif',
        font: '11px system-ui, sans-serif',
        size: (u, values) => 14 + 7 * Math.max(3, ...(values ?? []).map((s) => String(s).length)),
        values: (u, splits) => splits.map((v) => human(v, unit)),
      };
      let paths;
      let valueOf = (u, v) => (v == null ? '—' : withUnit(exact(v), unit) + (unit.startsWith('B') && Math.abs(v) >= 1024 ? ` (${human(v, unit)})` : ''));
      if (kind === 'boolean') {
        y.range = () => [-0.15, 1.15];
        yAxis.splits = () => [0, 1];
        yAxis.values = (u, splits) => splits.map((v) => (v === 1 ? 'true' : v === 0 ? 'false' : ''));
        paths = uPlot.paths.stepped({ align: 1 });
        valueOf = (u, v) => (v == null ? '—' : v ? 'true' : 'false');
      } else if (kind === 'string') {
        y.range = () => [-0.5, Math.max(self.states.length, 1) - 0.5];
        yAxis.splits = () => self.states.map((_, i) => i);
        yAxis.values = (u, splits) => splits.map((i) => {
          const s = self.states[i] ?? '';
          return s.length > 14 ? s.slice(0, 13) + '…' : s;
        });
        paths = uPlot.paths.stepped({ align: 1 });
        valueOf = (u, v) => (v == null ? '—' : JSON.stringify(self.states[v] ?? ''));
      }
      const color = colorOf(this.id);
      return {
        width: this.width(),
        height: 150,
        cursor: {
          sync: { key: 'tlm-dashboard' },
          drag: { x: true, y: false, setScale: false },
          points: { size: 6 },
        },
        legend: { live: true },
        scales: { x: { time: true, range: () => { const w = windowOf(app.view); return [w.from, w.to]; } }, y },
        axes: [
          { font: '11px system-ui, sans-serif', size: 30, values: timeTicks, grid: { stroke: '#eef0f4' }, ticks: { stroke: '#dde1e8' } },
          { ...yAxis, grid: { stroke: '#eef0f4' }, ticks: { stroke: '#dde1e8' } },
        ],
        series: [
          { label: 'time', value: (u, v) => fmtTime(v) },
          {
            label: this.metric.name || this.id,
            stroke: color,
            width: 1.5,
            fill: kind === 'number' || kind === 'rate' ? color + '14' : undefined,
            paths,
            spanGaps: kind === 'boolean' || kind === 'string',
            value: valueOf,
          },
        ],
        hooks: {
          setSelect: [(u) => zoomFromSelection(u)],
          ready: [(u) => attachPan(u)],
        },
      };
    }

    ensurePlot() {
      if (this.plot) return;
      this.plot = new uPlot(this.options(), [this.t, this.v], this.plotBox);
      this.plot.over.addEventListener('dblclick', () => resetZoom());
    }

    /** Drop the plot (kind or unit changed): it is made anew with the next data. */
    rebuild() {
      if (this.plot) { this.plot.destroy(); this.plot = null; }
      this.kind = kindOf(this.metric);
      this.describe();
    }

    query() {
      const w = windowOf(app.view);
      const dev = currentDevice();
      const p = new URLSearchParams({
        device: dev ? dev.serial : '',
        metric: this.id,
        from: w.from.toFixed(3),
        to: w.to.toFixed(3),
        width: String(Math.round(this.width())),
        rate: String(this.kind === 'rate'),
      });
      return `/api/series?${p}`;
    }

    async load(generation) {
      this.loading = true;
      this.pending = [];
      this.card.dataset.loading = 'true';
      try {
        const body = await getJson(this.query());
        if (generation !== app.generation) return;
        const t = Array.isArray(body.t) ? body.t : [];
        const values = Array.isArray(body.values) ? body.values : [];
        this.t = [];
        this.v = [];
        this.states = [];
        this.lastRaw = null;
        this.appended = 0;
        for (let i = 0; i < t.length && i < values.length; i++) {
          const x = this.convert(values[i]);
          if (typeof t[i] === 'number' && x !== undefined) { this.t.push(t[i]); this.v.push(x); }
        }
        this.card.dataset.rawPoints = String(body.raw_points ?? '');
        this.setNote(null);
        // Points that arrived while loading, newer than what the store answered.
        const pending = this.pending;
        this.pending = [];
        this.loading = false;
        for (const p of pending) this.push(p.t, p.v);
        this.render();
      } catch (e) {
        if (generation !== app.generation) return;
        this.setNote(`cannot load this metric: ${e.message}`, true);
        this.card.dataset.error = e.code ?? 'error';
      } finally {
        if (generation === app.generation) {
          this.loading = false;
          this.card.dataset.loading = 'false';
        }
      }
    }

    /** A value of the store or the stream as the chart draws it; undefined to skip it. */
    convert(v) {
      if (this.kind === 'string') {
        const s = typeof v === 'string' ? v : JSON.stringify(v);
        let i = this.states.indexOf(s);
        if (i < 0) { i = this.states.length; this.states.push(s); }
        return i;
      }
      if (typeof v === 'boolean') return v ? 1 : 0;
      if (typeof v === 'number' && Number.isFinite(v)) return v;
      return null;
    }

    /** A live reading (raw, as published). */
    push(t, v) {
      if (this.loading) { this.pending.push({ t, v }); return; }
      if (typeof t !== 'number') return;
      if (this.kind === 'rate') {
        const prev = this.lastRaw;
        if (typeof v !== 'number') return;
        this.lastRaw = { t, v };
        if (!prev || t <= prev.t || v < prev.v) return;
        v = (v - prev.v) / (t - prev.t);
      }
      if (this.t.length && t <= this.t[this.t.length - 1]) return;
      const x = this.convert(v);
      if (x === undefined) return;
      this.t.push(t);
      this.v.push(x);
      this.appended++;
      this.dirty = true;
    }

    /** Forget what slid out of a live window, keeping one point before it (a state lasts). */
    trim(from) {
      let cut = 0;
      while (cut + 1 < this.t.length && this.t[cut + 1] < from) cut++;
      if (cut > 0) { this.t.splice(0, cut); this.v.splice(0, cut); }
    }

    setNote(text, isError = false) {
      this.note.hidden = !text;
      this.note.textContent = text ?? '';
      this.note.classList.toggle('error-text', isError);
      if (!isError) delete this.card.dataset.error;
    }

    render() {
      this.ensurePlot();
      this.plot.setData([this.t, this.v]);
      const w = windowOf(app.view);
      const drawn = this.t.filter((t) => t >= w.from - 1e-3 && t <= w.to + 1e-3).length;
      this.card.dataset.points = String(drawn);
      this.card.classList.toggle('empty', drawn === 0);
      if (drawn === 0 && !this.card.dataset.error) this.setNote('no data in this range');
      else if (!this.card.dataset.error) this.setNote(null);
      const last = this.v.length ? this.v[this.v.length - 1] : null;
      let text = '';
      if (last != null) {
        if (this.kind === 'boolean') text = last ? 'true' : 'false';
        else if (this.kind === 'string') text = this.states[last] ?? '';
        else text = withUnit(human(last, this.unit()), this.unit());
      }
      this.lastValue.textContent = text;
      this.lastValue.title = this.t.length ? `at ${fmtTime(this.t[this.t.length - 1])}` : '';
      this.dirty = false;
    }

    resize() {
      if (!this.plot) return;
      const w = this.width();
      if (Math.abs(w - this.plot.width) > 1) this.plot.setSize({ width: w, height: 150 });
    }

    destroy() {
      if (this.plot) this.plot.destroy();
      this.card.remove();
    }
  }

  function metricsOf(device) {
    if (!device) return [];
    const order = new Map(device.services.map((s, i) => [s.name, i]));
    const rank = (m) => (m.service != null && order.has(m.service) ? order.get(m.service) : 1e6);
    return device.metrics
      .map((m, i) => ({ m, i }))
      .sort((a, b) => rank(a.m) - rank(b.m) || a.i - b.i)
      .map((x) => x.m);
  }

  let chartsDevice = null;

  /** One chart per declared metric of the chosen device; new ones load, gone ones go. */
  function syncCharts() {
    const device = currentDevice();
    const serial = device?.serial ?? null;
    if (serial !== chartsDevice) {
      for (const c of app.charts.values()) c.destroy();
      app.charts.clear();
      chartsDevice = serial;
    }
    const metrics = metricsOf(device);
    const wanted = new Set(metrics.map((m) => m.id));
    for (const [id, c] of app.charts) {
      if (!wanted.has(id)) { c.destroy(); app.charts.delete(id); }
    }
    const fresh = [];
    for (const m of metrics) {
      let c = app.charts.get(m.id);
      if (!c) {
        c = new Chart(m);
        app.charts.set(m.id, c);
        fresh.push(c);
      } else if (JSON.stringify(c.metric) !== JSON.stringify(m)) {
        const reload = c.metric.dataType !== m.dataType || c.metric.type !== m.type || c.metric.unit !== m.unit;
        c.metric = m;
        if (reload) { c.rebuild(); fresh.push(c); } else c.describe();
      }
    }
    layoutCharts(metrics);
    if (fresh.length) loadCharts(fresh);
  }

  function layoutCharts(metrics) {
    const box = $('#charts');
    if (!metrics.length) {
      box.replaceChildren(h('p', { class: 'notice' }, currentDevice()
        ? 'This device has announced no metrics yet (services announce them on events.params when they connect).'
        : 'No device seen yet.'));
      return;
    }
    const groups = new Map();
    for (const m of metrics) {
      const key = m.service ?? 'other';
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(app.charts.get(m.id));
    }
    const sections = [];
    for (const [service, charts] of groups) {
      const visible = charts.filter((c) => c.matches(app.filter));
      for (const c of charts) c.card.hidden = !c.matches(app.filter);
      sections.push(h('section', { class: 'group', dataset: { group: service }, hidden: visible.length === 0 },
        h('h2', {}, service, h('span', { class: 'muted' }, ` · ${charts.length} metric${charts.length === 1 ? '' : 's'}`)),
        h('div', { class: 'grid' }, charts.map((c) => c.card))));
    }
    // Moving the cards keeps their plots.
    box.replaceChildren(...sections);
    if (app.tab === 'metrics') requestAnimationFrame(resizeCharts);
  }

  /** Load charts a few at a time: a device can declare dozens of metrics. */
  async function loadCharts(charts) {
    const generation = app.generation;
    const queue = charts.slice();
    const box = $('#charts');
    box.dataset.loading = 'true';
    const worker = async () => {
      while (queue.length && generation === app.generation) await queue.shift().load(generation);
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    if (generation === app.generation) {
      box.dataset.loading = String(Array.from(app.charts.values()).some((c) => c.loading));
    }
  }

  function reloadAll() {
    app.generation++;
    renderRangeControls();
    loadCharts(Array.from(app.charts.values()));
  }

  function resizeCharts() {
    for (const c of app.charts.values()) {
      if (!c.plot && c.t.length === 0 && c.loading) continue;
      c.ensurePlot();
      c.resize();
    }
  }

  function applyPoints(batch) {
    if (!batch || batch.device !== chartsDevice || !Array.isArray(batch.points)) return;
    if (!takesLivePoints()) return;
    for (const p of batch.points) {
      const c = app.charts.get(p.metric);
      if (c) c.push(p.t, p.v);
    }
  }

  /** Once a second: slide a live window, draw what arrived, reload a chart grown too dense. */
  function tickCharts() {
    if (!app.view.live && !takesLivePoints()) return;
    const w = windowOf(app.view);
    const stale = [];
    for (const c of app.charts.values()) {
      if (c.loading) continue;
      if (app.view.live) { c.trim(w.from); c.dirty = true; }
      if (c.appended > 2 * c.width()) stale.push(c);
      if (c.dirty && !c.card.hidden && app.tab === 'metrics') c.render();
    }
    if (stale.length) loadCharts(stale);
    if (app.view.live) renderRangeLabel();
  }

  // ---------------------------------------------------------------- range, zoom, pan

  function renderRangeLabel() {
    const w = windowOf(app.view);
    const what = app.view.live ? `Last ${fmtDuration(app.view.span)}, live` : zoomed() ? 'Zoomed' : 'Custom range';
    const sameDay = new Date(w.from * 1000).toDateString() === new Date(w.to * 1000).toDateString();
    $('#range-label').textContent = `${what}: ${fmtTime(Math.round(w.from))} – ${fmtTime(Math.round(w.to), !sameDay)}${!app.view.live && takesLivePoints() ? ' (live)' : ''}`;
  }

  function renderRangeControls() {
    const picked = app.base.live ? String(app.base.span) : 'custom';
    for (const b of $$('[data-range]')) b.setAttribute('aria-pressed', String(b.dataset.range === picked));
    $('#charts').dataset.range = app.view.live ? String(app.view.span) : 'custom';
    $('#zoom-reset').disabled = !zoomed();
    renderRangeLabel();
  }

  function setRange(base) {
    app.base = base;
    app.view = { ...base };
    reloadAll();
  }

  function setView(view) {
    app.view = view;
    reloadAll();
  }

  function resetZoom() {
    if (zoomed()) setView({ ...app.base });
  }

  let lastSelect = 0;
  function zoomFromSelection(u) {
    const sel = u.select;
    if (!sel || sel.width < 4) return;
    const from = u.posToVal(sel.left, 'x');
    const to = u.posToVal(sel.left + sel.width, 'x');
    u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
    const t = performance.now();
    if (t - lastSelect < 200) return; // the same drag, seen by a synced chart
    lastSelect = t;
    if (to - from < 1) return;
    setView({ live: false, from, to });
  }

  function pan(fraction) {
    const w = windowOf(app.view);
    const shift = (w.to - w.from) * fraction;
    const to = w.to + shift;
    if (to >= now() && app.base.live && Math.abs(w.to - w.from - app.base.span) < 1) {
      setView({ ...app.base });
      return;
    }
    setView({ live: false, from: w.from + shift, to });
  }

  /** Shift+drag on a chart moves the window of every chart; the data follows on release. */
  function attachPan(u) {
    u.root.addEventListener('mousedown', (e) => {
      if (!e.shiftKey || e.button !== 0) return;
      e.preventDefault();
      e.stopPropagation();
      const start = windowOf(app.view);
      const x0 = e.clientX;
      const perPx = (start.to - start.from) / u.bbox.width * devicePixelRatio;
      let moved = null;
      const move = (ev) => {
        const dt = -(ev.clientX - x0) * perPx;
        moved = { live: false, from: start.from + dt, to: start.to + dt };
        for (const c of app.charts.values()) if (c.plot) c.plot.setScale('x', { min: moved.from, max: moved.to });
      };
      const up = () => {
        window.removeEventListener('mousemove', move);
        window.removeEventListener('mouseup', up);
        if (moved) setView(moved);
      };
      window.addEventListener('mousemove', move);
      window.addEventListener('mouseup', up);
    }, true);
  }

  function toLocalInput(ts) {
    const d = new Date(ts * 1000);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function setupRange() {
    for (const b of $$('[data-range]')) {
      b.addEventListener('click', () => {
        const form = $('#custom-range');
        if (b.dataset.range === 'custom') {
          const w = windowOf(app.view);
          $('#range-from').value = toLocalInput(w.from);
          $('#range-to').value = toLocalInput(w.to);
          form.hidden = false;
          $('#range-from').focus();
          return;
        }
        form.hidden = true;
        setRange({ live: true, span: Number(b.dataset.range) });
      });
    }
    $('#custom-range').addEventListener('submit', (e) => {
      e.preventDefault();
      const from = new Date($('#range-from').value).getTime() / 1000;
      const to = new Date($('#range-to').value).getTime() / 1000;
      const input = $('#range-to');
      if (!Number.isFinite(from) || !Number.isFinite(to) || to <= from) {
        input.setCustomValidity('"To" must be a date and time after "From"');
        input.reportValidity();
        return;
      }
      input.setCustomValidity('');
      setRange({ live: false, from, to });
    });
    $('#range-to').addEventListener('input', (e) => e.target.setCustomValidity(''));
    $('#pan-left').addEventListener('click', () => pan(-0.5));
    $('#pan-right').addEventListener('click', () => pan(0.5));
    $('#zoom-reset').addEventListener('click', resetZoom);
    $('#rate-toggle').addEventListener('change', (e) => {
      app.rate = e.target.checked;
      const counters = Array.from(app.charts.values()).filter((c) => c.metric.type === 1 && c.metric.dataType === 1);
      for (const c of counters) c.rebuild();
      loadCharts(counters);
    });
    $('#metric-filter').addEventListener('input', (e) => {
      app.filter = e.target.value.trim().toLowerCase();
      layoutCharts(metricsOf(currentDevice()));
      for (const c of app.charts.values()) if (!c.card.hidden && c.plot) c.render();
    });
    renderRangeControls();
  }

  // ---------------------------------------------------------------- control panel

  const BUILT_IN = {
    commands: [
      { name: 'Ping', description: "Answers pong, with the service's name, version and uptime", args: [] },
      { name: 'GetStatus', description: 'Health, poll time and delivery counters', args: [] },
      { name: 'GetMetrics', description: 'The metrics the service announces', args: [] },
      { name: 'SetPollTime', description: 'Changes the poll period until the service restarts',
        args: [{ name: 'poll_time_ms', type: 'integer', required: true, description: 'the new poll period, in ms', min: 100, max: 3600000 }] },
      { name: 'GetCommands', description: 'Every command the service accepts', args: [] },
    ],
  };

  const ctl = {
    commands: new Map(), // service -> GetCommands result
    current: null, // the chosen command's description
    history: [],
    syncing: false,
  };

  function token() {
    return $('#cmd-token').value.trim();
  }

  function serviceNames() {
    const names = new Map();
    for (const d of app.state?.devices ?? []) {
      for (const s of d.services) names.set(s.name, (names.get(s.name) ?? false) || !!s.alive);
    }
    return Array.from(names).sort((a, b) => Number(b[1]) - Number(a[1]) || a[0].localeCompare(b[0]));
  }

  function renderControlAvailability(first) {
    const enabled = app.state.commands_enabled === true;
    const panel = $('#control');
    panel.dataset.enabled = String(enabled);
    $('#cmd-disabled').hidden = enabled;
    $('#cmd-fields').disabled = !enabled;
    const sel = $('#cmd-service');
    const names = serviceNames();
    const want = names.map(([n, alive]) => `${n}:${alive}`).join(',');
    if (sel.dataset.list !== want) {
      const keep = sel.value;
      sel.dataset.list = want;
      sel.replaceChildren(...names.map(([n, alive]) => h('option', { value: n }, alive ? n : `${n} (offline)`)));
      if (names.some(([n]) => n === keep)) sel.value = keep;
      if (sel.value !== keep || first) serviceChanged();
    }
    if (!names.length) {
      $('#cmd-description').textContent = 'No service seen yet.';
    }
  }

  async function serviceChanged() {
    const service = $('#cmd-service').value;
    const names = $('#cmd-name');
    const err = $('#cmd-commands-error');
    err.hidden = true;
    if (!service || app.state?.commands_enabled !== true) {
      names.replaceChildren();
      commandChanged();
      return;
    }
    let list = ctl.commands.get(service);
    if (!list) {
      names.replaceChildren(h('option', { value: '' }, 'loading…'));
      names.disabled = true;
      try {
        list = await getJson(`/api/commands?service=${encodeURIComponent(service)}`);
        if (!Array.isArray(list.commands)) throw new Error('the answer has no "commands" list');
        ctl.commands.set(service, list);
      } catch (e) {
        err.textContent = `Could not ask ${service} for its commands (${e.message}); showing the built-in commands every service answers.`;
        err.hidden = false;
        list = BUILT_IN;
      } finally {
        names.disabled = false;
      }
      if ($('#cmd-service').value !== service) return;
    }
    const keep = names.value;
    names.replaceChildren(...list.commands.map((c) => h('option', { value: c.name }, c.name)));
    if (list.commands.some((c) => c.name === keep)) names.value = keep;
    commandChanged();
  }

  function currentCommandList() {
    return ctl.commands.get($('#cmd-service').value) ?? BUILT_IN;
  }

  function commandChanged(payload) {
    const name = $('#cmd-name').value;
    const cmd = currentCommandList().commands.find((c) => c.name === name) ?? null;
    ctl.current = cmd;
    $('#cmd-description').textContent = cmd ? cmd.description || '' : '';
    const box = $('#cmd-args');
    const args = cmd && Array.isArray(cmd.args) ? cmd.args : [];
    box.replaceChildren(...args.map(argField));
    if (!args.length && cmd) box.append(h('p', { class: 'muted small' }, 'This command takes no arguments.'));
    setPayload(payload ?? {});
    payloadToForm();
  }

  function rangeText(a) {
    if (a.min != null && a.max != null) return `${a.min} to ${a.max}`;
    if (a.min != null) return `at least ${a.min}`;
    if (a.max != null) return `at most ${a.max}`;
    return '';
  }

  /** One input for an argument of GetCommands: number, choice, check box, text or JSON. */
  function argField(a) {
    const id = `arg-${a.name}`;
    let input;
    if (Array.isArray(a.choices) && a.choices.length) {
      input = h('select', { id },
        a.required ? null : h('option', { value: '' }, '(not set)'),
        a.choices.map((c) => h('option', { value: JSON.stringify(c) }, typeof c === 'string' ? c : JSON.stringify(c))));
      input.dataset.kind = 'choice';
    } else if (a.type === 'boolean' && a.required) {
      input = h('input', { id, type: 'checkbox' });
      input.dataset.kind = 'boolean';
    } else if (a.type === 'boolean') {
      input = h('select', { id }, h('option', { value: '' }, '(not set)'), h('option', { value: 'true' }, 'true'), h('option', { value: 'false' }, 'false'));
      input.dataset.kind = 'choice';
    } else if (a.type === 'integer' || a.type === 'number') {
      input = h('input', { id, type: 'number', step: a.type === 'integer' ? '1' : 'any', placeholder: rangeText(a) || a.type });
      if (a.min != null) input.min = String(a.min);
      if (a.max != null) input.max = String(a.max);
      input.dataset.kind = a.type;
    } else if (a.type === 'string') {
      input = h('input', { id, type: 'text', placeholder: 'text' });
      input.dataset.kind = 'string';
    } else {
      input = h('input', { id, type: 'text', placeholder: a.type === 'any' ? 'JSON value, or text' : `JSON ${a.type}` });
      input.dataset.kind = a.type === 'any' ? 'any' : 'json';
    }
    input.dataset.arg = a.name;
    input.addEventListener('input', formToPayload);
    input.addEventListener('change', formToPayload);
    const hint = [a.type, rangeText(a), a.description].filter(Boolean).join(' · ');
    return h('div', { class: 'arg', dataset: { argField: a.name } },
      h('label', { for: id }, a.name, a.required ? h('span', { class: 'req', title: 'required' }, ' *') : null),
      input,
      h('div', { class: 'hint' }, hint),
      h('div', { class: 'warn-text', hidden: true }));
  }

  /** The JSON value of a field, or undefined when it is empty. */
  function fieldValue(input) {
    const kind = input.dataset.kind;
    const raw = input.value;
    if (kind === 'boolean') return input.checked;
    if (raw === '') return undefined;
    if (kind === 'choice') return JSON.parse(raw);
    if (kind === 'integer' || kind === 'number') {
      const n = Number(raw);
      return Number.isFinite(n) ? n : raw;
    }
    if (kind === 'string') return raw;
    try { return JSON.parse(raw); } catch { return raw; }
  }

  function showFieldWarning(input) {
    const a = ctl.current?.args?.find((x) => x.name === input.dataset.arg);
    const box = input.parentElement.querySelector('.warn-text');
    let text = '';
    const v = fieldValue(input);
    if (a && typeof v === 'number') {
      if ((a.min != null && v < a.min) || (a.max != null && v > a.max)) {
        text = `outside ${rangeText(a)}: the service will refuse it`;
      } else if (a.type === 'integer' && !Number.isInteger(v)) text = 'not a whole number: the service will refuse it';
    } else if (a && input.dataset.kind === 'json' && input.value !== '') {
      try { JSON.parse(input.value); } catch { text = `not JSON: type a JSON ${a.type}`; }
    }
    box.textContent = text;
    box.hidden = !text;
    input.classList.toggle('warn', !!text);
  }

  function parsePayload() {
    const text = $('#cmd-payload').value.trim();
    if (text === '') return { value: {} };
    try {
      const value = JSON.parse(text);
      if (value === null || typeof value !== 'object' || Array.isArray(value)) {
        return { error: 'the payload must be a JSON object, like {"poll_time_ms": 5000}' };
      }
      return { value };
    } catch (e) {
      return { error: `the payload is not valid JSON: ${e.message}` };
    }
  }

  function setPayload(obj) {
    $('#cmd-payload').value = JSON.stringify(obj, null, Object.keys(obj).length > 1 ? 2 : 0);
    showPayloadError(null);
  }

  function showPayloadError(text) {
    const box = $('#cmd-payload-error');
    box.textContent = text ?? '';
    box.hidden = !text;
    $('#cmd-payload').classList.toggle('invalid', !!text);
    $('#cmd-payload').setAttribute('aria-invalid', String(!!text));
  }

  /** The form changed: the payload follows (keeping members the form does not know). */
  function formToPayload() {
    if (ctl.syncing) return;
    const parsed = parsePayload();
    const obj = parsed.value ?? {};
    for (const input of $$('#cmd-args [data-arg]')) {
      const v = fieldValue(input);
      if (v === undefined) delete obj[input.dataset.arg];
      else obj[input.dataset.arg] = v;
      showFieldWarning(input);
    }
    setPayload(obj);
  }

  /** The payload changed: the form follows, while it is a JSON object. */
  function payloadToForm() {
    const parsed = parsePayload();
    if (parsed.error) {
      showPayloadError(parsed.error);
      return;
    }
    showPayloadError(null);
    ctl.syncing = true;
    try {
      for (const input of $$('#cmd-args [data-arg]')) {
        const v = parsed.value[input.dataset.arg];
        const kind = input.dataset.kind;
        if (kind === 'boolean') input.checked = v === true;
        else if (v === undefined) input.value = '';
        else if (kind === 'choice') {
          const want = JSON.stringify(v);
          input.value = Array.from(input.options).some((o) => o.value === want) ? want : '';
        } else if (kind === 'string' && typeof v === 'string') input.value = v;
        else if (kind === 'any' && typeof v === 'string') input.value = v;
        else if ((kind === 'integer' || kind === 'number') && typeof v === 'number') input.value = String(v);
        else input.value = JSON.stringify(v);
        showFieldWarning(input);
      }
    } finally {
      ctl.syncing = false;
    }
  }

  function renderResult(entry) {
    const box = $('#cmd-result');
    box.dataset.outcome = entry.outcome;
    const head = h('div', { class: 'result-head' },
      h('span', { class: `badge ${entry.outcome === 'ok' ? 'ok' : entry.outcome === 'error' ? 'err' : ''}` },
        entry.outcome === 'ok' ? 'OK' : entry.outcome === 'error' ? 'ERROR' : 'sending…'),
      h('span', {}, ` ${entry.service} · ${entry.command}`),
      h('span', { class: 'muted' }, ` · ${fmtTime(entry.time, false)}${entry.took != null ? ` · ${entry.took} ms` : ''}${entry.status && entry.status !== 200 ? ` · HTTP ${entry.status}` : ''}`));
    if (entry.outcome === 'pending') {
      box.replaceChildren(head);
      return;
    }
    if (entry.outcome === 'ok') {
      const msg = entry.result && typeof entry.result.message === 'string' ? entry.result.message : null;
      box.replaceChildren(...[head,
        msg != null ? h('p', { class: 'result-message', id: 'cmd-result-message' }, msg) : null,
        h('pre', { id: 'cmd-result-json' }, JSON.stringify(entry.result, null, 2))].filter(Boolean));
    } else {
      box.replaceChildren(head,
        h('div', { class: 'error-box', role: 'alert' },
          h('code', { id: 'cmd-error-code' }, entry.error.code),
          h('p', { id: 'cmd-error-message' }, entry.error.message)));
    }
  }

  function renderHistory() {
    const body = $('#cmd-history tbody');
    if (!ctl.history.length) {
      body.replaceChildren(h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'Nothing sent yet.')));
      return;
    }
    body.replaceChildren(...ctl.history.map((e) => h('tr', {
      dataset: { outcome: e.outcome },
      title: 'Click to load this command into the form',
      onclick: () => loadFromHistory(e),
    },
    h('td', { title: fmtTime(e.time) }, fmtTime(e.time, false)),
    h('td', {}, e.service),
    h('td', {}, e.command),
    h('td', {}, h('code', {}, JSON.stringify(e.args))),
    h('td', {}, e.outcome === 'pending' ? 'sending…' : e.outcome === 'ok'
      ? h('span', { class: 'badge ok' }, 'ok')
      : h('span', { class: 'badge err', title: e.error.message }, e.error.code)),
    h('td', { class: 'num' }, e.took != null ? `${e.took} ms` : ''))));
  }

  async function loadFromHistory(e) {
    if ($('#cmd-fields').disabled) return;
    $('#cmd-service').value = e.service;
    await serviceChanged();
    $('#cmd-name').value = e.command;
    commandChanged({ ...e.args });
  }

  async function send(ev) {
    ev.preventDefault();
    if (app.state?.commands_enabled !== true) return;
    const service = $('#cmd-service').value;
    const command = $('#cmd-name').value;
    const parsed = parsePayload();
    if (parsed.error) {
      showPayloadError(parsed.error);
      $('#cmd-payload').focus();
      return;
    }
    if (!service || !command) return;
    const entry = { time: Date.now() / 1000, service, command, args: parsed.value, outcome: 'pending' };
    ctl.history.unshift(entry);
    renderHistory();
    renderResult(entry);
    const button = $('#cmd-send');
    button.disabled = true;
    button.textContent = 'Sending…';
    const started = performance.now();
    try {
      const headers = { 'Content-Type': 'application/json' };
      if (token()) headers.Authorization = `Bearer ${token()}`;
      const res = await fetch('/api/command', {
        method: 'POST',
        headers,
        body: JSON.stringify({ service, command, args: parsed.value }),
        cache: 'no-store',
      });
      entry.status = res.status;
      const text = await res.text();
      let body = null;
      try { body = JSON.parse(text); } catch { body = null; }
      if (res.ok && body && body.ok === true) {
        entry.outcome = 'ok';
        entry.result = body.result;
      } else {
        entry.outcome = 'error';
        const err = body && body.error && typeof body.error === 'object' ? body.error : null;
        entry.error = err
          ? { code: String(err.code ?? 'error'), message: String(err.message ?? '') }
          : { code: `http_${res.status}`, message: text.trim() || res.statusText || 'the dashboard answered without an error object' };
        if (entry.error.code === 'unauthorized') {
          entry.error.message += token() ? ' (check the token field)' : ' (paste the token the dashboard printed at start into the token field)';
        }
      }
    } catch (e) {
      entry.outcome = 'error';
      entry.error = { code: 'network', message: `the dashboard did not answer: ${e.message}` };
    } finally {
      entry.took = Math.round(performance.now() - started);
      button.disabled = false;
      button.textContent = 'Send';
    }
    renderResult(entry);
    renderHistory();
  }

  function setupControl() {
    const field = $('#cmd-token');
    field.value = store.get(TOKEN_KEY) ?? '';
    field.addEventListener('input', () => store.set(TOKEN_KEY, field.value.trim()));
    $('#cmd-service').addEventListener('change', () => serviceChanged());
    $('#cmd-name').addEventListener('change', () => commandChanged());
    $('#cmd-payload').addEventListener('input', payloadToForm);
    $('#cmd-form').addEventListener('submit', send);
    renderHistory();
  }

  /** `#token=…` in the address (printed by the dashboard) goes to this tab's storage, and out of the address. */
  function takeTokenFromFragment() {
    const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
    if (!m) return;
    let value = m[1];
    try { value = decodeURIComponent(value); } catch { /* kept as it is */ }
    store.set(TOKEN_KEY, value);
    history.replaceState(null, '', location.pathname + location.search);
    app.tab = 'control';
  }

  // ---------------------------------------------------------------- live updates

  function setLive(state, text) {
    const e = $('#live');
    e.dataset.state = state;
    e.textContent = text;
  }

  function connectLive() {
    if (typeof EventSource === 'undefined') {
      setLive('closed', 'no live updates (browser)');
      return;
    }
    const es = new EventSource('/api/live');
    let lost = false;
    es.addEventListener('open', () => {
      setLive('open', 'live');
      if (lost) { lost = false; refreshState().then(reloadAll); }
    });
    es.addEventListener('error', () => {
      lost = true;
      setLive(es.readyState === EventSource.CLOSED ? 'closed' : 'connecting', 'reconnecting…');
    });
    es.addEventListener('points', (e) => {
      try { applyPoints(JSON.parse(e.data)); } catch (err) { console.warn('bad points event', err); }
    });
    // The dashboard dropped points for this page (it was slow): the ranges are loaded again.
    es.addEventListener('lagged', () => reloadAll());
    es.addEventListener('state', (e) => {
      try { applyState(JSON.parse(e.data), false); } catch (err) { console.warn('bad state event', err); }
    });
  }

  async function refreshState() {
    try {
      applyState(await getJson('/api/state'));
    } catch (e) {
      setLive('closed', `dashboard unreachable: ${e.message}`);
    }
  }

  // ---------------------------------------------------------------- start

  function start() {
    takeTokenFromFragment();
    for (const b of $$('.tabs [data-tab]')) b.addEventListener('click', () => showTab(b.dataset.tab));
    $('#device').addEventListener('change', (e) => {
      app.device = e.target.value;
      store.set(DEVICE_KEY, app.device);
      renderSummary();
      syncCharts();
    });
    setupRange();
    setupControl();
    showTab(app.tab);
    new ResizeObserver(() => { if (app.tab === 'metrics') resizeCharts(); }).observe($('#charts'));
    refreshState().then(connectLive);
    setInterval(() => { tickAgo(); tickCharts(); }, 1000);
    // Aliveness changes with silence too: ask again now and then besides the stream.
    setInterval(refreshState, 15000);
  }

  start();
})();
