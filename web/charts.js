// charts.js: small SVG charts drawn from data, with no library. Every chart is role="img"
// with a text label, and each mark has a <title> (shown on hover, read by screen readers);
// the views also show the same figures as tables.
import { s, fmtNum } from './util.js';

function niceTicks(max, count = 4) {
  if (!(max > 0)) return [0];
  const raw = max / count;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((st) => st >= raw) || raw;
  const ticks = [0];
  while (ticks[ticks.length - 1] < max * 0.9999 && ticks.length < 20) ticks.push(Number((ticks.length * step).toPrecision(12)));
  return ticks;
}

// barChart({title, items: [{label, value, note}], format, cls}): one horizontal bar per item.
export function barChart({ title, items, format = fmtNum, cls = '', width = 760, unit = '' }) {
  const labelW = Math.min(260, Math.max(90, 7 * Math.max(...items.map((i) => i.label.length), 4)));
  const row = 18, top = 26, bottom = 8, right = 64;
  const plotW = width - labelW - right;
  const height = top + items.length * row + bottom;
  const max = Math.max(...items.map((i) => (Number.isFinite(i.value) ? i.value : 0)), 0);
  const ticks = niceTicks(max);
  const scaleMax = ticks[ticks.length - 1] || 1;
  const x = (v) => labelW + (plotW * v) / scaleMax;
  const svg = s('svg', { class: `chart bar-chart ${cls}`, viewBox: `0 0 ${width} ${height}`, width: '100%',
    role: 'img', 'aria-label': `${title}: ${items.length} bars, largest ${format(max)}${unit}` });
  svg.append(s('title', { text: title }));
  const grid = s('g', { class: 'grid' });
  for (const t of ticks) {
    grid.append(s('line', { x1: x(t), x2: x(t), y1: top - 6, y2: height - bottom }),
      s('text', { x: x(t), y: top - 10, 'text-anchor': 'middle', class: 'tick', text: format(t) }));
  }
  svg.append(grid);
  items.forEach((it, i) => {
    const y = top + i * row;
    const v = Number.isFinite(it.value) ? it.value : 0;
    const g = s('g', { class: 'bar' + (it.muted ? ' muted' : '') });
    g.append(s('title', { text: `${it.label}: ${format(it.value)}${unit}${it.note ? ' — ' + it.note : ''}` }));
    g.append(s('text', { x: labelW - 8, y: y + row / 2 + 4, 'text-anchor': 'end', class: 'label', text: it.label.length > 36 ? '…' + it.label.slice(-35) : it.label }));
    g.append(s('rect', { x: labelW, y: y + 3, width: Math.max(v > 0 ? 1 : 0, x(v) - labelW), height: row - 6, rx: 2 }));
    g.append(s('text', { x: x(v) + 4, y: y + row / 2 + 4, class: 'value', text: format(it.value) }));
    svg.append(g);
  });
  return svg;
}

function attemptTimeline({ created, finished, now, width, attempts }) {
  const end = finished ?? now;
  const total = Math.max(1, end - created);
  const height = 44;
  const x = (t) => (width * (Math.min(Math.max(t, created), end) - created)) / total;
  const secs = (ms) => (ms / 1000).toFixed(2) + ' s';
  const says = attempts.map((a, i) => `attempt ${i + 1} ran ${secs((a.to ?? end) - a.from)}${a.outcome === 'running' ? ' so far' : ', ' + a.outcome}`);
  const svg = s('svg', { class: 'chart timeline', viewBox: `0 0 ${width} ${height}`, width: '100%', role: 'img',
    'aria-label': `Timeline: queued ${secs(attempts[0].from - created)} before the first attempt; ${says.join('; ')}` });
  svg.append(s('rect', { class: 'track', x: 0, y: 8, width, height: 18, rx: 4 }));
  svg.append(s('rect', { class: 'seg-queued', x: 0, y: 8, width: Math.max(2, x(finished ?? now)), height: 18, rx: 4 },
    s('title', { text: 'queued' })));
  attempts.forEach((a, i) => {
    const cls = a.outcome === 'running' ? 'seg-run live' : a.outcome === 'succeeded' ? 'seg-run'
      : a.outcome === 'failed' ? 'seg-run failed' : 'seg-run lost';
    const x0 = x(a.from), x1 = x(a.to ?? end);
    svg.append(s('rect', { class: cls, 'data-attempt': String(i + 1), x: x0, y: 8, width: Math.max(2, x1 - x0), height: 18, rx: 4 },
      s('title', { text: says[i] })));
    if (x1 - x0 > 60) svg.append(s('text', { class: 'seg-label', x: x0 + 6, y: 40, text: `attempt ${i + 1}` }));
  });
  return svg;
}

// Ticks for a byte axis: whole KiB/MiB/GiB steps.
function byteTicks(max) {
  let unit = 1;
  while (max / unit >= 1024 && unit < 2 ** 40) unit *= 1024;
  return niceTicks(max / unit).map((t) => t * unit);
}

// scatter({title, points: [{x, y, label, highlight, href}], xLabel, yLabel, xFormat, yFormat}).
export function scatter({ title, points, xLabel, yLabel, xFormat = fmtNum, yFormat = fmtNum, xBytes = false, width = 760, height = 380 }) {
  const m = { l: 78, r: 24, t: 18, b: 52 };
  const xs = points.map((p) => p.x), ys = points.map((p) => p.y);
  const xMax = Math.max(...xs, 0) * 1.05 || 1, yMax = Math.max(...ys, 0) * 1.1 || 1;
  const xt = xBytes ? byteTicks(xMax) : niceTicks(xMax), yt = niceTicks(yMax);
  const X = xt[xt.length - 1] || 1, Y = yt[yt.length - 1] || 1;
  const px = (v) => m.l + ((width - m.l - m.r) * v) / X;
  const py = (v) => height - m.b - ((height - m.t - m.b) * v) / Y;
  const svg = s('svg', { class: 'chart scatter', viewBox: `0 0 ${width} ${height}`, width: '100%', role: 'img',
    'aria-label': `${title}: ${points.length} points` });
  svg.append(s('title', { text: title }));
  const grid = s('g', { class: 'grid' });
  for (const t of xt) grid.append(s('line', { x1: px(t), x2: px(t), y1: m.t, y2: height - m.b }),
    s('text', { x: px(t), y: height - m.b + 16, 'text-anchor': 'middle', class: 'tick', text: xFormat(t) }));
  for (const t of yt) grid.append(s('line', { x1: m.l, x2: width - m.r, y1: py(t), y2: py(t) }),
    s('text', { x: m.l - 8, y: py(t) + 4, 'text-anchor': 'end', class: 'tick', text: yFormat(t) }));
  svg.append(grid);
  svg.append(s('line', { class: 'axis', x1: m.l, x2: width - m.r, y1: height - m.b, y2: height - m.b }),
    s('line', { class: 'axis', x1: m.l, x2: m.l, y1: m.t, y2: height - m.b }),
    s('text', { class: 'axis-label', x: (m.l + width - m.r) / 2, y: height - 10, 'text-anchor': 'middle', text: xLabel }),
    s('text', { class: 'axis-label', x: 16, y: (m.t + height - m.b) / 2, 'text-anchor': 'middle',
      transform: `rotate(-90 16 ${(m.t + height - m.b) / 2})`, text: yLabel }));
  // labels placed right of the point, nudged down when two points would overlap
  const placed = [];
  for (const p of points) {
    const cx = px(p.x), cy = py(p.y);
    const g = s('g', { class: 'point' + (p.highlight ? ' highlight' : '') });
    g.append(s('title', { text: `${p.label}: ${xLabel} ${xFormat(p.x)}, ${yLabel} ${yFormat(p.y)}` }));
    g.append(s('circle', { cx, cy, r: p.highlight ? 7 : 5.5 }));
    let ly = cy + 4;
    while (placed.some((q) => Math.abs(q.x - cx) < 120 && Math.abs(q.y - ly) < 13)) ly += 13;
    placed.push({ x: cx, y: ly });
    const anchorEnd = cx > width - 8 * p.label.length - 40;
    g.append(s('text', { x: anchorEnd ? cx - 10 : cx + 10, y: ly, 'text-anchor': anchorEnd ? 'end' : 'start', class: 'point-label', text: p.label }));
    svg.append(g);
  }
  return svg;
}

// The attempts of a job from its log lines ({event, time}): each "claimed" starts one, the
// next requeued / released / succeeded / failed / canceled ends it; one still open runs.
export function attemptsFromLog(lines) {
  const out = [];
  let from = null;
  for (const l of lines) {
    const t = Date.parse(l.time);
    if (Number.isNaN(t)) continue;
    if (l.event === 'claimed') from = t;
    else if (from !== null && ['requeued', 'released', 'succeeded', 'failed', 'canceled'].includes(l.event)) {
      out.push({ from, to: t, outcome: l.event });
      from = null;
    }
  }
  if (from !== null) out.push({ from, to: null, outcome: 'running' });
  return out;
}

// timeline({created, started, finished, now, attempts}): a bar from submission to the end:
// queued time underneath, each attempt (from the job log) on top, coloured by how it ended;
// without attempts, queued then running.
export function timeline({ created, started, finished, now = Date.now(), width = 760, attempts = null }) {
  if (attempts && attempts.length) return attemptTimeline({ created, finished, now, width, attempts });
  const end = finished ?? now;
  const total = Math.max(1, end - created);
  const height = 44, l = 0, w = width;
  const x = (t) => l + (w * (t - created)) / total;
  const svg = s('svg', { class: 'chart timeline', viewBox: `0 0 ${width} ${height}`, width: '100%', role: 'img',
    'aria-label': 'Timeline: time queued, then time running' });
  svg.append(s('rect', { class: 'track', x: 0, y: 8, width: w, height: 18, rx: 4 }));
  const qEnd = started ?? end;
  svg.append(s('rect', { class: 'seg-queued', x: x(created), y: 8, width: Math.max(2, x(qEnd) - x(created)), height: 18, rx: 4 },
    s('title', { text: `queued ${((qEnd - created) / 1000).toFixed(2)} s` })));
  if (started !== null && started !== undefined)
    svg.append(s('rect', { class: finished ? 'seg-run' : 'seg-run live', x: x(started), y: 8, width: Math.max(2, x(end) - x(started)), height: 18, rx: 4 },
      s('title', { text: `running ${((end - started) / 1000).toFixed(2)} s` })));
  return svg;
}
