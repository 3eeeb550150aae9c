// detail.js: one job: live state and progress, timeline, its event log (followed live),
// recipe, provenance, artifact, a curl snippet that reproduces it and a Clone action.
import { caps, download, get } from './api.js';
import { attemptsFromLog, timeline } from './charts.js';
import { errorBox, jobActions, loadModels, models } from './jobs.js';
import {
  FINAL, announce, copyButton, fmtBytes, fmtDuration, fmtInt, h, jobDuration, parseTime, progressBar,
  recipeSummary, replace, stateBadge, timeEl, updateProgress,
} from './util.js';

// The shell commands that reproduce a job against this server: upload, submit, wait,
// download. Uses $TOKEN (never the token itself) when the server needs one.
// A job with a calibration (an id on this server) uploads the calibration file too, so the
// snippet also works against another server.
export function curlSnippet(job, model, calib) {
  const base = location.origin;
  const auth = caps.authRequired ? " -H \"Authorization: Bearer $TOKEN\"" : '';
  const body = Object.assign({ model: '$MODEL' }, job.recipe || {});
  const calibId = typeof body.calibration === 'string' ? body.calibration : null;
  if (calibId) body.calibration = '$CALIB';
  const json = JSON.stringify(body).replace(/'/g, "'\\''").replace('"$MODEL"', '"\'"$MODEL"\'"').replace('"$CALIB"', '"\'"$CALIB"\'"');
  const calibFile = calib ? calib.name : 'CALIBRATION_FILE';
  const calibLines = calibId ? [
    `# 1b. upload the calibration (importance matrix, sha256 ${calib ? calib.sha256 : '…'})`,
    `CALIB=$(curl -sf${auth} -H 'Content-Type: application/octet-stream' \\`,
    `  --data-binary @${shq(calibFile)} "$B/v1/calibrations?name=${encodeURIComponent(calibFile)}" | jq -r .id)`,
  ] : [];
  const file = model ? `${model.name}.${model.format === 'safetensors' ? 'safetensors' : 'gguf'}` : 'MODEL_FILE';
  const ext = job.artifact && job.artifact.format === 'safetensors' ? 'safetensors' : (job.recipe && job.recipe.output && job.recipe.output.format) || 'gguf';
  return [
    `B=${base}`,
    `# 1. upload the model (sha256 ${model ? model.sha256 : '…'})`,
    `MODEL=$(curl -sf${auth} -H 'Content-Type: application/octet-stream' \\`,
    `  --data-binary @${shq(file)} "$B/v1/models?name=${encodeURIComponent(model ? model.name : 'model')}" | jq -r .id)`,
    ...calibLines,
    `# 2. submit the same recipe`,
    `JOB=$(curl -sf${auth} -H 'Content-Type: application/json' "$B/v1/jobs" \\`,
    `  -d '${json}' | jq -r .id)`,
    `# 3. wait for it to finish`,
    `until curl -sf${auth} "$B/v1/jobs/$JOB" | jq -e '.state | IN("succeeded", "failed", "canceled")' >/dev/null; do sleep 1; done`,
    `# 4. download the artifact and the report`,
    `curl -sf${auth} -o "$JOB.${ext}" "$B/v1/jobs/$JOB/artifact"`,
    `curl -sf${auth} -o "$JOB.report.json" "$B/v1/jobs/$JOB/report"`,
  ].join('\n');
}

function shq(s) {
  return /^[\w.\-/]+$/.test(s) ? s : `'${s.replace(/'/g, "'\\''")}'`;
}

// "#/new?..." that opens New job with this job's model and recipe (calibration included).
export function cloneHref(job) {
  return `#/new?model=${encodeURIComponent(job.model)}&recipe=${encodeURIComponent(JSON.stringify(job.recipe))}&from=${encodeURIComponent(job.id)}`;
}

const LOG_POLL_MS = 1000;
const LOG_SHOWN_MAX = 1000;   // lines kept on the page (the server keeps as many per job)

// The job's event log (GET /v1/jobs/{id}/log): read from the start, then followed with the
// since cursor while "Follow" is on; stops by itself when the server says the log is done.
function logPanel(id, onLines) {
  let since = 0, timer = null, alive = true, done = false, busy = false;
  const seen = [];   // {event, time} of every line read, for the timeline
  const list = h('ol', { class: 'log', id: 'job-log', role: 'log', 'aria-live': 'off', 'aria-label': 'Job log', tabindex: '0' });
  const follow = h('input', { type: 'checkbox', id: 'log-follow', checked: true });
  const status = h('span', { class: 'muted small', id: 'log-status', role: 'status' });
  const dlBtn = h('button', { type: 'button', class: 'btn small ghost', id: 'download-log', onclick: async (e) => {
    e.currentTarget.disabled = true;
    try { await download(`/v1/jobs/${encodeURIComponent(id)}/log?format=text`, `${id}.log`); announce('Log download started'); }
    catch (err) { announce(`Download failed: ${err.message}`); }
    e.currentTarget.disabled = false;
  } }, 'Download log');
  follow.addEventListener('change', () => {
    if (follow.checked) { status.textContent = 'following'; tick(); }
    else { clearTimeout(timer); status.textContent = done ? 'the job has ended' : 'paused'; }
  });
  const el = h('section', { class: 'card', 'aria-labelledby': 'log-h' },
    h('div', { class: 'card-head' }, h('h2', { id: 'log-h' }, 'Log'),
      h('div', { class: 'actions' },
        h('div', { class: 'check-row' }, follow, h('label', { for: 'log-follow' }, 'Follow')), status, dlBtn)),
    list);

  function lineEl(l) {
    const t = parseTime(l.time);
    return h('li', { class: `log-line lvl-${l.level}`, 'data-seq': String(l.seq), 'data-event': l.event },
      h('time', { datetime: l.time, title: l.time }, t !== null ? new Date(t).toLocaleTimeString() : l.time),
      h('span', { class: 'log-ev' }, l.event), h('span', { class: 'log-msg' }, l.message));
  }

  async function tick() {
    if (!alive || busy) return;
    clearTimeout(timer);
    busy = true;
    let delay = LOG_POLL_MS;
    try {
      const r = await get(`/v1/jobs/${encodeURIComponent(id)}/log?since=${since}`);
      if (!alive) return;
      const atEnd = list.scrollTop + list.clientHeight >= list.scrollHeight - 8;
      if (r.truncated && since > 0) list.append(h('li', { class: 'log-line muted' }, '… older lines were dropped by the server\'s cap'));
      for (const l of r.lines || []) { list.append(lineEl(l)); seen.push({ event: l.event, time: l.time }); }
      if ((r.lines || []).length && onLines) onLines(seen);
      while (list.children.length > LOG_SHOWN_MAX) list.firstChild.remove();
      since = r.next_since;
      if ((r.lines || []).length && (atEnd || follow.checked)) list.scrollTop = list.scrollHeight;
      if (r.more) delay = 0;
      done = !!r.done;
      list.dataset.done = String(done);
      if (done) {
        follow.checked = false;
        status.textContent = `${list.children.length} lines · the job has ended`;
        return;
      }
      status.textContent = follow.checked ? `following · ${list.children.length} lines` : 'paused';
    } catch (e) {
      status.textContent = `log unavailable: ${e.message}`;
      delay = 3000;
    } finally { busy = false; }
    if (alive && (follow.checked || delay === 0) && !done) timer = setTimeout(tick, delay);
  }
  tick();
  return { el, destroy() { alive = false; clearTimeout(timer); } };
}

function dl(rows) {
  return h('dl', { class: 'facts' }, rows.filter(Boolean).map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

export function detailView(root, { id }) {
  let alive = true, timer = null, ctl = null, job = null, report = null, reportFor = null, rendered = null;
  let calib = null, calibFor = null;   // the job's calibration (GET /v1/calibrations/{id}), if any
  const head = h('div', { class: 'page-head' }, h('h1', {}, 'Job ', h('span', { class: 'mono' }, id)));
  const body = h('div', { class: 'detail' });
  replace(root, h('p', { class: 'crumbs' }, h('a', { href: '#/jobs' }, '← Jobs')), head, errorBox(), body);

  const stateBox = h('span', { class: 'state-box' });
  const actions = h('div', { class: 'head-actions' });
  const progress = h('div', { class: 'progress-box' });
  // announced in steps of 10 % and on state changes, not on every poll
  const live = h('p', { class: 'offscreen', 'aria-live': 'polite', id: 'progress-live' });
  let lastSaid = '';
  const times = h('div');
  const tl = h('div', { class: 'timeline-box' });
  const errBox = h('div');
  const artBox = h('div');
  const provBox = h('div');
  const recipeBox = h('pre', { class: 'code' });
  let logLines = [];
  const log = logPanel(id, (lines) => { logLines = lines; if (job && alive) render(); });
  const curlBox = h('pre', { class: 'code', id: 'curl-snippet' });

  function layout() {
    head.append(stateBox, actions);
    replace(body,
      progress, errBox,
      h('section', { class: 'card', 'aria-labelledby': 'tl-h' }, h('h2', { id: 'tl-h' }, 'Timeline'), tl, times),
      log.el,
      h('div', { class: 'two-col' },
        h('section', { class: 'card', 'aria-labelledby': 'art-h' }, h('h2', { id: 'art-h' }, 'Artifact'), artBox),
        h('section', { class: 'card', 'aria-labelledby': 'pv-h' }, h('h2', { id: 'pv-h' }, 'Provenance'), provBox)),
      h('section', { class: 'card', 'aria-labelledby': 'rc-h' },
        h('div', { class: 'card-head' }, h('h2', { id: 'rc-h' }, 'Recipe'),
          h('div', { class: 'actions' }, copyButton(() => recipeBox.textContent, 'Copy JSON'),
            h('a', { class: 'btn small ghost', id: 'edit-as-new', href: '#/new' }, 'Edit as new job'))),
        recipeBox),
      h('section', { class: 'card', 'aria-labelledby': 'curl-h' },
        h('div', { class: 'card-head' }, h('h2', { id: 'curl-h' }, 'Reproduce with curl'), copyButton(() => curlBox.textContent, 'Copy')),
        h('p', { class: 'help' }, 'Run from the directory that holds the model file; needs curl and jq.'),
        curlBox));
  }

  async function render() {
    const model = models.get(job.model);
    const sig = `${job.state}|${job.cancel_requested}|${caps.retry}`;
    if (rendered !== sig) {
      replace(stateBox, stateBadge(job.state));
      replace(actions, jobActions(job, () => poll(true)));
      actions.firstChild.append(h('a', { class: 'btn small', id: 'clone-job', href: cloneHref(job),
        'aria-label': `Clone job ${job.id}: a new job with its model and recipe, to edit` }, 'Clone'));
      rendered = sig;
    }
    if (!progress.querySelector('.progress')) replace(progress, h('h2', { class: 'offscreen' }, 'Progress'), progressBar(job), live);
    else updateProgress(progress.querySelector('.progress'), job);
    const say = `${job.state}, ${Math.floor(((job.progress && job.progress.fraction) || 0) * 10) * 10} percent`;
    if (say !== lastSaid) { lastSaid = say; live.textContent = `Job ${say}`; }
    const c = parseTime(job.created_at), st = parseTime(job.started_at), f = parseTime(job.finished_at);
    const attempts = attemptsFromLog(logLines);
    replace(tl, c !== null ? timeline({ created: c, started: st, finished: f, attempts }) : null,
      h('p', { class: 'legend small muted' }, h('span', { class: 'swatch queued' }), 'queued ', h('span', { class: 'swatch running' }), 'running',
        attempts.some((a) => a.outcome === 'requeued' || a.outcome === 'released') ? [h('span', { class: 'swatch lost' }), 'attempt cut short (restart)'] : null,
        attempts.some((a) => a.outcome === 'failed') ? [h('span', { class: 'swatch failed' }), 'failed'] : null,
        attempts.length ? ` · ${attempts.length} attempt${attempts.length > 1 ? 's' : ''}` : null));
    replace(times, dl([
      ['Created', timeEl(job.created_at)],
      ['Started', timeEl(job.started_at)],
      ['Finished', timeEl(job.finished_at)],
      ['Queued for', st !== null && c !== null ? fmtDuration(st - c) : job.state === 'queued' ? fmtDuration(Date.now() - c) + ' so far' : '–'],
      ['Ran for', fmtDuration(jobDuration(job))],
      ['Attempts', `${job.attempts} of ${job.max_attempts}`],
    ]));
    replace(errBox, job.error ? h('p', { class: 'callout error', role: 'alert' }, h('strong', {}, job.error.code), ': ', job.error.message) : null);
    const a = job.artifact;
    const fname = a ? `${job.id}.${a.format === 'gguf' ? 'gguf' : 'safetensors'}` : '';
    replace(artBox, a ? [
      dl([
        ['Format', a.format],
        ['Size', `${fmtBytes(a.bytes)} (${fmtInt(a.bytes)} bytes)`],
        ['sha256', h('span', { class: 'hash' }, h('code', { id: 'artifact-sha256' }, a.sha256), copyButton(() => a.sha256))],
      ]),
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'btn primary', id: 'download-artifact', onclick: async (e) => {
          e.currentTarget.disabled = true;
          try { await download(`/v1/jobs/${encodeURIComponent(job.id)}/artifact`, fname); announce('Download started'); }
          catch (err) { announce(`Download failed: ${err.message}`); }
          e.currentTarget.disabled = false;
        } }, `Download ${fname}`),
        h('a', { class: 'btn', id: 'open-report', href: `#/jobs/${encodeURIComponent(job.id)}/report` }, 'Quality report'),
        h('a', { class: 'btn ghost', href: `#/compare/${encodeURIComponent(job.model)}` }, 'Compare jobs on this model')),
    ] : h('p', { class: 'muted' }, job.state === 'succeeded' ? 'No artifact recorded.' : 'Available when the job has succeeded.'));
    if (a && !report && reportFor !== job.id) {
      reportFor = job.id;
      get(`/v1/jobs/${encodeURIComponent(job.id)}/report`).then((r) => { report = r; if (alive) render(); }).catch(() => {});
    }
    const calibId = job.recipe && typeof job.recipe.calibration === 'string' ? job.recipe.calibration : null;
    if (calibId && calibFor !== calibId) {
      calibFor = calibId;
      get(`/v1/calibrations/${encodeURIComponent(calibId)}`).then((c) => { calib = c; if (alive) render(); }).catch(() => {});
    }
    replace(provBox, dl([
      ['Model', model ? h('span', {}, `${model.name} `, h('span', { class: 'mono small muted' }, job.model)) : h('span', { class: 'mono' }, job.model)],
      ['Input sha256', h('code', { class: 'hash' }, (report && report.input && report.input.sha256) || (model && model.sha256) || '–')],
      ['Input', model ? `${model.format}, ${fmtBytes(model.bytes)}, ${fmtInt(model.tensor_count)} tensors, ${fmtInt(model.parameter_count)} parameters` : '–'],
      calibId ? ['Calibration', calib ? h('span', {}, `${calib.name} (${calib.format}, ${fmtInt(calib.entries)} entries) `,
        h('code', { class: 'hash', id: 'calibration-sha256' }, calib.sha256)) : h('span', { class: 'mono' }, calibId)] : null,
      job.retry_of ? ['Retry of', h('a', { class: 'mono', href: `#/jobs/${encodeURIComponent(job.retry_of)}` }, job.retry_of)] : null,
      ['Produced by', report ? `${report.producer || 'compressd'} ${report.version || ''}` : a ? '…' : '–'],
      report && report.totals ? ['Compression', `${fmtBytes(report.totals.file_bytes_in)} → ${fmtBytes(report.totals.file_bytes_out)} (×${report.totals.ratio.toFixed(2)}, ${report.totals.bpw.toFixed(2)} bits/weight)`] : null,
    ]));
    recipeBox.textContent = JSON.stringify(job.recipe, null, 2);
    const edit = document.getElementById('edit-as-new');
    if (edit) edit.href = cloneHref(job);
    curlBox.textContent = curlSnippet(job, model, calib);
    head.querySelector('h1').title = recipeSummary(job.recipe);
  }

  async function poll(force) {
    if (!alive) return;
    clearTimeout(timer);
    let delay = 1000;
    try {
      // a queued job changes only when a worker claims it: long-poll when the server can
      const wait = caps.wait && job && job.state === 'queued' && !force;
      ctl = new AbortController();
      const next = await get(`/v1/jobs/${encodeURIComponent(id)}${wait ? '?wait=20s' : ''}`, { signal: ctl.signal });
      if (!alive) return;
      if (!job) layout();
      job = next;
      if (!models.has(job.model)) await loadModels().catch(() => {});
      await render();
      replace(document.getElementById('page-error'));
      if (FINAL.has(job.state)) delay = 10000;
      if (wait) delay = 0;
    } catch (e) {
      if (e.name === 'AbortError') return;
      replace(document.getElementById('page-error'), h('p', { class: 'callout error', role: 'alert' }, e.message));
      delay = 3000;
    }
    if (alive) timer = setTimeout(poll, delay);
  }
  poll(false);
  return { destroy() { alive = false; clearTimeout(timer); if (ctl) ctl.abort(); log.destroy(); } };
}
