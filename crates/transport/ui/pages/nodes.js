// Nodes (who may publish what, and their webhook mapping) and reactors, read only.

import { get } from '../api.js';
import {
  ErrorBox, Head, TableWrap, html, useLoad,
} from '../ui.js';

/** Every page of a list (these are configuration, a handful of entries). */
async function all(path) {
  const items = [];
  let cursor = null;
  do {
    const sep = path.includes('?') ? '&' : '?';
    const { data, meta } = await get(`${path}${sep}limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    items.push(...data);
    cursor = meta.nextCursor;
  } while (cursor);
  return items;
}

function when(conditions) {
  const entries = Object.entries(conditions || {});
  if (!entries.length) return html`<span class="muted">always</span>`;
  const text = JSON.stringify(conditions);
  return html`<code class="filter" title=${text}>${text}</code>`;
}

export function Nodes({ ready }) {
  const [state] = useLoad(async () => {
    const [nodes, reactors] = await Promise.all([all('/api/nodes'), all('/api/reactors')]);
    return { nodes, reactors };
  }, [], ready);
  const nodes = state.data ? state.data.nodes : [];
  const reactors = state.data ? state.data.reactors : [];
  return html`
    <${Head} title="Nodes and reactors" />
    <${ErrorBox} error=${state.error} />
    <section aria-labelledby="h-nodes">
      <h2 id="h-nodes">Nodes</h2>
      <${TableWrap} label="Nodes">
        <table id="nodes-table">
          <thead><tr><th scope="col">Name</th><th scope="col">May publish</th><th scope="col">Webhook mapping</th></tr></thead>
          <tbody>
            ${nodes.map((n) => html`<tr key=${n.name} data-name=${n.name}>
              <td class="id"><strong>${n.name}</strong></td><td>${n.publish.join(', ')}</td>
              <td>${n.webhook
                ? html`POST /webhook/${n.name} → ${n.webhook.eventType}${n.webhook.idPointer ? html`, id at <code>${n.webhook.idPointer}</code>` : ''}`
                : html`<span class="muted">none</span>`}</td></tr>`)}
            ${state.data && !nodes.length
              && html`<tr><td colspan="3" class="muted">No node is configured: any node name may publish (development mode).</td></tr>`}
          </tbody>
        </table>
      <//>
    </section>
    <section aria-labelledby="h-reactors">
      <h2 id="h-reactors">Reactors</h2>
      <${TableWrap} label="Reactors">
        <table id="reactors-table">
          <thead><tr><th scope="col">Name</th><th scope="col">On</th><th scope="col">When</th>
            <th scope="col">Calls</th><th scope="col">Timeout</th><th scope="col">Emits on success</th>
            <th scope="col">Emits on failure</th></tr></thead>
          <tbody>
            ${reactors.map((r) => html`<tr key=${r.name} data-name=${r.name}>
              <td class="id"><strong>${r.name}</strong></td><td>${r.on}</td><td>${when(r.when)}</td>
              <td><code class="url">${r.call.method} ${r.call.url}</code></td>
              <td>${r.call.timeoutMs} ms</td>
              <td>${r.emitOnSuccess || html`<span class="muted">nothing</span>`}</td>
              <td>${r.emitOnFailure || html`<span class="muted">nothing</span>`}</td></tr>`)}
            ${state.data && !reactors.length
              && html`<tr><td colspan="7" class="muted">No reactor is configured.</td></tr>`}
          </tbody>
        </table>
      <//>
    </section>`;
}
