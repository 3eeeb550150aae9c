// api.js: the dashboard's only way to the server: JSON requests with the optional bearer
// token, raw-body uploads with progress, downloads, and feature detection (the dashboard
// adapts to what this server's API offers instead of assuming a version).

const TOKEN_KEY = 'compressd.token';
let token = '';
try { token = sessionStorage.getItem(TOKEN_KEY) || ''; } catch (_) { token = ''; }

// 'auth' (detail: {status, message}) when the server asks for a token or refuses it.
export const events = new EventTarget();

export function getToken() { return token; }
export function setToken(t) {
  token = (t || '').trim();
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch (_) { /* storage disabled: keep it in memory */ }
}

export function authHeaders(extra) {
  const hd = Object.assign({}, extra || {});
  if (token) hd.Authorization = 'Bearer ' + token;
  return hd;
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || `HTTP ${status}`);
    this.status = status;
    this.code = code || 'http_' + status;
  }
}

async function errorOf(res) {
  let code = null, message = null;
  try {
    const j = await res.json();
    if (j && j.error) { code = j.error.code; message = j.error.message; }
  } catch (_) { /* not JSON */ }
  const err = new ApiError(res.status, code, message || `${res.status} ${res.statusText}`);
  if (res.status === 401 || res.status === 403)
    events.dispatchEvent(new CustomEvent('auth', { detail: { status: res.status, message: err.message } }));
  return err;
}

// api(method, path, body?, {signal}): parsed JSON (null for 204). Throws ApiError.
export async function api(method, path, body, opts = {}) {
  const init = { method, headers: authHeaders(), signal: opts.signal, cache: 'no-store' };
  if (body !== undefined && body !== null) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  if (opts.headers) Object.assign(init.headers, opts.headers);
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', 'the server cannot be reached');
  }
  if (!res.ok) throw await errorOf(res);
  if (res.status === 204) return null;
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

export const get = (path, opts) => api('GET', path, undefined, opts);
export const post = (path, body, opts) => api('POST', path, body, opts);

// Upload a file as the raw request body (Content-Type: application/octet-stream) with
// XMLHttpRequest, whose upload events give progress. onProgress(loaded, total).
// Returns {promise (the model JSON), abort()}.
export function uploadModel(file, name, onProgress, path = '/v1/models') {
  const xhr = new XMLHttpRequest();
  const promise = new Promise((resolve, reject) => {
    const q = name ? '?name=' + encodeURIComponent(name) : '';
    xhr.open('POST', path + q);
    xhr.setRequestHeader('Content-Type', 'application/octet-stream');
    if (token) xhr.setRequestHeader('Authorization', 'Bearer ' + token);
    xhr.responseType = 'text';
    xhr.upload.addEventListener('progress', (e) => onProgress && onProgress(e.loaded, e.lengthComputable ? e.total : file.size));
    xhr.addEventListener('load', () => {
      let j = null;
      try { j = JSON.parse(xhr.responseText); } catch (_) { j = null; }
      if (xhr.status >= 200 && xhr.status < 300 && j) return resolve(j);
      const e = j && j.error ? j.error : {};
      const err = new ApiError(xhr.status, e.code, e.message || `upload failed (HTTP ${xhr.status})`);
      if (xhr.status === 401 || xhr.status === 403)
        events.dispatchEvent(new CustomEvent('auth', { detail: { status: xhr.status, message: err.message } }));
      reject(err);
    });
    xhr.addEventListener('error', () => reject(new ApiError(0, 'network', 'the upload was interrupted')));
    xhr.addEventListener('abort', () => reject(new ApiError(0, 'aborted', 'upload canceled')));
    xhr.send(file);
  });
  return { promise, abort: () => xhr.abort() };
}

// Download a job's artifact. Without a token a plain link does it (streamed to disk by the
// browser, resumable); with one, the bytes go through fetch() so the header can be sent.
export async function download(path, filename) {
  if (!token) {
    const a = document.createElement('a');
    a.href = path;
    a.download = filename || '';
    document.body.append(a);
    a.click();
    a.remove();
    return;
  }
  const res = await fetch(path, { headers: authHeaders(), cache: 'no-store' });
  if (!res.ok) throw await errorOf(res);
  const blob = await res.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = filename || '';
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

// ---- feature detection ----

// What this server's API offers. Filled by detect(); the views read it.
export const caps = {
  openapi: null,       // the OpenAPI document, if GET /v1/openapi.json exists
  methods: null,       // GET /v1/methods' answer, if it exists
  retry: false,        // POST /v1/jobs/{id}:retry exists
  wait: false,         // GET /v1/jobs/{id}?wait= long-poll exists
  dryRun: null,        // {field: 'dry_run'} or {path: '/v1/jobs:plan'} when a preview exists
  calibration: null,   // the job field that takes a calibration file's id
  calibrationUpload: '/v1/models', // where that file is uploaded (/v1/calibrations if it exists)
  authRequired: false, // the API answered 401 to an anonymous request
};

async function probe(method, path) {
  try {
    const res = await fetch(path, { method, headers: authHeaders(), cache: 'no-store' });
    return res;
  } catch (_) {
    return null;
  }
}

function schemaProps(doc, schema, depth = 0) {
  if (!schema || depth > 6) return {};
  if (schema.$ref && typeof schema.$ref === 'string') {
    const parts = schema.$ref.replace(/^#\//, '').split('/');
    let s = doc;
    for (const p of parts) s = s && s[p];
    return schemaProps(doc, s, depth + 1);
  }
  const out = Object.assign({}, schema.properties || {});
  for (const k of ['allOf', 'anyOf', 'oneOf'])
    for (const sub of schema[k] || []) Object.assign(out, schemaProps(doc, sub, depth + 1));
  return out;
}

function fromOpenapi(doc) {
  const paths = doc.paths || {};
  const has = (p, m) => paths[p] && paths[p][m];
  if (has('/v1/jobs/{id}:retry', 'post') || Object.keys(paths).some((p) => /^\/v1\/jobs\/\{[^}]+\}:retry$/.test(p) && paths[p].post))
    caps.retry = true;
  for (const [p, item] of Object.entries(paths)) {
    if (/^\/v1\/jobs\/\{[^}]+\}$/.test(p) && item.get &&
        (item.get.parameters || []).some((x) => x && x.name === 'wait')) caps.wait = true;
    if (/^\/v1\/jobs:(plan|preview|dry-?run)$/.test(p) && item.post) caps.dryRun = { path: p };
  }
  const jobPost = has('/v1/jobs', 'post');
  if (jobPost && jobPost.requestBody && jobPost.requestBody.content) {
    const c = jobPost.requestBody.content['application/json'];
    const props = c ? schemaProps(doc, c.schema) : {};
    if (!caps.dryRun && props.dry_run) caps.dryRun = { field: 'dry_run' };
    for (const k of ['calibration', 'imatrix', 'calibration_model'])
      if (props[k]) { caps.calibration = k; break; }
  }
}

// Ask the server what it can do. Never throws: anything missing means "not offered".
export async function detect() {
  const [oa, me, cal] = await Promise.all([probe('GET', '/v1/openapi.json'), probe('GET', '/v1/methods'), probe('GET', '/v1/calibrations')]);
  if (cal && cal.ok) caps.calibrationUpload = '/v1/calibrations';
  if (oa && oa.status === 401) caps.authRequired = true;
  if (oa && oa.ok) {
    try { caps.openapi = await oa.json(); fromOpenapi(caps.openapi); } catch (_) { caps.openapi = null; }
  }
  if (me && me.ok) {
    try { caps.methods = await me.json(); } catch (_) { caps.methods = null; }
  } else if (me && me.status === 401) {
    caps.authRequired = true;
  }
  // Ask the router too (a server without the description, or one ahead of it): a GET on a
  // POST-only route is 405, on no route 404; a server with the long-poll refuses a malformed
  // wait (400) before looking the job up.
  const [r, w] = await Promise.all([probe('GET', '/v1/jobs/probe:retry'), probe('GET', '/v1/jobs/probe?wait=x')]);
  caps.retry = caps.retry || (!!r && r.status === 405);
  caps.wait = caps.wait || (!!w && w.status === 400);
  return caps;
}
