// ops.js: the operator's view from GET /v1/status: workers busy and idle, the queue, jobs by
// state, free disk where the data lives, the version, and recent failures grouped by reason.
import { get } from './api.js';
import { errorBox } from './jobs.js';
import { fmtBytes, fmtInt, h, replace, stateBadge, timeEl, STATES } from './util.js';

const POLL_MS = 3000;
const DISK_LOW = 0.1;   // below this share free, the disk gauge turns red

function gauge(frac, label, low) {
  const pct = Math.max(0, Math.min(100, Math.round(frac * 100)));
  const fill = h('div');
  fill.style.width = pct + '%';
  return h('div', { class: 'gauge' + (low ? ' low' : ''), role: 'meter', 'aria-valuemin': '0', 'aria-valuemax': '100',
    'aria-valuenow': String(pct), 'aria-label': label }, fill);
}

function card(id, title, ...body) {
  return h('section', { class: 'card', 'aria-labelledby': id }, h('h2', { id }, title), ...body);
}

export function opsView(root) {
  let alive = true, timer = null;
  const grid = h('div', { class: 'ops-grid', id: 'ops-cards' });
  const fails = h('div', { id: 'ops-failures' });
  const updated = h('p', { class: 'muted small', role: 'status' });
  replace(root,
    h('div', { class: 'page-head' }, h('h1', {}, 'Ops')),
    h('p', { class: 'lede' }, 'Workers, queue and disk of this daemon, and what failed lately (GET /v1/status).'),
    errorBox(), grid,
    h('section', { class: 'card', 'aria-labelledby': 'fail-h' },
      h('div', { class: 'card-head' }, h('h2', { id: 'fail-h' }, 'Recent failures by reason'),
        h('a', { class: 'btn small ghost', href: '#/jobs?state=failed' }, 'All failed jobs')),
      fails),
    updated);

  function render(st) {
    const w = st.workers || {}, q = st.queue || {}, d = st.disk || {}, j = st.jobs || {};
    const freeFrac = d.total_bytes ? d.free_bytes / d.total_bytes : 0;
    replace(grid,
      card('ops-w', 'Workers',
        h('p', { id: 'ops-workers' }, h('strong', {}, `${fmtInt(w.busy)} busy`), `, ${fmtInt(w.idle)} idle of ${fmtInt(w.slots)} threads`),
        gauge(w.slots ? w.busy / w.slots : 0, 'Worker threads busy'),
        h('p', { class: 'muted small' }, `${fmtInt(st.uploads_in_flight)} uploads in flight`)),
      card('ops-q', 'Queue',
        h('p', { id: 'ops-queue' }, h('strong', {}, `${fmtInt(q.depth)} waiting`), `, ${fmtInt(j.running)} running`),
        q.limit ? gauge(q.depth / q.limit, 'Queue filled up to its limit') : null,
        h('p', { class: 'muted small' }, q.limit ? `limit ${fmtInt(q.limit)} queued jobs` : 'no queue limit')),
      card('ops-d', 'Disk',
        h('p', { id: 'ops-disk' }, h('strong', {}, `${fmtBytes(d.free_bytes)} free`), ` of ${fmtBytes(d.total_bytes)}`),
        gauge(1 - freeFrac, 'Disk used', freeFrac < DISK_LOW),
        h('p', { class: 'muted small' }, 'on the file system of the data directory')),
      card('ops-j', 'Jobs',
        h('ul', { class: 'plain' }, STATES.map((s) => h('li', {}, h('a', { href: `#/jobs?state=${s}` }, stateBadge(s)), ` ${fmtInt(j[s])}`)))),
      card('ops-v', 'Server',
        h('p', {}, `compressd ${st.version}`),
        h('p', { class: 'muted small' }, st.ready ? 'ready' : 'starting or stopping')));
    const rows = (st.recent_failures && st.recent_failures.by_code) || [];
    replace(fails, rows.length
      ? h('div', { class: 'table-wrap' }, h('table', { class: 'compact', id: 'failures-table' },
        h('caption', { class: 'offscreen' }, `Error codes of the newest ${st.recent_failures.window} failed jobs, most frequent first`),
        h('thead', {}, h('tr', {}, ['Reason', 'Jobs', 'Last', 'Last job', 'Message'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, rows.map((f) => h('tr', { 'data-code': f.code },
          h('th', { scope: 'row' }, h('code', {}, f.code)),
          h('td', { class: 'num' }, fmtInt(f.count)),
          h('td', {}, timeEl(f.last_at, true)),
          h('td', {}, h('a', { class: 'mono', href: `#/jobs/${encodeURIComponent(f.last_job)}` }, f.last_job)),
          h('td', { class: 'muted small wrap' }, f.last_message || ''))))))
      : h('p', { class: 'muted', id: 'no-failures' }, 'No failed jobs.'));
  }

  async function poll() {
    if (!alive) return;
    clearTimeout(timer);
    try {
      const st = await get('/v1/status');
      if (!alive) return;
      render(st);
      updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
      replace(document.getElementById('page-error'));
    } catch (e) {
      replace(document.getElementById('page-error'), h('p', { class: 'callout error', role: 'alert' },
        e.status === 404 ? 'This server has no GET /v1/status.' : e.message));
    }
    if (alive) timer = setTimeout(poll, document.hidden ? POLL_MS * 4 : POLL_MS);
  }
  poll();
  return { destroy() { alive = false; clearTimeout(timer); } };
}
