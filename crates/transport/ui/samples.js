// Rates for the overview's charts: the counters of /metrics sampled every 5 s while the tab is
// signed in, kept in sessionStorage for 15 minutes so the charts survive page changes and
// reloads (and go with the token when the tab signs out or closes).

import { metrics } from './api.js';

const KEY = 'nexus.samples';
export const EVERY_MS = 5_000;
const KEEP_MS = 15 * 60_000;

/** The value of a sample line `name{labels} value`. */
function valueOf(line) {
  const end = line.lastIndexOf('}');
  const rest = end >= 0 ? line.slice(end + 1) : line.slice(line.indexOf(' '));
  const v = Number(rest.trim().split(/\s+/)[0]);
  return Number.isFinite(v) ? v : 0;
}

/** Sums the counters the charts need: events published (`nexus_events_total`), outbound calls
 * answered 2xx (delivered) and the others (failed: an error status, a refused connection, a
 * timeout) from `nexus_http_calls_total`. */
export function counters(text) {
  const c = { published: 0, delivered: 0, failed: 0 };
  for (const line of text.split('\n')) {
    if (!line || line[0] === '#') continue;
    const name = line.slice(0, line.search(/[{\s]/));
    if (name === 'nexus_events_total') {
      c.published += valueOf(line);
    } else if (name === 'nexus_http_calls_total') {
      const m = /status_code="([^"]*)"/.exec(line);
      if (m && /^2\d\d$/.test(m[1])) c.delivered += valueOf(line);
      else c.failed += valueOf(line);
    }
  }
  return c;
}

/** The samples kept, oldest first. */
export function stored() {
  try {
    const list = JSON.parse(sessionStorage.getItem(KEY) || '[]');
    return Array.isArray(list) ? list : [];
  } catch (_) {
    return [];
  }
}

function keep(list) {
  const since = Date.now() - KEEP_MS;
  sessionStorage.setItem(KEY, JSON.stringify(list.filter((s) => s.t >= since)));
}

/** Per-second rates between consecutive samples: `{published, delivered, failed}`, each a list
 * of `{t, v}`; a gap longer than three periods (the tab was closed or asleep) breaks the line,
 * and a counter that went down (a restart) starts again from its new value. */
export function rates(list = stored()) {
  const out = { published: [], delivered: [], failed: [] };
  for (let i = 1; i < list.length; i += 1) {
    const a = list[i - 1];
    const b = list[i];
    const dt = (b.t - a.t) / 1000;
    for (const k of Object.keys(out)) {
      if (dt <= 0 || dt > (3 * EVERY_MS) / 1000) {
        out[k].push({ t: b.t, v: null });
        continue;
      }
      const d = b[k] >= a[k] ? b[k] - a[k] : b[k];
      out[k].push({ t: b.t, v: d / dt });
    }
  }
  return out;
}

const listeners = new Set();
let timer = null;
let lastError = null;

/** Calls `f()` after each sample; returns the unsubscribe. */
export function onSample(f) {
  listeners.add(f);
  return () => listeners.delete(f);
}

/** The error of the last sample, or null. */
export const sampleError = () => lastError;

async function sample() {
  try {
    const c = counters(await metrics());
    keep([...stored(), { t: Date.now(), ...c }]);
    lastError = null;
  } catch (e) {
    lastError = e;
  }
  for (const f of listeners) f();
}

/** Starts sampling (at once, then every 5 s); idempotent. */
export function startSampling() {
  if (timer !== null) return;
  sample();
  timer = setInterval(sample, EVERY_MS);
}

/** Stops sampling (sign-out). */
export function stopSampling() {
  clearInterval(timer);
  timer = null;
}
