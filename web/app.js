// ragchat web app: the shell (navigation, session, routing).
// Hash routes, so the server needs no fallback:
//   #/signin  #/chat  #/chat/<conversation id>  #/search  #/keys
//   #/admin/collections  #/admin/documents/<collection id>  #/admin/users

import { currentUser, isAdmin, onSessionChange, restore, signOut, hasStoredSession } from './js/api.js';
import { h, replace } from './js/dom.js';
import { showError, clearError, needsAdmin } from './js/ui.js';
import { signinView } from './js/signin.js';
import { chatView } from './js/chat.js';
import { searchView } from './js/search.js';
import { collectionsView, documentsView, usersView } from './js/admin.js';
import { keysView } from './js/keys.js';

const routes = [
  { re: /^\/signin$/, name: 'signin', view: signinView, open: true },
  { re: /^\/chat(?:\/([^/]+))?$/, name: 'chat', view: chatView, keys: ['conversation'] },
  { re: /^\/search$/, name: 'search', view: searchView },
  { re: /^\/keys$/, name: 'keys', view: keysView },
  { re: /^\/admin\/collections$/, name: 'admin-collections', view: collectionsView, admin: true },
  { re: /^\/admin\/documents\/([^/]+)$/, name: 'admin-documents', view: documentsView, admin: true, keys: ['collection'] },
  { re: /^\/admin\/users$/, name: 'admin-users', view: usersView, admin: true },
];

const view = document.getElementById('view');
const nav = document.getElementById('nav');
const menuButton = document.getElementById('menu-button');
let current = null; // {name, instance}
let wanted = null; // where to go after signing in
let booted = false;
let pendingError = null; // shown once the next page is mounted

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/chat';
  const path = raw.split('?')[0];
  if (path === '/admin' || path === '/admin/') return { redirect: '#/admin/collections' };
  for (const r of routes) {
    const m = path.match(r.re);
    if (m) {
      const params = {};
      (r.keys || []).forEach((k, i) => {
        params[k] = m[i + 1] ? decodeURIComponent(m[i + 1]) : null;
      });
      return { route: r, params };
    }
  }
  return { route: null, params: {} };
}

export function navigate(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

/** Go to `hash` without a history entry (routes even when already there). */
function go(hash) {
  if (location.hash === hash) route();
  else location.replace(hash);
}

function unmount() {
  if (current && current.instance && current.instance.destroy) {
    try {
      current.instance.destroy();
    } catch (e) {
      console.error(e);
    }
  }
  current = null;
}

function route() {
  if (!booted) return;
  closeMenu();
  const parsed = parseHash();
  if (parsed.redirect) {
    location.replace(parsed.redirect);
    return;
  }
  const { route: r, params } = parsed;
  const user = currentUser();
  if (!user && (!r || !r.open)) {
    wanted = location.hash && location.hash !== '#/signin' ? location.hash : null;
    location.replace('#/signin');
    return;
  }
  if (user && r && r.name === 'signin') {
    location.replace('#/chat');
    return;
  }
  updateNav(r);
  if (current && r && current.name === r.name && current.instance && current.instance.update) {
    current.instance.update(params);
    return;
  }
  unmount();
  clearError();
  if (pendingError) {
    showError(pendingError);
    if (pendingError.code === 'network' && hasStoredSession()) {
      // The session could not be restored: offer to try again.
      document.getElementById('banner').appendChild(
        h('button', { type: 'button', class: 'primary', testid: 'retry', onclick: () => location.reload() }, 'Retry'));
    }
    pendingError = null;
  }
  replace(view);
  view.className = `view view-${r ? r.name : 'missing'}`;
  document.body.classList.toggle('chat-mode', Boolean(r && r.name === 'chat'));
  if (!r) {
    view.appendChild(h('section', { class: 'panel empty-state' },
      h('h1', null, 'Page not found'),
      h('p', null, 'There is nothing at this address. '), h('a', { href: '#/chat' }, 'Go to chat')));
    current = { name: 'missing' };
    return;
  }
  if (r.admin && !isAdmin()) {
    view.appendChild(needsAdmin());
    current = { name: 'needs-admin' };
    return;
  }
  let instance = null;
  try {
    instance = r.view(view, params, { navigate, afterSignIn });
  } catch (e) {
    showError(e, 'This page failed to open');
  }
  current = { name: r.name, instance };
}

function afterSignIn() {
  const target = wanted;
  wanted = null;
  go(target || '#/chat');
}

function updateNav(r) {
  const user = currentUser();
  const signedIn = Boolean(user);
  nav.hidden = !signedIn;
  menuButton.hidden = !signedIn;
  document.body.classList.toggle('signed-in', signedIn);
  const adminLink = nav.querySelector('[data-section=admin]');
  adminLink.hidden = !(user && user.role === 'admin');
  document.getElementById('nav-user').textContent = user ? `${user.username}${user.role === 'admin' ? ' (admin)' : ''}` : '';
  const section = r ? r.name.split('-')[0] : '';
  for (const a of nav.querySelectorAll('a[data-section]')) {
    if (a.dataset.section === section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

function closeMenu() {
  nav.classList.remove('open');
  menuButton.setAttribute('aria-expanded', 'false');
}

menuButton.addEventListener('click', () => {
  const open = !nav.classList.contains('open');
  nav.classList.toggle('open', open);
  menuButton.setAttribute('aria-expanded', String(open));
  if (open) {
    const first = nav.querySelector('a:not([hidden])');
    if (first) first.focus();
  }
});

nav.addEventListener('keydown', (e) => {
  if (e.key === 'Escape' && nav.classList.contains('open')) {
    closeMenu();
    menuButton.focus();
  }
});

document.getElementById('signout').addEventListener('click', async (e) => {
  const b = e.currentTarget;
  b.disabled = true;
  try {
    unmount(); // close sockets before the session ends
    await signOut();
  } catch (err) {
    showError(err, 'Signing out on the server failed (you are signed out here)');
  } finally {
    b.disabled = false;
    go('#/signin');
  }
});

onSessionChange((user, reason, err) => {
  if (!booted) return;
  if (!user) {
    if (reason === 'expired') {
      unmount();
      wanted = location.hash && location.hash !== '#/signin' ? location.hash : wanted;
      pendingError = err;
      go('#/signin');
    }
    return;
  }
  updateNav(parseHash().route);
});

window.addEventListener('hashchange', route);

window.addEventListener('unhandledrejection', (e) => {
  showError(e.reason, 'Unexpected error');
});

async function boot() {
  try {
    if (hasStoredSession()) await restore();
  } catch (e) {
    pendingError = e;
  }
  booted = true;
  route();
}

boot();
