// Live tail: the WebSocket (API.md section 7) with a glob filter, pause, and resume from a
// sequence (`since`, so nothing is missed in between). The list keeps the newest 500 events.

import { get, token } from '../api.js';
import {
  ErrorBox, Head, Seq, Time, html, useEffect, useRef, useState,
} from '../ui.js';

const MAX_ROWS = 500;
const FILTER_KEY = 'nexus.live.filter';

/** `PAYMENT_*, MINT_*` -> ["PAYMENT_*", "MINT_*"]; nothing -> ["*"]. */
function globs(text) {
  const list = text.split(/[\s,]+/).map((g) => g.trim()).filter(Boolean);
  return list.length ? list : ['*'];
}

/** Whether `type` matches one of `patterns` (`*` is any run of characters, as on the server):
 * frames still on their way under a previous filter are not shown under the new one. */
function matches(patterns, type) {
  const escape = (text) => text.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
  return patterns.some((p) => new RegExp(`^${p.split('*').map(escape).join('.*')}$`).test(type));
}

function preview(payload) {
  const s = JSON.stringify(payload);
  return s.length > 160 ? `${s.slice(0, 157)}…` : s;
}

export function Live({ ready }) {
  const [filter, setFilter] = useState(() => sessionStorage.getItem(FILTER_KEY) || '*');
  const [since, setSince] = useState('');
  const [paused, setPaused] = useState(false);
  const [rows, setRows] = useState([]);
  const [status, setStatus] = useState('connecting');
  const [error, setError] = useState(null);
  const socket = useRef(null);
  const last = useRef(0);
  const backoff = useRef(0);
  const reconnect = useRef(null);
  const announced = useRef(false);
  // The patterns the connection is (or is being) subscribed to.
  const current = useRef(globs(filter));

  const markReady = () => {
    if (!announced.current) {
      announced.current = true;
      ready();
    }
  };

  const add = (frame) => {
    if (!matches(current.current, frame.event)) return;
    if (frame.sequence > last.current) last.current = frame.sequence;
    setRows((list) => {
      if (list.some((r) => r.sequence === frame.sequence)) return list;
      const row = {
        sequence: frame.sequence,
        type: frame.event,
        id: frame.id,
        payload: frame.payload,
        timestamp: frame.timestamp,
      };
      const next = list.length && frame.sequence < list[0].sequence
        ? [...list, row].sort((a, b) => b.sequence - a.sequence)
        : [row, ...list];
      return next.length > MAX_ROWS ? next.slice(0, MAX_ROWS) : next;
    });
  };

  const close = () => {
    clearTimeout(reconnect.current);
    const ws = socket.current;
    socket.current = null;
    if (ws) {
      ws.onclose = null;
      ws.close(1000, 'closed by the console');
    }
  };

  const connect = (patterns, from) => {
    close();
    current.current = patterns;
    setStatus('connecting');
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const ws = new WebSocket(`${scheme}://${location.host}/ws?token=${encodeURIComponent(token() || '')}`);
    socket.current = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      const frame = { action: 'subscribe', events: patterns };
      if (from !== null && from !== undefined) frame.since = from;
      ws.send(JSON.stringify(frame));
      setStatus('subscribing');
    };
    ws.onmessage = (m) => {
      let frame;
      try {
        frame = JSON.parse(m.data);
      } catch (_) {
        return;
      }
      if (frame.event !== undefined && frame.sequence !== undefined) {
        add(frame);
      } else if (frame.ack === 'subscribe') {
        backoff.current = 0;
        setError(null);
        setStatus(`live: ${frame.events.join(', ')}`);
        markReady();
      } else if (frame.error) {
        setError({
          code: frame.error.code,
          message: frame.error.message,
          requestId: 'none (a WebSocket frame)',
        });
        markReady();
      }
    };
    ws.onclose = async (ev) => {
      socket.current = null;
      const resumeFrom = last.current || from;
      // Too slow for the buffer (1013): resume at once where the list stopped.
      const delay = ev.code === 1013 ? 0 : Math.min(15_000, 1000 * 2 ** backoff.current);
      backoff.current += 1;
      if (!opened) {
        // The upgrade was refused or the server is away: a token that no longer works signs
        // the tab out (through the API's 401); anything else is shown and retried.
        try {
          await get('/api/retry/stats');
        } catch (e) {
          if (e.status === 401) return;
          setError(e);
        }
      }
      setStatus(`disconnected (code ${ev.code}); reconnecting in ${Math.round(delay / 1000)} s`);
      markReady();
      reconnect.current = setTimeout(() => connect(current.current, resumeFrom), delay);
    };
  };

  useEffect(() => {
    connect(globs(filter), null);
    return close;
  }, []);

  const apply = (e) => {
    e.preventDefault();
    sessionStorage.setItem(FILTER_KEY, filter);
    const patterns = globs(filter);
    const text = since.trim();
    const from = text === '' ? null : Number(text);
    if (text !== '' && (!Number.isInteger(from) || from < 0)) {
      setError({ code: 'VALIDATION_ERROR', message: `"${text}" is not a sequence number`, requestId: 'none (checked in the browser)' });
      return;
    }
    setRows([]);
    setError(null);
    const ws = socket.current;
    if (from === null && !paused && ws && ws.readyState === WebSocket.OPEN) {
      // On the open connection: the new patterns apply from the moment the server reads the
      // frame, with no reconnection in between in which events could pass unseen.
      ws.send(JSON.stringify({ action: 'unsubscribe', events: current.current }));
      ws.send(JSON.stringify({ action: 'subscribe', events: patterns }));
      current.current = patterns;
      setStatus('subscribing');
      return;
    }
    setPaused(false);
    connect(patterns, from === null ? last.current || null : from);
  };

  const pause = () => {
    close();
    setPaused(true);
    setSince(String(last.current));
    setStatus(`paused after sequence ${last.current}`);
  };

  const resume = () => {
    const text = since.trim();
    const from = text === '' ? last.current || null : Number(text);
    if (text !== '' && (!Number.isInteger(from) || from < 0)) {
      setError({ code: 'VALIDATION_ERROR', message: `"${text}" is not a sequence number`, requestId: 'none (checked in the browser)' });
      return;
    }
    setPaused(false);
    connect(globs(filter), from);
  };

  return html`
    <${Head} title="Live tail" />
    <form class="toolbar" onSubmit=${apply}>
      <div class="field">
        <label for="live-filter">Type filter (glob)</label>
        <input id="live-filter" value=${filter} onInput=${(e) => setFilter(e.currentTarget.value)}
          aria-describedby="live-filter-hint" autocomplete="off" spellcheck="false" />
        <small id="live-filter-hint">Comma-separated, such as PAYMENT_*, MINT_*</small>
      </div>
      <div class="field">
        <label for="live-since">Resume from sequence</label>
        <input id="live-since" inputmode="numeric" value=${since} aria-describedby="live-since-hint"
          onInput=${(e) => setSince(e.currentTarget.value)} autocomplete="off" />
        <small id="live-since-hint">Events after this sequence are sent first</small>
      </div>
      <div class="buttons">
        <button type="submit">Apply filter</button>
        ${paused
          ? html`<button type="button" class="primary" onClick=${resume}>Resume</button>`
          : html`<button type="button" onClick=${pause}>Pause</button>`}
        <button type="button" onClick=${() => setRows([])}>Clear</button>
      </div>
    </form>
    <p class="status" role="status">${status} · ${rows.length} shown (newest ${MAX_ROWS} kept)</p>
    <${ErrorBox} error=${error} />
    ${!rows.length && html`<p class="muted">No event yet: new events matching the filter appear here as they are stored.</p>`}
    <ol id="live-list" class="live-list" reversed aria-label="Events, newest first">
      ${rows.map((r) => html`<li key=${r.sequence} data-sequence=${r.sequence} data-type=${r.type}>
        <span class="when"><${Time} value=${r.timestamp} /> <${Seq} n=${r.sequence} /></span>
        <strong class="type">${r.type}</strong>
        <a href=${`#/events/${encodeURIComponent(r.id)}`} class="id">${r.id}</a>
        <code class="payload">${preview(r.payload)}</code>
      </li>`)}
    </ol>`;
}
