// Page-wide messages: the error banner and a polite status line.

import { describe } from './api.js';
import { h, replace } from './dom.js';

let noticeTimer = null;

function banner() {
  return document.getElementById('banner');
}

/** Show an error (ApiError or anything else) in words in the banner. */
export function showError(err, context) {
  if (err && err.name === 'AbortError') return;
  const el = banner();
  if (!el) return;
  const text = typeof err === 'string' ? err : describe(err);
  console.warn(context || 'error', err);
  const code = err && err.code && err.code !== 'network' ? err.code : null;
  replace(el,
    h('p', { class: 'banner-text' },
      context ? h('strong', null, `${context}: `) : null,
      text,
      code ? h('span', { class: 'code-tag' }, ` (${code})`) : null),
    h('button', { type: 'button', class: 'icon-button', 'aria-label': 'Dismiss', onclick: clearError }, '×'));
  el.dataset.code = code || (err && err.code) || '';
  el.hidden = false;
}

export function clearError() {
  const el = banner();
  if (el) {
    el.hidden = true;
    el.dataset.code = '';
    replace(el);
  }
}

/** A short confirmation ("Saved") in the status line. */
export function notify(text) {
  const el = document.getElementById('notice');
  if (!el) return;
  el.textContent = text;
  el.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => {
    el.hidden = true;
    el.textContent = '';
  }, 4000);
}

/**
 * Run `fn` with `button` disabled; errors go to the banner. Resolves with
 * fn's value, or undefined when it failed.
 */
export async function busy(button, fn, context) {
  const buttons = Array.isArray(button) ? button : [button];
  for (const b of buttons) if (b) b.disabled = true;
  try {
    return await fn();
  } catch (e) {
    showError(e, context);
    return undefined;
  } finally {
    for (const b of buttons) if (b) b.disabled = false;
  }
}

/** A "needs an administrator" page. */
export function needsAdmin() {
  return h('section', { class: 'panel empty-state', testid: 'needs-admin' },
    h('h1', null, 'This page needs an administrator'),
    h('p', null, 'Your account does not have the admin role, so it cannot manage collections, documents or users. ' +
      'Ask an administrator if you need access.'),
    h('p', null, h('a', { href: '#/chat' }, 'Back to chat')));
}

/** Mark the input named by an error's `field` as invalid. */
export function flagField(form, err) {
  for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
  if (err && err.field) {
    const input = form.querySelector(`[name="${CSS.escape(err.field)}"]`);
    if (input) {
      input.setAttribute('aria-invalid', 'true');
      input.focus();
    }
  }
}
