// The page's shell: sign-in, the header, hash routes (#/board, #/servers/NAME, #/transits,
// #/audit) and polling of the view on screen (every 2 s, paused while the tab is hidden).
import { api, clearToken, el, failureText, setToken, showError, token } from './lib.js';
import { boardView } from './board.js';
import { serverView } from './server.js';
import { transitsView } from './transits.js';
import { auditView } from './audit.js';

const POLL_MS = 2000;
const main = document.getElementById('view');
let caller = null;
let current = null;
let timer = null;

function signInView(message) {
  caller = null;
  document.getElementById('nav').hidden = true;
  document.getElementById('who').hidden = true;
  document.getElementById('sign-out').hidden = true;
  const input = el('input', { id: 'token', type: 'password', autocomplete: 'off', required: true, spellcheck: 'false' });
  const form = el('form', {
    onsubmit: async (ev) => {
      ev.preventDefault();
      showError(null);
      const t = input.value.trim();
      try {
        const who = await api('GET', '/v1/whoami', undefined, t);
        setToken(t);
        input.value = '';
        await start(who);
      } catch (err) {
        showError(err.status === 401 ? 'This token is not known to the controller.' : failureText(err));
      }
    },
  },
  el('label', { for: 'token', text: 'API token' }), input,
  el('button', { type: 'submit', text: 'Sign in' }));
  main.replaceChildren(el('h1', { tabindex: '-1', text: 'Sign in' }),
    el('p', { class: 'muted', text: 'The token stays in this tab only (session storage) and goes to the controller in the Authorization header.' }), form);
  if (message) showError(message);
  input.focus();
}

async function start(who) {
  caller = who;
  document.getElementById('nav').hidden = false;
  const w = document.getElementById('who');
  w.textContent = `Signed in as ${who.name} (role ${who.role})`;
  w.hidden = false;
  document.getElementById('sign-out').hidden = false;
  if (!location.hash || location.hash === '#/' || location.hash === '#') location.hash = '#/board';
  else route();
}

function stopView() {
  clearTimeout(timer);
  timer = null;
  current?.stop?.();
  current = null;
}

/** Renders the view the hash names and starts polling it. */
function route() {
  if (!caller) return;
  stopView();
  showError(null);
  const ctx = { caller, canOperate: caller.role === 'operate' || caller.role === 'admin' };
  const h = location.hash.replace(/^#/, '');
  const server = /^\/servers\/([a-z0-9-]+)$/.exec(h);
  const view = server ? serverView(main, ctx, server[1])
    : h === '/transits' ? transitsView(main, ctx)
      : h === '/audit' ? auditView(main, ctx)
        : boardView(main, ctx);
  current = view;
  main.querySelector('h1')?.focus();
  for (const a of document.querySelectorAll('nav a')) {
    if (a.getAttribute('href') === `#${h}`) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  poll(view, true);
}

async function poll(view, first) {
  if (current !== view) return;
  if (view.refresh && (first || !document.hidden)) {
    try {
      await view.refresh();
    } catch (err) {
      if (current === view && err.status !== 401) showError(failureText(err));
    }
  }
  if (current === view && view.refresh) timer = setTimeout(() => poll(view, false), view.pollMs?.() ?? POLL_MS);
}

window.addEventListener('hashchange', route);
document.addEventListener('unauthorized', () => {
  clearToken();
  stopView();
  signInView('The controller refused the token (401): sign in again.');
});
document.getElementById('sign-out').addEventListener('click', () => {
  clearToken();
  stopView();
  showError(null);
  signInView();
});

(async () => {
  const t = token();
  if (!t) {
    signInView();
    return;
  }
  try {
    await start(await api('GET', '/v1/whoami'));
  } catch (err) {
    if (err.status !== 401) signInView(failureText(err));
  }
})();
