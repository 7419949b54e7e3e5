// Circuit breakers: each target's state, counts and next trial; reset one.

import { call, get, query, seg } from '../api.js';
import {
  ErrorBox, Head, TableWrap, Time, Pager, html, useEvery, useCursors, useLoad, useState,
} from '../ui.js';

export function Breakers({ ready }) {
  const pages = useCursors();
  const { cursor } = pages;
  const [state, reload] = useLoad(async () => {
    const { data, meta } = await get(`/api/breakers${query({ limit: 100, cursor })}`);
    return { breakers: data, next: meta.nextCursor };
  }, [cursor], ready);
  const [error, setError] = useState(null);
  const [done, setDone] = useState('');
  // States move on their own (open -> half open): look again every 5 s.
  useEvery(reload, 5000);

  const reset = async (target) => {
    setError(null);
    setDone('');
    try {
      await call('POST', `/api/breakers/${seg(target)}/reset`);
      setDone(`${target} reset: closed.`);
    } catch (e) {
      setError(e);
    }
    reload();
  };
  const list = state.data ? state.data.breakers : [];

  return html`
    <${Head} title="Breakers">
      <button type="button" onClick=${reload}>Refresh</button>
    <//>
    <p class="status" role="status">${done}</p>
    <${ErrorBox} error=${error || state.error} />
    <${TableWrap} label="Circuit breakers">
      <table id="breakers-table">
        <thead><tr><th scope="col">Target</th><th scope="col">State</th><th scope="col">Consecutive failures</th>
          <th scope="col">Trips</th><th scope="col">Opened</th><th scope="col">Next trial</th><th scope="col">Action</th></tr></thead>
        <tbody>
          ${list.map((b) => html`<tr key=${b.target} data-target=${b.target} data-state=${b.state}>
            <td><code class="url">${b.target}</code></td>
            <td><span class=${`badge state-${b.state}`}>${b.state.replace('_', ' ')}</span></td>
            <td>${b.consecutiveFailures}</td><td>${b.trips}</td>
            <td class="nowrap"><${Time} value=${b.openedAt} /></td>
            <td class="nowrap"><${Time} value=${b.nextTrialAt} /></td>
            <td><button type="button" onClick=${() => reset(b.target)}>Reset</button></td></tr>`)}
          ${!state.loading && !list.length && !state.error
            && html`<tr><td colspan="7" class="muted">No target has been called yet.</td></tr>`}
        </tbody>
      </table>
    <//>
    <div class="pager">
      <${Pager} pages=${pages} next=${state.data && state.data.next} />
    </div>`;
}
