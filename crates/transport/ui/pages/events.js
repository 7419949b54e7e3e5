// Event log (newest first, paged by the API's cursors: never the whole log) and the page of
// one event: its payload and every delivery with every attempt.

import { ApiError, get, query, seg } from '../api.js';
import {
  ErrorBox, Head, Json, Seq, TableWrap, Time, html, useEffect, useLoad, useState,
} from '../ui.js';

const PAGE = 50;
// The search of this tab's log page, kept while the operator opens events and comes back.
const NO_SEARCH = { type: '', after: '', until: '', id: '', cursors: [] };
let remembered = NO_SEARCH;

/** The search in words ("type PAYMENT_*, after sequence 10"), or '' when nothing filters. */
function describe(search) {
  const parts = [];
  if (search.id.trim()) parts.push(['event id', search.id.trim()]);
  else {
    if (search.type.trim()) parts.push(['type', search.type.trim()]);
    if (search.after.trim()) parts.push(['after sequence', search.after.trim()]);
    if (search.until.trim()) parts.push(['until sequence', search.until.trim()]);
  }
  return parts;
}

function sequence(text, field) {
  const t = text.trim();
  if (t === '') return '';
  if (!/^\d+$/.test(t)) {
    throw new ApiError({
      code: 'VALIDATION_ERROR',
      message: `${field} must be a sequence number, got "${t}"`,
      requestId: 'none (checked in the browser)',
    });
  }
  return t;
}

export function EventLog({ ready }) {
  const [form, setForm] = useState(remembered);
  const [search, setSearch] = useState(remembered);
  const cursor = search.cursors.length ? search.cursors[search.cursors.length - 1] : null;

  const [state] = useLoad(async () => {
    remembered = search;
    const after = sequence(search.after, 'After sequence');
    const until = sequence(search.until, 'Until sequence');
    if (search.id.trim()) {
      const { data } = await get(`/api/events/${seg(search.id.trim())}`);
      return { events: [data], next: null };
    }
    const { data, meta } = await get(`/api/events${query({
      order: 'desc', limit: PAGE, type: search.type.trim(), after, until, cursor,
    })}`);
    return { events: data, next: meta.nextCursor };
  }, [search], ready);

  const set = (k) => (e) => setForm({ ...form, [k]: e.currentTarget.value });
  const submit = (e) => {
    e.preventDefault();
    setSearch({ ...form, cursors: [] });
  };
  const clear = () => {
    setForm(NO_SEARCH);
    setSearch(NO_SEARCH);
  };
  const filters = describe(search);
  const older = () => setSearch({ ...search, cursors: [...search.cursors, state.data.next] });
  const newer = () => setSearch({ ...search, cursors: search.cursors.slice(0, -1) });
  const events = state.data ? state.data.events : [];

  return html`
    <${Head} title="Event log" />
    <form class="toolbar" onSubmit=${submit} role="search" aria-label="Search the log">
      <div class="field"><label for="events-type">Type</label>
        <input id="events-type" value=${form.type} onInput=${set('type')} placeholder="PAYMENT_*"
          autocomplete="off" spellcheck="false" /></div>
      <div class="field"><label for="events-after">After sequence</label>
        <input id="events-after" inputmode="numeric" value=${form.after} onInput=${set('after')} autocomplete="off" /></div>
      <div class="field"><label for="events-until">Until sequence</label>
        <input id="events-until" inputmode="numeric" value=${form.until} onInput=${set('until')} autocomplete="off" /></div>
      <div class="field"><label for="events-id">Event id</label>
        <input id="events-id" value=${form.id} onInput=${set('id')} autocomplete="off" spellcheck="false" /></div>
      <div class="buttons"><button type="submit" class="primary">Search</button></div>
    </form>
    ${filters.length > 0 && html`<p id="events-filtered" class="filtered">
      <span>Filtered by ${filters.map(([k, v], i) => html`${i ? ', ' : ''}${k} <code>${v}</code>`)}</span>
      <button type="button" onClick=${clear}>Clear</button>
    </p>`}
    <${ErrorBox} error=${state.error} />
    <${TableWrap} label="Events">
      <table id="events-table" aria-busy=${state.loading ? 'true' : 'false'}>
        <thead><tr><th scope="col">Time and sequence</th><th scope="col">Type</th>
          <th scope="col">Source</th><th scope="col">Id</th><th scope="col">Correlation</th></tr></thead>
        <tbody>
          ${events.map((ev) => html`<tr key=${ev.sequence} data-id=${ev.id} data-sequence=${ev.sequence}>
            <td class="nowrap"><${Time} value=${ev.time} /> <${Seq} n=${ev.sequence} /></td>
            <td>${ev.type}</td><td>${ev.source}</td>
            <td><a class="id" href=${`#/events/${encodeURIComponent(ev.id)}`}>${ev.id}</a></td>
            <td>${ev.correlation_id || ''}</td></tr>`)}
          ${!state.loading && !events.length && !state.error
            && html`<tr><td colspan="5" class="muted">No events match.</td></tr>`}
        </tbody>
      </table>
    <//>
    <div class="pager">
      <button type="button" onClick=${newer} disabled=${!search.cursors.length}>Newer</button>
      <span class="muted">${search.cursors.length ? `page ${search.cursors.length + 1}` : 'newest first'}</span>
      <button type="button" onClick=${older} disabled=${!(state.data && state.data.next)}>Older</button>
    </div>`;
}

/** Who a delivery goes to: the same key for every delivery of one subscription or reactor. */
const consumer = (d) => (d.subscriptionId ? `s:${d.subscriptionId}` : `r:${d.reactor}`);
const firstAt = (d) => (d.attempts.length ? Date.parse(d.attempts[0].at) : Infinity);
const lastAt = (d) => (d.attempts.length ? Date.parse(d.attempts[d.attempts.length - 1].at) : -Infinity);

/** Dead deliveries that a later delivery of the same consumer replaced (a redrive keeps the
 * dead record and makes a new delivery): they are history, not something still dead. */
function redrivenOf(deliveries) {
  const out = new Set();
  for (const d of deliveries) {
    if (d.state !== 'dead') continue;
    const later = deliveries.some((o) => o !== d && consumer(o) === consumer(d) && firstAt(o) >= lastAt(d));
    if (later) out.add(d.id);
  }
  return out;
}

function Delivery({ d, redriven }) {
  const who = d.subscriptionId
    ? html`subscription <code>${d.subscriptionId}</code>`
    : html`reactor <code>${d.reactor}</code>`;
  const [badge, label] = redriven ? ['redriven', 'dead (redriven)'] : [d.state, d.state.replace('_', ' ')];
  return html`<article class="delivery" data-state=${d.state} data-redriven=${redriven ? 'true' : undefined}
    aria-label=${`Delivery ${d.id} to ${d.target}${redriven ? ', dead and redriven' : ''}`}>
    <header>
      <span class=${`badge state-${badge}`}>${label}</span>
      <strong>${d.target}</strong> <span class="muted">(${who})</span>
      ${d.nextAttemptAt && html`<span class="muted">next attempt <${Time} value=${d.nextAttemptAt} /></span>`}
    </header>
    <${TableWrap} label=${`Attempts of delivery ${d.id}`}>
      <table class="attempts">
        <thead><tr><th scope="col">Time</th><th scope="col">Duration</th><th scope="col">Status</th>
          <th scope="col">Error</th></tr></thead>
        <tbody>
          ${d.attempts.map((a, i) => html`<tr class="attempt" key=${i}>
            <td class="nowrap"><${Time} value=${a.at} /></td><td>${a.durationMs} ms</td>
            <td>${a.status === null ? '–' : a.status}</td><td>${a.error || ''}</td></tr>`)}
          ${!d.attempts.length && html`<tr><td colspan="4" class="muted">No attempt yet.</td></tr>`}
        </tbody>
      </table>
    <//>
  </article>`;
}

export function EventPage({ ready, id }) {
  const [state, reload] = useLoad(async () => {
    const [event, deliveries] = await Promise.all([
      get(`/api/events/${seg(id)}`),
      get(`/api/events/${seg(id)}/deliveries`),
    ]);
    return { event: event.data, deliveries: deliveries.data };
  }, [id], ready);

  // While something is still on its way, look again every 2 s.
  const moving = state.data && state.data.deliveries.some((d) => d.state === 'pending' || d.state === 'in_flight');
  useEffect(() => {
    if (!moving) return undefined;
    const t = setInterval(reload, 2000);
    return () => clearInterval(t);
  }, [moving, reload]);

  const ev = state.data && state.data.event;
  const redriven = state.data ? redrivenOf(state.data.deliveries) : new Set();
  return html`
    <${Head} title=${`Event ${id}`}>
      <a href="#/events">Back to the log</a>
      <button type="button" onClick=${reload}>Refresh</button>
    <//>
    <${ErrorBox} error=${state.error} />
    ${ev && html`
      <dl class="figures wide">
        <div class="figure"><dt>Sequence</dt><dd><${Seq} n=${ev.sequence} /></dd></div>
        <div class="figure"><dt>Type</dt><dd>${ev.type}</dd></div>
        <div class="figure"><dt>Source</dt><dd>${ev.source}</dd></div>
        <div class="figure"><dt>Time</dt><dd><${Time} value=${ev.time} /></dd></div>
        <div class="figure"><dt>Correlation</dt><dd>${ev.correlation_id || '–'}</dd></div>
      </dl>
      <h2>Payload</h2>
      <${Json} id="event-payload" value=${ev.payload} />`}
    <section id="deliveries" aria-labelledby="h-deliveries">
      <h2 id="h-deliveries">Deliveries ${state.data ? `(${state.data.deliveries.length})` : ''}</h2>
      ${state.data && !state.data.deliveries.length && html`<p class="muted">No subscription or reactor took this event.</p>`}
      ${state.data && state.data.deliveries.map((d) => html`<${Delivery} key=${d.id} d=${d} redriven=${redriven.has(d.id)} />`)}
    </section>`;
}
