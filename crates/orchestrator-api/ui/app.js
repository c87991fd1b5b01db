// The orchestrator dashboard: three screens rendered from the JSON API.
//   /ui                 tasks, newest first, live; counts per status; throughput
//   /ui/tasks/{id}      one task: fields, timeline, service requests, payload, re-drive
//   /ui/new             submit a task
//   /ui/sign-in         exchange an API token for a session (a plain form POST), or
//                       follow "Sign in with SSO" to the identity provider when offered
// Plain JavaScript, no build step, no dependency. Everything the API returns is put
// into the page as text (textContent), never as HTML. The session cookie is HttpOnly:
// this script never sees a credential; a 401 from the API sends it to the sign-in page.
'use strict';

(() => {
  const STATUSES = ['PENDING', 'IN_PROGRESS', 'COMPLETED', 'FAILED', 'CANCELLED'];
  const LABELS = { PENDING: 'Pending', IN_PROGRESS: 'In progress', COMPLETED: 'Completed', FAILED: 'Failed', CANCELLED: 'Cancelled' };
  const PAGE_SIZE = 50;
  // A burst of events refreshes the list once, then at most this often.
  const LIST_REFRESH_MS = 1000;
  // Running durations and bars are redrawn this often, from what the page has (no request).
  const CLOCK_MS = 1000;
  const THROUGHPUT_MINUTES = 15;
  const THROUGHPUT_EVERY_MS = 10000;
  // The list shows this much of a failed task's error; the rest is in its title.
  const ERROR_START_CHARS = 72;
  const EXAMPLE_IDS = {
    scenario_id: '3fa85f64-5717-4562-b3fc-2c963f66afa6',
    business_type_id: '9b2f4e2a-6c4d-4d3e-8f1a-2b3c4d5e6f70',
  };
  const EXAMPLE = {
    task_name: 'Quarterly forecast',
    task_description: 'Revenue, rebates and specialty for Q4',
    payload: [{ revenue: EXAMPLE_IDS, rebates: EXAMPLE_IDS, specialty: EXAMPLE_IDS }],
  };

  // ---- DOM -------------------------------------------------------------------------

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }

  function s(tag, attrs, ...children) {
    const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }

  function setAttrs(el, attrs) {
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === 'on') {
        for (const [event, handler] of Object.entries(value)) el.addEventListener(event, handler);
      } else if (key === 'text') {
        el.textContent = value;
      } else {
        el.setAttribute(key, value === true ? '' : String(value));
      }
    }
  }

  function append(el, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }

  function replaceChildren(el, ...children) {
    el.replaceChildren();
    append(el, children);
  }

  function announce(message) {
    const region = document.getElementById('announcer');
    region.textContent = '';
    // A fresh text node after a tick, so the same message is announced again.
    setTimeout(() => { region.textContent = message; }, 50);
  }

  // ---- API -------------------------------------------------------------------------

  class ApiProblem extends Error {
    constructor(status, problem) {
      super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
      this.status = status;
      this.problem = problem || {};
    }
  }

  const SIGN_IN = '/ui/sign-in';
  // Who is signed in (GET /api/me): tenant, scopes, credential.
  let caller = null;
  const may = (scope) => Boolean(caller && caller.scopes.includes(scope));

  async function api(path, options = {}) {
    const response = await fetch(path, {
      ...options,
      headers: { Accept: 'application/json', ...(options.headers || {}) },
    });
    if (response.status === 401) {
      // No session, or it ended (expired, signed out elsewhere, token revoked).
      location.assign(SIGN_IN);
    }
    const text = await response.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (_) { body = { detail: text }; }
    if (!response.ok) throw new ApiProblem(response.status, body);
    return body;
  }

  function describeError(error) {
    if (error instanceof ApiProblem) return error.message;
    return `The API could not be reached (${error.message}).`;
  }

  // ---- Formatting ------------------------------------------------------------------

  const numberFormat = new Intl.NumberFormat('en-US');
  const fmtNumber = (n) => numberFormat.format(n);
  const pad = (n, width = 2) => String(n).padStart(width, '0');

  // Times are shown in the browser's time zone, always named: "UTC", "GMT+5:30", "EST"
  // (en-US names, so that zones without a well-known abbreviation get their offset).
  const zoneFormat = new Intl.DateTimeFormat('en-US', { timeZoneName: 'short' });

  function fmtZone(date) {
    const part = zoneFormat.formatToParts(date).find((p) => p.type === 'timeZoneName');
    if (part) return part.value;
    const offset = -date.getTimezoneOffset();
    const sign = offset < 0 ? '-' : '+';
    return `UTC${sign}${pad(Math.floor(Math.abs(offset) / 60))}:${pad(Math.abs(offset) % 60)}`;
  }

  // 2026-12-03 17:58:18 UTC
  function fmtTime(iso) {
    if (!iso) return '—';
    const d = new Date(iso);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())} ${fmtZone(d)}`;
  }

  // 17:58, for the chart's axis, which names the zone once.
  function fmtClock(date) {
    return `${pad(date.getHours())}:${pad(date.getMinutes())}`;
  }

  // 17:58:18.123 UTC: service requests of one task start within the same second.
  function fmtClockPrecise(iso) {
    const d = new Date(iso);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)} ${fmtZone(d)}`;
  }

  function fmtAgo(iso) {
    const seconds = Math.max(0, Math.round((Date.now() - new Date(iso).getTime()) / 1000));
    if (seconds < 60) return `${seconds} s ago`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
    if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
    return `${Math.floor(seconds / 86400)} d ago`;
  }

  function fmtDuration(ms) {
    if (ms === null || ms === undefined || Number.isNaN(ms)) return '—';
    if (ms < 1000) return `${Math.round(ms)} ms`;
    if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
    const minutes = Math.floor(ms / 60000);
    return `${minutes} min ${Math.round((ms % 60000) / 1000)} s`;
  }

  // A duration as an HTML <time>: its datetime is machine-readable (PT1.250S).
  function duration(ms, attrs) {
    return h('time', { ...attrs, class: 'duration', datetime: `PT${(Math.max(0, ms) / 1000).toFixed(3)}S`, text: fmtDuration(ms) });
  }

  const isFinal = (status) => status === 'COMPLETED' || status === 'FAILED' || status === 'CANCELLED';
  // What a re-drive reopens: a task that ended without completing.
  const canRedrive = (status) => status === 'FAILED' || status === 'CANCELLED';
  const epochMs = (iso) => new Date(iso).getTime();

  // Fields the API may not send yet (older servers): absent means none.
  const redrivesOf = (task) => (Array.isArray(task.redrives) ? task.redrives : []);
  const failedAttemptsOf = (sr) => (Array.isArray(sr.failed_attempts) ? sr.failed_attempts : []);

  // Time a re-driven task sat FAILED, waiting for someone to re-drive it.
  function waitedMs(task) {
    return redrivesOf(task).reduce((total, r) => total + Math.max(0, epochMs(r.redriven_at) - epochMs(r.failed_at)), 0);
  }

  // How long the task has been processed: until it finished (or until now while it
  // runs), not counting the time it sat FAILED before a re-drive.
  function tookMs(task) {
    const end = isFinal(task.status) ? epochMs(task.updated_at) : Date.now();
    return Math.max(0, end - epochMs(task.created_at) - waitedMs(task));
  }

  // The start of an error, whole words, with the full text as its title.
  function errorStart(message) {
    let text = message;
    if (message.length > ERROR_START_CHARS) {
      let cut = message.slice(0, ERROR_START_CHARS);
      const space = cut.lastIndexOf(' ');
      if (space > ERROR_START_CHARS - 20) cut = cut.slice(0, space);
      text = `${cut.trimEnd()}…`;
    }
    return h('span', { class: 'row-error', title: message, text });
  }

  function badge(status, big) {
    return h('span', { class: big ? 'badge big' : 'badge', 'data-status': status, text: LABELS[status] || status });
  }

  function when(iso, ago = true) {
    return h('span', { class: 'when' },
      h('time', { datetime: iso, title: iso, text: fmtTime(iso) }),
      // A space, not a margin: no indent when the relative time wraps below.
      ago ? [' ', h('span', { class: 'ago', text: fmtAgo(iso) })] : null);
  }

  // ---- curl ------------------------------------------------------------------------

  const shellQuote = (text) => `'${String(text).replace(/'/g, `'\\''`)}'`;
  // The commands read the token from the environment, as the README's quick start sets
  // it; the page never knows a token.
  const AUTH = '-H "Authorization: Bearer $ORCHESTRATOR_TOKEN"';

  async function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      try { await navigator.clipboard.writeText(text); return true; } catch (_) { /* fall back */ }
    }
    // Plain http on another host than localhost has no clipboard API.
    const area = h('textarea', { class: 'visually-hidden', readonly: true });
    area.value = text;
    document.body.append(area);
    area.select();
    let copied = false;
    try { copied = document.execCommand('copy'); } catch (_) { copied = false; }
    area.remove();
    return copied;
  }

  function copyButton(label, getText) {
    const button = h('button', { type: 'button', 'data-copy': label, text: label });
    button.addEventListener('click', async () => {
      const copied = await copyText(getText());
      button.textContent = copied ? 'Copied' : 'Copy failed: select the text';
      announce(copied ? 'Copied to the clipboard.' : 'Could not copy; select the text instead.');
      setTimeout(() => { button.textContent = label; }, 1500);
    });
    return button;
  }

  // A card listing curl commands for what is on screen; `commands()` is re-read on
  // every refresh so the commands follow the filters.
  function curlCard(commands) {
    const list = h('div', { class: 'curl' });
    const card = h('section', { class: 'card', 'aria-labelledby': 'curl-heading' },
      h('h2', { id: 'curl-heading', text: 'The same with curl' }), list);
    const render = () => {
      replaceChildren(list, commands().map(({ label, command }) =>
        h('div', { class: 'curl-row' },
          h('pre', { 'aria-label': label, 'data-curl': label }, h('code', { text: command })),
          copyButton('Copy curl', () => command))));
    };
    render();
    return { card, render };
  }

  // ---- Live updates --------------------------------------------------------------

  // Follows one of the API's Server-Sent Events streams: `onEvent(type, data)` for
  // each event (`task` or `service_request`), `onState(state)` with 'live',
  // 'reconnecting' or 'closed'. The page is told of changes, it does not ask: nothing
  // is requested while nothing changes. The browser reconnects by itself with the last
  // event's id (Last-Event-ID), so nothing is missed and nothing comes twice; the
  // session cookie authenticates the stream.
  class LiveStream {
    constructor(url, { onEvent, onState }) {
      this.url = url;
      this.onEvent = onEvent;
      this.onState = onState || (() => {});
      this.source = null;
    }
    start() {
      if (this.source) return;
      const source = new EventSource(this.url);
      const deliver = (type) => (message) => {
        let data;
        try { data = JSON.parse(message.data); } catch { return; }
        this.onEvent(type, data);
      };
      source.addEventListener('task', deliver('task'));
      source.addEventListener('service_request', deliver('service_request'));
      source.onopen = () => this.onState('live');
      source.onerror = () => this.onState(source.readyState === EventSource.CLOSED ? 'closed' : 'reconnecting');
      this.source = source;
    }
    stop() {
      if (this.source) this.source.close();
      this.source = null;
    }
  }

  // Calls `fn` at once, then at most once per `spacing` ms however often it is asked
  // (the last ask is always honoured), one call at a time.
  function coalesce(fn, spacing) {
    let running = false;
    let wanted = false;
    let last = 0;
    let timer = null;
    const run = async () => {
      timer = null;
      if (running) { wanted = true; return; }
      running = true;
      wanted = false;
      last = Date.now();
      try { await fn(); } catch { /* shown by fn */ } finally { running = false; }
      if (wanted) ask();
    };
    const ask = () => {
      if (timer) return;
      if (running) { wanted = true; return; }
      timer = setTimeout(run, Math.max(0, last + spacing - Date.now()));
    };
    ask.cancel = () => { clearTimeout(timer); timer = null; wanted = false; };
    return ask;
  }

  // Redraws (from what the page already has) every CLOCK_MS while `active()` says so.
  class Clock {
    constructor(draw, active) {
      this.draw = draw;
      this.active = active;
      this.timer = null;
    }
    start() {
      if (this.timer) return;
      this.timer = setInterval(() => { if (this.active()) this.draw(); }, CLOCK_MS);
    }
    stop() {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  // ---- Screens ---------------------------------------------------------------------

  const main = () => document.getElementById('main');
  // What keeps the current screen up to date; stopped when the screen changes.
  let currentUpdates = null;

  function setScreen(nav, title, ...children) {
    if (currentUpdates) { currentUpdates.stop(); currentUpdates = null; }
    document.title = `${title} · orchestrator`;
    for (const link of document.querySelectorAll('[data-nav]')) {
      if (link.dataset.nav === nav) link.setAttribute('aria-current', 'page');
      else link.removeAttribute('aria-current');
    }
    replaceChildren(main(), children);
  }

  // ---- Task list -------------------------------------------------------------------

  function listScreen() {
    const params = new URLSearchParams(location.search);
    const state = {
      status: STATUSES.includes(params.get('status')) ? params.get('status') : '',
      q: (params.get('q') || '').trim(),
      cursor: params.get('cursor') || '',
      previous: [], // cursors of the pages before this one
      nextCursor: null,
      paused: false,
      lastThroughput: 0,
    };

    const listUrl = () => {
      const query = new URLSearchParams();
      if (state.q) query.set('q', state.q);
      if (state.status) query.set('status', state.status);
      query.set('limit', String(PAGE_SIZE));
      if (state.cursor) query.set('cursor', state.cursor);
      return `${state.q ? '/api/tasks/search' : '/api/tasks'}?${query}`;
    };

    // The page's own address follows the filters, so a reload or a shared link shows
    // the same list.
    const syncAddress = () => {
      const query = new URLSearchParams();
      if (state.q) query.set('q', state.q);
      if (state.status) query.set('status', state.status);
      if (state.cursor) query.set('cursor', state.cursor);
      const search = query.toString();
      history.replaceState(null, '', search ? `/ui?${search}` : '/ui');
    };

    // Header and live indicator.
    const liveText = h('span', { id: 'live-text', text: 'Connecting…' });
    const pauseButton = h('button', { type: 'button', 'aria-pressed': 'false', text: 'Pause updates' });
    // Not a live region: announcing "updated" every 2 s would drown everything else.
    const live = h('div', { class: 'live' },
      h('span', { class: 'live-dot', 'aria-hidden': 'true' }), liveText, pauseButton);

    // Counts.
    const countValues = {};
    const countLinks = {};
    const countTile = (status, label) => {
      countValues[status || 'ALL'] = h('span', { class: 'value', text: '—' });
      const link = h('a', { class: 'count', href: status ? `/ui?status=${status}` : '/ui', 'data-count': status || 'ALL' },
        h('span', { class: 'label', text: label }), countValues[status || 'ALL']);
      link.addEventListener('click', (event) => {
        event.preventDefault();
        state.status = status;
        statusSelect.value = status;
        resetPaging();
        refresh();
      });
      countLinks[status || 'ALL'] = link;
      return h('li', null, link);
    };
    const counts = h('ul', { class: 'counts', 'aria-label': 'Tasks per status' },
      countTile('', 'All tasks'), STATUSES.map((status) => countTile(status, LABELS[status])));

    // Throughput.
    const chartHolder = h('div', { class: 'chart-frame' });
    const chartSummary = h('p', { class: 'muted', id: 'throughput-summary' });
    const chartZone = h('li', { class: 'axis-zone', id: 'throughput-zone' });
    const throughput = h('section', { class: 'card throughput', id: 'throughput', 'aria-labelledby': 'throughput-heading' },
      h('div', { class: 'throughput-head' },
        h('h2', { id: 'throughput-heading', text: `Throughput, last ${THROUGHPUT_MINUTES} minutes` }),
        chartSummary),
      chartHolder,
      h('ul', { class: 'legend' },
        h('li', null, h('span', { class: 'swatch submitted', 'aria-hidden': 'true' }), 'Submitted'),
        h('li', null, h('span', { class: 'swatch completed', 'aria-hidden': 'true' }), 'Completed'),
        h('li', null, h('span', { class: 'swatch failed', 'aria-hidden': 'true' }), 'Failed'),
        chartZone));
    // Side by side on a wide screen, so that the list starts high on the page.
    const overview = h('div', { class: 'overview' }, counts, throughput);

    // Filters.
    const statusSelect = h('select', { id: 'filter-status', name: 'status' },
      h('option', { value: '', text: 'All statuses' }),
      STATUSES.map((status) => h('option', { value: status, text: LABELS[status] })));
    statusSelect.value = state.status;
    const searchError = h('p', { class: 'field-error', id: 'search-error', hidden: true });
    const searchInput = h('input', {
      id: 'filter-q', name: 'q', type: 'search', autocomplete: 'off', spellcheck: 'false',
      placeholder: 'e.g. 7dcf4835 or forecast', 'aria-describedby': 'search-hint search-error',
    });
    searchInput.value = state.q;
    const filters = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter tasks' },
      h('div', { class: 'field' }, h('label', { for: 'filter-status', text: 'Status' }), statusSelect),
      h('div', { class: 'field grow' },
        h('div', { class: 'label-row' },
          h('label', { for: 'filter-q', text: 'Search by task id or name' }),
          h('span', { class: 'hint', id: 'search-hint', text: 'A whole id, its first digits, or part of a name.' })),
        searchInput,
        searchError),
      h('div', { class: 'field' }, h('button', { type: 'submit', class: 'primary', text: 'Search' })),
      h('div', { class: 'field' }, h('button', { type: 'button', id: 'filter-clear', text: 'Clear' })));
    filters.addEventListener('submit', (event) => {
      event.preventDefault();
      state.q = searchInput.value.trim();
      state.status = statusSelect.value;
      resetPaging();
      refresh();
    });
    statusSelect.addEventListener('change', () => {
      state.status = statusSelect.value;
      resetPaging();
      refresh();
    });
    filters.querySelector('#filter-clear').addEventListener('click', () => {
      state.q = '';
      state.status = '';
      searchInput.value = '';
      statusSelect.value = '';
      resetPaging();
      refresh();
      searchInput.focus();
    });

    // Table.
    const caption = h('caption', { class: 'visually-hidden', text: 'Tasks, newest first' });
    const tbody = h('tbody', { id: 'task-rows' });
    const table = h('div', { class: 'table-wrap' },
      h('table', { class: 'stack compact', id: 'task-table' }, caption,
        h('thead', null, h('tr', null,
          h('th', { scope: 'col', text: 'Task' }),
          h('th', { scope: 'col', text: 'Status' }),
          h('th', { scope: 'col', text: 'Submitted' }),
          h('th', { scope: 'col', text: 'Duration' }),
          h('th', { scope: 'col', text: 'Updated' }),
          h('th', { scope: 'col', text: 'Id' }))),
        tbody));
    const listError = h('div', { class: 'alert error', role: 'alert', hidden: true });
    const resultNote = h('p', { class: 'muted', id: 'result-note' });
    const searchedBack = h('p', { class: 'muted', id: 'searched-back', hidden: true });

    // Paging.
    const newerButton = h('button', { type: 'button', id: 'page-newer', text: '← Newer' });
    const newestButton = h('button', { type: 'button', id: 'page-newest', text: 'Newest' });
    const olderButton = h('button', { type: 'button', id: 'page-older', text: 'Older →' });
    const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' }, newestButton, newerButton, olderButton);
    newerButton.addEventListener('click', () => {
      state.cursor = state.previous.pop() || '';
      refresh();
    });
    newestButton.addEventListener('click', () => { resetPaging(); refresh(); });
    olderButton.addEventListener('click', () => {
      if (!state.nextCursor) return;
      state.previous.push(state.cursor);
      state.cursor = state.nextCursor;
      refresh();
    });

    const curl = curlCard(() => [{ label: 'List these tasks', command: `curl -s ${AUTH} ${shellQuote(location.origin + listUrl())}` }]);

    function resetPaging() {
      state.cursor = '';
      state.previous = [];
    }

    pauseButton.addEventListener('click', () => {
      state.paused = !state.paused;
      pauseButton.setAttribute('aria-pressed', String(state.paused));
      pauseButton.textContent = state.paused ? 'Resume updates' : 'Pause updates';
      live.classList.toggle('paused', state.paused);
      if (state.paused) {
        updates.stop();
        liveText.textContent = 'Paused';
      } else {
        updates.start();
        refresh();
      }
    });

    function renderCounts(data) {
      countValues.ALL.textContent = fmtNumber(data.total);
      for (const status of STATUSES) countValues[status].textContent = fmtNumber(data.counts[status]);
      for (const [key, link] of Object.entries(countLinks)) {
        const selected = (state.status || 'ALL') === key && !state.q;
        if (selected) link.setAttribute('aria-current', 'true');
        else link.removeAttribute('aria-current');
      }
    }

    // Until it finished, or so far while it runs; see `tookMs`.
    function durationCell(task) {
      return isFinal(task.status) ? duration(tookMs(task))
        : [duration(tookMs(task)), ' ', h('span', { class: 'so-far', text: 'so far' })];
    }

    function renderRow(row, task) {
      // Rebuilt only when something shown changed, so focus inside stays put.
      const key = `${task.status}|${task.updated_at}|${task.task_name}|${task.error_message}`;
      if (row.dataset.key === key) {
        // Keep the relative time and the running time fresh.
        row.querySelector('.ago').textContent = fmtAgo(task.created_at);
        if (!isFinal(task.status)) replaceChildren(row.querySelector('td.duration-cell'), durationCell(task));
        return;
      }
      row.dataset.key = key;
      row.dataset.status = task.status;
      const failedWith = task.status === 'FAILED' && task.error_message;
      replaceChildren(row,
        h('td', { 'data-label': 'Task' }, h('div', { class: 'task-cell' },
          h('a', { class: 'task-name', href: `/ui/tasks/${encodeURIComponent(task.task_id)}`, text: task.task_name }),
          failedWith ? [h('span', { class: 'visually-hidden', text: ' Error: ' }), errorStart(task.error_message)] : null)),
        h('td', { 'data-label': 'Status', class: 'status-cell' }, badge(task.status)),
        h('td', { 'data-label': 'Submitted' }, when(task.created_at)),
        h('td', { 'data-label': 'Duration', class: 'num duration-cell' }, durationCell(task)),
        // The relative time once, under Submitted, so that a row fits on one line.
        h('td', { 'data-label': 'Updated' }, when(task.updated_at, false)),
        h('td', { 'data-label': 'Id' }, h('span', { class: 'mono', title: task.task_id, text: task.task_id.slice(0, 8) })));
    }

    function renderTasks(data) {
      state.lastList = data;
      const existing = new Map([...tbody.querySelectorAll('tr[data-task-id]')].map((row) => [row.dataset.taskId, row]));
      const wanted = new Set(data.tasks.map((task) => task.task_id));
      for (const [id, row] of existing) if (!wanted.has(id)) row.remove();
      tbody.querySelector('tr.empty-row')?.remove();
      data.tasks.forEach((task, index) => {
        let row = existing.get(task.task_id);
        if (!row) row = h('tr', { 'data-task-id': task.task_id });
        renderRow(row, task);
        const at = tbody.children[index];
        if (at !== row) tbody.insertBefore(row, at || null);
      });
      if (data.tasks.length === 0) {
        const text = state.q && data.searched_back_to ? 'No match among the tasks searched so far.'
          : state.q ? 'No task matches this search.'
          : state.status ? `No ${LABELS[state.status].toLowerCase()} tasks.` : 'No tasks yet.';
        tbody.append(h('tr', { class: 'empty-row' }, h('td', { class: 'empty', colspan: 6 },
          text, ' ', state.q || state.status ? null : h('a', { href: '/ui/new', text: 'Submit one.' }))));
      }
      state.nextCursor = data.next_cursor;
      olderButton.disabled = !data.next_cursor;
      // A search answers within a time budget: when it stopped before filling the page,
      // say how far back it looked and offer to go on from there.
      const stoppedEarly = Boolean(state.q && data.searched_back_to && data.tasks.length < PAGE_SIZE);
      olderButton.textContent = stoppedEarly ? 'Search further →' : 'Older →';
      if (state.q && data.searched_back_to) {
        replaceChildren(searchedBack, 'Searched back to ', when(data.searched_back_to, false),
          stoppedEarly ? '; older tasks not searched yet.' : '.');
        searchedBack.hidden = false;
      } else {
        searchedBack.hidden = true;
      }
      newerButton.disabled = !state.cursor;
      newestButton.disabled = !state.cursor;
      const what = state.q ? `Tasks matching “${state.q}”` : 'Tasks';
      const which = state.status ? `, ${LABELS[state.status].toLowerCase()}` : '';
      resultNote.textContent = `${what}${which}, newest first${state.cursor ? ' (an older page)' : ''}.`;
      caption.textContent = resultNote.textContent;
    }

    function renderThroughput(data) {
      const buckets = data.buckets;
      const width = 600;
      const height = 64;
      const top = 2;
      const bottom = 1;
      const plot = height - top - bottom;
      const max = Math.max(1, ...buckets.map((b) => Math.max(b.submitted, b.completed + b.failed)));
      const slot = width / Math.max(1, buckets.length);
      const bar = Math.max(2, slot * 0.36);
      const y = (value) => top + plot - (value / max) * plot;
      // Each minute's two bars sit centred on its tick.
      const center = (i) => (i + 0.5) * slot;
      const bars = buckets.map((b, i) => {
        const x = center(i) - bar - 0.5;
        const title = `${fmtClock(new Date(b.start))}: ${b.submitted} submitted, ${b.completed} completed, ${b.failed} failed`;
        return s('g', null, s('title', { text: title }),
          s('rect', { class: 'bar-submitted', x, y: y(b.submitted), width: bar, height: top + plot - y(b.submitted) }),
          s('rect', { class: 'bar-completed', x: x + bar + 1, y: y(b.completed), width: bar, height: top + plot - y(b.completed) }),
          s('rect', { class: 'bar-failed', x: x + bar + 1, y: y(b.completed + b.failed), width: bar, height: top + plot - y(b.failed) }));
      });
      // Bars stretch with the width; text stays outside the SVG so it never does.
      const chart = s('svg', {
        class: 'chart', viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: 'none',
        role: 'img', 'aria-labelledby': 'throughput-summary',
      },
      s('line', { class: 'axis', x1: 0, x2: width, y1: top + plot + 0.5, y2: top + plot + 0.5 }),
      bars);
      // A tick per minute, labelled with its clock time; on a narrow chart only every
      // fifth label shows (CSS), the ticks all stay.
      const ticks = buckets.map((b, i) => {
        const start = new Date(b.start);
        const tick = h('span', {
          class: start.getMinutes() % 5 === 0 ? 'tick major' : 'tick',
          'data-start': b.start,
        }, h('span', { class: 'tick-label', text: fmtClock(start) }));
        tick.style.left = `${(center(i) / width) * 100}%`;
        return tick;
      });
      replaceChildren(chartHolder,
        h('p', { class: 'chart-max', 'aria-hidden': 'true', text: `${fmtNumber(max)} per minute` }),
        chart,
        h('div', { class: 'chart-axis', id: 'throughput-axis', 'aria-hidden': 'true' }, ticks));
      const now = new Date();
      chartZone.textContent = `Times in ${fmtZone(now)}`;
      const sum = (key) => buckets.reduce((total, b) => total + b[key], 0);
      const range = buckets.length
        ? ` (${fmtClock(new Date(buckets[0].start))} to ${fmtClock(new Date(buckets[buckets.length - 1].start))} ${fmtZone(now)})`
        : '';
      chartSummary.textContent = `${fmtNumber(sum('submitted'))} submitted, ` +
        `${fmtNumber(sum('completed'))} completed, ${fmtNumber(sum('failed'))} failed ` +
        `in the last ${buckets.length} minutes${range}`;
    }

    // The chart changes by the minute: a change read within THROUGHPUT_EVERY_MS of the
    // last reading of it is drawn once that time is up (one timer, only after changes).
    let throughputTimer = null;
    function throughputLater() {
      if (throughputTimer) return;
      throughputTimer = setTimeout(async () => {
        throughputTimer = null;
        if (state.paused) return;
        try {
          const data = await api(`/api/tasks/throughput?minutes=${THROUGHPUT_MINUTES}`);
          state.lastThroughput = Date.now();
          renderThroughput(data);
        } catch { /* the next change tries again */ }
      }, Math.max(0, state.lastThroughput + THROUGHPUT_EVERY_MS - Date.now()));
    }

    async function tick() {
      syncAddress();
      curl.render();
      const wantThroughput = Date.now() - state.lastThroughput >= THROUGHPUT_EVERY_MS;
      const [list, countsData, throughputData] = await Promise.allSettled([
        api(listUrl()),
        api('/api/tasks/counts'),
        wantThroughput ? api(`/api/tasks/throughput?minutes=${THROUGHPUT_MINUTES}`) : Promise.resolve(null),
      ]);
      if (list.status === 'fulfilled') {
        listError.hidden = true;
        searchError.hidden = true;
        searchInput.removeAttribute('aria-invalid');
        renderTasks(list.value);
      } else if (list.reason instanceof ApiProblem && list.reason.status === 400 && state.q) {
        searchError.textContent = list.reason.message;
        searchError.hidden = false;
        searchInput.setAttribute('aria-invalid', 'true');
      } else {
        listError.textContent = describeError(list.reason);
        listError.hidden = false;
      }
      if (countsData.status === 'fulfilled') renderCounts(countsData.value);
      if (throughputData.status === 'fulfilled' && throughputData.value) {
        state.lastThroughput = Date.now();
        renderThroughput(throughputData.value);
      } else if (!wantThroughput) {
        throughputLater();
      }
      const ok = list.status === 'fulfilled';
      liveText.textContent = ok ? `Live · updated ${fmtTime(new Date().toISOString()).slice(11)}` : 'Reconnecting…';
    }

    // The list, counts and chart are read again when the tenant's tasks change (told by
    // the event stream: one read for a burst of events), and when the filters change.
    const refresh = coalesce(tick, LIST_REFRESH_MS);
    const stream = new LiveStream('/api/events', {
      onEvent: () => refresh(),
      onState: (streamState) => {
        if (state.paused) return;
        if (streamState === 'live') {
          liveText.textContent = `Live · updated ${fmtTime(new Date().toISOString()).slice(11)}`;
          // Whatever changed while the stream was down.
          refresh();
        } else {
          liveText.textContent = streamState === 'closed' ? 'Disconnected: reload the page' : 'Reconnecting…';
        }
      },
    });
    // Running tasks' durations count up between reads.
    const running = () => (state.lastList?.tasks || []).some((task) => !isFinal(task.status));
    const clock = new Clock(() => renderTasks(state.lastList), running);
    const updates = {
      start() { stream.start(); clock.start(); },
      stop() {
        stream.stop();
        clock.stop();
        refresh.cancel();
        clearTimeout(throughputTimer);
        throughputTimer = null;
      },
      // Shown again from the back/forward cache: the stream reopens and, once live,
      // reads what changed meanwhile (unless the person paused updates).
      resume() { if (!state.paused) updates.start(); },
    };

    setScreen('tasks', 'Tasks',
      h('div', { class: 'screen-head' }, h('div', { class: 'title' }, h('h1', { text: 'Tasks' })), live),
      overview,
      h('section', { class: 'card', 'aria-labelledby': 'list-heading' },
        h('h2', { id: 'list-heading', class: 'visually-hidden', text: 'Task list' }),
        filters, listError, resultNote, table, searchedBack, pager),
      curl.card);
    currentUpdates = updates;
    updates.start();
    refresh();
  }

  // ---- One task --------------------------------------------------------------------

  function taskScreen(taskId) {
    const title = h('h1', { id: 'task-title', text: 'Task' });
    const statusHolder = h('span', { id: 'task-status' });
    const notice = h('div', { class: 'alert info', role: 'status', hidden: true });
    const failure = h('div', { class: 'alert error', id: 'task-error', hidden: true });
    const redriveButton = h('button', { type: 'button', class: 'primary', id: 'redrive', hidden: true, text: 'Re-drive failed service requests' });
    const cancelButton = h('button', { type: 'button', class: 'danger', id: 'cancel', hidden: true, text: 'Cancel task' });
    const actions = h('div', { class: 'actions' }, redriveButton, cancelButton, copyButton('Copy id', () => taskId));
    const fields = h('dl', { class: 'fields', id: 'task-fields' });
    const timeline = h('ol', { class: 'timeline', id: 'timeline', 'aria-describedby': 'timeline-hint' });
    const scale = h('div', { class: 'scale', 'aria-hidden': 'true' });
    const srBody = h('tbody', { id: 'service-requests' });
    const redriveRows = h('tbody', { id: 'redrive-rows' });
    const timelineHint = h('p', { class: 'hint', id: 'timeline-hint' });
    const history = h('section', { class: 'card', id: 'redrive-history', 'aria-labelledby': 'history-heading', hidden: true },
      h('h2', { id: 'history-heading', text: 'Earlier failures' }),
      h('p', { class: 'hint', text: 'This task failed and was re-driven; oldest first. The time it sat failed, waiting for the re-drive, is not counted in how long it took.' }),
      h('div', { class: 'table-wrap' }, h('table', { class: 'stack', id: 'redrive-table' },
        h('caption', { class: 'visually-hidden', text: 'Earlier failures of this task' }),
        h('thead', null, h('tr', null,
          ['Failed', 'Error', 'Re-driven', 'Sat failed for'].map((text) => h('th', { scope: 'col', text })))),
        redriveRows)));
    const webhookRows = h('tbody', { id: 'webhook-rows' });
    const webhooks = h('section', { class: 'card', id: 'webhooks', 'aria-labelledby': 'webhooks-heading', hidden: true },
      h('h2', { id: 'webhooks-heading', text: 'Webhook deliveries' }),
      h('p', { class: 'hint', text: 'The signed summary POSTed to the task\'s callback URL each time it became final; a delivery keeps its id over its retries.' }),
      h('div', { class: 'table-wrap' }, h('table', { class: 'stack', id: 'webhook-table' },
        h('caption', { class: 'visually-hidden', text: 'Webhook deliveries of this task' }),
        h('thead', null, h('tr', null,
          ['Delivery', 'State', 'Attempts', 'Last'].map((text) => h('th', { scope: 'col', text })))),
        webhookRows)));
    const payload = h('pre', { id: 'task-payload', tabindex: '0', 'aria-label': 'Payload' });
    const openDetails = new Set();
    let task = null;
    let lastKey = '';

    const curl = curlCard(() => {
      const base = `${location.origin}/api/tasks/${taskId}`;
      const commands = [{ label: 'This task', command: `curl -s ${AUTH} ${shellQuote(base)}` }];
      if (task && canRedrive(task.status) && may('tasks:operate')) {
        commands.push({ label: 'Re-drive it', command: `curl -si -X POST ${AUTH} ${shellQuote(`${base}/retry`)}` });
      }
      if (task && !isFinal(task.status) && may('tasks:operate')) {
        commands.push({ label: 'Cancel it', command: `curl -si -X POST ${AUTH} ${shellQuote(`${base}/cancel`)}` });
      }
      return commands;
    });

    const body = h('div', { id: 'task-body', hidden: true },
      h('section', { class: 'card', 'aria-labelledby': 'fields-heading' },
        h('h2', { id: 'fields-heading', text: 'Task' }), fields),
      history,
      h('section', { class: 'card', 'aria-labelledby': 'timeline-heading' },
        h('h2', { id: 'timeline-heading', text: 'Timeline' }),
        timelineHint, timeline, scale),
      h('section', { class: 'card', 'aria-labelledby': 'sr-heading' },
        h('h2', { id: 'sr-heading', text: 'Service requests' }),
        h('div', { class: 'table-wrap' }, h('table', { class: 'stack', id: 'sr-table' },
          h('caption', { class: 'visually-hidden', text: 'Service requests of this task' }),
          h('thead', null, h('tr', null,
            ['Service', 'Item', 'Status', 'Attempts', 'Started', 'Duration', 'Response or error']
              .map((text) => h('th', { scope: 'col', text })))),
          srBody))),
      webhooks,
      h('section', { class: 'card', 'aria-labelledby': 'payload-heading' },
        h('h2', { id: 'payload-heading', text: 'Payload' }), payload),
      curl.card);

    const loadError = h('div', { class: 'alert error', role: 'alert', hidden: true });

    function durationOf(sr) {
      if (!sr.started_at) return null;
      const end = sr.completed_at ? new Date(sr.completed_at) : (isFinal(sr.status) ? null : new Date());
      return end ? end - new Date(sr.started_at) : null;
    }

    function renderFields() {
      const done = task.service_requests.filter((sr) => sr.status === 'COMPLETED').length;
      const failed = task.service_requests.filter((sr) => sr.status === 'FAILED').length;
      const redrives = redrivesOf(task).length;
      const waited = waitedMs(task);
      const took = [duration(tookMs(task), { id: 'task-took' }), isFinal(task.status) ? null : ' so far (still running)'];
      if (redrives) {
        took.push(h('span', { class: 'muted', id: 'task-took-note',
          text: ` (not counting ${fmtDuration(waited)} failed, waiting for ${redrives === 1 ? 'a re-drive' : `${redrives} re-drives`})` }));
      }
      const rows = [
        ['Id', h('span', { class: 'mono', text: task.task_id })],
        ['Status', badge(task.status)],
        ['Description', task.task_description || h('span', { class: 'muted', text: 'none' })],
        ['Submitted', when(task.created_at)],
        ['Updated', when(task.updated_at)],
        ['Took', took],
        ['Service requests', `${task.service_requests.length} (${done} completed, ${failed} failed)`],
        ['Trace', task.trace_id
          ? [h('span', { class: 'mono', id: 'task-trace', text: task.trace_id }),
            task.trace_url
              ? [' ', h('a', { href: task.trace_url, id: 'task-trace-link', target: '_blank', rel: 'noopener noreferrer', text: 'Open the trace' })]
              : null]
          : h('span', { class: 'muted', text: 'none' })],
      ];
      replaceChildren(fields, rows.map(([name, value]) => [h('dt', { text: name }), h('dd', null, value)]));
    }

    function renderHistory() {
      const redrives = redrivesOf(task);
      history.hidden = redrives.length === 0;
      replaceChildren(redriveRows, redrives.map((r, i) => h('tr', { 'data-redrive': i + 1 },
        h('td', { 'data-label': 'Failed', class: 'num' }, h('time', { datetime: r.failed_at, class: 'failed-at', text: fmtTime(r.failed_at) })),
        h('td', { 'data-label': 'Error' }, r.error_message
          ? h('span', { class: 'error-text', text: r.error_message })
          : h('span', { class: 'muted', text: 'not recorded' })),
        h('td', { 'data-label': 'Re-driven', class: 'num' }, h('time', { datetime: r.redriven_at, class: 'redriven-at', text: fmtTime(r.redriven_at) })),
        h('td', { 'data-label': 'Sat failed for', class: 'num' }, duration(epochMs(r.redriven_at) - epochMs(r.failed_at))))));
    }

    // Older servers send no webhook_deliveries: none then.
    function renderWebhooks() {
      const deliveries = Array.isArray(task.webhook_deliveries) ? task.webhook_deliveries : [];
      webhooks.hidden = deliveries.length === 0;
      const states = { pending: 'Pending', delivered: 'Delivered', gave_up: 'Gave up' };
      replaceChildren(webhookRows, deliveries.map((d) => {
        const last = d.attempts[d.attempts.length - 1];
        const outcome = (a) => (a.error ? `${a.error}` : `HTTP ${a.status_code}`);
        return h('tr', { 'data-delivery': d.id, 'data-state': d.state },
          h('td', { 'data-label': 'Delivery' }, h('code', { text: d.id }), h('div', { class: 'muted', text: d.url })),
          h('td', { 'data-label': 'State', text: d.state === 'pending' && d.next_attempt_at
            ? `Pending, next ${fmtTime(d.next_attempt_at)}` : states[d.state] || d.state }),
          h('td', { 'data-label': 'Attempts', class: 'num webhook-attempts', text: d.attempts.map(outcome).join(', ') || '—' }),
          h('td', { 'data-label': 'Last', class: 'num' }, last
            ? h('time', { datetime: last.attempted_at, text: fmtTime(last.attempted_at) }) : '—'));
      }));
    }

    function renderTimeline() {
      const t0 = epochMs(task.created_at);
      let t1 = epochMs(task.updated_at);
      for (const sr of task.service_requests) {
        if (sr.completed_at) t1 = Math.max(t1, epochMs(sr.completed_at));
        else if (sr.started_at && !isFinal(sr.status)) t1 = Math.max(t1, Date.now());
        for (const a of failedAttemptsOf(sr)) t1 = Math.max(t1, epochMs(a.started_at) + a.duration_ms);
      }
      // The time a re-driven task sat failed is cut out of the axis (it can be days,
      // and would squash the rest into a sliver); a hatched mark shows where.
      const redrives = redrivesOf(task);
      const cuts = redrives.map((r) => [epochMs(r.failed_at), epochMs(r.redriven_at)]);
      const axis = (t) => cuts.reduce((x, [from, to]) => x - Math.max(0, Math.min(t, to) - from), t - t0);
      const span = Math.max(1, axis(t1));
      const percent = (t) => Math.max(0, Math.min(100, (axis(t) / span) * 100));
      // Places `el` on the track from `start` to `end` (epoch ms).
      const place = (el, start, end) => {
        el.style.left = `${percent(start)}%`;
        el.style.width = `${Math.max(0, percent(end) - percent(start))}%`;
        return el;
      };
      const durations = task.service_requests.map(durationOf);
      const longest = Math.max(...durations.filter((d) => d !== null), 0);
      const several = task.service_requests.length > 1;
      let anyFailedAttempt = false;
      replaceChildren(timeline, task.service_requests.map((sr, i) => {
        const took = durations[i];
        const slowest = several && took !== null && took === longest && longest > 0;
        const bar = h('span', { class: 'span', 'data-status': sr.status });
        if (sr.started_at) {
          place(bar, epochMs(sr.started_at), sr.completed_at ? epochMs(sr.completed_at) : Date.now());
        } else {
          bar.hidden = true;
        }
        const gaps = cuts.map(([from, to]) => {
          const gap = h('span', { class: 'gap', title: `Sat failed for ${fmtDuration(to - from)}, then re-driven` });
          gap.style.left = `${percent(from)}%`;
          return gap;
        });
        const failed = failedAttemptsOf(sr);
        anyFailedAttempt ||= failed.length > 0;
        const marks = failed.map((a) => place(h('span', { class: 'span attempt-failed' }),
          epochMs(a.started_at), epochMs(a.started_at) + a.duration_ms));
        const label = `${sr.service_name}, item ${sr.item_index}: ${LABELS[sr.status]}, ` +
          (sr.started_at ? `started ${fmtDuration(epochMs(sr.started_at) - t0)} after submission, took ${fmtDuration(took)}` : 'not started') +
          (failed.length ? `, ${failed.length} failed ${failed.length === 1 ? 'attempt' : 'attempts'}` : '');
        return h('li', { 'data-service': sr.service_name, class: slowest ? 'slowest' : null },
          h('span', { class: 'who' }, sr.service_name, ' ', h('small', { text: `item ${sr.item_index}` })),
          h('span', { class: 'track', role: 'img', 'aria-label': label }, bar, marks, gaps),
          h('span', { class: 'took' }, fmtDuration(took), slowest ? h('span', { class: 'slowest-tag', text: 'slowest' }) : null));
      }));
      replaceChildren(scale, h('span', { text: '0' }), h('span', { text: fmtDuration(span) }));
      const waited = cuts.reduce((total, [from, to]) => total + Math.max(0, to - from), 0);
      timelineHint.textContent = 'When each service request started and finished, from the moment the task was submitted.' +
        (anyFailedAttempt ? ' Red marks are failed attempts.' : '') +
        (cuts.length ? ` The hatched line is where the task sat failed until it was re-driven; that wait (${fmtDuration(waited)}) is left out of the scale.` : '');
    }

    // Each attempt of a service request that did not succeed at once: the failed ones
    // (as recorded), the re-drives between them, and the last one if it succeeded.
    function attemptsRow(sr) {
      const failed = failedAttemptsOf(sr);
      if (!failed.length) return null;
      const redrives = redrivesOf(task);
      const items = [];
      let previous = -Infinity;
      const redrivenBefore = (until) => {
        for (const r of redrives) {
          const at = epochMs(r.redriven_at);
          if (at > previous && at <= until) {
            items.push(h('li', { class: 'attempt-redrive' }, 'Task re-driven at ',
              h('time', { datetime: r.redriven_at, title: fmtTime(r.redriven_at), text: fmtClockPrecise(r.redriven_at) })));
          }
        }
        previous = until;
      };
      const succeeded = sr.status === 'COMPLETED' && sr.completed_at;
      const unrecorded = sr.attempts - (succeeded ? 1 : 0) - failed.length;
      if (isFinal(sr.status) && unrecorded > 0) {
        items.push(h('li', { class: 'attempt-note muted', text: `${unrecorded} earlier ${unrecorded === 1 ? 'attempt was' : 'attempts were'} not recorded.` }));
      }
      for (const a of failed) {
        redrivenBefore(epochMs(a.started_at));
        items.push(h('li', { class: 'attempt', 'data-attempt': a.attempt, 'data-outcome': 'failed' },
          h('span', { class: 'attempt-n', text: `Attempt ${a.attempt}` }),
          h('span', { class: 'attempt-at' }, 'started ',
            h('time', { datetime: a.started_at, title: fmtTime(a.started_at), text: fmtClockPrecise(a.started_at) })),
          h('span', { class: 'attempt-result', text: a.status_code === null || a.status_code === undefined ? 'No response' : `HTTP ${a.status_code}` }),
          h('span', { class: 'attempt-took' }, duration(a.duration_ms)),
          h('span', { class: 'attempt-error error-text', text: a.error })));
      }
      if (succeeded) {
        redrivenBefore(epochMs(sr.completed_at));
        items.push(h('li', { class: 'attempt', 'data-attempt': sr.attempts, 'data-outcome': 'succeeded' },
          h('span', { class: 'attempt-n', text: `Attempt ${sr.attempts}` }),
          h('span', { class: 'attempt-at' }, 'finished ',
            h('time', { datetime: sr.completed_at, title: fmtTime(sr.completed_at), text: fmtClockPrecise(sr.completed_at) })),
          h('span', { class: 'attempt-result succeeded', text: 'Succeeded' })));
      } else {
        redrivenBefore(Infinity);
      }
      return h('tr', { class: 'attempts-row', 'data-attempts-of': sr.service_name, 'data-item': sr.item_index },
        h('td', { colspan: 7, 'data-label': 'Attempts' },
          h('ol', { class: 'attempts', 'aria-label': `Attempts of ${sr.service_name}, item ${sr.item_index}` }, items)));
    }

    function renderServiceRequests() {
      replaceChildren(srBody, task.service_requests.map((sr) => {
        let result;
        if (sr.error_message) {
          result = h('span', { class: 'error-text', text: sr.error_message });
        } else if (sr.response_payload !== null && sr.response_payload !== undefined) {
          const details = h('details', { 'data-sr': sr.id, open: openDetails.has(sr.id) },
            h('summary', { text: 'Response' }),
            h('pre', { text: JSON.stringify(sr.response_payload, null, 2) }));
          details.addEventListener('toggle', () => {
            if (details.open) openDetails.add(sr.id); else openDetails.delete(sr.id);
          });
          result = details;
        } else {
          result = h('span', { class: 'muted', text: '—' });
        }
        const attempts = attemptsRow(sr);
        return [h('tr', { 'data-service': sr.service_name, 'data-status': sr.status, class: attempts ? 'has-attempts' : null },
          h('td', { 'data-label': 'Service', class: 'service-name', text: sr.service_name }),
          h('td', { 'data-label': 'Item', class: 'num', text: sr.item_index }),
          h('td', { 'data-label': 'Status' }, badge(sr.status)),
          h('td', { 'data-label': 'Attempts', class: 'num', text: sr.attempts }),
          h('td', { 'data-label': 'Started', class: 'num' }, sr.started_at ? h('time', { datetime: sr.started_at, title: fmtTime(sr.started_at), text: fmtClockPrecise(sr.started_at) }) : '—'),
          h('td', { 'data-label': 'Duration', class: 'num', text: fmtDuration(durationOf(sr)) }),
          h('td', { 'data-label': 'Result' }, result)), attempts];
      }));
    }

    function render() {
      title.textContent = task.task_name;
      document.title = `${task.task_name} · orchestrator`;
      replaceChildren(statusHolder, badge(task.status, true));
      // Offered only to a credential that may re-drive; the API refuses others anyway.
      redriveButton.hidden = !canRedrive(task.status) || !may('tasks:operate');
      redriveButton.textContent = task.status === 'CANCELLED'
        ? 'Re-drive what did not complete' : 'Re-drive failed service requests';
      cancelButton.hidden = isFinal(task.status) || !may('tasks:operate');
      failure.hidden = !task.error_message;
      replaceChildren(failure, h('p', null, h('strong', { text: 'Failed: ' }), task.error_message || ''));
      const key = JSON.stringify(task);
      const running = !isFinal(task.status);
      // Finished tasks are drawn once; running ones every tick (their bars grow).
      if (key !== lastKey || running) {
        renderFields();
        renderHistory();
        renderWebhooks();
        renderTimeline();
        renderServiceRequests();
        payload.textContent = JSON.stringify(task.payload, null, 2);
        curl.render();
        lastKey = key;
      }
      body.hidden = false;
    }

    async function tick() {
      try {
        task = await api(`/api/tasks/${encodeURIComponent(taskId)}`);
        loadError.hidden = true;
        render();
        if (isFinal(task.status)) updates.stop(); else updates.start();
      } catch (error) {
        loadError.textContent = error instanceof ApiProblem && error.status === 404
          ? 'There is no task with this id.' : describeError(error);
        loadError.hidden = false;
        if (error instanceof ApiProblem && error.status < 500) updates.stop();
      }
    }

    // Events change the page as they come, without a request; the event that makes the
    // task final brings one read, for what events do not carry (timings, responses,
    // webhooks). A stream opened after a re-drive replays the task's history first,
    // earlier final states included: the read then finds the task running and the
    // stream goes on.
    function apply(type, data) {
      if (!task || data.task_id !== task.task_id) return;
      if (type === 'task') {
        task = { ...task, status: data.status, error_message: data.error_message };
        render();
        if (isFinal(data.status)) tick();
      } else {
        task = {
          ...task,
          service_requests: task.service_requests.map((sr) => (sr.id === data.service_request_id
            ? { ...sr, status: data.status, error_message: data.error_message }
            : sr)),
        };
        render();
      }
    }
    const stream = new LiveStream(`/api/tasks/${encodeURIComponent(taskId)}/events`, { onEvent: apply });
    // A running task's bars and durations grow between events.
    const clock = new Clock(() => render(), () => task && !isFinal(task.status));
    const updates = {
      start() { stream.start(); clock.start(); },
      stop() { stream.stop(); clock.stop(); },
      // Shown again from the back/forward cache: read the task again (which follows
      // it again if it still runs).
      resume() { tick(); },
    };

    redriveButton.addEventListener('click', async () => {
      redriveButton.disabled = true;
      try {
        task = { ...task, ...(await api(`/api/tasks/${encodeURIComponent(taskId)}/retry`, { method: 'POST' })) };
        notice.textContent = 'Re-driven: the failed service requests run again.';
        notice.hidden = false;
        announce(notice.textContent);
        updates.stop();
        await tick();
      } catch (error) {
        notice.hidden = true;
        loadError.textContent = describeError(error);
        loadError.hidden = false;
      } finally {
        redriveButton.disabled = false;
      }
    });

    cancelButton.addEventListener('click', async () => {
      cancelButton.disabled = true;
      try {
        task = { ...task, ...(await api(`/api/tasks/${encodeURIComponent(taskId)}/cancel`, { method: 'POST' })) };
        notice.textContent = 'Cancelled: calls in flight are dropped and the rest are not made.';
        notice.hidden = false;
        announce(notice.textContent);
        await tick();
      } catch (error) {
        notice.hidden = true;
        loadError.textContent = describeError(error);
        loadError.hidden = false;
      } finally {
        cancelButton.disabled = false;
      }
    });

    setScreen('', 'Task',
      h('nav', { 'aria-label': 'Breadcrumb', class: 'muted' }, h('a', { href: '/ui', text: 'Tasks' }), ' › this task'),
      h('div', { class: 'screen-head' }, h('div', { class: 'title' }, title, statusHolder), actions),
      loadError, notice, failure, body);
    currentUpdates = updates;
    tick();
  }

  // ---- Submit ----------------------------------------------------------------------

  function newScreen() {
    const field = (id, label, control, hint) => h('div', { class: 'field' },
      h('label', { for: id, text: label }), control,
      hint ? h('p', { class: 'hint', id: `${id}-hint`, text: hint }) : null,
      h('p', { class: 'field-error', id: `${id}-error`, hidden: true }));
    const name = h('input', { id: 'task-name', name: 'task_name', required: true, maxlength: 255, autocomplete: 'off', 'aria-describedby': 'task-name-error' });
    const description = h('textarea', { id: 'task-description', name: 'task_description', rows: 2, 'aria-describedby': 'task-description-error' });
    const payload = h('textarea', { id: 'task-payload', name: 'payload', rows: 14, class: 'mono', spellcheck: 'false', required: true, 'aria-describedby': 'task-payload-hint task-payload-error' });
    const key = h('input', { id: 'idempotency-key', name: 'idempotency_key', maxlength: 255, autocomplete: 'off', 'aria-describedby': 'idempotency-key-hint idempotency-key-error' });
    const errors = h('div', { class: 'alert error', id: 'form-errors', role: 'alert', tabindex: '-1', hidden: true });
    const submit = h('button', { type: 'submit', class: 'primary', id: 'submit-task', text: 'Submit task' });
    const reset = h('button', { type: 'button', id: 'reset-example', text: 'Reset to the example' });

    const fill = () => {
      name.value = EXAMPLE.task_name;
      description.value = EXAMPLE.task_description;
      payload.value = JSON.stringify(EXAMPLE.payload, null, 2);
      key.value = '';
    };
    fill();

    const pointerField = { '/task_name': name, '/task_description': description, '/payload': payload };
    const clearErrors = () => {
      errors.hidden = true;
      for (const control of [name, description, payload, key]) {
        control.removeAttribute('aria-invalid');
        document.getElementById(`${control.id}-error`).hidden = true;
      }
    };
    const fieldError = (control, message) => {
      control.setAttribute('aria-invalid', 'true');
      const el = document.getElementById(`${control.id}-error`);
      el.textContent = message;
      el.hidden = false;
    };

    // The body as it would be sent; `null` payload when the JSON does not parse.
    const body = () => {
      let items = null;
      try { items = JSON.parse(payload.value); } catch (_) { items = null; }
      return { task_name: name.value, task_description: description.value.trim() ? description.value : null, payload: items };
    };

    const curl = curlCard(() => {
      const headers = [AUTH, `-H 'Content-Type: application/json'`];
      if (key.value.trim()) headers.push(`-H ${shellQuote(`Idempotency-Key: ${key.value.trim()}`)}`);
      const current = body();
      const data = current.payload === null ? { ...current, payload: '…' } : current;
      return [{
        label: 'Submit this task',
        command: `curl -s -X POST ${shellQuote(`${location.origin}/api/orchestrate`)} \\\n  ${headers.join(' ')} \\\n  -d ${shellQuote(JSON.stringify(data))}`,
      }];
    });

    const form = h('form', { class: 'card form-grid', id: 'task-form', novalidate: true },
      errors,
      field('task-name', 'Task name', name),
      field('task-description', 'Description (optional)', description),
      field('task-payload', 'Payload', payload,
        'A JSON array of items. Each item names one or more services (revenue, rebates, specialty) with a scenario_id and a business_type_id.'),
      field('idempotency-key', 'Idempotency-Key (optional)', key,
        'Sending the same key again returns the first task instead of creating another.'),
      h('div', { class: 'form-actions' }, submit, reset));

    form.addEventListener('input', () => curl.render());
    reset.addEventListener('click', () => { fill(); clearErrors(); curl.render(); name.focus(); });
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      clearErrors();
      const current = body();
      const problems = [];
      if (!name.value.trim()) { fieldError(name, 'Give the task a name.'); problems.push('Task name: give the task a name.'); }
      if (current.payload === null) {
        fieldError(payload, 'This is not valid JSON.');
        problems.push('Payload: this is not valid JSON.');
      }
      if (problems.length) {
        showErrors('The task was not submitted:', problems);
        return;
      }
      submit.disabled = true;
      try {
        const headers = { 'Content-Type': 'application/json' };
        if (key.value.trim()) headers['Idempotency-Key'] = key.value.trim();
        const created = await api('/api/orchestrate', { method: 'POST', headers, body: JSON.stringify(current) });
        location.assign(`/ui/tasks/${encodeURIComponent(created.task_id)}`);
      } catch (error) {
        const list = [];
        if (error instanceof ApiProblem && Array.isArray(error.problem.errors)) {
          for (const item of error.problem.errors) {
            const top = `/${(item.pointer || '').split('/')[1] || ''}`;
            if (pointerField[top]) fieldError(pointerField[top], item.detail);
            list.push(`${item.pointer || '(body)'}: ${item.detail}`);
          }
        }
        if (error instanceof ApiProblem && error.status === 400 && !list.length && /Idempotency/i.test(error.message)) {
          fieldError(key, error.message);
        }
        showErrors(list.length ? 'The API refused the task:' : describeError(error), list);
        submit.disabled = false;
      }
    });

    function showErrors(heading, items) {
      replaceChildren(errors, h('p', null, h('strong', { text: heading })),
        items.length ? h('ul', null, items.map((text) => h('li', { text }))) : null);
      errors.hidden = false;
      errors.focus();
    }

    setScreen('new', 'New task',
      h('div', { class: 'screen-head' }, h('div', { class: 'title' }, h('h1', { text: 'Submit a task' }))),
      form, curl.card);
  }

  // ---- Sign-in ---------------------------------------------------------------------

  function signInScreen() {
    const failed = new URLSearchParams(location.search).has('failed');
    document.getElementById('main-nav').hidden = true;
    const token = h('input', {
      id: 'token', name: 'token', type: 'password', required: true, autocomplete: 'off',
      spellcheck: 'false', class: 'mono', 'aria-describedby': 'token-hint',
    });
    setScreen('', 'Sign in',
      h('section', { class: 'card signin', 'aria-labelledby': 'sign-in-heading' },
        h('h1', { id: 'sign-in-heading', text: 'Sign in' }),
        failed ? h('div', {
          class: 'alert error', id: 'sign-in-error', role: 'alert',
          text: 'That token was not accepted. Check that it was copied whole and has not expired or been revoked.',
        }) : null,
        // A plain form: the token goes to the API once, in the POST body, and comes
        // back as an HttpOnly session cookie this script cannot read.
        h('form', { method: 'post', action: SIGN_IN, id: 'sign-in-form' },
          h('div', { class: 'field' },
            h('label', { for: 'token', text: 'API token' }), token,
            h('p', { class: 'hint', id: 'token-hint' }, 'A token (', h('code', { text: 'orch_…' }), ') from ',
              h('code', { text: 'orchestrator-api token create' }), '; ', h('code', { text: 'make run' }),
              ' writes one to ', h('code', { text: '.run/token' }),
              '. The dashboard can do what its scopes allow, for its tenant only.')),
          h('div', null, h('button', { type: 'submit', class: 'primary', id: 'sign-in', text: 'Sign in' }))),
        ssoLink()));
    token.focus();
  }

  // "Sign in with SSO", when the API has an identity provider configured (it says so in
  // the page's <meta name="orchestrator-sso">): a link to the API's start route, which
  // sends the browser on to the provider.
  function ssoLink() {
    const meta = document.querySelector('meta[name="orchestrator-sso"]');
    const start = meta && meta.getAttribute('content');
    if (!start || !start.startsWith('/ui/')) return null;
    return h('p', { class: 'sso' }, 'Or ', h('a', { href: start, id: 'sign-in-sso', text: 'Sign in with SSO' }),
      ' with your organisation\'s identity provider.');
  }

  // The header's "who is signed in", with the sign-out button (a form POST, so that
  // the CSP's form-action 'self' covers it).
  function renderWho() {
    const who = document.getElementById('who');
    if (caller.credential === 'none') {
      replaceChildren(who, h('span', { id: 'who-tenant', text: 'Authentication disabled' }));
      return;
    }
    replaceChildren(who,
      h('span', { id: 'who-tenant', title: caller.scopes.join(' '), text: `Tenant ${caller.tenant}` }),
      caller.credential === 'session'
        ? h('form', { method: 'post', action: '/ui/sign-out' },
          h('button', { type: 'submit', id: 'sign-out', text: 'Sign out' }))
        : null);
    document.getElementById('nav-new').parentElement.hidden = !may('tasks:submit');
  }

  function notFoundScreen() {
    setScreen('', 'Not found', h('h1', { text: 'Page not found' }),
      h('p', null, 'Back to ', h('a', { href: '/ui', text: 'the tasks' }), '.'));
  }

  // ---- Routing ---------------------------------------------------------------------

  async function route() {
    const path = location.pathname.replace(/\/+$/, '') || '/ui';
    if (path === SIGN_IN) {
      signInScreen();
      return;
    }
    try {
      caller = await api('/api/me');
    } catch (error) {
      if (!(error instanceof ApiProblem && error.status === 401)) {
        replaceChildren(main(), h('div', { class: 'alert error', role: 'alert', text: describeError(error) }));
      }
      return;
    }
    renderWho();
    const task = path.match(/^\/ui\/tasks\/([^/]+)$/);
    if (path === '/ui') listScreen();
    else if (path === '/ui/new') newScreen();
    else if (task) taskScreen(decodeURIComponent(task[1]));
    else notFoundScreen();
  }

  // A page left for another (a link, a reload, Back) can stay alive in the browser's
  // back/forward cache, and its event stream with it. Over HTTP/1.1 a browser opens at
  // most six connections to a host, so five pages left behind held five of them open
  // and the next page's reads waited for the last one. The stream closes when the page
  // is hidden and reopens when it is shown again.
  window.addEventListener('pagehide', () => { if (currentUpdates) currentUpdates.stop(); });
  window.addEventListener('pageshow', (event) => {
    if (event.persisted && currentUpdates) currentUpdates.resume();
  });
  document.addEventListener('DOMContentLoaded', route);
})();
