// newjob.js: upload a model (with progress), build a recipe from a preset or from forms
// generated from the server's method descriptions, preview it (dry run, when the server
// offers one) and submit it.
import { caps, post, uploadModel } from './api.js';
import { BUILTIN, PRESETS, impliedFormat, jobFacts, methodForStep, normalizeMethods } from './methods.js';
import { loadModels, models, errorBox } from './jobs.js';
import { announce, fmtBytes, fmtInt, h, replace } from './util.js';

let uid = 0;
const nextId = (p) => `${p}-${++uid}`;

export function newJobView(root, { query }) {
  const methods = normalizeMethods(caps.methods);
  const fromServer = !!caps.methods && methods !== BUILTIN;
  const facts = jobFacts(caps.methods);
  const calibField = caps.calibration || facts.calibration;
  let steps = [];              // [{method, values: {name: value}}]
  let alive = true;
  let upload = null;

  // ---- 1. upload ----
  const file = h('input', { id: 'up-file', type: 'file', accept: '.gguf,.safetensors', 'aria-describedby': 'up-help' });
  const name = h('input', { id: 'up-name', type: 'text', maxlength: '255', autocomplete: 'off', placeholder: 'file name without extension' });
  const upBtn = h('button', { type: 'submit', class: 'btn primary', id: 'up-submit' }, 'Upload');
  const upCancel = h('button', { type: 'button', class: 'btn ghost', hidden: true, onclick: () => upload && upload.abort() }, 'Cancel upload');
  const bar = h('progress', { id: 'up-progress', max: '100', value: '0', hidden: true, 'aria-describedby': 'up-status' });
  const upStatus = h('p', { id: 'up-status', class: 'status-line', role: 'status', 'aria-live': 'polite' });
  file.addEventListener('change', () => {
    const f = file.files[0];
    if (f && !name.value) name.value = f.name.replace(/\.(gguf|safetensors)$/i, '');
    upStatus.textContent = f ? `${f.name}: ${fmtBytes(f.size)}` : '';
  });
  const upForm = h('form', { class: 'card', 'aria-labelledby': 'up-h', onsubmit: async (e) => {
    e.preventDefault();
    const f = file.files[0];
    if (!f) { upStatus.textContent = 'Choose a .gguf or .safetensors file first.'; file.focus(); return; }
    upBtn.disabled = true; upCancel.hidden = false; bar.hidden = false; bar.value = 0;
    const t0 = performance.now();
    upload = uploadModel(f, name.value.trim(), (loaded, total) => {
      const pct = total ? Math.floor((100 * loaded) / total) : 0;
      bar.value = pct;
      const rate = loaded / Math.max(0.001, (performance.now() - t0) / 1000);
      upStatus.textContent = `Uploading ${pct}% · ${fmtBytes(loaded)} of ${fmtBytes(total)} · ${fmtBytes(rate)}/s`;
    });
    try {
      const m = await upload.promise;
      bar.value = 100;
      upStatus.textContent = `Uploaded ${m.name}: ${m.format}, ${fmtInt(m.tensor_count)} tensors, ${fmtInt(m.parameter_count)} parameters, sha256 ${m.sha256.slice(0, 16)}…`;
      announce('Upload complete; the model is selected below');
      models.set(m.id, m);
      fillModels(m.id);
      file.value = '';
    } catch (err) {
      upStatus.textContent = `Upload failed: ${err.message}`;
      bar.hidden = true;
    } finally {
      upload = null; upBtn.disabled = false; upCancel.hidden = true;
    }
  } },
  h('h2', { id: 'up-h' }, '1. Upload a model'),
  h('p', { id: 'up-help', class: 'help' }, 'GGUF or safetensors, sent as the raw request body. Skip this step to use a model that is already on the server.'),
  h('div', { class: 'field-row' },
    h('div', { class: 'field' }, h('label', { for: 'up-file' }, 'File'), file),
    h('div', { class: 'field' }, h('label', { for: 'up-name' }, 'Name'), name)),
  h('div', { class: 'field-row' }, upBtn, upCancel),
  bar, upStatus);

  // ---- 2. recipe ----
  const modelSel = h('select', { id: 'job-model', required: true });
  const presetSel = h('select', { id: 'job-preset' },
    PRESETS.map((p) => h('option', { value: p.id }, p.label)),
    h('option', { value: 'custom' }, 'Custom steps…'));
  const stepsBox = h('div', { class: 'steps', 'aria-live': 'off' });
  const addStep = h('button', { type: 'button', class: 'btn small ghost', onclick: () => { steps.push(newStep(methods[0])); renderSteps(); focusLastStep(); } }, '+ Add step');
  const formatSel = h('select', { id: 'job-format' },
    h('option', { value: 'auto' }, 'automatic (from the method)'),
    h('option', { value: 'gguf' }, 'GGUF'),
    h('option', { value: 'safetensors' }, 'safetensors'));
  const recipePre = h('pre', { class: 'code', id: 'recipe-json', 'aria-label': 'Recipe that will be sent' });
  const submitBtn = h('button', { type: 'submit', class: 'btn primary', id: 'job-submit' }, 'Start job');
  const previewBtn = caps.dryRun ? h('button', { type: 'button', class: 'btn', id: 'job-preview', onclick: preview }, 'Preview (dry run)') : null;
  const previewBox = h('div', { id: 'preview', 'aria-live': 'polite' });
  const jobStatus = h('p', { class: 'status-line', role: 'status', 'aria-live': 'polite' });

  let calib = null;
  if (calibField) {
    calib = h('input', { id: 'job-calib', type: 'file', 'aria-describedby': 'calib-help' });
  }
  // a clone keeps the original job's calibration (an id on the server) unless unticked or
  // replaced by a new file
  const from = query.get('from');
  let keptCalib = null, keepCalib = null;
  const fromRecipe = (() => { try { return JSON.parse(query.get('recipe') || 'null'); } catch (_) { return null; } })();
  if (fromRecipe && calibField && typeof fromRecipe[calibField] === 'string') {
    keptCalib = fromRecipe[calibField];
    keepCalib = h('input', { type: 'checkbox', id: 'job-calib-keep', checked: true });
    keepCalib.addEventListener('change', () => updateRecipe());
  }

  const jobForm = h('form', { class: 'card', 'aria-labelledby': 'job-h', onsubmit: submit },
    h('h2', { id: 'job-h' }, '2. Describe the job'),
    h('div', { class: 'field-row' },
      h('div', { class: 'field grow' }, h('label', { for: 'job-model' }, 'Model'), modelSel),
      h('div', { class: 'field grow' }, h('label', { for: 'job-preset' }, 'Start from'), presetSel)),
    h('fieldset', { class: 'steps-fieldset' },
      h('legend', {}, 'Steps ', h('span', { class: 'muted small' }, fromServer ? '(methods from GET /v1/methods)' : '(built-in method list)')),
      stepsBox, addStep),
    h('div', { class: 'field-row' },
      h('div', { class: 'field' }, h('label', { for: 'job-format' }, 'Output format'), formatSel)),
    keepCalib && h('div', { class: 'field check' }, h('div', { class: 'check-row' }, keepCalib,
      h('label', { for: 'job-calib-keep' }, 'Use the calibration of the cloned job ', h('code', {}, keptCalib)))),
    calib && h('div', { class: 'field' },
      h('label', { for: 'job-calib' }, 'Calibration file (optional)'), calib,
      h('p', { id: 'calib-help', class: 'help' }, 'An importance matrix (llama-imatrix GGUF or .dat) for weighted quantization; uploaded first, then named in the job.')),
    h('details', { class: 'recipe-details', open: true }, h('summary', {}, 'Recipe (JSON)'), recipePre),
    h('div', { class: 'field-row' }, previewBtn, submitBtn),
    jobStatus, previewBox);

  replace(root,
    h('div', { class: 'page-head' }, h('h1', {}, 'New job')),
    from ? h('p', { class: 'callout', id: 'clone-note', role: 'note' }, 'A clone of job ',
      h('a', { class: 'mono', href: `#/jobs/${encodeURIComponent(from)}` }, from),
      ': its model and recipe are filled in below. Edit them, preview, then start the new job.') : null,
    errorBox(),
    h('div', { class: 'two-col' }, upForm, jobForm));

  // ---- behaviour ----
  function fillModels(select) {
    const keep = select || modelSel.value || query.get('model') || '';
    const list = [...models.values()];
    replace(modelSel, list.length ? null : h('option', { value: '' }, 'no models yet: upload one'),
      list.map((m) => h('option', { value: m.id, selected: m.id === keep }, `${m.name} — ${m.format}, ${fmtBytes(m.bytes)}`)));
    if (!keep && list.length) modelSel.value = list[0].id;
    updateRecipe();
  }

  function newStep(method, values) {
    const v = {};
    for (const p of method.params) {
      v[p.name] = values && values[p.name] !== undefined ? values[p.name] : p.default;
      // a required choice with a single value (e.g. "method": "nm") is that value
      if (v[p.name] === undefined && p.required && p.enum && p.enum.length === 1) v[p.name] = p.enum[0];
    }
    return { method, values: v };
  }

  function stepsFromRecipe(recipe) {
    steps = recipe.steps.map((st) => {
      const m = methodForStep(methods, st) || methods[0];
      return newStep(m, st);
    });
  }

  function paramField(step, p, idx) {
    const id = nextId(`s${idx}-${p.name}`);
    const help = p.description ? h('p', { class: 'help', id: id + '-help' }, p.description) : null;
    let input;
    const val = step.values[p.name];
    if (p.enum) {
      // an optional choice without a default starts unset ("type" and "preset" exclude each other)
      const unset = val === undefined || val === null;
      input = h('select', { id },
        !p.required || unset ? h('option', { value: '', selected: unset }, p.required ? 'choose…' : '— not set —') : null,
        p.enum.map((e) => h('option', { value: String(e), selected: !unset && String(e) === String(val) }, (p.labels && p.labels[e]) || String(e))));
    } else if (p.type === 'boolean' && !p.enum) {
      input = h('input', { id, type: 'checkbox', checked: !!val });
    } else if (p.type === 'integer' || p.type === 'number') {
      input = h('input', { id, type: 'number', value: val ?? '', min: p.minimum ?? null, max: p.maximum ?? null, step: p.step ?? 'any' });
    } else {
      input = h('input', { id, type: 'text', value: val === undefined || val === null ? '' : typeof val === 'object' ? JSON.stringify(val) : String(val) });
    }
    if (help) input.setAttribute('aria-describedby', help.id);
    if (p.required) input.required = true;
    input.addEventListener(input.tagName === 'SELECT' || input.type === 'checkbox' ? 'change' : 'input', () => {
      let v = p.type === 'boolean' && !p.enum ? input.checked : input.value;
      if (p.enum) v = input.value === '' ? undefined : p.enum.find((e) => String(e) === input.value);
      if ((p.type === 'integer' || p.type === 'number') && v !== '') v = Number(v);
      if (v === '' && !p.required) v = undefined;
      else if (p.type === 'object' && typeof v === 'string') { try { v = JSON.parse(v); } catch (_) { /* the server says what is wrong */ } }
      else if (p.type === 'array' && typeof v === 'string') {
        try { v = JSON.parse(v); } catch (_) { v = v.split(',').map((x) => x.trim()).filter(Boolean); }
      }
      step.values[p.name] = v;
      presetSel.value = 'custom';
      updateRecipe();
    });
    const label = h('label', { for: id }, p.name, p.unit ? ` (${p.unit})` : '',
      (p.minimum !== null || p.maximum !== null) && (p.type === 'integer' || p.type === 'number')
        ? h('span', { class: 'muted small' }, ` ${p.minimum ?? ''}…${p.maximum ?? ''}`) : null);
    if (p.type === 'boolean' && !p.enum) return h('div', { class: 'field check' }, h('div', { class: 'check-row' }, input, label), help);
    return h('div', { class: 'field' }, label, input, help);
  }

  function renderSteps() {
    replace(stepsBox, steps.map((step, i) => {
      const msel = h('select', { id: nextId(`s${i}-method`), 'aria-label': `Step ${i + 1} method` },
        methods.map((m) => h('option', { value: m.id, selected: m === step.method }, m.title)));
      msel.addEventListener('change', () => {
        steps[i] = newStep(methods.find((m) => m.id === msel.value));
        presetSel.value = 'custom';
        renderSteps();
        stepsBox.querySelectorAll('.step-head select')[i].focus();
      });
      const remove = steps.length > 1 ? h('button', { type: 'button', class: 'btn small ghost', 'aria-label': `Remove step ${i + 1}`,
        onclick: () => { steps.splice(i, 1); presetSel.value = 'custom'; renderSteps(); } }, 'Remove') : null;
      return h('div', { class: 'step', role: 'group', 'aria-label': `Step ${i + 1}` },
        h('div', { class: 'step-head' }, h('span', { class: 'step-n' }, String(i + 1)), msel, remove),
        step.method.summary ? h('p', { class: 'help' }, step.method.summary) : null,
        h('div', { class: 'field-row' }, step.method.params.map((p) => paramField(step, p, i))));
    }));
    // "Add step" until the server's max_items for steps (none given: no limit shown)
    addStep.hidden = facts.maxSteps !== null && steps.length >= facts.maxSteps;
    updateRecipe();
  }

  function focusLastStep() {
    const sels = stepsBox.querySelectorAll('.step-head select');
    if (sels.length) sels[sels.length - 1].focus();
  }

  function recipe() {
    const r = {
      model: modelSel.value,
      steps: steps.map((st) => {
        const o = { op: st.method.op };
        for (const [k, v] of Object.entries(st.values)) if (v !== undefined && v !== '') o[k] = v;
        return o;
      }),
    };
    let fmt = formatSel.value;
    if (fmt === 'auto') fmt = steps.map((st) => impliedFormat(st.method)).filter(Boolean).pop() || null;
    if (fmt) r.output = { format: fmt };
    if (keepCalib && keepCalib.checked) r[calibField] = keptCalib;
    return r;
  }

  function updateRecipe() {
    recipePre.textContent = JSON.stringify(recipe(), null, 2);
  }

  presetSel.addEventListener('change', () => {
    const p = PRESETS.find((x) => x.id === presetSel.value);
    if (p) { stepsFromRecipe(p.recipe); formatSel.value = (p.recipe.output && p.recipe.output.format) || 'auto'; renderSteps(); }
  });
  formatSel.addEventListener('change', updateRecipe);
  modelSel.addEventListener('change', updateRecipe);

  async function withCalibration(body) {
    if (!calib || !calib.files[0]) return body;
    jobStatus.textContent = 'Uploading the calibration file…';
    const m = await uploadModel(calib.files[0], calib.files[0].name, () => {}, caps.calibrationUpload).promise;
    body[calibField] = m.id;
    return body;
  }

  async function preview() {
    if (!modelSel.value) { jobStatus.textContent = 'Choose or upload a model first.'; return; }
    previewBtn.disabled = true;
    jobStatus.textContent = 'Planning…';
    try {
      let body = await withCalibration(recipe());
      let res;
      if (caps.dryRun.path) res = await post(caps.dryRun.path, body);
      else res = await post('/v1/jobs', Object.assign(body, { [caps.dryRun.field]: true }));
      jobStatus.textContent = '';
      renderPlan(res);
    } catch (e) {
      jobStatus.textContent = `The server refused this recipe: ${e.message}`;
    } finally { previewBtn.disabled = false; }
  }

  function renderPlan(res) {
    // the plan itself ({format, bytes, tensors, dry_run: true, ...}) or wrapped in plan/preview
    const plan = (res && [res.plan, res.preview].find((x) => x && typeof x === 'object')) || res || {};
    const tensors = plan.tensors || [];
    const outBytes = plan.bytes ?? plan.output_bytes ?? (plan.output && plan.output.bytes);
    const inBytes = tensors.reduce((a, t) => a + (t.bytes_in || 0), 0);
    replace(previewBox, h('section', { class: 'card inset', 'aria-labelledby': 'pv-h' },
      h('h3', { id: 'pv-h' }, 'Dry run: planned output (nothing was queued)'),
      h('p', {}, `Output: ${plan.format || '?'} file of ${fmtBytes(outBytes)}`,
        inBytes ? ` from ${fmtBytes(inBytes)} of tensor data (ratio ${(inBytes / Math.max(1, outBytes)).toFixed(2)}).` : '.'),
      tensors.length ? h('div', { class: 'table-wrap short' }, h('table', { class: 'compact' },
        h('thead', {}, h('tr', {}, ['Tensor', 'Shape', 'In', 'Out', 'Bytes out', 'Note'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, tensors.map((t) => h('tr', {},
          h('th', { scope: 'row', class: 'mono small' }, t.name),
          h('td', { class: 'mono small' }, (t.shape || []).join('×')),
          h('td', {}, t.input_dtype || ''), h('td', {}, t.output_type || ''),
          h('td', { class: 'num' }, fmtBytes(t.bytes_out)), h('td', { class: 'muted small wrap' }, t.note || '')))))) : null));
    announce('Dry run ready');
  }

  async function submit(e) {
    e.preventDefault();
    if (!modelSel.value) { jobStatus.textContent = 'Choose or upload a model first.'; modelSel.focus(); return; }
    submitBtn.disabled = true;
    jobStatus.textContent = 'Submitting…';
    try {
      const body = await withCalibration(recipe());
      const job = await post('/v1/jobs', body);
      announce(`Job ${job.id} submitted`);
      location.hash = `#/jobs/${encodeURIComponent(job.id)}`;
    } catch (err) {
      jobStatus.textContent = `The server refused the job: ${err.message}`;
      submitBtn.disabled = false;
    }
  }

  // initial state: a preset, or a recipe handed over by Clone / "Edit as new job"
  let initial = PRESETS[0].recipe;
  if (fromRecipe && Array.isArray(fromRecipe.steps)) { initial = fromRecipe; presetSel.value = 'custom'; }
  if (initial.output && initial.output.format) formatSel.value = initial.output.format;
  stepsFromRecipe(initial);
  renderSteps();
  loadModels().then(() => alive && fillModels()).catch(() => fillModels());
  return { destroy() { alive = false; if (upload) upload.abort(); } };
}
