// util.js: DOM construction and formatting helpers shared by the views.

const SVG_NS = 'http://www.w3.org/2000/svg';

// h(tag, attrs, ...children): an element. attrs: class, text, dataset-like "data-*",
// "aria-*", on<event> handlers, boolean properties (disabled, checked, hidden), other attributes.
// Children: nodes, strings (as text), arrays, null/false (skipped). Never parses HTML.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

// s(tag, attrs, ...children): the same for SVG elements (attributes only, no styles: the
// Content-Security-Policy forbids inline style attributes).
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'text') el.textContent = String(v);
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = String(v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'disabled' || k === 'checked' || k === 'hidden' || k === 'selected' ||
             k === 'required' || k === 'multiple') el[k] = !!v;
    else if (k === 'value') el.value = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

// Replace the children of el.
export function replace(el, ...children) {
  clear(el);
  return append(el, children);
}

export function fmtBytes(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = Number(n), i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (i === 0 ? String(v) : v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)) + ' ' + units[i];
}

export function fmtInt(n) {
  return n === null || n === undefined ? '–' : Number(n).toLocaleString('en-US');
}

export function fmtNum(v, digits = 3) {
  if (v === null || v === undefined || Number.isNaN(v)) return '–';
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e4 || a < 1e-3) return v.toExponential(2);
  return Number(v.toPrecision(digits)).toString();
}

export function fmtDuration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms) || ms < 0) return '–';
  if (ms < 1000) return Math.round(ms) + ' ms';
  const s = ms / 1000;
  if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + ' s';
  const m = Math.floor(s / 60), rs = Math.round(s % 60);
  if (m < 60) return `${m} min ${rs} s`;
  const hr = Math.floor(m / 60);
  return `${hr} h ${m % 60} min`;
}

export function parseTime(iso) {
  if (!iso) return null;
  const t = Date.parse(iso);
  return Number.isNaN(t) ? null : t;
}

// "2026-11-26 20:41:07" in the viewer's time zone; the title keeps the exact UTC time.
export function fmtTime(iso) {
  const t = parseTime(iso);
  if (t === null) return '–';
  const d = new Date(t);
  const p = (x) => String(x).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

export function fmtAgo(iso, now = Date.now()) {
  const t = parseTime(iso);
  if (t === null) return '–';
  const s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

export function timeEl(iso, relative = false) {
  if (!iso) return h('span', { class: 'muted', text: '–' });
  return h('time', { datetime: iso, title: iso, text: relative ? fmtAgo(iso) : fmtTime(iso) });
}

// Copy text to the clipboard (also over plain http, where navigator.clipboard is missing).
export async function copyText(text) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch (_) { /* fall back */ }
  const ta = h('textarea', { class: 'offscreen', 'aria-hidden': 'true', readonly: true });
  ta.value = text;
  document.body.append(ta);
  ta.select();
  let ok = false;
  try { ok = document.execCommand('copy'); } catch (_) { ok = false; }
  ta.remove();
  return ok;
}

// A "Copy" button for the text returned by get(); announces the result to screen readers.
export function copyButton(get, label = 'Copy') {
  const b = h('button', { type: 'button', class: 'btn small ghost', text: label });
  b.addEventListener('click', async () => {
    const ok = await copyText(get());
    b.textContent = ok ? 'Copied' : 'Copy failed';
    announce(ok ? 'Copied to the clipboard' : 'Could not copy');
    setTimeout(() => { b.textContent = label; }, 1500);
  });
  return b;
}

// A polite screen-reader announcement through the page's live region.
export function announce(text) {
  const r = document.getElementById('announcer');
  if (!r) return;
  r.textContent = '';
  setTimeout(() => { r.textContent = text; }, 30);
}

export const STATES = ['queued', 'running', 'succeeded', 'failed', 'canceled'];
export const FINAL = new Set(['succeeded', 'failed', 'canceled']);

export function stateBadge(state) {
  return h('span', { class: `badge state-${state}`, text: state });
}

// The job's duration: run time if it started, else time waited so far.
export function jobDuration(job, now = Date.now()) {
  const c = parseTime(job.created_at), st = parseTime(job.started_at), f = parseTime(job.finished_at);
  if (st !== null) return (f ?? now) - st;
  if (f !== null && c !== null) return f - c;
  return null;
}

// Estimated time left of a running job from its byte progress and run time so far.
export function jobEta(job, now = Date.now()) {
  if (job.state !== 'running') return null;
  const st = parseTime(job.started_at), fr = job.progress ? job.progress.fraction : 0;
  if (st === null || !(fr > 0.02) || fr >= 1) return null;
  return ((now - st) * (1 - fr)) / fr;
}

// A progress bar: <div role=progressbar> with tensors done/total and the ETA as text.
export function progressBar(job) {
  const wrap = h('div', { class: 'progress', role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': '100' });
  const fill = h('div', { class: 'progress-fill' });
  const label = h('span', { class: 'progress-label' });
  wrap.append(fill, label);
  updateProgress(wrap, job);
  return wrap;
}

export function updateProgress(wrap, job) {
  const p = job.progress || {};
  const frac = Math.max(0, Math.min(1, Number(p.fraction) || 0));
  const pct = Math.round(frac * 100);
  const fill = wrap.querySelector('.progress-fill');
  fill.style.width = pct + '%';
  wrap.dataset.state = job.state;
  const eta = jobEta(job);
  const tens = p.tensors_total ? `${fmtInt(p.tensors_done)}/${fmtInt(p.tensors_total)} tensors` : '';
  const text = `${pct}%${tens ? ' · ' + tens : ''}${eta !== null ? ' · ETA ' + fmtDuration(eta) : ''}`;
  wrap.querySelector('.progress-label').textContent = text;
  wrap.setAttribute('aria-valuenow', String(pct));
  wrap.setAttribute('aria-valuetext', text);
}

// One-line summary of a recipe: "quantize q8_0 → gguf".
export function recipeSummary(recipe) {
  if (!recipe || !Array.isArray(recipe.steps)) return '–';
  const steps = recipe.steps.map((st) => {
    // "q8_0", "int8 (channel, symmetric)", "prune (sparsity=0.5)": the type names the step
    const rest = Object.entries(st).filter(([k]) => k !== 'op' && k !== 'type')
      .map(([k, v]) => (v === true ? k : typeof v === 'string' ? v : `${k}=${typeof v === 'object' ? JSON.stringify(v) : v}`));
    return (st.type || st.op) + (rest.length ? ` (${rest.join(', ')})` : '');
  });
  const fmt = recipe.output && recipe.output.format ? ` → ${recipe.output.format}` : '';
  return steps.join(', ') + fmt;
}

// Aggregate quality of a report: element-weighted mean and worst relative L2 error over the
// tensors that were transformed.
export function reportQuality(report) {
  let num = 0, den = 0, worst = 0, worstName = null, minSnr = null;
  for (const t of report.tensors || []) {
    const n = (t.shape || []).reduce((a, b) => a * b, 1);
    if (typeof t.rel_l2 !== 'number') continue;
    num += t.rel_l2 * t.rel_l2 * n;
    den += n;
    if (t.rel_l2 > worst) { worst = t.rel_l2; worstName = t.name; }
    if (typeof t.snr_db === 'number' && (minSnr === null || t.snr_db < minSnr)) minSnr = t.snr_db;
  }
  return { rmsRelL2: den ? Math.sqrt(num / den) : null, worst, worstName, minSnr };
}
