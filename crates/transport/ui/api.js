// The admin API as the console uses it: the token (sessionStorage only), the envelope, errors
// that carry the server's code, message and request id, and a single place where a 401 signs
// the tab out.

const TOKEN_KEY = 'nexus.token';

/** The admin token of this tab, or null. */
export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

/** Keeps the token for this tab only (sessionStorage: gone when the tab closes). */
export function keepToken(value) {
  sessionStorage.setItem(TOKEN_KEY, value);
}

/** Forgets everything the tab kept: the token and the overview's samples. */
export function forget() {
  sessionStorage.clear();
}

/** An error answer (or a failed request), with what the operator needs to report it. */
export class ApiError extends Error {
  constructor({ status, code, message, requestId, details }) {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId;
    this.details = details;
  }
}

let onUnauthorized = () => {};

/** Called with the ApiError of any 401 after sign-in (the app returns to the login form). */
export function whenUnauthorized(handler) {
  onUnauthorized = handler;
}

/** A request id of our own, sent as X-Request-Id, so even a request that never got an answer
 * can be named. */
export function newRequestId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  // Outside a secure context (plain http to another host) randomUUID is missing.
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

async function send(method, path, { body, auth = token(), envelope = true, text = false, probe = false } = {}) {
  const requestId = newRequestId();
  const headers = { 'X-Request-Id': requestId };
  if (auth) headers.Authorization = `Bearer ${auth}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
    });
  } catch (e) {
    throw new ApiError({
      status: 0,
      code: 'NETWORK_ERROR',
      message: `${method} ${path} got no answer: ${e.message}`,
      requestId,
    });
  }
  const answeredId = response.headers.get('X-Request-Id') || requestId;
  if (text && response.ok) return response.text();
  let json = null;
  try {
    json = await response.json();
  } catch (_) {
    json = null;
  }
  if (!response.ok || (envelope && (!json || json.success !== true))) {
    const error = json && json.error ? json.error : {};
    const failure = new ApiError({
      status: response.status,
      code: error.code || `HTTP_${response.status}`,
      message: error.message || `${method} ${path} answered ${response.status} ${response.statusText}`,
      requestId: (json && json.requestId) || answeredId,
      details: error.details,
    });
    // A 401 on a token being tried stays on the login form; later, it signs the tab out.
    if (response.status === 401 && auth && !probe) onUnauthorized(failure);
    throw failure;
  }
  return envelope ? { data: json.data, meta: json.meta || {}, requestId: answeredId } : json;
}

/** GET an admin resource: `{data, meta}`. */
export const get = (path) => send('GET', path);
/** POST, PUT, PATCH or DELETE with a JSON body. */
export const call = (method, path, body) => send(method, path, { body });
/** A health body (plain JSON, no envelope, no token needed). */
export const health = (path) => send('GET', path, { envelope: false, auth: null });
/** The Prometheus text of /metrics. */
export const metrics = () => send('GET', '/metrics', { text: true, auth: null });

/** Checks a token before keeping it: the contract's probe is GET /api/retry/stats. */
export async function signIn(candidate) {
  await send('GET', '/api/retry/stats', { auth: candidate, probe: true });
  keepToken(candidate);
}

/** A query string of the given parameters, empty values left out. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

/** A path segment, percent-encoded (event ids, breaker targets). */
export const seg = (s) => encodeURIComponent(s);
