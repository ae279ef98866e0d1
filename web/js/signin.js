// Sign in, and register when the server allows it.

import { signIn, register } from './api.js';
import { h, field } from './dom.js';
import { showError, clearError, flagField } from './ui.js';

export function signinView(root, _params, ctx) {
  const panel = h('section', { class: 'panel auth-panel' });
  root.appendChild(panel);

  const showSignIn = () => {
    const username = h('input', { name: 'username', type: 'text', autocomplete: 'username', required: true, testid: 'signin-username', autocapitalize: 'none', spellcheck: 'false' });
    const password = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true, testid: 'signin-password' });
    const submit = h('button', { type: 'submit', class: 'primary', testid: 'signin-submit' }, 'Sign in');
    const form = h('form', { class: 'stack', testid: 'signin-form' },
      field('Username or email', username).wrap,
      field('Password', password).wrap,
      submit);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      submit.disabled = true;
      clearError();
      try {
        await signIn(username.value, password.value);
        ctx.afterSignIn();
      } catch (err) {
        flagField(form, err);
        showError(err, 'Sign in failed');
        password.select();
      } finally {
        submit.disabled = false;
      }
    });
    panel.replaceChildren(
      h('h1', null, 'Sign in to ragchat'),
      h('p', { class: 'muted' }, 'Search and chat with your knowledge base.'),
      form,
      h('p', { class: 'switch' }, 'No account? ',
        h('button', { type: 'button', class: 'link-button', testid: 'show-register', onclick: showRegister }, 'Create one')));
    username.focus();
  };

  const showRegister = () => {
    const username = h('input', { name: 'username', type: 'text', autocomplete: 'username', required: true, minlength: 3, maxlength: 64, pattern: '[A-Za-z0-9._\\-]{3,64}', testid: 'register-username', autocapitalize: 'none', spellcheck: 'false' });
    const email = h('input', { name: 'email', type: 'email', autocomplete: 'email', testid: 'register-email' });
    const password = h('input', { name: 'password', type: 'password', autocomplete: 'new-password', required: true, minlength: 10, maxlength: 256, testid: 'register-password' });
    const submit = h('button', { type: 'submit', class: 'primary', testid: 'register-submit' }, 'Create account');
    const form = h('form', { class: 'stack', testid: 'register-form' },
      field('Username', username, '3–64 characters: letters, digits, . _ -').wrap,
      field('Email (optional)', email).wrap,
      field('Password', password, 'At least 10 characters.').wrap,
      submit);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      submit.disabled = true;
      clearError();
      try {
        await register(username.value, password.value, email.value);
        ctx.afterSignIn();
      } catch (err) {
        flagField(form, err);
        showError(err, 'Registration failed');
      } finally {
        submit.disabled = false;
      }
    });
    panel.replaceChildren(
      h('h1', null, 'Create an account'),
      h('p', { class: 'muted' }, 'Registration works only when the server allows it; otherwise an administrator creates accounts.'),
      form,
      h('p', { class: 'switch' }, 'Have an account? ',
        h('button', { type: 'button', class: 'link-button', testid: 'show-signin', onclick: showSignIn }, 'Sign in')));
    username.focus();
  };

  showSignIn();
  return {};
}
