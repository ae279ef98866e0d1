// API keys: list, create (scopes, optional expiry; the secret shown once), revoke.

import { api, isAdmin } from './api.js';
import { h, field, replace, fmtDate, confirmDialog, copyText, uid } from './dom.js';
import { showError, clearError, notify, busy, flagField } from './ui.js';

const SCOPES = [
  ['query', 'search (/query) and reading collections'],
  ['chat', 'conversations and chat'],
  ['ingest', 'document upload (admins only)'],
  ['admin', 'admin endpoints (admins only)'],
];

export function keysView(root) {
  const list = h('ul', { class: 'card-list', testid: 'key-list' });
  const name = h('input', { name: 'name', required: true, maxlength: 100, testid: 'key-name', autocomplete: 'off' });
  const days = h('input', { type: 'number', name: 'expires_in_days', min: 1, max: 3650, class: 'narrow', testid: 'key-expiry-days', placeholder: 'never' });
  const scopeBoxes = SCOPES
    .filter(([s]) => isAdmin() || (s !== 'admin' && s !== 'ingest'))
    .map(([s, what]) => {
      const id = uid('s');
      const box = h('input', { type: 'checkbox', id, value: s, name: 'scopes', testid: `key-scope-${s}`, checked: s === 'query' });
      return h('span', { class: 'check' }, box, h('label', { for: id }, h('strong', null, s), ` — ${what}`));
    });
  const create = h('button', { type: 'submit', class: 'primary', testid: 'key-create' }, 'Create key');
  const secretBox = h('div', { class: 'secret-box', hidden: true, testid: 'key-secret-box', role: 'region', 'aria-label': 'New key' });
  const form = h('form', { class: 'panel', testid: 'key-form' },
    h('h2', null, 'New API key'),
    h('p', { class: 'muted' }, 'Keys are for programs: send one as “Authorization: Bearer rck_…”. Give each only the scopes it needs.'),
    field('Name', name).wrap,
    h('fieldset', null, h('legend', null, 'Scopes'), h('div', { class: 'check-list vertical' }, ...scopeBoxes)),
    field('Expires after (days, optional)', days, 'Leave empty for a key that lives until revoked.').wrap,
    create);

  root.appendChild(h('section', { class: 'keys-page' },
    h('h1', null, 'API keys'), secretBox, form, h('h2', null, 'Your keys'), list));

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearError();
    const scopes = [...form.querySelectorAll('input[name=scopes]:checked')].map((x) => x.value);
    if (!scopes.length) {
      showError('Choose at least one scope.');
      return;
    }
    const body = { name: name.value.trim(), scopes };
    if (days.value) body.expires_in_days = Number(days.value);
    await busy(create, async () => {
      try {
        const k = await api.post('api-keys', body);
        flagField(form, null);
        form.reset();
        showSecret(k);
        await load();
      } catch (err) {
        flagField(form, err);
        throw err;
      }
    }, 'Could not create the key');
  });

  function showSecret(k) {
    const out = h('input', { type: 'text', readonly: true, value: k.key, class: 'secret', testid: 'key-secret', 'aria-label': 'The new key' });
    const copy = h('button', { type: 'button', class: 'primary', testid: 'key-copy' }, 'Copy');
    const copied = h('span', { class: 'small muted', 'aria-live': 'polite' });
    copy.addEventListener('click', async () => {
      const ok = await copyText(k.key, out);
      copied.textContent = ok ? 'Copied to the clipboard.' : 'Copy failed: select the key and copy it by hand.';
    });
    replace(secretBox,
      h('h2', null, `Key “${k.name}” created`),
      h('p', null, h('strong', null, 'Copy it now: it is shown only once. '), `Scopes: ${k.scopes.join(', ')}; ${k.expires_at ? `expires ${fmtDate(k.expires_at)}` : 'no expiry'}.`),
      h('div', { class: 'row' }, out, copy),
      copied,
      h('button', { type: 'button', class: 'subtle', onclick: () => { secretBox.hidden = true; replace(secretBox); } }, 'I have stored it, hide it'));
    secretBox.hidden = false;
    out.focus();
    out.select();
  }

  async function load() {
    try {
      const page = await api.get('api-keys');
      replace(list);
      if (!page.items.length) list.appendChild(h('li', { class: 'muted empty-item' }, 'No keys yet.'));
      for (const k of page.items) list.appendChild(item(k));
    } catch (e) {
      showError(e, 'Could not list your keys');
    }
  }

  function item(k) {
    const revoke = h('button', { type: 'button', class: 'danger small', testid: 'key-revoke', 'aria-label': `Revoke ${k.name}` }, 'Revoke');
    const expired = k.expires_at && new Date(k.expires_at) < new Date();
    const li = h('li', { class: 'card', testid: 'key-item', dataset: { id: k.id, name: k.name } },
      h('div', { class: 'card-head' },
        h('h3', { class: 'card-title' }, k.name), h('code', null, `${k.prefix}…`),
        expired ? h('span', { class: 'badge badge-error' }, 'expired') : null),
      h('p', { class: 'muted small' },
        `Scopes: ${k.scopes.join(', ')} · created ${fmtDate(k.created_at)} · ${k.expires_at ? `expires ${fmtDate(k.expires_at)}` : 'no expiry'} · ${k.last_used_at ? `last used ${fmtDate(k.last_used_at)}` : 'never used'}`),
      h('div', { class: 'card-actions' }, revoke));
    revoke.addEventListener('click', async () => {
      const ok = await confirmDialog('Revoke key', `Revoke “${k.name}”? Programs using it stop working at once.`, 'Revoke');
      if (!ok) return;
      await busy(revoke, async () => {
        await api.del(`api-keys/${encodeURIComponent(k.id)}`);
        li.remove();
        notify(`Key ${k.name} revoked.`);
      }, 'Could not revoke the key');
    });
    return li;
  }

  load();
  name.focus();
  return {};
}
