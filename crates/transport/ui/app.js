// The operator console: sign-in, navigation by hash route, and the page of each route.

import { forget, signIn, token, whenUnauthorized } from './api.js';
import { startSampling, stopSampling } from './samples.js';
import {
  ErrorBox, html, useCallback, useEffect, useRef, useState,
} from './ui.js';
import { render } from './vendor/standalone.module.js';
import { Breakers } from './pages/breakers.js';
import { DeadLetters } from './pages/dead_letters.js';
import { EventLog, EventPage } from './pages/events.js';
import { Live } from './pages/live.js';
import { Nodes } from './pages/nodes.js';
import { Overview } from './pages/overview.js';
import { Subscriptions } from './pages/subscriptions.js';
import { EventTypes } from './pages/types.js';

const ROUTES = [
  { path: 'overview', name: 'Overview', page: Overview },
  { path: 'live', name: 'Live tail', page: Live },
  { path: 'events', name: 'Event log', page: EventLog },
  { path: 'subscriptions', name: 'Subscriptions', page: Subscriptions },
  { path: 'dead-letters', name: 'Dead letters', page: DeadLetters },
  { path: 'breakers', name: 'Breakers', page: Breakers },
  { path: 'types', name: 'Event types', page: EventTypes },
  { path: 'nodes', name: 'Nodes and reactors', page: Nodes },
];

/** `#/events/abc` -> {route, param: 'abc'}; anything unknown is the overview. */
function parse(hash) {
  const parts = hash.replace(/^#\/?/, '').split('/');
  const head = parts.shift();
  if (head === 'events' && parts.length && parts[0] !== '') {
    let id = parts.join('/');
    try {
      id = decodeURIComponent(id);
    } catch (_) {
      // Keep it as written.
    }
    return { route: ROUTES[2], param: id, key: `event:${id}` };
  }
  const route = ROUTES.find((r) => r.path === head) || ROUTES[0];
  return { route, param: null, key: route.path };
}

function Login({ error, onSignedIn }) {
  const [value, setValue] = useState('');
  const [failure, setFailure] = useState(error);
  const [busy, setBusy] = useState(false);
  const field = useRef(null);
  useEffect(() => field.current && field.current.focus(), []);
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setFailure(null);
    try {
      await signIn(value.trim());
      onSignedIn();
    } catch (err) {
      setFailure(err.status === 401
        ? Object.assign(err, { message: `token refused: ${err.message}` })
        : err);
      setBusy(false);
    }
  };
  return html`<main id="page" class="login" data-ready="true">
    <h1>Nexus console</h1>
    <p>Sign in with the server's admin token (<code>NEXUS_ADMIN_TOKEN</code>). It is kept for this
      browser tab only and forgotten when the tab closes or you sign out.</p>
    <${ErrorBox} error=${failure} />
    <form id="login" onSubmit=${submit} class="card form">
      <input type="text" name="username" autocomplete="username" value="nexus-admin" hidden />
      <div class="field">
        <label for="token">Admin token</label>
        <input id="token" ref=${field} type="password" required autocomplete="current-password"
          value=${value} onInput=${(e) => setValue(e.currentTarget.value)} />
      </div>
      <div class="buttons"><button type="submit" class="primary" disabled=${busy}>Sign in</button></div>
    </form>
  </main>`;
}

function App() {
  const [signedIn, setSignedIn] = useState(() => token() !== null);
  const [loginError, setLoginError] = useState(null);
  const [where, setWhere] = useState(() => parse(location.hash));
  const [ready, setReady] = useState(false);
  const main = useRef(null);
  const moved = useRef(false);

  useEffect(() => {
    whenUnauthorized((e) => {
      forget();
      stopSampling();
      e.message = `token refused or expired: ${e.message}`;
      setLoginError(e);
      setSignedIn(false);
    });
    const onHash = () => {
      setReady(false);
      moved.current = true;
      setWhere(parse(location.hash));
    };
    addEventListener('hashchange', onHash);
    return () => removeEventListener('hashchange', onHash);
  }, []);

  useEffect(() => {
    if (signedIn) startSampling();
  }, [signedIn]);

  // After a move, the new page starts at its top (not at the scroll of the page before) and the
  // focus goes to its heading, so keyboard and screen-reader users start there.
  useEffect(() => {
    if (moved.current && main.current) {
      window.scrollTo(0, 0);
      const heading = main.current.querySelector('h1');
      (heading || main.current).focus({ preventScroll: true });
    }
    moved.current = false;
    const { route, param } = where;
    document.title = `${param ? `Event ${param}` : route.name} · Nexus`;
  }, [where]);

  const markReady = useCallback(() => setReady(true), []);

  if (!signedIn) {
    document.title = 'Sign in · Nexus';
    return html`<${Login} error=${loginError} onSignedIn=${() => {
      setLoginError(null);
      setReady(false);
      if (!location.hash || location.hash === '#/' || location.hash === '#') location.hash = '#/overview';
      setWhere(parse(location.hash || '#/overview'));
      setSignedIn(true);
    }} />`;
  }

  const signOut = () => {
    forget();
    stopSampling();
    setLoginError(null);
    setSignedIn(false);
  };
  const { route, param, key } = where;
  const Page = param !== null ? EventPage : route.page;
  return html`
    <a class="skip" href="#page" onClick=${(e) => { e.preventDefault(); main.current.focus(); }}>Skip to content</a>
    <header class="top">
      <span class="brand">Nexus</span>
      <nav aria-label="Main">
        <ul>
          ${ROUTES.map((r) => html`<li key=${r.path}>
            <a href=${`#/${r.path}`} aria-current=${r === route ? 'page' : undefined}>${r.name}</a></li>`)}
        </ul>
      </nav>
      <button type="button" class="sign-out" onClick=${signOut}>Sign out</button>
    </header>
    <main id="page" ref=${main} tabindex="-1" data-ready=${ready ? 'true' : 'false'} aria-busy=${ready ? 'false' : 'true'}>
      <${Page} key=${key} id=${param} ready=${markReady} />
    </main>`;
}

render(html`<${App} />`, document.getElementById('app'));
