// methods.js: the compression methods the new-job form offers. From GET /v1/methods when the
// server has it (any of the usual shapes: a list or a map; parameters as a list, a map or a
// JSON schema), otherwise the built-in description of the methods every compressd has.

// The built-in description: what compressd 0.1 accepts in a recipe step.
export const BUILTIN = [
  {
    id: 'quantize.gguf',
    op: 'quantize',
    title: 'Quantize (GGUF)',
    summary: 'ggml block quantization, byte-identical to ggml: q8_0 (8.5 bits per weight), or a ' +
      'plain f16 / bf16 / f32 conversion. Output: GGUF.',
    formats: ['gguf'],
    params: [
      { name: 'type', type: 'string', enum: ['q8_0', 'f16', 'bf16', 'f32'], default: 'q8_0', required: true,
        description: 'Target type of every eligible tensor (2-D and larger; norms and biases stay as they are).' },
    ],
  },
  {
    id: 'quantize.int8',
    op: 'quantize',
    title: 'Quantize (int8, safetensors)',
    summary: 'Symmetric int8 with one float32 scale per output channel. Output: safetensors ' +
      '(each tensor W becomes W int8 plus W_scale F32).',
    formats: ['safetensors'],
    params: [
      { name: 'type', type: 'string', enum: ['int8'], default: 'int8', required: true, description: 'int8 per output channel.' },
    ],
  },
];

// Ready-made recipes for the preset picker.
export const PRESETS = [
  { id: 'q8_0', label: 'Q8_0 GGUF — 8.5 bits per weight, near lossless', recipe: { steps: [{ op: 'quantize', type: 'q8_0' }], output: { format: 'gguf' } } },
  { id: 'int8', label: 'INT8 safetensors — per-channel scales', recipe: { steps: [{ op: 'quantize', type: 'int8' }], output: { format: 'safetensors' } } },
  { id: 'f16', label: 'F16 GGUF — half precision', recipe: { steps: [{ op: 'quantize', type: 'f16' }], output: { format: 'gguf' } } },
  { id: 'bf16', label: 'BF16 GGUF — bfloat16', recipe: { steps: [{ op: 'quantize', type: 'bf16' }], output: { format: 'gguf' } } },
  { id: 'f32', label: 'F32 GGUF — full precision (conversion only)', recipe: { steps: [{ op: 'quantize', type: 'f32' }], output: { format: 'gguf' } } },
];

function normParam(name, p) {
  p = p || {};
  const en = p.enum || p.values || p.choices || p.allowed || (p.items && p.items.enum) || null;
  let type = p.type || (en ? 'string' : 'string');
  if (Array.isArray(type)) type = type.find((t) => t !== 'null') || 'string';
  return {
    name: name || p.name,
    type,
    enum: Array.isArray(en) ? en.map((x) => (typeof x === 'object' && x !== null ? (x.value ?? x.name) : x)) : null,
    default: p.default,
    minimum: p.minimum ?? p.min ?? null,
    maximum: p.maximum ?? p.max ?? null,
    step: p.step ?? (type === 'integer' ? 1 : null),
    required: !!p.required,
    description: p.description || p.summary || p.help || '',
    unit: p.unit || '',
  };
}

function normParams(ps) {
  if (!ps) return [];
  if (Array.isArray(ps)) return ps.map((p) => normParam(p.name, p));
  if (ps.properties) {
    const req = new Set(ps.required || []);
    return Object.entries(ps.properties).map(([k, v]) => Object.assign(normParam(k, v), { required: req.has(k) || !!v.required }));
  }
  return Object.entries(ps).map(([k, v]) => normParam(k, v));
}

function normMethod(key, m) {
  m = m || {};
  const id = (typeof m.id === 'string' && m.id) || m.name || key || m.op;
  const formats = m.output_formats || m.formats || (m.output_format ? [m.output_format] :
    m.output && m.output.formats ? m.output.formats : m.format ? [m.format] : null);
  const params = normParams(m.params || m.parameters || m.schema || m.options)
    .filter((p) => p.name && p.name !== 'op');
  // per-type facts (bits per weight, importance matrix) label the type choices
  if (Array.isArray(m.types)) {
    const byName = new Map(m.types.map((t) => [t.name, t]));
    for (const p of params) {
      if (!p.enum || !p.enum.some((e) => byName.has(e))) continue;
      p.labels = {};
      for (const e of p.enum) {
        const t = byName.get(e);
        if (!t) continue;
        const bits = t.bits_per_weight ?? t.bpw;
        p.labels[e] = `${e}${bits ? ` · ${bits} bits/weight` : ''}${t.requires_importance_matrix ? ' · needs an importance matrix' : ''}`;
      }
    }
  }
  return {
    id,
    op: m.op || (typeof id === 'string' ? id.split('.')[0] : id),
    title: m.title || m.label || (typeof id === 'string' && id.includes('.') ? id.replace('.', ' (') + ')' : id),
    summary: m.summary || m.description || '',
    formats: Array.isArray(formats) ? formats : formats ? [formats] : null,
    params,
  };
}

// Job-level facts from GET /v1/methods' answer ({job: {params: [...]}}): the most steps a
// recipe may have and the field that takes a calibration file, when the server says so.
export function jobFacts(answer) {
  const out = { maxSteps: null, calibration: null };
  const ps = answer && answer.job ? normParams(answer.job.params || answer.job.parameters) : [];
  const raw = answer && answer.job && Array.isArray(answer.job.params) ? answer.job.params : [];
  for (const p of raw) {
    if (p.name === 'steps' && Number.isInteger(p.max_items ?? p.maxItems)) out.maxSteps = p.max_items ?? p.maxItems;
  }
  for (const p of ps) if (/^(calibration|imatrix|importance)/.test(p.name)) { out.calibration = p.name; break; }
  return out;
}

// The methods from GET /v1/methods' answer, or BUILTIN.
export function normalizeMethods(answer) {
  if (!answer) return BUILTIN;
  let list = Array.isArray(answer) ? answer : answer.methods || answer.items || answer.data || null;
  let out;
  if (Array.isArray(list)) out = list.map((m) => normMethod(null, m));
  else if (list && typeof list === 'object') out = Object.entries(list).map(([k, m]) => normMethod(k, m));
  else if (typeof answer === 'object') out = Object.entries(answer).map(([k, m]) => normMethod(k, m));
  out = (out || []).filter((m) => m.op);
  return out.length ? out : BUILTIN;
}

// The method that would handle a recipe step (matching op, every key of the step one of its
// parameters, then an enum parameter's value): {"op":"quantize","scheme":"int4"} is not
// quantize.gguf's, which has no "scheme".
export function methodForStep(methods, step) {
  const same = methods.filter((m) => m.op === step.op);
  const generic = new Set(['op', 'include', 'exclude']);
  for (const m of same) {
    const known = Object.keys(step).every((k) => generic.has(k) || m.params.some((p) => p.name === k));
    const ok = known && m.params.every((p) => !p.enum || step[p.name] === undefined || p.enum.includes(step[p.name]));
    if (ok) return m;
  }
  return same[0] || null;
}

// The output format a method implies, if it has only one.
export function impliedFormat(method) {
  return method && method.formats && method.formats.length === 1 ? method.formats[0] : null;
}
