// app.js: the dashboard's entry point: hash routes, the token field, the server status.
import { caps, detect, events, get, getToken, setToken } from './api.js';
import { announce, h, replace } from './util.js';
import { jobsView, modelsView } from './jobs.js';
import { newJobView } from './newjob.js';
import { detailView } from './detail.js';
import { reportView, compareView } from './report.js';
import { opsView } from './ops.js';

const main = document.getElementById('main');
let current = null;        // the view on screen: {destroy()}
let routeSeq = 0;
let firstRoute = true;

// #/jobs, #/new, #/models, #/ops, #/jobs/ID, #/jobs/ID/report, #/compare/MODEL; query after '?'.
function parseRoute() {
  const raw = location.hash.replace(/^#/, '') || '/jobs';
  const [path, qs] = raw.split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  const query = new URLSearchParams(qs || '');
  if (parts[0] === 'new') return { view: newJobView, nav: 'new', params: { query } };
  if (parts[0] === 'models') return { view: modelsView, nav: 'models', params: { query } };
  if (parts[0] === 'ops') return { view: opsView, nav: 'ops', params: { query } };
  if (parts[0] === 'compare' && parts[1]) return { view: compareView, nav: 'jobs', params: { model: parts[1], query } };
  if (parts[0] === 'jobs' && parts[1] && parts[2] === 'report') return { view: reportView, nav: 'jobs', params: { id: parts[1], query } };
  if (parts[0] === 'jobs' && parts[1]) return { view: detailView, nav: 'jobs', params: { id: parts[1], query } };
  return { view: jobsView, nav: 'jobs', params: { query } };
}

async function route() {
  const seq = ++routeSeq;
  if (current && current.destroy) current.destroy();
  current = null;
  const r = parseRoute();
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === r.nav) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  replace(main);
  const v = r.view(main, r.params);
  if (seq !== routeSeq) { if (v && v.destroy) v.destroy(); return; }
  current = v;
  // move focus to the new page's heading, as a page load would
  const h1 = main.querySelector('h1');
  if (h1) {
    h1.setAttribute('tabindex', '-1');
    if (!firstRoute && (document.activeElement === document.body || main.contains(document.activeElement) || document.activeElement === main))
      h1.focus({ preventScroll: true });
    firstRoute = false;
    document.title = `${h1.textContent} · compressd`;
  }
}

// ---- token ----

const panel = document.getElementById('token-panel');
const toggle = document.getElementById('token-toggle');
const input = document.getElementById('token-input');

function showTokenUi(open) {
  toggle.hidden = false;
  panel.hidden = !open;
  toggle.setAttribute('aria-expanded', String(open));
  if (open) input.focus();
}

toggle.addEventListener('click', () => showTokenUi(panel.hidden));
panel.addEventListener('submit', async (e) => {
  e.preventDefault();
  setToken(input.value);
  input.value = '';
  showTokenUi(false);
  announce('Token saved for this tab');
  setStatus('', 'checking the token…');
  await detect();
  route();
  pollStatus();
});
document.getElementById('token-forget').addEventListener('click', () => {
  setToken('');
  input.value = '';
  announce('Token forgotten');
  setStatus('', 'connecting…');
  route();
  pollStatus();
});
events.addEventListener('auth', (e) => {
  caps.authRequired = true;
  const msg = getToken() ? 'The server refused this token' : 'This server needs an API token';
  setStatus('auth', `${msg} (${e.detail.status})`);
  if (panel.hidden) showTokenUi(true);
});

// ---- server status: /readyz every 5 s ----

const status = document.getElementById('server-status');
function setStatus(kind, text) {
  status.dataset.kind = kind;
  status.textContent = text;
}
async function pollStatus() {
  try {
    await get('/readyz');
    if (status.dataset.kind !== 'auth') setStatus('ok', 'server ready');
  } catch (e) {
    setStatus('down', e.status === 503 ? 'server starting or stopping' : 'server unreachable');
  }
}

// ---- start ----

window.addEventListener('hashchange', route);
(async () => {
  if (getToken()) toggle.hidden = false;
  await detect();
  if (caps.authRequired) showTokenUi(!getToken());
  pollStatus();
  setInterval(pollStatus, 5000);
  document.body.dataset.ready = '1';
  route();
})();

export { h };
