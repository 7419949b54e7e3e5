// Webhook subscriptions: create (the secret is shown once), edit with a filter, enable or
// disable, test send, delete after a confirmation.

import { ApiError, call, get, query, seg } from '../api.js';
import {
  Confirm, ErrorBox, Head, TableWrap, Time, Pager, html, useCursors, useLoad, useState,
} from '../ui.js';

const EMPTY = { url: '', events: '', filter: '', ordered: false, enabled: true };

function formOf(sub) {
  return {
    url: sub.url,
    events: sub.events.join(', '),
    filter: sub.filter ? JSON.stringify(sub.filter, null, 2) : '',
    ordered: sub.ordered,
    enabled: sub.enabled,
  };
}

function browserError(message, field) {
  return new ApiError({
    code: 'VALIDATION_ERROR',
    message,
    requestId: 'none (checked in the browser)',
    details: { field },
  });
}

/** The form as the API's body; a filter that is not JSON is refused here, naming the field. */
function bodyOf(form) {
  const events = form.events.split(',').map((g) => g.trim()).filter(Boolean);
  let filter = null;
  if (form.filter.trim()) {
    try {
      filter = JSON.parse(form.filter);
    } catch (e) {
      throw browserError(`Filter is not JSON: ${e.message}`, 'filter');
    }
  }
  return { url: form.url.trim(), events, filter, ordered: form.ordered };
}

function SubForm({ editing, initial, onSaved, onCancel }) {
  const [form, setForm] = useState(initial);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const set = (k) => (e) => setForm({
    ...form,
    [k]: e.currentTarget.type === 'checkbox' ? e.currentTarget.checked : e.currentTarget.value,
  });
  const save = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const body = bodyOf(form);
      let saved;
      if (editing) {
        ({ data: saved } = await call('PATCH', `/api/subscriptions/${seg(editing)}`, { ...body, enabled: form.enabled }));
      } else {
        if (body.filter === null) delete body.filter;
        ({ data: saved } = await call('POST', '/api/subscriptions', body));
        if (!form.enabled) {
          const { data } = await call('PATCH', `/api/subscriptions/${seg(saved.id)}`, { enabled: false });
          saved = { ...data, secret: saved.secret };
        }
      }
      onSaved(saved);
    } catch (err) {
      setError(err);
    }
    setBusy(false);
  };
  return html`<form id="sub-form" class="card form" onSubmit=${save} aria-labelledby="sub-form-title">
    <h2 id="sub-form-title">${editing ? `Edit subscription ${editing}` : 'New subscription'}</h2>
    <${ErrorBox} error=${error} />
    <div class="field"><label for="sub-url">URL</label>
      <input id="sub-url" type="url" required value=${form.url} onInput=${set('url')}
        placeholder="https://crm.example/hooks" autocomplete="off" spellcheck="false" /></div>
    <div class="field"><label for="sub-events">Event types</label>
      <input id="sub-events" required value=${form.events} onInput=${set('events')} aria-describedby="sub-events-hint"
        placeholder="PAYMENT_*, MINT_CONFIRMED" autocomplete="off" spellcheck="false" />
      <small id="sub-events-hint">Comma-separated globs</small></div>
    <div class="field"><label for="sub-filter">Filter</label>
      <textarea id="sub-filter" rows="4" value=${form.filter} onInput=${set('filter')} aria-describedby="sub-filter-hint"
        spellcheck="false" placeholder='{"/amount": {"gte": 10000}}'></textarea>
      <small id="sub-filter-hint">JSON: payload pointers to tests (eq, ne, gt, gte, lt, lte, exists); empty for none</small></div>
    <div class="checks">
      <label><input id="sub-ordered" type="checkbox" checked=${form.ordered} onChange=${set('ordered')} /> Ordered (one at a time, in sequence)</label>
      <label><input id="sub-enabled" type="checkbox" checked=${form.enabled} onChange=${set('enabled')} /> Enabled</label>
    </div>
    <div class="buttons">
      <button type="submit" class="primary" disabled=${busy}>Save</button>
      <button type="button" onClick=${onCancel}>Cancel</button>
    </div>
  </form>`;
}

export function Subscriptions({ ready }) {
  const pages = useCursors();
  const { cursor } = pages;
  const [state, reload] = useLoad(async () => {
    const { data, meta } = await get(`/api/subscriptions${query({ limit: 100, cursor })}`);
    return { subs: data, next: meta.nextCursor };
  }, [cursor], ready);
  const [editing, setEditing] = useState(null); // null, 'new' or a subscription
  const [secret, setSecret] = useState(null);
  const [test, setTest] = useState(null);
  const [error, setError] = useState(null);
  const [deleting, setDeleting] = useState(null);

  const act = async (f) => {
    setError(null);
    try {
      await f();
    } catch (e) {
      setError(e);
    }
    reload();
  };
  const toggle = (s) => act(() => call('PATCH', `/api/subscriptions/${seg(s.id)}`, { enabled: !s.enabled }));
  const sendTest = (s) => act(async () => {
    setTest({ id: s.id, running: true });
    try {
      const { data } = await call('POST', `/api/subscriptions/${seg(s.id)}/test`);
      setTest({ id: s.id, url: s.url, ...data });
    } catch (e) {
      setTest(null);
      throw e;
    }
  });
  const remove = () => {
    const s = deleting;
    setDeleting(null);
    act(() => call('DELETE', `/api/subscriptions/${seg(s.id)}`));
  };
  const saved = (sub) => {
    setEditing(null);
    if (sub.secret) setSecret({ id: sub.id, secret: sub.secret });
    reload();
  };
  const subs = state.data ? state.data.subs : [];

  return html`
    <${Head} title="Subscriptions">
      <button type="button" class="primary" onClick=${() => { setSecret(null); setEditing('new'); }}>New subscription</button>
    <//>
    ${editing && html`<${SubForm}
      key=${editing === 'new' ? 'new' : editing.id}
      editing=${editing === 'new' ? null : editing.id}
      initial=${editing === 'new' ? EMPTY : formOf(editing)}
      onSaved=${saved} onCancel=${() => setEditing(null)} />`}
    ${secret && html`<div class="card notice" role="status">
      <p>Signing secret of <code>${secret.id}</code>. It is shown once: copy it now.</p>
      <p><code id="sub-secret" class="secret">${secret.secret}</code></p>
      <button type="button" onClick=${() => setSecret(null)}>I have copied it</button>
    </div>`}
    ${test && html`<div id="sub-test-result" class="card notice" role="status">
      ${test.running ? html`<p>Sending a test event to <code>${test.id}</code>…</p>` : html`
        <p>Test send to <code>${test.url}</code>: status <strong>${test.status === null ? 'none' : test.status}</strong>${', '}
          ${test.durationMs} ms${test.error ? html`, error: <span class="error-text">${test.error}</span>` : ''}.</p>`}
    </div>`}
    <${ErrorBox} error=${error || state.error} />
    <${TableWrap} label="Subscriptions">
      <table id="subs-table">
        <thead><tr><th scope="col">URL</th><th scope="col">Event types</th><th scope="col">Filter</th>
          <th scope="col">Ordered</th><th scope="col">State</th><th scope="col">Last 24 h</th>
          <th scope="col">Created</th><th scope="col">Actions</th></tr></thead>
        <tbody>
          ${subs.map((s) => html`<tr key=${s.id} data-id=${s.id}>
            <td><code class="url">${s.url}</code><br /><small class="muted id">${s.id}</small></td>
            <td>${s.events.join(', ')}</td>
            <td>${s.filter ? html`<code class="filter" title=${JSON.stringify(s.filter)}>${JSON.stringify(s.filter)}</code>` : html`<span class="muted">none</span>`}</td>
            <td>${s.ordered ? 'yes' : 'no'}</td>
            <td><span class=${`badge ${s.enabled ? 'state-delivered' : 'state-held'}`}>${s.enabled ? 'enabled' : 'disabled'}</span></td>
            <td class="nowrap">${s.stats.delivered} delivered, ${s.stats.failed} failed,<br />${s.stats.pending} pending, ${s.stats.dead} dead</td>
            <td class="nowrap"><${Time} value=${s.createdAt} /></td>
            <td class="actions">
              <button type="button" onClick=${() => { setSecret(null); setEditing(s); }}>Edit</button>
              <button type="button" onClick=${() => toggle(s)}>${s.enabled ? 'Disable' : 'Enable'}</button>
              <button type="button" onClick=${() => sendTest(s)}>Test</button>
              <button type="button" class="danger" onClick=${() => setDeleting(s)}>Delete</button>
            </td></tr>`)}
          ${!state.loading && !subs.length && !state.error
            && html`<tr><td colspan="8" class="muted">No subscription yet.</td></tr>`}
        </tbody>
      </table>
    <//>
    <div class="pager">
      <${Pager} pages=${pages} next=${state.data && state.data.next} />
    </div>
    <${Confirm} open=${deleting !== null} title="Delete this subscription?"
      onConfirm=${remove} onCancel=${() => setDeleting(null)}>
      ${deleting && html`<p>No more events go to <code>${deleting.url}</code>. Its signing secret cannot be shown again.</p>`}
    <//>`;
}
