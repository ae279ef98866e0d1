// DOM helpers. Everything is built with createElement/textContent: no HTML
// strings are ever parsed, so nothing from the server or a document can run.

/**
 * h('button', {class: 'primary', onclick: fn, dataset: {testid: 'x'}}, 'Text', child, [more])
 * Attributes: `class`, `text`, `dataset` (object), `on<event>` (function),
 * boolean `true`/`false` (present/absent), anything else via setAttribute.
 * `style` is refused (the Content-Security-Policy forbids inline styles).
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.className = Array.isArray(v) ? v.filter(Boolean).join(' ') : v;
      else if (k === 'text') el.textContent = String(v);
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k === 'testid') el.dataset.testid = v;
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'style') throw new Error('inline styles are not allowed');
      else if (k === 'value' && tag === 'input') el.setAttribute('value', String(v)); // also the reset value
      else if (k === 'value' && 'value' in el) el.value = v;
      else if (k === 'checked') { el.checked = Boolean(v); el.defaultChecked = Boolean(v); }
      else if (k === 'selected') { el.selected = Boolean(v); el.defaultSelected = Boolean(v); }
      else if (k === 'disabled' || k === 'hidden' ||
               k === 'multiple' || k === 'required' || k === 'open') el[k] = Boolean(v);
      else if (v === true) el.setAttribute(k, '');
      else el.setAttribute(k, String(v));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function replace(el, ...children) {
  clear(el);
  return append(el, children);
}

let idCounter = 0;
export function uid(prefix = 'id') {
  idCounter += 1;
  return `${prefix}-${idCounter}`;
}

/** A labelled form field: returns {wrap, input}. */
export function field(label, input, hint) {
  if (!input.id) input.id = uid('f');
  const wrap = h('div', { class: 'field' },
    h('label', { for: input.id }, label), input,
    hint ? h('small', { class: 'hint' }, hint) : null);
  return { wrap, input };
}

export function fmtDate(s) {
  if (!s) return '—';
  const d = new Date(s);
  if (Number.isNaN(d.getTime())) return String(s);
  return d.toLocaleString();
}

export function fmtNum(n, digits = 3) {
  if (n === null || n === undefined || Number.isNaN(n)) return '—';
  if (Number.isInteger(n)) return String(n);
  return Number(n).toFixed(digits);
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return '—';
  const u = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < u.length - 1) { v /= 1024; i += 1; }
  return `${i === 0 ? v : v.toFixed(1)} ${u[i]}`;
}

/**
 * A modal dialog (<dialog>); `build(close)` returns its body. Focuses the
 * first field (or button). Resolves with what `close(value)` was given;
 * Escape or the Cancel/close button resolve with `undefined`.
 */
export function openDialog(title, build, { wide = false, focus = null } = {}) {
  return new Promise((resolve) => {
    const headingId = uid('dlg');
    const dlg = h('dialog', { class: wide ? 'dialog wide' : 'dialog', 'aria-labelledby': headingId });
    let result;
    const close = (value) => {
      result = value;
      dlg.close();
    };
    const body = build(close);
    append(dlg, [
      h('div', { class: 'dialog-head' },
        h('h2', { id: headingId }, title),
        h('button', { type: 'button', class: 'icon-button', 'aria-label': 'Close', onclick: () => close(undefined) }, '×')),
      body,
    ]);
    dlg.addEventListener('close', () => {
      dlg.remove();
      resolve(result);
    });
    document.body.appendChild(dlg);
    dlg.showModal();
    const first = (focus && dlg.querySelector(focus)) || dlg.querySelector('.dialog-body input:not([type=hidden]):not([disabled]), .dialog-body select, .dialog-body textarea')
      || dlg.querySelector('.dialog-body button, .dialog-actions button');
    if (first) first.focus();
  });
}

/** A yes/no confirmation; resolves true when confirmed. */
export function confirmDialog(title, message, confirmLabel = 'Delete', danger = true) {
  return openDialog(title, (close) => h('div', { class: 'dialog-body' },
    h('p', null, message),
    h('div', { class: 'dialog-actions' },
      h('button', { type: 'button', class: danger ? 'danger' : 'primary', testid: 'confirm-yes', onclick: () => close(true) }, confirmLabel),
      h('button', { type: 'button', class: 'dialog-cancel', testid: 'confirm-no', onclick: () => close(false) }, 'Cancel'))),
  { focus: danger ? '.dialog-cancel' : null }).then(Boolean);
}

/** Ask for one line of text; resolves with it, or undefined when cancelled. */
export function promptDialog(title, label, initial = '', { maxLength } = {}) {
  return openDialog(title, (close) => {
    const input = h('input', { type: 'text', value: initial, required: true, maxlength: maxLength, testid: 'prompt-input' });
    const form = h('form', { class: 'dialog-body' },
      field(label, input).wrap,
      h('div', { class: 'dialog-actions' },
        h('button', { type: 'submit', class: 'primary', testid: 'prompt-ok' }, 'Save'),
        h('button', { type: 'button', onclick: () => close(undefined) }, 'Cancel')));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      close(input.value);
    });
    queueMicrotask(() => input.select());
    return form;
  });
}

/** Copy text to the clipboard; true when it worked. */
export async function copyText(text, fallbackInput) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch (_) { /* fall through */ }
  if (fallbackInput) {
    fallbackInput.focus();
    fallbackInput.select();
    try { return document.execCommand('copy'); } catch (_) { return false; }
  }
  return false;
}
