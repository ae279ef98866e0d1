// Chat: conversations, messages with sources, streamed answers over the
// chat WebSocket, citations that open the cited passage.

import { api, describe, ApiError } from './api.js';
import { h, replace, fmtDate, fmtNum, confirmDialog, promptDialog, uid } from './dom.js';
import { renderMarkdown, safeUrl } from './markdown.js';
import { markWords } from './highlight.js';
import { ChatSocket } from './socket.js';
import { showError, clearError, notify, busy } from './ui.js';

const PAGE = 20;

export function chatView(root, params, ctx) {
  let convId = params.conversation || null;
  let convTitle = null;
  let convCursor = null;
  let active = null; // the answer being streamed
  let loadToken = 0; // bumps when the shown conversation changes
  let loaded = []; // the fetched messages of the shown conversation, oldest first
  let shownFrom = 0; // index in `loaded` of the first rendered message
  const SHOW = 50;

  // ---------------------------------------------------------------- layout
  const convList = h('ul', { class: 'conv-list', 'aria-label': 'Conversations' });
  const olderConvs = h('button', { type: 'button', class: 'subtle', testid: 'conversations-older', hidden: true }, 'Load older conversations');
  const newConv = h('button', { type: 'button', class: 'primary block', testid: 'new-conversation' }, '+ New conversation');
  const convPane = h('aside', { class: 'conv-pane', 'aria-label': 'Conversations' },
    newConv, convList, olderConvs);

  const titleEl = h('h1', { class: 'thread-title', testid: 'conversation-title' }, 'New conversation');
  const statusText = h('span', { class: 'status-text' }, 'Not connected');
  const reconnectBtn = h('button', { type: 'button', class: 'link-button', hidden: true, testid: 'chat-reconnect' }, 'Reconnect now');
  const status = h('div', { class: 'conn-status', testid: 'chat-status', role: 'status', 'aria-live': 'polite', dataset: { state: 'closed' } },
    h('span', { class: 'dot', 'aria-hidden': 'true' }), statusText, ' ', reconnectBtn);
  const messages = h('div', { class: 'messages', testid: 'messages', 'aria-label': 'Messages' });
  const moreMessages = h('button', { type: 'button', class: 'subtle', testid: 'messages-more', hidden: true }, 'Load later messages');
  const olderMessages = h('button', { type: 'button', class: 'subtle', testid: 'messages-older', hidden: true }, 'Show older messages');
  const empty = h('div', { class: 'chat-empty' },
    h('p', null, 'Ask a question about your documents. Answers cite the passages they come from, like [1]; select a citation to read the passage.'));

  const input = h('textarea', { id: uid('q'), rows: 2, testid: 'chat-input', placeholder: 'Ask a question…', maxlength: 4000, 'aria-label': 'Your question' });
  const sendBtn = h('button', { type: 'submit', class: 'primary', testid: 'chat-send' }, 'Send');
  const stopBtn = h('button', { type: 'button', class: 'danger', testid: 'chat-stop', hidden: true }, 'Stop');
  const collBox = h('div', { class: 'check-list', testid: 'chat-collections' }, h('span', { class: 'muted' }, 'Loading collections…'));
  const topK = h('input', { type: 'number', min: 1, max: 20, placeholder: 'default', id: uid('k'), testid: 'chat-top-k', class: 'narrow' });
  const options = h('details', { class: 'chat-options' },
    h('summary', null, 'Options'),
    h('fieldset', null, h('legend', null, 'Collections (none ticked: all you can read)'), collBox),
    h('div', { class: 'field inline' }, h('label', { for: topK.id }, 'Passages (top_k)'), topK));
  const composer = h('form', { class: 'composer', testid: 'chat-form' },
    h('div', { class: 'composer-row' }, input, h('div', { class: 'composer-buttons' }, sendBtn, stopBtn)),
    h('div', { class: 'composer-foot' }, options, h('small', { class: 'muted' }, 'Enter sends, Shift+Enter adds a line.')));
  const threadPane = h('section', { class: 'thread-pane', 'aria-labelledby': titleEl.id || (titleEl.id = uid('t')) },
    h('div', { class: 'thread-head' }, titleEl, status),
    h('div', { class: 'messages-scroll', testid: 'messages-scroll' }, empty, olderMessages, messages, moreMessages),
    composer);

  const panel = sourcePanel();
  root.appendChild(h('div', { class: 'chat-layout' }, convPane, threadPane, panel.el));

  // ---------------------------------------------------------------- socket
  const socket = new ChatSocket({
    onFrame: handleFrame,
    isBusy: () => Boolean(active),
    onStatus: (state, info) => {
      status.dataset.state = state;
      reconnectBtn.hidden = state !== 'reconnecting';
      if (state === 'open') statusText.textContent = 'Connected';
      else if (state === 'connecting') statusText.textContent = 'Connecting…';
      else if (state === 'reconnecting') {
        statusText.textContent = info.delay
          ? `Connection lost (${info.reason || 'dropped'}). Reconnecting in ${info.delay} s…`
          : `Reconnecting${info.reason ? ` (${info.reason})` : ''}…`;
      } else statusText.textContent = `Not connected${info.reason ? ` (${info.reason})` : ''}`;
    },
    onDrop: (reason) => {
      if (active) {
        active.fail(new ApiError({ code: 'connection_lost', message: `The connection dropped while answering (${reason}). What was written so far is kept in the conversation; ask again to continue.` }));
        endAnswer();
      }
    },
  });
  reconnectBtn.addEventListener('click', () => socket.reconnectNow());
  socket.start();

  // ---------------------------------------------------------------- conversations
  async function loadConversations(more = false) {
    try {
      const page = await api.get('conversations', { limit: PAGE, cursor: more ? convCursor : null });
      if (!more) replace(convList);
      for (const c of page.items) convList.appendChild(convItem(c));
      convCursor = page.next_cursor;
      olderConvs.hidden = !convCursor;
      markCurrent();
      if (!more && page.items.length === 0) {
        convList.appendChild(h('li', { class: 'muted empty-item' }, 'No conversations yet.'));
      }
    } catch (e) {
      showError(e, 'Could not load conversations');
    }
  }

  function convItem(c) {
    const link = h('a', { href: `#/chat/${encodeURIComponent(c.id)}`, class: 'conv-link' },
      h('span', { class: 'conv-title' }, c.title),
      h('small', { class: 'muted' }, fmtDate(c.updated_at)));
    const rename = h('button', { type: 'button', class: 'icon-button', 'aria-label': `Rename “${c.title}”`, title: 'Rename', testid: 'conversation-rename' }, '✎');
    const del = h('button', { type: 'button', class: 'icon-button', 'aria-label': `Delete “${c.title}”`, title: 'Delete', testid: 'conversation-delete' }, '✕');
    const li = h('li', { class: 'conv-item', testid: 'conversation-item', dataset: { id: c.id } }, link, h('span', { class: 'conv-actions' }, rename, del));
    rename.addEventListener('click', async () => {
      const title = await promptDialog('Rename conversation', 'Title', c.title, { maxLength: 200 });
      if (title === undefined) return;
      await busy(rename, async () => {
        const updated = await api.patch(`conversations/${encodeURIComponent(c.id)}`, { title: title.trim() });
        c.title = updated.title;
        link.querySelector('.conv-title').textContent = updated.title;
        rename.setAttribute('aria-label', `Rename “${updated.title}”`);
        del.setAttribute('aria-label', `Delete “${updated.title}”`);
        if (convId === c.id) setTitle(updated.title);
        notify('Conversation renamed.');
      }, 'Could not rename the conversation');
    });
    del.addEventListener('click', async () => {
      const ok = await confirmDialog('Delete conversation', `Delete “${c.title}” and all its messages? This cannot be undone.`);
      if (!ok) return;
      await busy(del, async () => {
        await api.del(`conversations/${encodeURIComponent(c.id)}`);
        li.remove();
        notify('Conversation deleted.');
        if (convId === c.id) ctx.navigate('#/chat');
      }, 'Could not delete the conversation');
    });
    return li;
  }

  function upsertConv(c) {
    const existing = convList.querySelector(`[data-id="${CSS.escape(c.id)}"]`);
    if (existing) {
      existing.querySelector('.conv-title').textContent = c.title;
      convList.prepend(existing);
    } else {
      const placeholder = convList.querySelector('.empty-item');
      if (placeholder) placeholder.remove();
      convList.prepend(convItem({ ...c, updated_at: c.updated_at || new Date().toISOString() }));
    }
    markCurrent();
  }

  function markCurrent() {
    for (const li of convList.querySelectorAll('.conv-item')) {
      const a = li.querySelector('a');
      if (li.dataset.id === convId) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
  }

  function setTitle(t) {
    convTitle = t;
    titleEl.textContent = t || 'New conversation';
  }

  // ---------------------------------------------------------------- messages
  let msgCursor = null;

  async function showConversation(id) {
    loadToken += 1;
    const token = loadToken;
    convId = id;
    markCurrent();
    panel.close(false);
    replace(messages);
    moreMessages.hidden = true;
    olderMessages.hidden = true;
    loaded = [];
    shownFrom = 0;
    if (!id) {
      setTitle(null);
      empty.hidden = false;
      input.focus();
      return;
    }
    empty.hidden = true;
    setTitle('Loading…');
    try {
      const conv = await api.get(`conversations/${encodeURIComponent(id)}`);
      if (token !== loadToken) return;
      setTitle(conv.title);
      msgCursor = null;
      await loadMessages(token);
    } catch (e) {
      if (token !== loadToken) return;
      setTitle('Conversation not found');
      showError(e, 'Could not open the conversation');
    }
  }

  // The API pages messages oldest first (a cursor leads to later ones). Read
  // pages up to the newest (bounded), show the latest SHOW, and reveal older
  // ones on demand, so the thread ends with the latest exchange.
  async function loadMessages(token, maxPages = 10) {
    const before = loaded.length;
    for (let i = 0; i < maxPages; i += 1) {
      const page = await api.get(`conversations/${encodeURIComponent(convId)}/messages`, { limit: 100, cursor: msgCursor });
      if (token !== loadToken) return;
      loaded.push(...page.items);
      msgCursor = page.next_cursor;
      if (!msgCursor) break;
    }
    if (before === 0) shownFrom = Math.max(0, loaded.length - SHOW);
    const frag = document.createDocumentFragment();
    for (let i = Math.max(before, shownFrom); i < loaded.length; i += 1) frag.appendChild(renderStored(i));
    messages.appendChild(frag);
    olderMessages.hidden = shownFrom === 0;
    moreMessages.hidden = !msgCursor;
    if (before === 0) scrollToEnd();
  }

  function showOlder() {
    const from = Math.max(0, shownFrom - SHOW);
    const frag = document.createDocumentFragment();
    for (let i = from; i < shownFrom; i += 1) frag.appendChild(renderStored(i));
    const sc = threadPane.querySelector('.messages-scroll');
    const height = sc.scrollHeight;
    messages.prepend(frag);
    sc.scrollTop += sc.scrollHeight - height; // keep the view where it was
    shownFrom = from;
    olderMessages.hidden = shownFrom === 0;
    const first = messages.firstElementChild;
    if (olderMessages.hidden && first) {
      first.setAttribute('tabindex', '-1');
      first.focus();
    }
  }

  moreMessages.addEventListener('click', () => busy(moreMessages, () => loadMessages(loadToken, 1), 'Could not load later messages'));
  olderMessages.addEventListener('click', showOlder);

  /** The question an assistant message at index i answered. */
  function questionBefore(i) {
    for (let j = i - 1; j >= 0; j -= 1) if (loaded[j].role === 'user') return loaded[j].content;
    return '';
  }

  function renderStored(i) {
    const m = loaded[i];
    if (m.role === 'user') return userMessage(m.content, m.created_at);
    const meta = m.metadata || {};
    const a = new AnswerView(questionBefore(i), panel);
    a.setSources(meta.sources || []);
    a.text = m.content || '';
    a.render();
    let state = 'done';
    if (meta.refused) state = 'refused';
    else if (meta.error) state = 'error';
    else if (meta.cancelled) state = 'cancelled';
    a.finish({
      state,
      citations: meta.citations || [],
      dropped: meta.dropped_citations,
      model: meta.model,
      timings: meta.timings,
      usage: meta.usage,
      created: m.created_at,
      error: meta.error,
    });
    return a.el;
  }

  function userMessage(text, created) {
    return h('article', { class: 'msg user', testid: 'question' },
      h('div', { class: 'msg-who' }, 'You', created ? h('small', { class: 'muted' }, ` · ${fmtDate(created)}`) : null),
      h('div', { class: 'msg-text' }, text));
  }

  function scrollToEnd() {
    const sc = threadPane.querySelector('.messages-scroll');
    sc.scrollTop = sc.scrollHeight;
  }

  // ---------------------------------------------------------------- asking
  function selectedCollections() {
    const names = [...collBox.querySelectorAll('input:checked')].map((c) => c.value);
    return names.length ? names : undefined;
  }

  async function ask() {
    const text = input.value.trim();
    if (!text || active) return;
    clearError();
    empty.hidden = true;
    messages.appendChild(userMessage(text));
    const a = new AnswerView(text, panel);
    a.setStatus('Connecting…');
    messages.appendChild(a.el);
    active = a;
    a.convId = convId;
    setBusy(true);
    scrollToEnd();
    try {
      await socket.readyForAnswer();
    } catch (e) {
      a.fail(new ApiError({ code: 'not_connected', message: `Could not connect to the chat service (${e.message}). Your question was not sent.` }));
      endAnswer();
      return;
    }
    const frame = { type: 'ask', conversation_id: convId, message: text };
    const cols = selectedCollections();
    if (cols) frame.collections = cols;
    if (topK.value) frame.top_k = Number(topK.value);
    if (!socket.send(frame)) {
      a.fail(new ApiError({ code: 'not_connected', message: 'The chat connection closed before the question could be sent. Try again.' }));
      endAnswer();
      return;
    }
    a.setStatus('Searching the knowledge base…');
    input.value = '';
  }

  function setBusy(on) {
    sendBtn.disabled = on;
    stopBtn.hidden = !on;
    stopBtn.disabled = false;
    composer.classList.toggle('busy', on);
  }

  function endAnswer() {
    active = null;
    setBusy(false);
    socket.idle();
  }

  function handleFrame(f) {
    const a = active;
    if (!a) return; // a frame for an answer we gave up on
    switch (f.type) {
      case 'conversation': {
        const isNew = !a.convId;
        a.convId = f.id;
        if (a.el.isConnected && (convId === null || convId === f.id)) {
          convId = f.id;
          setTitle(f.title);
          if (isNew) history.replaceState(null, '', `#/chat/${encodeURIComponent(f.id)}`);
        }
        upsertConv({ id: f.id, title: f.title });
        break;
      }
      case 'sources':
        a.setSources(f.items || []);
        a.setStatus(f.items && f.items.length ? 'Writing the answer…' : 'No relevant passage found…');
        break;
      case 'delta':
        a.append(f.text || '');
        if (a.el.isConnected) scrollToEnd();
        break;
      case 'done':
        a.finish({
          state: f.refused ? 'refused' : f.cancelled ? 'cancelled' : 'done',
          citations: f.citations || [],
          dropped: f.dropped_citations,
          model: f.model,
          timings: f.timings,
          usage: f.usage,
        });
        endAnswer();
        break;
      case 'error':
        a.fail(new ApiError({ code: f.code, message: f.message, requestId: f.request_id }));
        if (f.code === 'rate_limited') showError(new ApiError({ code: f.code, message: f.message, status: 429 }), 'Chat');
        endAnswer();
        break;
      default:
        break;
    }
  }

  composer.addEventListener('submit', (e) => {
    e.preventDefault();
    ask();
  });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      ask();
    }
  });
  stopBtn.addEventListener('click', () => {
    if (!active) return;
    stopBtn.disabled = true;
    active.setStatus('Stopping…');
    if (!socket.send({ type: 'cancel' })) {
      active.fail(new ApiError({ code: 'not_connected', message: 'The connection is down, so the answer stopped.' }));
      endAnswer();
    }
  });
  newConv.addEventListener('click', () => {
    ctx.navigate('#/chat');
    input.focus();
  });
  olderConvs.addEventListener('click', () => busy(olderConvs, () => loadConversations(true)));

  async function loadCollections() {
    try {
      const page = await api.get('collections');
      replace(collBox);
      if (!page.items.length) collBox.appendChild(h('span', { class: 'muted' }, 'No collections you can read yet.'));
      for (const c of page.items) {
        const id = uid('c');
        collBox.appendChild(h('span', { class: 'check' },
          h('input', { type: 'checkbox', id, value: c.name }), h('label', { for: id }, c.name)));
      }
    } catch (e) {
      replace(collBox, h('span', { class: 'muted' }, `Could not load collections: ${describe(e)}`));
    }
  }

  loadConversations();
  loadCollections();
  showConversation(convId);

  return {
    update(p) {
      const id = p.conversation || null;
      if (id === convId && id !== null) return;
      if (id === null && convId === null) return;
      showConversation(id);
    },
    destroy() {
      loadToken += 1;
      socket.destroy();
      panel.destroy();
    },
  };
}

// -------------------------------------------------------------------- one answer

class AnswerView {
  constructor(question, panel) {
    this.question = question;
    this.panel = panel;
    this.text = '';
    this.sources = [];
    this.citedSet = new Set();
    this.frame = 0;
    this.statusEl = h('div', { class: 'answer-status', 'aria-live': 'polite' });
    this.badge = h('span', { class: 'badge', hidden: true });
    this.body = h('div', { class: 'answer-body md' });
    this.sourcesEl = h('div', { class: 'answer-sources' });
    this.metaEl = h('div', { class: 'answer-meta muted' });
    this.errorEl = h('div', { class: 'answer-error', role: 'alert', hidden: true });
    this.streaming = true;
    // The answer element holds the answer's own text only while it streams
    // (status lines sit beside it), so its text is exactly what was written.
    this.answerEl = h('article', { class: 'answer', testid: 'answer', dataset: { state: 'streaming' }, 'aria-busy': 'true' },
      this.body, this.errorEl, this.sourcesEl, this.metaEl);
    this.el = h('div', { class: 'msg assistant' },
      h('div', { class: 'msg-who' }, 'Answer ', this.badge),
      this.statusEl, this.answerEl);
  }

  setStatus(text) {
    this.statusEl.textContent = text || '';
    this.statusEl.hidden = !text;
  }

  setSources(items) {
    this.sources = items || [];
    if (!this.streaming) this.renderSources();
  }

  append(text) {
    this.text += text;
    this.setStatus('');
    if (!this.frame) {
      // Re-render at most every 30 ms while text streams in.
      this.frame = setTimeout(() => {
        this.frame = 0;
        this.render();
      }, 30);
    }
  }

  source(n) {
    return this.sources.find((s) => Number(s.n) === Number(n));
  }

  citeButton(n) {
    const s = this.source(n);
    if (!s) return null;
    return h('button', {
      type: 'button', class: 'cite', testid: 'citation', dataset: { n: String(n) },
      'aria-label': `Source ${n}: ${s.title || s.source}`, title: s.title || s.source,
      onclick: (e) => this.panel.open(s, this.question, e.currentTarget),
    }, `[${n}]`);
  }

  render() {
    if (this.frame) {
      clearTimeout(this.frame);
      this.frame = 0;
    }
    replace(this.body, renderMarkdown(this.text, { cite: (n) => this.citeButton(n) }));
  }

  renderSources() {
    replace(this.sourcesEl);
    if (!this.sources.length) return;
    const list = h('ol', { class: 'source-list' });
    for (const s of this.sources) {
      const cited = this.citedSet.has(Number(s.n));
      list.appendChild(h('li', { class: cited ? 'cited' : null, value: String(s.n) },
        h('button', { type: 'button', class: 'source-link', testid: 'source-item', dataset: { n: String(s.n) }, onclick: (e) => this.panel.open(s, this.question, e.currentTarget) },
          h('span', { class: 'source-n' }, `[${s.n}]`), ' ',
          h('span', { class: 'source-title' }, s.title || s.source || 'Untitled'),
          h('small', { class: 'muted' }, ` — ${s.collection} · ${s.source}`)),
        cited ? h('span', { class: 'sr-only' }, ' (cited)') : null));
    }
    this.sourcesEl.appendChild(h('details', { class: 'sources', testid: 'answer-sources' },
      h('summary', null, `Sources (${this.sources.length})`), list));
  }

  finish({ state, citations, dropped, model, timings, usage, created, error }) {
    this.render();
    if (state === 'cancelled' && !this.text.trim()) {
      this.body.appendChild(h('p', { class: 'muted' }, 'Stopped before any text was written.'));
    }
    this.setStatus('');
    this.streaming = false;
    this.answerEl.dataset.state = state;
    this.answerEl.removeAttribute('aria-busy');
    this.el.classList.add(`state-${state}`);
    this.citedSet = new Set((citations || []).map(Number));
    this.renderSources();
    const labels = { refused: 'Not covered by the knowledge base', cancelled: 'Stopped', error: 'Failed' };
    if (labels[state]) {
      this.badge.textContent = labels[state];
      this.badge.className = `badge badge-${state}`;
      this.badge.hidden = false;
    }
    if (error) this.showError(new ApiError({ code: error.code, message: error.message, requestId: error.request_id }));
    const bits = [];
    if (created) bits.push(fmtDate(created));
    if (model && model !== 'none') bits.push(`model ${model}`);
    if (timings && timings.total_ms !== undefined) {
      bits.push(`${fmtNum(timings.total_ms / 1000, 2)} s`);
      if (timings.first_token_ms) bits.push(`first text after ${fmtNum(timings.first_token_ms / 1000, 2)} s`);
    }
    if (usage && usage.completion_tokens) bits.push(`${usage.prompt_tokens} + ${usage.completion_tokens} tokens`);
    if (dropped) bits.push(`${dropped} citation${dropped === 1 ? '' : 's'} removed (pointed at no source)`);
    this.metaEl.textContent = bits.join(' · ');
  }

  showError(err) {
    this.errorEl.textContent = describe(err) + (err.requestId && err.status < 500 ? ` (request id ${err.requestId})` : '');
    this.errorEl.hidden = false;
  }

  fail(err) {
    this.render();
    this.setStatus('');
    this.showError(err);
    this.streaming = false;
    this.answerEl.dataset.state = 'error';
    this.answerEl.dataset.code = err.code || '';
    this.answerEl.removeAttribute('aria-busy');
    this.el.classList.add('state-error');
    this.badge.textContent = 'Failed';
    this.badge.className = 'badge badge-error';
    this.badge.hidden = false;
    this.renderSources();
  }
}

// -------------------------------------------------------------------- source panel

function sourcePanel() {
  const heading = h('h2', { tabindex: '-1', class: 'panel-title' }, 'Source');
  const meta = h('dl', { class: 'source-meta' });
  const passage = h('blockquote', { class: 'passage', testid: 'source-passage' });
  const closeBtn = h('button', { type: 'button', class: 'icon-button', 'aria-label': 'Close source', testid: 'source-close' }, '×');
  const el = h('aside', { class: 'source-panel', testid: 'source-panel', hidden: true, 'aria-label': 'Cited source' },
    h('div', { class: 'panel-head' }, heading, closeBtn),
    meta,
    h('p', { class: 'muted small' }, 'The passage the answer cites; words of your question are highlighted.'),
    passage);
  let returnTo = null;

  const onKey = (e) => {
    if (e.key === 'Escape' && !el.hidden && !document.querySelector('dialog[open]')) {
      e.preventDefault();
      close();
    }
  };
  document.addEventListener('keydown', onKey);

  function row(label, value) {
    return [h('dt', null, label), h('dd', null, value)];
  }

  function open(s, question, from) {
    returnTo = from || null;
    heading.textContent = `[${s.n}] ${s.title || s.source || 'Source'}`;
    const url = safeUrl(s.source || '');
    replace(meta,
      row('Source', url ? h('a', { href: url, target: '_blank', rel: 'noopener noreferrer' }, s.source) : (s.source || '—')),
      row('Collection', s.collection || '—'),
      row('Score', fmtNum(s.score, 4)));
    // The whole passage when the server sent it (answers stored before it
    // did carry only the snippet).
    replace(passage, ...markWords(s.text || s.snippet || '', question));
    el.dataset.n = String(s.n);
    el.hidden = false;
    document.body.classList.add('source-open');
    heading.focus();
  }

  function close(restoreFocus = true) {
    if (el.hidden) return;
    el.hidden = true;
    document.body.classList.remove('source-open');
    if (restoreFocus && returnTo && returnTo.isConnected) returnTo.focus();
    returnTo = null;
  }

  closeBtn.addEventListener('click', () => close());
  return {
    el,
    open,
    close,
    destroy() {
      document.removeEventListener('keydown', onKey);
      document.body.classList.remove('source-open');
    },
  };
}
