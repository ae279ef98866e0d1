// The HTTP client: credentials, renewal and errors in words.
//
// The access token lives only in memory; the refresh token in localStorage.
// Refresh tokens are single use, so renewals are serialised (within this tab
// by one shared promise, across tabs by a Web Lock when the browser has them)
// and each new refresh token is stored at once. No token ever goes in a URL:
// WebSockets are opened with a single-use ticket.

const REFRESH_KEY = 'ragchat.refresh_token';
const API = '/api/v1';

export class ApiError extends Error {
  constructor({ status = 0, code = 'error', message = '', field = null, requestId = null, retryAfter = null } = {}) {
    super(message || code);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.field = field;
    this.requestId = requestId;
    this.retryAfter = retryAfter;
  }
}

/** A sentence for an error, for banners and inline messages. */
export function describe(err) {
  if (!(err instanceof ApiError)) {
    return `Something went wrong in the page: ${err && err.message ? err.message : String(err)}`;
  }
  let text;
  switch (err.code) {
    case 'network':
      text = 'Could not reach the server (network failure). Check your connection and try again.';
      break;
    case 'registration_closed':
      text = `Registration is closed on this server: ask an administrator to create an account for you. (${err.message})`;
      break;
    case 'invalid_credentials':
      text = err.message || 'Wrong username or password.';
      break;
    default:
      text = err.message || `The server answered ${err.status} (${err.code}).`;
  }
  if (err.field && !text.includes(err.field)) text += ` (field: ${err.field})`;
  if (err.status === 429 && !/retry|try again/i.test(text)) {
    const s = err.retryAfter;
    text += s ? ` Try again in ${s} second${s === '1' ? '' : 's'}.` : ' Try again shortly.';
  }
  if (err.status >= 500 && err.requestId) text += ` Request id: ${err.requestId}.`;
  return text;
}

// ---------------------------------------------------------------- session

const session = { access: null, expiresAt: 0, ttl: 900, user: null };
let refreshTimer = null;
const listeners = new Set();

export function currentUser() {
  return session.user;
}

/** When the current access token runs out (ms since the epoch), and its lifetime in seconds. */
export function accessExpiry() {
  return { at: session.expiresAt, ttl: session.ttl };
}

export function isAdmin() {
  return session.user && session.user.role === 'admin';
}

export function hasStoredSession() {
  try {
    return Boolean(localStorage.getItem(REFRESH_KEY));
  } catch (_) {
    return false;
  }
}

/** fn(user, reason, error) after every sign-in, renewal and sign-out. */
export function onSessionChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function emit(reason, err = null) {
  for (const fn of listeners) {
    try {
      fn(session.user, reason, err);
    } catch (e) {
      console.error(e);
    }
  }
}

function storeRefresh(token) {
  try {
    if (token) localStorage.setItem(REFRESH_KEY, token);
    else localStorage.removeItem(REFRESH_KEY);
  } catch (_) { /* storage disabled: the session lasts as long as the page */ }
}

function readRefresh() {
  try {
    return localStorage.getItem(REFRESH_KEY);
  } catch (_) {
    return null;
  }
}

function setSession(body, reason) {
  const first = !session.user;
  session.access = body.access_token;
  const ttl = Number(body.expires_in) || 900;
  session.expiresAt = Date.now() + ttl * 1000;
  session.ttl = ttl;
  session.user = body.user;
  storeRefresh(body.refresh_token);
  clearTimeout(refreshTimer);
  // Renew a minute before expiry (or at 80% of a short lifetime).
  const lead = Math.min(60, ttl * 0.2);
  refreshTimer = setTimeout(() => {
    refresh().catch((e) => console.warn('scheduled token renewal failed', e));
  }, Math.max(1, ttl - lead) * 1000);
  emit(first ? reason || 'signin' : 'renewed');
}

/** Forget the session locally (the server side is ended by logout). */
export function endSession(reason = 'signout', err = null) {
  const had = Boolean(session.user || session.access);
  session.access = null;
  session.expiresAt = 0;
  session.user = null;
  clearTimeout(refreshTimer);
  storeRefresh(null);
  if (had || err) emit(reason, err);
}

// ---------------------------------------------------------------- transport

async function errorFrom(status, text, headers) {
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch (_) {
    body = null;
  }
  const e = body && body.error ? body.error : {};
  return new ApiError({
    status,
    code: e.code || `http_${status}`,
    message: e.message || (status ? `The server answered HTTP ${status}.` : 'No answer from the server.'),
    field: e.field || null,
    requestId: e.request_id || headers.get('x-request-id'),
    retryAfter: headers.get('retry-after'),
  });
}

async function rawFetch(path, init) {
  try {
    return await fetch(path, { cache: 'no-store', credentials: 'same-origin', ...init });
  } catch (e) {
    if (e && e.name === 'AbortError') throw e;
    throw new ApiError({ code: 'network', message: 'network failure' });
  }
}

let refreshing = null;

/** Swap the stored refresh token for a new pair. Shared by concurrent callers. */
export function refresh() {
  if (!refreshing) {
    refreshing = doRefresh().finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

async function doRefresh() {
  const run = async () => {
    const token = readRefresh();
    if (!token) {
      const err = new ApiError({ status: 401, code: 'signed_out', message: 'You are signed out. Sign in again.' });
      endSession('expired', err);
      throw err;
    }
    const res = await rawFetch(`${API}/auth/refresh`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify({ refresh_token: token }),
    });
    const text = await res.text();
    if (!res.ok) {
      const err = await errorFrom(res.status, text, res.headers);
      if (res.status === 401) {
        err.message = `Your session has ended (${err.message}). Sign in again.`;
        endSession('expired', err);
      }
      throw err;
    }
    setSession(JSON.parse(text), 'restored');
  };
  if (navigator.locks && navigator.locks.request) {
    return navigator.locks.request('ragchat-refresh', run);
  }
  return run();
}

/** Renew first when the access token is (nearly) out of time. */
async function ensureFresh() {
  if (!session.access) {
    if (readRefresh()) await refresh();
    return;
  }
  const margin = Math.min(10_000, session.ttl * 200); // 10 s, or a fifth of a short lifetime
  if (Date.now() > session.expiresAt - margin) await refresh();
}

function authHeader() {
  return session.access ? { authorization: `Bearer ${session.access}` } : {};
}

/**
 * Call the API. `body` is sent as JSON; `form` as multipart. Resolves with
 * the parsed JSON (null for 204), throws ApiError.
 */
export async function request(method, path, { body, query, auth = true, retry = true, signal } = {}) {
  if (auth) await ensureFresh();
  let url = path.startsWith('/') ? path : `${API}/${path}`;
  if (query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) {
      if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
    }
    const s = q.toString();
    if (s) url += `?${s}`;
  }
  const headers = { accept: 'application/json', ...(auth ? authHeader() : {}) };
  const init = { method, headers, signal };
  if (body !== undefined) {
    headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await rawFetch(url, init);
  if (res.ok) {
    if (res.status === 204) return null;
    const text = await res.text();
    if (!text) return null;
    try {
      return JSON.parse(text);
    } catch (_) {
      return text;
    }
  }
  const err = await errorFrom(res.status, await res.text(), res.headers);
  if (auth && res.status === 401) {
    if (err.code === 'token_expired' && retry) {
      await refresh();
      return request(method, path, { body, query, auth, retry: false, signal });
    }
    if (err.code === 'unauthorized' || err.code === 'token_expired') {
      err.message = `Your session has ended (${err.message}). Sign in again.`;
      endSession('expired', err);
    }
  }
  throw err;
}

export const api = {
  get: (path, query) => request('GET', path, { query }),
  post: (path, body) => request('POST', path, { body }),
  patch: (path, body) => request('PATCH', path, { body }),
  put: (path, body) => request('PUT', path, { body }),
  del: (path) => request('DELETE', path),
};

/**
 * Multipart upload with progress (XMLHttpRequest, since fetch reports none).
 * onProgress(loaded, total). Resolves with the parsed JSON body.
 */
export async function upload(path, formData, onProgress, retry = true) {
  await ensureFresh();
  const url = path.startsWith('/') ? path : `${API}/${path}`;
  const result = await new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', url);
    xhr.setRequestHeader('accept', 'application/json');
    if (session.access) xhr.setRequestHeader('authorization', `Bearer ${session.access}`);
    xhr.upload.addEventListener('progress', (e) => {
      if (onProgress) onProgress(e.loaded, e.lengthComputable ? e.total : 0);
    });
    xhr.addEventListener('error', () => reject(new ApiError({ code: 'network', message: 'network failure' })));
    xhr.addEventListener('abort', () => reject(new ApiError({ code: 'aborted', message: 'The upload was cancelled.' })));
    xhr.addEventListener('load', async () => {
      const headers = { get: (n) => xhr.getResponseHeader(n) };
      if (xhr.status >= 200 && xhr.status < 300) {
        try {
          resolve({ ok: true, body: xhr.responseText ? JSON.parse(xhr.responseText) : null });
        } catch (e) {
          reject(new ApiError({ status: xhr.status, code: 'bad_response', message: 'The server sent an unreadable answer.' }));
        }
      } else {
        resolve({ ok: false, err: await errorFrom(xhr.status, xhr.responseText, headers) });
      }
    });
    xhr.send(formData);
  });
  if (result.ok) return result.body;
  const err = result.err;
  if (err.status === 401) {
    if (err.code === 'token_expired' && retry) {
      await refresh();
      return upload(path, formData, onProgress, false);
    }
    if (err.code === 'unauthorized') endSession('expired', err);
  }
  throw err;
}

// ---------------------------------------------------------------- account

export async function signIn(login, password) {
  const id = login.trim();
  const body = id.includes('@') ? { email: id, password } : { username: id, password };
  const res = await request('POST', 'auth/login', { body, auth: false });
  setSession(res, 'signin');
  return res.user;
}

export async function register(username, password, email) {
  const body = { username: username.trim(), password };
  if (email && email.trim()) body.email = email.trim();
  await request('POST', 'auth/register', { body, auth: false });
  return signIn(username, password);
}

export async function signOut() {
  const token = readRefresh();
  try {
    if (token) await request('POST', 'auth/logout', { body: { refresh_token: token }, auth: false });
  } finally {
    endSession('signout');
  }
}

/** Sign back in from the stored refresh token; false when there is none. */
export async function restore() {
  if (!readRefresh()) return false;
  await refresh();
  return true;
}

/** A WebSocket URL for `path` carrying a fresh single-use ticket. */
export async function socketUrl(path) {
  const t = await api.post('ws-tickets');
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${proto}//${location.host}${API}/${path}?ticket=${encodeURIComponent(t.ticket)}`;
}

/** Every page of a cursor-paged list (up to `maxPages`). */
export async function allPages(path, { limit = 100, maxPages = 20, query = {} } = {}) {
  const items = [];
  let cursor = null;
  for (let i = 0; i < maxPages; i += 1) {
    const page = await api.get(path, { ...query, limit, cursor });
    items.push(...(page.items || []));
    cursor = page.next_cursor;
    if (!cursor) break;
  }
  return items;
}
