// Event types of the catalogue (API.md section 11): description, schema and examples.

import { get, query } from '../api.js';
import {
  ErrorBox, Head, Json, Time, Pager, html, useCursors, useLoad,
} from '../ui.js';

export function EventTypes({ ready }) {
  const pages = useCursors();
  const { cursor } = pages;
  const [state] = useLoad(async () => {
    const { data, meta } = await get(`/api/event-types${query({ limit: 100, cursor })}`);
    return { types: data, next: meta.nextCursor };
  }, [cursor], ready);
  const types = state.data ? state.data.types : [];
  return html`
    <${Head} title="Event types" />
    <${ErrorBox} error=${state.error} />
    ${!state.loading && !types.length && !state.error
      && html`<p class="muted">No type is declared: every valid type is accepted, unchecked.</p>`}
    <div id="types-list" class="types">
      ${types.map((t) => html`<article key=${t.name} data-type=${t.name} class="card" aria-labelledby=${`type-${t.name}`}>
        <h2 id=${`type-${t.name}`}>${t.name} ${t.deprecated && html`<span class="badge state-held">deprecated</span>`}</h2>
        <p>${t.description || html`<span class="muted">No description.</span>`}</p>
        <p class="muted">Declared <${Time} value=${t.createdAt} />, changed <${Time} value=${t.updatedAt} /></p>
        <h3>Schema</h3>
        ${t.schema === null ? html`<p class="muted">None: any payload is accepted.</p>` : html`<${Json} value=${t.schema} />`}
        <h3>Examples (${t.examples.length})</h3>
        ${t.examples.map((ex, i) => html`<${Json} key=${i} value=${ex} />`)}
      </article>`)}
    </div>
    <div class="pager">
      <${Pager} pages=${pages} next=${state.data && state.data.next} />
    </div>`;
}
