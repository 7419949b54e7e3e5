// Dead letters: payload and error of each, redrive or delete the selected ones or all, after
// a confirmation; selected ids go in chunks of 100 with a progress bar.

import { call, get, query } from '../api.js';
import {
  Confirm, ErrorBox, Head, Json, Seq, TableWrap, Time, Pager, html, useCursors, useLoad, useState,
} from '../ui.js';

const CHUNK = 100;
const VERB = { redrive: 'Redrive', delete: 'Delete' };
const DONE = { redrive: 'redriven', delete: 'deleted' };

const count = (n) => `${n} dead letter${n === 1 ? '' : 's'}`;

/** The last error, with the status in front unless the error already names it ("HTTP 500",
 * "HTTP 500: …"): the status is shown once. */
function lastError(l) {
  const text = l.lastError || '';
  if (l.lastStatus === null || l.lastStatus === undefined) return text;
  const named = new RegExp(`\\b${Number(l.lastStatus)}\\b`).test(text);
  if (named) return text;
  return html`<strong>HTTP ${l.lastStatus}</strong>${text ? ` ${text}` : ''}`;
}

function request(kind, body) {
  return kind === 'redrive'
    ? call('POST', '/api/retry/dead-letters/redrive', body)
    : call('DELETE', '/api/retry/dead-letters', body);
}

export function DeadLetters({ ready }) {
  const pages = useCursors();
  const { cursor } = pages;
  const [state, reload] = useLoad(async () => {
    const { data, meta } = await get(`/api/retry/dead-letters${query({ limit: 100, cursor })}`);
    return { letters: data, next: meta.nextCursor };
  }, [cursor], ready);
  const [selected, setSelected] = useState(() => new Set());
  const [pending, setPending] = useState(null); // {kind, scope}
  const [progress, setProgress] = useState(null); // {value, max} (value null: indeterminate)
  const [result, setResult] = useState('');
  const [error, setError] = useState(null);
  const letters = state.data ? state.data.letters : [];

  const toggle = (id) => {
    const next = new Set(selected);
    if (next.has(id)) next.delete(id);
    else next.add(id);
    setSelected(next);
  };
  const allOnPage = letters.length > 0 && letters.every((l) => selected.has(l.id));
  const toggleAll = () => setSelected(allOnPage ? new Set() : new Set(letters.map((l) => l.id)));

  const run = async () => {
    const { kind, scope } = pending;
    setPending(null);
    setError(null);
    setResult('');
    let count = 0;
    try {
      if (scope === 'all') {
        setProgress({ value: null, max: 1 });
        const { data } = await request(kind, {});
        count = data[DONE[kind]];
        setProgress({ value: 1, max: 1 });
        setResult(`${VERB[kind]} all: ${count} ${DONE[kind]}.`);
      } else {
        const ids = [...selected];
        setProgress({ value: 0, max: ids.length });
        for (let i = 0; i < ids.length; i += CHUNK) {
          const chunk = ids.slice(i, i + CHUNK);
          const { data } = await request(kind, { ids: chunk });
          count += data[DONE[kind]];
          setProgress({ value: Math.min(ids.length, i + chunk.length), max: ids.length });
        }
        setResult(`${count} of ${ids.length} selected ${DONE[kind]}${count < ids.length ? ' (the others were gone already)' : ''}.`);
      }
      setSelected(new Set());
    } catch (e) {
      setError(e);
      setResult(`Stopped: ${count} ${DONE[kind]} before the error.`);
    }
    reload();
  };

  const ask = (kind, scope) => setPending({ kind, scope });
  const busy = progress !== null && progress.value !== progress.max;
  const none = selected.size === 0;

  return html`
    <${Head} title="Dead letters">
      <button type="button" onClick=${reload}>Refresh</button>
    <//>
    <div class="toolbar buttons">
      <button type="button" onClick=${() => ask('redrive', 'selected')} disabled=${none || busy}>Redrive selected</button>
      <button type="button" class="danger" onClick=${() => ask('delete', 'selected')} disabled=${none || busy}>Delete selected</button>
      <button type="button" onClick=${() => ask('redrive', 'all')} disabled=${busy}>Redrive all</button>
      <button type="button" class="danger" onClick=${() => ask('delete', 'all')} disabled=${busy}>Delete all</button>
      <span class="muted">${selected.size} selected</span>
    </div>
    <div class="progress-line">
      <label for="dl-progress">Progress</label>
      ${progress && progress.value === null
        ? html`<progress id="dl-progress" max="1"></progress>`
        : html`<progress id="dl-progress" max=${progress ? progress.max : 1} value=${progress ? progress.value : 0}></progress>`}
      <span id="dl-result" role="status">${result}</span>
    </div>
    <${ErrorBox} error=${error || state.error} />
    <${TableWrap} label="Dead letters">
      <table id="dl-table">
        <thead><tr>
          <th scope="col"><label class="check"><input type="checkbox" checked=${allOnPage} onChange=${toggleAll} />
            <span class="visually-hidden">Select all on this page</span></label></th>
          <th scope="col">Id</th><th scope="col">Event</th><th scope="col">Target</th><th scope="col">Consumer</th>
          <th scope="col">Attempts</th><th scope="col">Last error</th><th scope="col">Failed</th></tr></thead>
        <tbody>
          ${letters.map((l) => html`<tr key=${l.id} data-id=${l.id}>
            <td><label class="check"><input type="checkbox" id=${`dl-select-${l.id}`} checked=${selected.has(l.id)}
              onChange=${() => toggle(l.id)} /><span class="visually-hidden">Select ${l.id}</span></label></td>
            <td class="id">${l.id}</td>
            <td><a class="id" href=${`#/events/${encodeURIComponent(l.eventId)}`}>${l.eventId}</a><br />
              <small>${l.eventType} <${Seq} n=${l.eventSequence} /></small></td>
            <td><code class="url">${l.target}</code></td>
            <td>${l.subscriptionId ? html`subscription <code>${l.subscriptionId}</code>` : html`reactor <code>${l.reactor}</code>`}</td>
            <td>${l.attempts}</td>
            <td class="error-cell">
              ${lastError(l)}
              <details><summary>Payload and error</summary>
                <p>First attempt <${Time} value=${l.firstAttemptAt} />, queued <${Time} value=${l.createdAt} /></p>
                <pre class="json">${l.lastError}</pre>
                <${Json} value=${l.payload} />
              </details></td>
            <td class="nowrap"><${Time} value=${l.failedAt} /></td></tr>`)}
          ${!state.loading && !letters.length && !state.error
            && html`<tr><td colspan="8" class="muted">No dead letters.</td></tr>`}
        </tbody>
      </table>
    <//>
    <div class="pager">
      <${Pager} pages=${pages} next=${state.data && state.data.next} back="Newer" forward="Older" />
    </div>
    <${Confirm} open=${pending !== null} title=${pending ? `${VERB[pending.kind]} ${pending.scope === 'all' ? 'every dead letter' : count(selected.size)}?` : ''}
      danger=${!pending || pending.kind === 'delete'} onConfirm=${run} onCancel=${() => setPending(null)}>
      ${pending && (pending.kind === 'redrive'
        ? html`<p>They go back to the retry queue with their attempts reset.</p>`
        : html`<p>They are deleted for good; their events stay in the log.</p>`)}
    <//>`;
}
