// WebSockets opened with single-use tickets (never a token in the URL).

import { socketUrl, describe, onSessionChange, accessExpiry, refresh } from './api.js';

const BACKOFF = [1, 2, 4, 8, 15, 30];

/**
 * Close a socket without the browser's "closed before the connection is
 * established" error: one still connecting is closed as soon as it opens.
 */
function closeQuietly(ws, code = 1000, reason = '') {
  if (!ws) return;
  try {
    if (ws.readyState === WebSocket.CONNECTING) {
      ws.addEventListener('open', () => ws.close(code, reason));
    } else if (ws.readyState === WebSocket.OPEN) {
      ws.close(code, reason);
    }
  } catch (_) { /* already closed */ }
}

/**
 * The chat socket: connects on start(), reconnects with backoff (and a new
 * ticket) when it drops, and reports its state through onStatus(state, info):
 *   connecting | open | reconnecting {delay, reason} | closed {reason}
 * Frames go to onFrame(frame); a drop to onDrop(reason).
 */
export class ChatSocket {
  constructor({ onFrame, onStatus, onDrop, isBusy }) {
    this.onFrame = onFrame;
    this.onStatus = onStatus;
    this.onDrop = onDrop;
    this.isBusy = isBusy || (() => false);
    this.ws = null;
    this.attempt = 0;
    this.timer = null;
    this.stopped = true;
    this.waiters = [];
    this.renewPending = false;
    this.state = 'closed';
    this.credentialExpiresAt = 0;
    // A renewed access token: the open socket still lives only as long as
    // the old one, so move to a new socket while nothing is streaming.
    this.unsubscribe = onSessionChange((user, reason) => {
      if (reason === 'renewed' && user && !this.stopped) this.renew();
      if (!user) this.stop('signed out');
    });
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.connect();
  }

  stop(reason = 'closed') {
    this.stopped = true;
    clearTimeout(this.timer);
    const ws = this.ws;
    this.ws = null;
    closeQuietly(ws, 1000, 'bye');
    this.rejectWaiters(new Error(reason));
    this.setStatus('closed', { reason });
  }

  destroy() {
    this.stop('left the page');
    this.unsubscribe();
  }

  get isOpen() {
    return Boolean(this.ws && this.ws.readyState === WebSocket.OPEN);
  }

  setStatus(state, info = {}) {
    this.state = state;
    if (this.onStatus) this.onStatus(state, info);
  }

  /** Resolves when the socket is open (connecting now if it is not). */
  ready(timeoutMs = 20000) {
    if (this.isOpen) return Promise.resolve();
    if (this.stopped) this.start();
    else if (this.state === 'reconnecting') this.reconnectNow();
    return new Promise((resolve, reject) => {
      const w = { resolve, reject };
      w.timer = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new Error('the chat connection could not be opened in time'));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  resolveWaiters() {
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) {
      clearTimeout(w.timer);
      w.resolve();
    }
  }

  rejectWaiters(err) {
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) {
      clearTimeout(w.timer);
      w.reject(err);
    }
  }

  send(frame) {
    if (!this.isOpen) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  reconnectNow() {
    clearTimeout(this.timer);
    if (!this.stopped && !this.ws) this.connect();
  }

  /**
   * Open for an answer: the server closes a socket when the credential it
   * was opened with expires, so a socket close to that moment is swapped
   * (after renewing the token if needed) before the question is sent.
   */
  async readyForAnswer() {
    const { ttl } = accessExpiry();
    const margin = Math.min(120, ttl / 2) * 1000;
    if (this.isOpen && this.credentialExpiresAt - Date.now() < margin) {
      if (accessExpiry().at - Date.now() < margin) await refresh();
      this.swap();
    }
    return this.ready();
  }

  /** Swap to a fresh socket (new credential) once idle. */
  renew() {
    if (this.stopped || !this.ws) return;
    if (this.isBusy()) {
      this.renewPending = true;
      return;
    }
    this.swap();
  }

  swap() {
    if (this.stopped || !this.ws) return;
    this.renewPending = false;
    const old = this.ws;
    this.ws = null;
    closeQuietly(old, 1000, 'renewing');
    this.connect(true);
  }

  /** Call when an answer has ended, to run a renewal that waited for it. */
  idle() {
    if (this.renewPending) this.renew();
  }

  async connect(quiet = false) {
    if (this.stopped) return;
    clearTimeout(this.timer);
    if (!quiet || this.state !== 'open') this.setStatus(this.attempt ? 'reconnecting' : 'connecting', { delay: 0 });
    let url;
    try {
      url = await socketUrl('chat/ws');
    } catch (e) {
      if (this.stopped) return;
      if (e && e.status === 401) {
        // The session is gone; the app returns to the sign-in page.
        this.stop(describe(e));
        return;
      }
      const reason = e && e.code === 'network' ? 'the server cannot be reached'
        : e && e.status === 429 ? `rate limited: ${e.message}` : describe(e);
      this.scheduleReconnect(reason, e && e.retryAfter ? Number(e.retryAfter) : null);
      return;
    }
    if (this.stopped) return;
    this.credentialExpiresAt = accessExpiry().at;
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (e) {
      this.scheduleReconnect(String(e && e.message));
      return;
    }
    this.ws = ws;
    ws.addEventListener('open', () => {
      if (this.ws !== ws) return;
      this.attempt = 0;
      this.setStatus('open');
      this.resolveWaiters();
    });
    ws.addEventListener('message', (ev) => {
      if (this.ws !== ws || typeof ev.data !== 'string') return;
      let frame;
      try {
        frame = JSON.parse(ev.data);
      } catch (_) {
        return;
      }
      this.onFrame(frame);
    });
    ws.addEventListener('close', (ev) => {
      if (this.ws !== ws) return; // replaced on purpose
      this.ws = null;
      const reason = closeReason(ev);
      if (this.onDrop) this.onDrop(reason);
      if (this.stopped) return;
      // An expired token: renew and reconnect at once (the ticket request
      // renews the access token when it has run out).
      const immediate = ev.code === 1008 && /token expired/i.test(ev.reason || '');
      this.scheduleReconnect(reason, immediate ? 0 : null);
    });
  }

  scheduleReconnect(reason, delaySecs = null) {
    if (this.stopped) return;
    const base = delaySecs !== null && delaySecs !== undefined && !Number.isNaN(delaySecs)
      ? delaySecs
      : BACKOFF[Math.min(this.attempt, BACKOFF.length - 1)] * (0.8 + Math.random() * 0.4);
    this.attempt += 1;
    const delay = Math.max(0, base);
    this.setStatus('reconnecting', { delay: Math.ceil(delay), reason });
    this.timer = setTimeout(() => this.connect(), delay * 1000);
  }
}

function closeReason(ev) {
  if (ev.code === 1008) return `the server ended the connection: ${ev.reason || 'policy'}`;
  if (ev.code === 1000 || ev.code === 1001) return ev.reason ? `closed: ${ev.reason}` : 'the server closed the connection';
  if (ev.code === 1006) return 'the connection dropped (or the server refused it)';
  return `closed with code ${ev.code}${ev.reason ? `: ${ev.reason}` : ''}`;
}

/**
 * Follow a job: over its events socket, falling back to polling
 * GET /jobs/{id} when the socket cannot be used. onJob(job) for every state;
 * resolves with the finished job. stop() ends it early.
 */
export function followJob(jobId, onJob, { get, pollMs = 1500 } = {}) {
  let stopped = false;
  let ws = null;
  let pollTimer = null;
  const FINISHED = new Set(['succeeded', 'failed', 'cancelled', 'dead']);
  const done = new Promise((resolve, reject) => {
    let last = null;
    const seen = (job) => {
      if (stopped) return;
      last = job;
      onJob(job);
      if (FINISHED.has(job.state)) {
        stopped = true;
        closeQuietly(ws);
        clearTimeout(pollTimer);
        resolve(job);
      }
    };
    const poll = async () => {
      if (stopped) return;
      try {
        seen(await get(`jobs/${encodeURIComponent(jobId)}`));
      } catch (e) {
        if (e && (e.status === 404 || e.status === 401 || e.status === 403)) {
          stopped = true;
          reject(e);
          return;
        }
        // network trouble or 429: keep polling, slower
      }
      if (!stopped) pollTimer = setTimeout(poll, pollMs);
    };
    const fallback = () => {
      if (stopped || pollTimer) return;
      pollTimer = setTimeout(poll, 0);
    };
    (async () => {
      let url;
      try {
        url = await socketUrl(`jobs/${encodeURIComponent(jobId)}/events`);
      } catch (_) {
        fallback();
        return;
      }
      if (stopped) return;
      try {
        ws = new WebSocket(url);
      } catch (_) {
        fallback();
        return;
      }
      ws.addEventListener('message', (ev) => {
        try {
          const f = JSON.parse(ev.data);
          if (f && f.type === 'job' && f.job) seen(f.job);
        } catch (_) { /* not a frame we know */ }
      });
      ws.addEventListener('close', () => {
        ws = null;
        // Closed before a finished state: poll to the end.
        if (!stopped && !(last && FINISHED.has(last.state))) fallback();
      });
    })();
  });
  return {
    done,
    stop() {
      stopped = true;
      clearTimeout(pollTimer);
      closeQuietly(ws);
    },
  };
}
