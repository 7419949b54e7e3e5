// Small building blocks every page shares: errors, times, dialogs, tables, charts, polling.

import {
  html,
  useCallback,
  useEffect,
  useMemo,
  useRef,
  useState,
} from './vendor/standalone.module.js';

export { html, useCallback, useEffect, useMemo, useRef, useState };

/** An API error (or a failed request) with the server's code, message and request id. */
export function ErrorBox({ error }) {
  if (!error) return null;
  const details = error.details && typeof error.details === 'object'
    ? Object.entries(error.details)
      .filter(([, v]) => v !== null && typeof v !== 'object')
      .map(([k, v]) => `${k}: ${v}`)
      .join(', ')
    : '';
  return html`<div role="alert" class="error">
    <p><strong class="code">${error.code || 'ERROR'}</strong> ${error.message}</p>
    ${details && html`<p class="details">${details}</p>`}
    <p class="request-id">Request id: <code>${error.requestId || 'none'}</code></p>
  </div>`;
}

const TIME_FORMAT = new Intl.DateTimeFormat(undefined, {
  year: 'numeric',
  month: '2-digit',
  day: '2-digit',
  hour: '2-digit',
  minute: '2-digit',
  second: '2-digit',
  fractionalSecondDigits: 3,
  hour12: false,
  timeZoneName: 'short',
});

/** A point in time (RFC 3339 text or Unix milliseconds) in the browser's time zone. */
export function Time({ value, none = 'never' }) {
  if (value === null || value === undefined || value === '') return html`<span class="muted">${none}</span>`;
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return html`<span>${String(value)}</span>`;
  return html`<time datetime=${d.toISOString()} title=${d.toISOString()}>${TIME_FORMAT.format(d)}</time>`;
}

/** A sequence number, shown beside a time. */
export function Seq({ n }) {
  return html`<span class="seq" title="sequence">#${n}</span>`;
}

/** JSON, indented, in a scrolling block. */
export function Json({ value, id }) {
  return html`<pre class="json" id=${id} tabindex="0">${JSON.stringify(value, null, 2)}</pre>`;
}

/** A table that scrolls inside its own box at narrow widths. */
export function TableWrap({ label, children }) {
  return html`<div class="table-wrap" role="region" aria-label=${label} tabindex="0">${children}</div>`;
}

/** A modal confirmation (`<dialog>`): Escape or "Cancel" closes it, "Confirm" runs the action. */
export function Confirm({ open, title, children, onConfirm, onCancel, danger = true }) {
  const ref = useRef(null);
  useEffect(() => {
    const d = ref.current;
    if (!d) return;
    if (open && !d.open) d.showModal();
    if (!open && d.open) d.close();
  }, [open]);
  return html`<dialog ref=${ref} class="confirm" aria-label=${title} onClose=${onCancel}>
    <h2>${title}</h2>
    <div class="dialog-body">${children}</div>
    <div class="actions">
      <button type="button" onClick=${onCancel}>Cancel</button>
      <button type="button" class=${danger ? 'danger' : 'primary'} onClick=${onConfirm}>Confirm</button>
    </div>
  </dialog>`;
}

/** Calls `f` every `ms` while the component is shown and the tab visible. */
export function useEvery(f, ms) {
  useEffect(() => {
    const timer = setInterval(() => {
      if (document.visibilityState === 'visible') f();
    }, ms);
    return () => clearInterval(timer);
  }, [f, ms]);
}

/** Loads once per change of `deps`: `[state, reload]` where state is `{data, error, loading}`;
 * calls `ready()` after the first answer (data or error) has been rendered. */
export function useLoad(load, deps, ready) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const run = useCallback(async () => {
    setState((s) => ({ ...s, loading: true }));
    try {
      const data = await load();
      setState({ data, error: null, loading: false });
    } catch (error) {
      setState((s) => ({ data: s.data, error, loading: false }));
    }
    if (ready) ready();
  }, deps);
  useEffect(() => {
    run();
  }, [run]);
  return [state, run];
}

// The stack of the API's cursors a paged list has walked: the current page's cursor (null for the
// first page), back one page, on to the page after `next`.
export function useCursors() {
  const [cursors, setCursors] = useState([]);
  return {
    cursor: cursors.length ? cursors[cursors.length - 1] : null,
    first: !cursors.length,
    back: () => setCursors((c) => c.slice(0, -1)),
    forward: (next) => setCursors((c) => [...c, next]),
  };
}

// The two paging buttons of a list walked with `useCursors`; `next` is the API's nextCursor.
export function Pager({ pages, next, back = 'Previous', forward = 'Next' }) {
  return html`<button type="button" onClick=${pages.back} disabled=${pages.first}>${back}</button>
      <button type="button" onClick=${() => pages.forward(next)} disabled=${!next}>${forward}</button>`;
}

export const fmt = {
  int: (n) => (n === null || n === undefined ? '–' : Number(n).toLocaleString()),
  rate: (n) => (n === null || n === undefined ? '–' : `${n < 10 ? n.toFixed(2) : n.toFixed(0)}/s`),
  bytes(n) {
    if (n === null || n === undefined) return '–';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let v = n;
    let i = 0;
    while (v >= 1024 && i < units.length - 1) {
      v /= 1024;
      i += 1;
    }
    return `${i ? v.toFixed(1) : v} ${units[i]}`;
  },
  seconds(s) {
    if (s === null || s === undefined) return '–';
    const d = Math.floor(s / 86400);
    const h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60);
    return d ? `${d} d ${h} h` : h ? `${h} h ${m} min` : m ? `${m} min ${s % 60} s` : `${s} s`;
  },
  ms: (n) => (n === null || n === undefined ? '–' : `${Number(n).toLocaleString()} ms`),
};

/** A small line chart of `points` ([{t, v}], v null for a gap) as inline SVG; with fewer than
 * two values there is no line yet, and the chart says `empty` instead. */
export function Spark({ label, points, empty = 'collecting samples' }) {
  const w = 240;
  const h = 48;
  const values = points.filter((p) => p.v !== null).map((p) => p.v);
  const last = values.length ? values[values.length - 1] : null;
  const max = Math.max(1e-9, ...values);
  const t1 = points.length ? points[points.length - 1].t : 0;
  const t0 = Math.min(points.length ? points[0].t : 0, t1 - 60_000);
  const x = (t) => ((t - t0) / Math.max(1, t1 - t0)) * (w - 2) + 1;
  const y = (v) => h - 2 - (v / max) * (h - 4);
  let path = '';
  let pen = false;
  for (const p of points) {
    if (p.v === null) {
      pen = false;
      continue;
    }
    path += `${pen ? 'L' : 'M'}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)} `;
    pen = true;
  }
  const now = last === null ? 'no samples yet' : `${fmt.rate(last)}`;
  const minutes = Math.round((t1 - t0) / 60000);
  const described = `${label}: ${now}; peak ${fmt.rate(values.length ? max : null)} over the last ${minutes} min`;
  const collecting = values.length < 2;
  return html`<figure class="spark-box">
    <figcaption><span>${label}</span> <strong>${now}</strong></figcaption>
    <div class="spark-wrap">
      <svg class="spark" viewBox=${`0 0 ${w} ${h}`} width=${w} height=${h} role="img"
        aria-label=${collecting ? `${label}: ${empty}` : described} preserveAspectRatio="none">
        <line class="axis" x1="0" y1=${h - 1} x2=${w} y2=${h - 1} />
        ${!collecting && path && html`<path class="line" d=${path.trim()} />`}
      </svg>
      ${collecting && html`<span class="spark-empty" aria-hidden="true">${empty}</span>`}
    </div>
  </figure>`;
}

/** Page heading plus the line of controls beside it. */
export function Head({ title, children }) {
  return html`<div class="page-head"><h1 tabindex="-1">${title}</h1>${children && html`<div class="tools">${children}</div>`}</div>`;
}
