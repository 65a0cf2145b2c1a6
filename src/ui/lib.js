// Shared helpers of the page: the API client (bearer token from sessionStorage) and DOM builders
// that set text only (never HTML from data).

const KEY = 'failover-token';

/** The token of this tab, or null. */
export const token = () => sessionStorage.getItem(KEY);
export const setToken = (t) => sessionStorage.setItem(KEY, t);
export const clearToken = () => sessionStorage.removeItem(KEY);

/** An API refusal: the error code, message and HTTP status. */
export class ApiFailure extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Calls /v1 with the token; resolves the JSON answer, rejects with ApiFailure. */
export async function api(method, path, body, given = token()) {
  const headers = { authorization: `Bearer ${given ?? ''}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store', credentials: 'omit' });
  let json = null;
  try {
    json = await res.json();
  } catch {
    json = null;
  }
  if (!res.ok) {
    const e = json && json.error ? json.error : { code: `HTTP_${res.status}`, message: res.statusText };
    const failure = new ApiFailure(res.status, e.code, e.message);
    // a stored token refused: back to sign-in (a token being tried at sign-in is only reported)
    if (res.status === 401 && given !== null && given === token()) document.dispatchEvent(new CustomEvent('unauthorized', { detail: failure }));
    throw failure;
  }
  return json;
}

/** An element with attributes (`text` sets textContent, `on*` listeners) and children (strings become text). */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') e.textContent = String(v);
    else if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) e.append(c instanceof Node ? c : String(c));
  return e;
}

/** A table with a caption, column headers and rows of cells (strings or nodes). */
export function table(caption, head, rows) {
  return el('table', {},
    el('caption', { text: caption }),
    el('thead', {}, el('tr', {}, head.map((h) => el('th', { scope: 'col', text: h })))),
    el('tbody', {}, rows.map((r) => el('tr', {}, r.map((c, i) => (i === 0 ? el('th', { scope: 'row' }, c ?? '') : el('td', {}, c ?? '')))))));
}

/** A date-time for people (local time), or an em dash. */
export const when = (iso) => (iso ? new Date(iso).toLocaleString() : '—');

/** Shows (or hides, with null) the error banner. */
export function showError(message) {
  const e = document.getElementById('error');
  e.textContent = message ?? '';
  e.hidden = !message;
}

/** The banner text of a failure (a 403 names the role the call needs). */
export const failureText = (err) => (err instanceof ApiFailure ? `${err.code}: ${err.message}` : String(err && err.message ? err.message : err));

/**
 * Replaces `container`'s children with `build()` only when `data` changed since the last call
 * (polling then keeps focus and selection where they are).
 */
export function renderIfChanged(container, data, build) {
  const sig = JSON.stringify(data);
  if (container.dataset.sig === sig) return;
  container.dataset.sig = sig;
  container.replaceChildren(...build());
}
