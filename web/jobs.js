// jobs.js: the job list (live, filtered, paged) and the model list.
import { api, authHeaders, caps, get, post } from './api.js';
import {
  FINAL, STATES, announce, fmtBytes, fmtDuration, fmtInt, h, jobDuration, progressBar, recipeSummary,
  replace, stateBadge, timeEl, updateProgress,
} from './util.js';

const PAGE_SIZE = 20;
const POLL_MS = 1500;
const COUNT_MS = 5000;
const COUNT_CAP = 200;   // counts above this show as "200+"

// Models by id, refreshed by the views that need names.
export const models = new Map();
export async function loadModels() {
  let token = null;
  const out = [];
  for (let i = 0; i < 20; i++) {
    const q = `/v1/models?page_size=1000${token ? '&page_token=' + encodeURIComponent(token) : ''}`;
    const page = await get(q);
    out.push(...(page.models || []));
    token = page.next_page_token;
    if (!token) break;
  }
  models.clear();
  for (const m of out) models.set(m.id, m);
  return out;
}

export function modelName(id) {
  const m = models.get(id);
  return m ? m.name : id;
}

// Cancel or retry buttons for a job; onDone() after the request.
export function jobActions(job, onDone) {
  const box = h('div', { class: 'actions' });
  if (!FINAL.has(job.state) && !job.cancel_requested) {
    box.append(h('button', {
      type: 'button', class: 'btn small danger', 'data-action': 'cancel', 'aria-label': `Cancel job ${job.id}`,
      onclick: async (e) => {
        e.currentTarget.disabled = true;
        try {
          await post(`/v1/jobs/${encodeURIComponent(job.id)}:cancel`);
          announce(`Job ${job.id} canceled`);
        } catch (err) { announce(`Cancel failed: ${err.message}`); alertError(err); }
        onDone && onDone();
      },
    }, 'Cancel'));
  } else if (job.cancel_requested && !FINAL.has(job.state)) {
    box.append(h('span', { class: 'muted small', text: 'canceling…' }));
  }
  if (caps.retry && (job.state === 'failed' || job.state === 'canceled')) {
    box.append(h('button', {
      type: 'button', class: 'btn small', 'data-action': 'retry', 'aria-label': `Retry job ${job.id}`,
      onclick: async (e) => {
        e.currentTarget.disabled = true;
        try {
          const j = await post(`/v1/jobs/${encodeURIComponent(job.id)}:retry`);
          announce(`Job ${job.id} queued again`);
          if (j && j.id && j.id !== job.id) location.hash = `#/jobs/${encodeURIComponent(j.id)}`;
        } catch (err) { alertError(err); }
        onDone && onDone();
      },
    }, 'Retry'));
  }
  if (job.state === 'succeeded')
    box.append(h('a', { class: 'btn small ghost', href: `#/jobs/${encodeURIComponent(job.id)}/report`, 'aria-label': `Report of job ${job.id}` }, 'Report'));
  return box;
}

function alertError(err) {
  const area = document.getElementById('page-error');
  if (area) replace(area, h('p', { class: 'callout error', role: 'alert' }, err.message));
}

export function errorBox() {
  return h('div', { id: 'page-error' });
}

// ---- the job list ----

export function jobsView(root, { query }) {
  const state = { filter: query.get('state') || '', model: query.get('model') || '', tokens: [null], page: 0, timer: null, countTimer: null, alive: true, rows: new Map() };

  const stateSel = h('select', { id: 'f-state', onchange: () => { state.filter = stateSel.value; resetPaging(); } },
    h('option', { value: '' }, 'all states'), STATES.map((st) => h('option', { value: st, selected: st === state.filter }, st)));
  const modelSel = h('select', { id: 'f-model', onchange: () => { state.model = modelSel.value; resetPaging(); } },
    h('option', { value: '' }, 'all models'));
  const counts = h('div', { class: 'counts', role: 'group', 'aria-label': 'Jobs by state' });
  const tbody = h('tbody');
  const empty = h('p', { class: 'muted empty', hidden: true }, 'No jobs yet. ', h('a', { href: '#/new' }, 'Start one'), '.');
  const newer = h('button', { type: 'button', class: 'btn small ghost', disabled: true, onclick: () => { state.page--; refresh(true); } }, '← Newer');
  const older = h('button', { type: 'button', class: 'btn small ghost', disabled: true, onclick: () => { state.page++; refresh(true); } }, 'Older →');
  const pageInfo = h('span', { class: 'muted small', 'aria-live': 'polite' });
  const updated = h('span', { class: 'muted small updated' });

  replace(root,
    h('div', { class: 'page-head' },
      h('h1', {}, 'Jobs'),
      h('a', { class: 'btn primary', href: '#/new' }, 'New job')),
    errorBox(),
    counts,
    h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter jobs', onsubmit: (e) => e.preventDefault() },
      h('label', { for: 'f-state' }, 'State'), stateSel,
      h('label', { for: 'f-model' }, 'Model'), modelSel,
      updated),
    h('div', { class: 'table-wrap' },
      h('table', { class: 'jobs', 'aria-describedby': 'jobs-caption' },
        h('caption', { id: 'jobs-caption', class: 'offscreen' }, 'Jobs, newest first; the list updates itself'),
        h('thead', {}, h('tr', {},
          ['Job', 'Model', 'Recipe', 'State', 'Progress', 'Created', 'Duration', 'Actions'].map((t) => h('th', { scope: 'col' }, t)))),
        tbody)),
    empty,
    h('div', { class: 'pager' }, newer, pageInfo, older));

  function resetPaging() {
    state.tokens = [null];
    state.page = 0;
    const q = new URLSearchParams();
    if (state.filter) q.set('state', state.filter);
    if (state.model) q.set('model', state.model);
    history.replaceState(null, '', '#/jobs' + (q.toString() ? '?' + q : ''));
    refresh(true);
  }

  function fillModels() {
    const keep = state.model;
    replace(modelSel, h('option', { value: '' }, 'all models'),
      [...models.values()].map((m) => h('option', { value: m.id, selected: m.id === keep }, m.name)));
    if (keep && !models.has(keep)) modelSel.append(h('option', { value: keep, selected: true }, keep));
  }

  function rowFor(job) {
    let tr = state.rows.get(job.id);
    if (!tr) {
      const link = h('a', { href: `#/jobs/${encodeURIComponent(job.id)}`, class: 'mono', title: job.id, 'aria-label': `Job ${job.id}` }, job.id.length > 16 ? job.id.slice(0, 12) + '…' : job.id);
      tr = h('tr', { 'data-job': job.id },
        h('th', { scope: 'row' }, link),
        h('td', { class: 'c-model' }),
        h('td', { class: 'c-recipe' }),
        h('td', { class: 'c-state' }),
        h('td', { class: 'c-progress' }, progressBar(job)),
        h('td', { class: 'c-created' }),
        h('td', { class: 'c-duration num' }),
        h('td', { class: 'c-actions' }));
      state.rows.set(job.id, tr);
    }
    const cell = (c) => tr.querySelector('.' + c);
    const sig = `${job.state}|${job.cancel_requested}|${caps.retry}`;
    replace(cell('c-model'), modelName(job.model));
    cell('c-recipe').textContent = recipeSummary(job.recipe);
    cell('c-recipe').title = JSON.stringify(job.recipe);
    if (tr.dataset.sig !== sig) {
      // rebuilt only when they change, so keyboard focus on a button survives the polling
      replace(cell('c-state'), stateBadge(job.state));
      replace(cell('c-actions'), jobActions(job, () => refresh(false)));
      tr.dataset.sig = sig;
    }
    updateProgress(cell('c-progress').firstChild, job);
    replace(cell('c-created'), timeEl(job.created_at, true));
    cell('c-duration').textContent = fmtDuration(jobDuration(job));
    if (job.error && job.error.message) cell('c-state').title = `${job.error.code}: ${job.error.message}`;
    return tr;
  }

  async function refresh(userAction) {
    if (!state.alive) return;
    clearTimeout(state.timer);
    try {
      const q = new URLSearchParams({ page_size: String(PAGE_SIZE) });
      if (state.filter) q.set('state', state.filter);
      if (state.model) q.set('model', state.model);
      const tok = state.tokens[state.page];
      if (tok) q.set('page_token', tok);
      const page = await get('/v1/jobs?' + q);
      if (!state.alive) return;
      state.tokens[state.page + 1] = page.next_page_token || null;
      if ((page.jobs || []).some((j) => !models.has(j.model))) { await loadModels().catch(() => {}); fillModels(); }
      const seen = new Set();
      const rows = (page.jobs || []).map((j) => { seen.add(j.id); return rowFor(j); });
      for (const id of [...state.rows.keys()]) if (!seen.has(id)) state.rows.delete(id);
      // keep existing row elements in place (focus), insert/reorder only when needed
      rows.forEach((tr, i) => { if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null); });
      while (tbody.children.length > rows.length) tbody.lastChild.remove();
      empty.hidden = rows.length > 0;
      newer.disabled = state.page === 0;
      older.disabled = !page.next_page_token;
      pageInfo.textContent = `page ${state.page + 1}`;
      updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
      if (userAction) announce(`${rows.length} jobs shown`);
      replace(document.getElementById('page-error') || h('div'));
    } catch (e) {
      if (e.name !== 'AbortError') alertError(e);
    }
    if (state.alive) state.timer = setTimeout(() => refresh(false), document.hidden ? POLL_MS * 4 : POLL_MS);
  }

  // Worker occupancy from GET /metrics (Prometheus text), when the server has it.
  async function workers() {
    try {
      const res = await fetch('/metrics', { headers: authHeaders(), cache: 'no-store' });
      if (!res.ok) return null;
      const text = await res.text();
      const val = (name) => {
        const m = text.match(new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.eE+-]+)$`, 'm'));
        return m ? Number(m[1]) : null;
      };
      const slots = val('compressd_worker_slots'), busy = val('compressd_worker_busy_slots');
      return slots === null || busy === null ? null : { slots, busy };
    } catch (_) { return null; }
  }

  // Exact counts and workers in one request from GET /v1/status, when the server has it.
  async function status() {
    try { return await get('/v1/status'); } catch (_) { return null; }
  }

  async function refreshCounts() {
    if (!state.alive) return;
    clearTimeout(state.countTimer);
    try {
      const sv = await status();
      const w = sv && sv.workers ? { slots: sv.workers.slots, busy: sv.workers.busy } : await workers();
      // the status counts every job; with a model filter count that model's pages instead
      const res = sv && sv.jobs && !state.model ? STATES.map((st) => ({ st, n: sv.jobs[st] || 0, more: false })) : await Promise.all(STATES.map((st) => {
        const q = new URLSearchParams({ state: st, page_size: String(COUNT_CAP) });
        if (state.model) q.set('model', state.model);
        return get('/v1/jobs?' + q).then((p) => ({ st, n: (p.jobs || []).length, more: !!p.next_page_token }));
      }));
      if (!state.alive) return;
      replace(counts, res.map(({ st, n, more }) =>
        h('button', {
          type: 'button', class: `count state-${st}` + (state.filter === st ? ' active' : ''), 'aria-pressed': String(state.filter === st),
          onclick: () => { state.filter = state.filter === st ? '' : st; stateSel.value = state.filter; resetPaging(); refreshCounts(); },
        }, h('span', { class: 'count-n' }, more ? `${fmtInt(n)}+` : fmtInt(n)), h('span', { class: 'count-label' }, st))),
      h('p', { class: 'queue-depth muted small', id: 'queue-depth' }, `Queue depth: ${res[0].more ? res[0].n + '+' : res[0].n} waiting, ${res[1].n} running`,
        w ? ` · worker threads: ${w.busy} of ${w.slots} busy` : ''));
    } catch (_) { /* shown by the list */ }
    if (state.alive) state.countTimer = setTimeout(refreshCounts, COUNT_MS);
  }

  loadModels().then(fillModels).catch(() => {});
  refresh(false);
  refreshCounts();
  return { destroy() { state.alive = false; clearTimeout(state.timer); clearTimeout(state.countTimer); } };
}

// ---- the model list ----

export function modelsView(root) {
  const tbody = h('tbody');
  const empty = h('p', { class: 'muted empty', hidden: true }, 'No models yet. ', h('a', { href: '#/new' }, 'Upload one'), '.');
  replace(root,
    h('div', { class: 'page-head' }, h('h1', {}, 'Models'), h('a', { class: 'btn primary', href: '#/new' }, 'Upload a model')),
    errorBox(),
    h('div', { class: 'table-wrap' }, h('table', { class: 'models' },
      h('caption', { class: 'offscreen' }, 'Uploaded models, newest first'),
      h('thead', {}, h('tr', {}, ['Name', 'Id', 'Format', 'Size', 'Tensors', 'Parameters', 'sha256', 'Uploaded', 'Actions'].map((t) => h('th', { scope: 'col' }, t)))),
      tbody)),
    empty);
  async function load() {
    try {
      const list = await loadModels();
      replace(tbody, list.map((m) => h('tr', {},
        h('th', { scope: 'row' }, m.name),
        h('td', { class: 'mono small' }, m.id),
        h('td', {}, m.format),
        h('td', { class: 'num' }, fmtBytes(m.bytes)),
        h('td', { class: 'num' }, fmtInt(m.tensor_count)),
        h('td', { class: 'num' }, fmtInt(m.parameter_count)),
        h('td', { class: 'mono small', title: m.sha256 }, m.sha256.slice(0, 16) + '…'),
        h('td', {}, timeEl(m.created_at)),
        h('td', {}, h('div', { class: 'actions' },
          h('a', { class: 'btn small', href: `#/new?model=${encodeURIComponent(m.id)}` }, 'New job'),
          h('a', { class: 'btn small ghost', href: `#/jobs?model=${encodeURIComponent(m.id)}` }, 'Jobs'),
          h('a', { class: 'btn small ghost', href: `#/compare/${encodeURIComponent(m.id)}` }, 'Compare'),
          h('button', { type: 'button', class: 'btn small danger', 'aria-label': `Delete model ${m.name}`, onclick: async () => {
            if (!confirm(`Delete model ${m.name} (${m.id})?`)) return;
            try { await api('DELETE', `/v1/models/${encodeURIComponent(m.id)}`); announce('Model deleted'); load(); }
            catch (e) { replace(document.getElementById('page-error'), h('p', { class: 'callout error', role: 'alert' }, e.message)); }
          } }, 'Delete'))))));
      empty.hidden = list.length > 0;
    } catch (e) {
      replace(document.getElementById('page-error'), h('p', { class: 'callout error', role: 'alert' }, e.message));
    }
  }
  load();
  return { destroy() {} };
}
