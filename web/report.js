// report.js: a job's quality report (totals, per-tensor charts and table) and the comparison
// of the succeeded jobs of one model (size against error).
import { get } from './api.js';
import { barChart, scatter } from './charts.js';
import { errorBox, loadModels, modelName, models } from './jobs.js';
import { fmtBytes, fmtDuration, fmtInt, fmtNum, h, recipeSummary, replace, reportQuality } from './util.js';

function card(label, value, sub) {
  return h('div', { class: 'stat' }, h('div', { class: 'stat-label' }, label), h('div', { class: 'stat-value' }, value),
    sub ? h('div', { class: 'stat-sub muted small' }, sub) : null);
}

function showError(e) {
  replace(document.getElementById('page-error'), h('p', { class: 'callout error', role: 'alert' }, e.message));
}

export function reportView(root, { id }) {
  const eid = encodeURIComponent(id);
  replace(root,
    h('p', { class: 'crumbs' }, h('a', { href: '#/jobs' }, 'Jobs'), ' / ', h('a', { href: `#/jobs/${eid}` }, id), ' / report'),
    h('div', { class: 'page-head' }, h('h1', {}, 'Quality report')),
    errorBox(),
    h('p', { class: 'muted' }, 'Loading the report…'));
  let alive = true;
  (async () => {
    try {
      const [job, report] = await Promise.all([get(`/v1/jobs/${eid}`), get(`/v1/jobs/${eid}/report`)]);
      if (!models.has(job.model)) await loadModels().catch(() => {});
      if (!alive) return;
      const t = report.totals || {};
      const q = reportQuality(report);
      const tensors = report.tensors || [];
      const sub = root.querySelector('p.muted');
      sub.replaceWith(
        h('p', { class: 'lede' }, `${modelName(job.model)} · ${recipeSummary(report.recipe || job.recipe)} · ${report.producer || 'compressd'} ${report.version || ''}`),
        h('section', { 'aria-labelledby': 'tot-h' },
          h('h2', { id: 'tot-h', class: 'offscreen' }, 'Totals'),
          h('div', { class: 'stats' },
            card('Output size', fmtBytes(t.file_bytes_out), `from ${fmtBytes(t.file_bytes_in)}`),
            card('Ratio', t.ratio ? '×' + t.ratio.toFixed(2) : '–', 'tensor bytes in / out'),
            card('Bits per weight', t.bpw ? t.bpw.toFixed(2) : '–', 'over all tensors'),
            card('Relative error', fmtNum(q.rmsRelL2), 'RMS of per-tensor relative L2, by size'),
            card('Worst tensor', fmtNum(q.worst), q.worstName || ''),
            card('Tensors changed', `${fmtInt(t.tensors_transformed)} / ${fmtInt(t.tensors)}`, `in ${fmtDuration((t.seconds || 0) * 1000)}`))),
        h('section', { class: 'card', 'aria-labelledby': 'err-h' },
          h('h2', { id: 'err-h' }, 'Relative error per tensor'),
          h('p', { class: 'help' }, '‖W − Ŵ‖ / ‖W‖ of each tensor after a round trip through the output type; 0 for tensors copied unchanged.'),
          barChart({ title: 'Relative L2 error per tensor', cls: 'err', items: tensors.map((x) => ({ label: x.name, value: x.rel_l2, muted: x.rel_l2 === 0, note: x.note })) })),
        h('section', { class: 'card', 'aria-labelledby': 'bpw-h' },
          h('h2', { id: 'bpw-h' }, 'Bits per weight per tensor'),
          barChart({ title: 'Bits per weight per tensor', cls: 'bpw', format: (v) => fmtNum(v, 3), items: tensors.map((x) => ({ label: x.name, value: x.bpw, muted: x.output_type === x.input_dtype?.toLowerCase(), note: `${x.input_dtype} → ${x.output_type}` })) })),
        h('section', { class: 'card', 'aria-labelledby': 'tt-h' },
          h('div', { class: 'card-head' }, h('h2', { id: 'tt-h' }, 'Tensors'),
            h('div', { class: 'actions' },
              h('a', { class: 'btn small ghost', href: `#/compare/${encodeURIComponent(job.model)}` }, 'Compare with other jobs on this model'),
              h('a', { class: 'btn small ghost', href: `/v1/jobs/${eid}/report`, download: `${id}.report.json` }, 'report.json'))),
          h('div', { class: 'table-wrap' }, h('table', { class: 'compact' },
            h('caption', { class: 'offscreen' }, 'Per-tensor figures'),
            h('thead', {}, h('tr', {}, ['Tensor', 'Shape', 'In → out', 'Bytes in', 'Bytes out', 'bpw', 'Rel. error', 'SNR dB', 'Max |err|', 'Note'].map((c) => h('th', { scope: 'col' }, c)))),
            h('tbody', {}, tensors.map((x) => h('tr', {},
              h('th', { scope: 'row', class: 'mono small' }, x.name),
              h('td', { class: 'mono small' }, (x.shape || []).join('×')),
              h('td', {}, `${x.input_dtype} → ${x.output_type}`),
              h('td', { class: 'num' }, fmtBytes(x.bytes_in)),
              h('td', { class: 'num' }, fmtBytes(x.bytes_out)),
              h('td', { class: 'num' }, fmtNum(x.bpw)),
              h('td', { class: 'num' }, fmtNum(x.rel_l2)),
              h('td', { class: 'num' }, x.snr_db === null || x.snr_db === undefined ? '∞' : x.snr_db.toFixed(1)),
              h('td', { class: 'num' }, fmtNum(x.max_abs_err)),
              h('td', { class: 'muted small wrap' }, x.note || '')))))))
      );
    } catch (e) {
      if (alive) showError(e);
    }
  })();
  return { destroy() { alive = false; } };
}

export function compareView(root, { model }) {
  let alive = true;
  const em = encodeURIComponent(model);
  const chartBox = h('div', { class: 'chart-box' });
  const tableBody = h('tbody');
  replace(root,
    h('p', { class: 'crumbs' }, h('a', { href: '#/jobs' }, 'Jobs'), ' / compare'),
    h('div', { class: 'page-head' }, h('h1', {}, 'Compare jobs')),
    errorBox(),
    h('p', { class: 'lede', id: 'compare-lede' }, 'Loading…'),
    h('section', { class: 'card', 'aria-labelledby': 'sc-h' },
      h('h2', { id: 'sc-h' }, 'Size against error'),
      h('p', { class: 'help' }, 'Each point is a succeeded job on this model: the artifact’s size and the size-weighted RMS of its per-tensor relative error. Lower left is better; untick a job to hide it.'),
      chartBox),
    h('section', { class: 'card', 'aria-labelledby': 'ct-h' },
      h('h2', { id: 'ct-h' }, 'Jobs'),
      h('div', { class: 'table-wrap' }, h('table', { class: 'compact' },
        h('caption', { class: 'offscreen' }, 'Succeeded jobs on this model'),
        h('thead', {}, h('tr', {}, ['Show', 'Job', 'Recipe', 'Size', 'Ratio', 'bpw', 'Rel. error', 'Worst tensor'].map((c) => h('th', { scope: 'col' }, c)))),
        tableBody))));
  (async () => {
    try {
      if (!models.has(model)) await loadModels().catch(() => {});
      const page = await get(`/v1/jobs?state=succeeded&model=${em}&page_size=50`);
      const jobs = page.jobs || [];
      const rows = await Promise.all(jobs.map(async (j) => {
        try {
          const r = await get(`/v1/jobs/${encodeURIComponent(j.id)}/report`);
          return { job: j, report: r, q: reportQuality(r), show: true };
        } catch (_) { return null; }
      }));
      if (!alive) return;
      const data = rows.filter(Boolean);
      const m = models.get(model);
      document.getElementById('compare-lede').textContent = `${m ? m.name : model}: ${data.length} succeeded job${data.length === 1 ? '' : 's'}` +
        (m ? ` · input ${m.format}, ${fmtBytes(m.bytes)}` : '') + (page.next_page_token ? ' (the 50 newest)' : '');
      const draw = () => {
        const pts = data.filter((d) => d.show).map((d) => ({
          x: d.report.totals.file_bytes_out, y: d.q.rmsRelL2 || 0,
          label: recipeSummary(d.report.recipe || d.job.recipe),
        }));
        replace(chartBox, pts.length ? scatter({ title: 'Artifact size against relative error', points: pts, xLabel: 'artifact size', yLabel: 'relative error', xFormat: fmtBytes, xBytes: true })
          : h('p', { class: 'muted' }, 'No succeeded job on this model yet.'));
      };
      replace(tableBody, data.map((d, i) => {
        const cb = h('input', { type: 'checkbox', checked: true, id: `cmp-${i}`, 'aria-label': `Show job ${d.job.id} in the chart`, onchange: () => { d.show = cb.checked; draw(); } });
        return h('tr', {},
          h('td', {}, cb),
          h('th', { scope: 'row' }, h('a', { class: 'mono', href: `#/jobs/${encodeURIComponent(d.job.id)}/report` }, d.job.id)),
          h('td', {}, recipeSummary(d.report.recipe || d.job.recipe)),
          h('td', { class: 'num' }, fmtBytes(d.report.totals.file_bytes_out)),
          h('td', { class: 'num' }, '×' + d.report.totals.ratio.toFixed(2)),
          h('td', { class: 'num' }, d.report.totals.bpw.toFixed(2)),
          h('td', { class: 'num' }, fmtNum(d.q.rmsRelL2)),
          h('td', { class: 'small wrap' }, d.q.worstName ? `${fmtNum(d.q.worst)} (${d.q.worstName})` : '–'));
      }));
      draw();
    } catch (e) {
      if (alive) showError(e);
    }
  })();
  return { destroy() { alive = false; } };
}
