// Overview: health, the retry queue, open breakers, instances, and the rates of the last
// minutes drawn from the /metrics samples (refreshed with every sample, every 5 s).

import { get, health } from '../api.js';
import { EVERY_MS, onSample, rates, sampleError } from '../samples.js';
import {
  ErrorBox, Head, Spark, TableWrap, Time, fmt, html, useEffect, useState,
} from '../ui.js';

async function loadAll() {
  const [h, s, i] = await Promise.allSettled([
    health('/health/detailed'),
    get('/api/retry/stats'),
    get('/api/instances?limit=100'),
  ]);
  const value = (r) => (r.status === 'fulfilled' ? r.value : null);
  return {
    health: value(h),
    stats: value(s) && value(s).data,
    instances: value(i) && value(i).data,
    errors: [h, s, i].filter((r) => r.status === 'rejected').map((r) => r.reason),
  };
}

const COLLECTING = `collecting samples (every ${EVERY_MS / 1000} s)`;

function Figure({ label, children }) {
  return html`<div class="figure"><dt>${label}</dt><dd>${children}</dd></div>`;
}

export function Overview({ ready }) {
  const [state, setState] = useState(null);
  const [series, setSeries] = useState(rates());
  const [metricsError, setMetricsError] = useState(sampleError());

  useEffect(() => {
    let live = true;
    const refresh = async () => {
      const next = await loadAll();
      if (!live) return;
      setState(next);
      ready();
    };
    refresh();
    const stop = onSample(() => {
      setSeries(rates());
      setMetricsError(sampleError());
      refresh();
    });
    return () => {
      live = false;
      stop();
    };
  }, []);

  const h = state && state.health;
  const s = state && state.stats;
  const status = h ? h.status : 'unknown';
  return html`
    <${Head} title="Overview" />
    ${state && state.errors.map((e) => html`<${ErrorBox} error=${e} />`)}
    <div class="cards">
      <section class="card" id="overview-health" aria-labelledby="h-health">
        <h2 id="h-health">Health</h2>
        <dl class="figures">
          <${Figure} label="Status"><span class=${`badge state-${status}`}>${status}</span><//>
          <${Figure} label="Version">${h ? h.version : '–'}<//>
          <${Figure} label="Uptime">${h ? fmt.seconds(h.uptimeSeconds) : '–'}<//>
          <${Figure} label="Store">${h && h.store ? h.store.kind : '–'}<//>
          <${Figure} label="Database size">${h ? fmt.bytes(h.database.sizeBytes) : '–'}<//>
          <${Figure} label="Memory (RSS)">${h ? fmt.bytes(h.memory.rssBytes) : '–'}<//>
          <${Figure} label="WebSocket clients">${h ? fmt.int(h.websocket.connections) : '–'}<//>
        </dl>
      </section>
      <section class="card" id="overview-queue" aria-labelledby="h-queue">
        <h2 id="h-queue">Retry queue</h2>
        <dl class="figures">
          <${Figure} label="Pending">${s ? fmt.int(s.pending) : '–'}<//>
          <${Figure} label="In flight">${s ? fmt.int(s.inFlight) : '–'}<//>
          <${Figure} label="Dead letters"><a href="#/dead-letters">${s ? fmt.int(s.deadLetters) : '–'}</a><//>
          <${Figure} label="Oldest retry">${s ? html`<${Time} value=${s.oldestRetry} none="none" />` : '–'}<//>
        </dl>
      </section>
      <section class="card" id="overview-breakers" aria-labelledby="h-breakers">
        <h2 id="h-breakers">Circuit breakers</h2>
        <dl class="figures">
          <${Figure} label="Open"><a href="#/breakers" class=${h && h.breakers.open ? 'alarm' : ''}>${h ? fmt.int(h.breakers.open) : '–'}</a><//>
          <${Figure} label="Half open">${h ? fmt.int(h.breakers.halfOpen) : '–'}<//>
        </dl>
      </section>
    </div>
    <section class="card" aria-labelledby="h-rates">
      <h2 id="h-rates">Rates, last 15 minutes (sampled every 5 s)</h2>
      ${metricsError && html`<${ErrorBox} error=${metricsError} />`}
      <div class="sparks">
        <${Spark} label="Publish rate" points=${series.published} empty=${COLLECTING} />
        <${Spark} label="Delivery rate" points=${series.delivered} empty=${COLLECTING} />
        <${Spark} label="Failure rate" points=${series.failed} empty=${COLLECTING} />
      </div>
    </section>
    <section class="card" id="overview-instances" aria-labelledby="h-instances">
      <h2 id="h-instances">Instances (${h && h.instances !== undefined && h.instances !== null ? h.instances : '–'})</h2>
      <${TableWrap} label="Instances">
        <table>
          <thead><tr><th scope="col">Id</th><th scope="col">Host</th><th scope="col">Version</th>
            <th scope="col">Started</th><th scope="col">Last seen</th></tr></thead>
          <tbody>
            ${(state && state.instances || []).map((i) => html`<tr key=${i.id}>
              <td><code>${i.id}</code></td><td>${i.host}</td><td>${i.version}</td>
              <td><${Time} value=${i.startedAt} /></td><td><${Time} value=${i.lastSeenAt} /></td></tr>`)}
          </tbody>
        </table>
      <//>
    </section>`;
}
