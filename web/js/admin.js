// Admin: collections (with grants), documents (upload, crawl, jobs, quality
// reports) and users. The router shows these to admins only; the API refuses
// anyone else anyway.

import { api, allPages, upload, currentUser, describe } from './api.js';
import { h, field, replace, fmtDate, fmtNum, fmtBytes, openDialog, confirmDialog, uid } from './dom.js';
import { followJob } from './socket.js';
import { safeUrl } from './markdown.js';
import { showError, clearError, notify, busy, flagField } from './ui.js';

function adminTabs(active) {
  const tab = (href, label, key) => h('a', { href, class: 'tab', 'aria-current': active === key ? 'page' : null, testid: `admin-tab-${key}` }, label);
  return h('nav', { class: 'tabs', 'aria-label': 'Admin sections' },
    tab('#/admin/collections', 'Collections', 'collections'),
    tab('#/admin/users', 'Users', 'users'));
}

const enc = encodeURIComponent;

// ==================================================================== collections

export function collectionsView(root) {
  const list = h('ul', { class: 'card-list', testid: 'collection-list' });
  const name = h('input', { name: 'name', required: true, maxlength: 100, pattern: '[A-Za-z0-9._\\-]{1,100}', testid: 'collection-name', autocomplete: 'off' });
  const description = h('input', { name: 'description', maxlength: 1000, testid: 'collection-description' });
  const isPublic = h('input', { type: 'checkbox', name: 'public', testid: 'collection-public' });
  const create = h('button', { type: 'submit', class: 'primary', testid: 'collection-create' }, 'Create collection');
  const form = h('form', { class: 'panel inline-form', testid: 'collection-form' },
    h('h2', null, 'New collection'),
    h('div', { class: 'row wrap' },
      field('Name', name, 'Letters, digits, . _ -').wrap,
      field('Description (optional)', description).wrap,
      h('div', { class: 'field check-field' }, isPublic, h('label', { for: isPublic.id || (isPublic.id = uid('p')) }, 'Public (every user can read it)'))),
    create);
  root.appendChild(h('section', { class: 'admin-page' },
    h('h1', null, 'Administration'), adminTabs('collections'), form,
    h('h2', null, 'Collections'), list));

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearError();
    await busy(create, async () => {
      try {
        const body = { name: name.value.trim(), public: isPublic.checked };
        if (description.value.trim()) body.description = description.value.trim();
        const c = await api.post('collections', body);
        flagField(form, null);
        form.reset();
        notify(`Collection ${c.name} created.`);
        await load();
      } catch (err) {
        flagField(form, err);
        throw err;
      }
    }, 'Could not create the collection');
  });

  async function load() {
    try {
      const page = await api.get('collections');
      replace(list);
      if (!page.items.length) list.appendChild(h('li', { class: 'muted empty-item' }, 'No collections yet. Create one above, then upload documents into it.'));
      for (const c of page.items) list.appendChild(item(c));
    } catch (e) {
      showError(e, 'Could not load collections');
    }
  }

  function item(c) {
    const title = h('h3', { class: 'card-title' }, c.name);
    const desc = h('p', { class: 'muted' }, c.description || 'No description.');
    const toggleId = uid('pub');
    const toggle = h('input', { type: 'checkbox', id: toggleId, checked: c.public, testid: 'collection-public-toggle', role: 'switch' });
    const li = h('li', { class: 'card', testid: 'collection-item', dataset: { id: c.id, name: c.name } },
      h('div', { class: 'card-head' }, title,
        h('span', { class: 'muted' }, `${c.documents} document${c.documents === 1 ? '' : 's'} · ${c.chunks} chunks · created ${fmtDate(c.created_at)}`)),
      desc,
      h('div', { class: 'card-actions' },
        h('a', { href: `#/admin/documents/${enc(c.id)}`, class: 'button primary', testid: 'collection-documents' }, 'Documents & upload'),
        h('span', { class: 'check' }, toggle, h('label', { for: toggleId }, 'Public')),
        h('button', { type: 'button', testid: 'collection-rename', onclick: (e) => rename(e.currentTarget) }, 'Rename / describe'),
        h('button', { type: 'button', testid: 'collection-grants', onclick: () => grantsDialog(c) }, 'Access'),
        h('button', { type: 'button', class: 'danger', testid: 'collection-delete', onclick: (e) => remove(e.currentTarget) }, 'Delete')));

    toggle.addEventListener('change', async () => {
      const want = toggle.checked;
      const ok = await busy(toggle, async () => {
        const u = await api.patch(`collections/${enc(c.id)}`, { public: want });
        c.public = u.public;
        notify(`${c.name} is now ${u.public ? 'public' : 'private'}.`);
        return true;
      }, 'Could not change visibility');
      if (!ok) toggle.checked = !want;
    });

    async function rename(btn) {
      const values = await openDialog(`Edit collection ${c.name}`, (close) => {
        const n = h('input', { name: 'name', value: c.name, required: true, maxlength: 100, testid: 'collection-rename-name' });
        const d = h('input', { name: 'description', value: c.description || '', maxlength: 1000 });
        const f = h('form', { class: 'dialog-body' },
          field('Name', n).wrap, field('Description', d).wrap,
          h('div', { class: 'dialog-actions' },
            h('button', { type: 'submit', class: 'primary', testid: 'collection-rename-save' }, 'Save'),
            h('button', { type: 'button', onclick: () => close(undefined) }, 'Cancel')));
        f.addEventListener('submit', (e) => {
          e.preventDefault();
          close({ name: n.value.trim(), description: d.value.trim() });
        });
        return f;
      });
      if (!values) return;
      await busy(btn, async () => {
        const body = {};
        if (values.name !== c.name) body.name = values.name;
        if (values.description !== (c.description || '')) body.description = values.description;
        if (!Object.keys(body).length) return;
        const u = await api.patch(`collections/${enc(c.id)}`, body);
        Object.assign(c, u);
        title.textContent = u.name;
        desc.textContent = u.description || 'No description.';
        li.dataset.name = u.name;
        notify('Collection saved.');
      }, 'Could not save the collection');
    }

    async function remove(btn) {
      const ok = await confirmDialog('Delete collection', `Delete “${c.name}” with its ${c.documents} documents and ${c.chunks} chunks? They leave the database and both indexes. This cannot be undone.`);
      if (!ok) return;
      await busy(btn, async () => {
        await api.del(`collections/${enc(c.id)}`);
        li.remove();
        notify(`Collection ${c.name} deleted.`);
      }, 'Could not delete the collection');
    }
    return li;
  }

  load();
  name.focus();
  return {};
}

async function grantsDialog(c) {
  await openDialog(`Access to ${c.name}`, () => {
    const list = h('ul', { class: 'plain-list', testid: 'grant-list' }, h('li', { class: 'muted' }, 'Loading…'));
    const who = h('input', { name: 'username', list: uid('dl'), required: true, autocomplete: 'off', testid: 'grant-username', placeholder: 'username' });
    const datalist = h('datalist', { id: who.getAttribute('list') });
    const add = h('button', { type: 'submit', class: 'primary', testid: 'grant-add' }, 'Give access');
    const status = h('p', { class: 'muted small', 'aria-live': 'polite' });
    const form = h('form', { class: 'row wrap' }, field('Add a user by username', who).wrap, datalist, add);
    let users = [];

    const load = async () => {
      try {
        const page = await api.get(`collections/${enc(c.id)}/grants`);
        replace(list);
        if (!page.items.length) list.appendChild(h('li', { class: 'muted' }, c.public ? 'No grants (the collection is public, so every user can read it).' : 'No grants: only administrators can read it.'));
        for (const g of page.items) {
          const rm = h('button', { type: 'button', class: 'danger small', testid: 'grant-remove', 'aria-label': `Remove access for ${g.username}` }, 'Remove');
          const li = h('li', { class: 'grant', testid: 'grant-item', dataset: { user: g.username } },
            h('span', null, h('strong', null, g.username), h('small', { class: 'muted' }, ` since ${fmtDate(g.created_at)}`)), rm);
          rm.addEventListener('click', () => busy(rm, async () => {
            await api.del(`collections/${enc(c.id)}/grants/${enc(g.user_id)}`);
            notify(`${g.username} can no longer read ${c.name}.`);
            await load();
          }, 'Could not remove access'));
          list.appendChild(li);
        }
      } catch (e) {
        replace(list, h('li', { class: 'error-text' }, describe(e)));
      }
    };
    (async () => {
      try {
        users = await allPages('admin/users');
        for (const u of users) datalist.appendChild(h('option', { value: u.username }, u.role === 'admin' ? 'admin' : null));
        status.textContent = `${users.length} users known.`;
      } catch (e) {
        status.textContent = `Could not list users: ${describe(e)}`;
      }
    })();
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const name = who.value.trim().toLowerCase();
      const u = users.find((x) => x.username === name);
      if (!u) {
        showError(`No user named “${who.value.trim()}” in the users list.`);
        who.setAttribute('aria-invalid', 'true');
        who.focus();
        return;
      }
      who.removeAttribute('aria-invalid');
      await busy(add, async () => {
        await api.put(`collections/${enc(c.id)}/grants/${enc(u.id)}`);
        who.value = '';
        notify(`${u.username} can now read ${c.name}.`);
        await load();
      }, 'Could not give access');
    });
    load();
    return h('div', { class: 'dialog-body' },
      h('p', { class: 'muted' }, c.public ? 'This collection is public: everyone can read it. Grants matter once it is private.' : 'Private: readable by administrators and the users below.'),
      list, form, status);
  }, { wide: true });
}

// ==================================================================== documents

export function documentsView(root, params) {
  const collId = params.collection;
  let coll = null;
  let cursor = null;
  const followers = new Set();

  const heading = h('h1', null, 'Documents');
  const counts = h('p', { class: 'muted' });
  const docList = h('ul', { class: 'doc-list', testid: 'document-list' });
  const more = h('button', { type: 'button', class: 'subtle', hidden: true, testid: 'documents-more' }, 'Load more documents');
  const jobs = h('div', { class: 'jobs', testid: 'jobs' });

  // -- upload
  // The native picker is hidden (its "No file chosen" repeats the button);
  // the button opens it, so the keyboard reaches it too.
  const fileInput = h('input', { type: 'file', multiple: true, testid: 'upload-input', id: uid('file'), class: 'sr-only', tabindex: '-1', 'aria-hidden': 'true' });
  const chooseBtn = h('button', { type: 'button', testid: 'upload-choose', onclick: () => fileInput.click() }, 'Choose files…');
  const drop = h('div', { class: 'drop-zone', testid: 'upload-drop' },
    h('p', null, h('strong', null, 'Drop files here'), ' or ', chooseBtn),
    fileInput,
    h('p', { class: 'muted small' }, 'Text, Markdown, HTML, PDF, DOCX, JSON Lines, or ZIP archives of these. The upload starts at once.'));
  ['dragenter', 'dragover'].forEach((t) => drop.addEventListener(t, (e) => {
    e.preventDefault();
    drop.classList.add('dragging');
  }));
  ['dragleave', 'dragend'].forEach((t) => drop.addEventListener(t, () => drop.classList.remove('dragging')));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('dragging');
    const files = [...(e.dataTransfer ? e.dataTransfer.files : [])];
    if (files.length) startUpload(files);
  });
  fileInput.addEventListener('change', () => {
    const files = [...fileInput.files];
    if (files.length) startUpload(files);
    fileInput.value = '';
  });

  // -- crawl
  const startUrl = h('input', { type: 'url', name: 'start_url', required: true, placeholder: 'https://example.org/docs/', testid: 'crawl-url' });
  const maxPages = h('input', { type: 'number', name: 'max_pages', min: 1, max: 10000, value: '100', class: 'narrow', testid: 'crawl-max-pages' });
  const maxDepth = h('input', { type: 'number', name: 'max_depth', min: 0, max: 100, value: '3', class: 'narrow' });
  const sameHost = h('input', { type: 'checkbox', name: 'same_host', checked: true, id: uid('sh') });
  const include = h('input', { name: 'include', placeholder: '/docs/*, /guide/*' });
  const exclude = h('input', { name: 'exclude', placeholder: '/docs/old/*' });
  const rps = h('input', { type: 'number', name: 'requests_per_second', min: 0.1, max: 100, step: 'any', value: '2', class: 'narrow' });
  const recrawl = h('input', { type: 'number', name: 'recrawl_interval_secs', min: 0, value: '0', class: 'narrow' });
  const crawlBtn = h('button', { type: 'submit', class: 'primary', testid: 'crawl-submit' }, 'Start crawl');
  const crawlForm = h('form', { class: 'stack', testid: 'crawl-form' },
    field('Start URL', startUrl).wrap,
    h('div', { class: 'row wrap' },
      field('Max pages', maxPages).wrap, field('Max depth', maxDepth).wrap,
      field('Requests / s per host', rps).wrap, field('Re-crawl every (s, 0 = once)', recrawl).wrap),
    h('div', { class: 'row wrap' },
      field('Include (globs, comma separated)', include).wrap, field('Exclude (globs)', exclude).wrap),
    h('div', { class: 'field check-field' }, sameHost, h('label', { for: sameHost.id }, 'Stay on the same host')),
    crawlBtn);

  root.appendChild(h('section', { class: 'admin-page' },
    h('p', null, h('a', { href: '#/admin/collections' }, '← Collections')),
    heading, counts,
    h('div', { class: 'two-col' },
      h('section', { class: 'panel' }, h('h2', null, 'Upload'), drop),
      h('section', { class: 'panel' }, h('h2', null, 'Crawl a site'), crawlForm)),
    h('section', { class: 'panel' }, h('h2', null, 'Jobs'), jobs,
      h('button', { type: 'button', class: 'subtle', testid: 'jobs-refresh', onclick: (e) => busy(e.currentTarget, loadJobs, 'Could not list jobs') }, 'Refresh jobs')),
    h('section', { class: 'panel' }, h('h2', null, 'Documents'), docList, more)));

  async function loadCollection() {
    try {
      coll = await api.get(`collections/${enc(collId)}`);
      heading.textContent = `Documents of ${coll.name}`;
      counts.textContent = `${coll.documents} documents · ${coll.chunks} chunks · ${coll.public ? 'public' : 'private'}`;
    } catch (e) {
      heading.textContent = 'Collection not found';
      showError(e, 'Could not open the collection');
    }
  }

  async function loadDocs(append = false) {
    try {
      const page = await api.get(`collections/${enc(collId)}/documents`, { limit: 50, cursor: append ? cursor : null });
      if (!append) replace(docList);
      for (const d of page.items) docList.appendChild(docItem(d));
      if (!append && !page.items.length) docList.appendChild(h('li', { class: 'muted empty-item' }, 'No documents yet: upload files or crawl a site.'));
      cursor = page.next_cursor;
      more.hidden = !cursor;
    } catch (e) {
      showError(e, 'Could not list documents');
    }
  }
  more.addEventListener('click', () => busy(more, () => loadDocs(true)));

  function docItem(d) {
    const q = d.quality_score;
    const report = h('div', { class: 'quality', hidden: true, testid: 'document-quality' });
    const showBtn = h('button', { type: 'button', class: 'small', testid: 'document-report', 'aria-expanded': 'false' }, 'Quality report');
    const delBtn = h('button', { type: 'button', class: 'danger small', testid: 'document-delete' }, 'Delete');
    const url = safeUrl(d.source);
    const li = h('li', { class: 'doc', testid: 'document-item', dataset: { id: d.id, source: d.source } },
      h('div', { class: 'doc-main' },
        h('strong', null, d.title || d.source),
        h('div', { class: 'muted small' },
          url ? h('a', { href: url, target: '_blank', rel: 'noopener noreferrer' }, d.source) : d.source,
          ` · ${d.chunks} chunks${d.indexed === false ? ' (not indexed)' : ''} · quality ${q === null || q === undefined ? '—' : fmtNum(q, 2)} · updated ${fmtDate(d.updated_at)}`)),
      h('div', { class: 'doc-actions' }, showBtn, delBtn),
      report);
    showBtn.addEventListener('click', async () => {
      if (!report.hidden) {
        report.hidden = true;
        showBtn.setAttribute('aria-expanded', 'false');
        return;
      }
      await busy(showBtn, async () => {
        const full = await api.get(`collections/${enc(collId)}/documents/${enc(d.id)}`);
        replace(report, qualityReport(full));
        report.hidden = false;
        showBtn.setAttribute('aria-expanded', 'true');
      }, 'Could not load the document');
    });
    delBtn.addEventListener('click', async () => {
      const ok = await confirmDialog('Delete document', `Delete “${d.title || d.source}” and its ${d.chunks} chunks from both indexes?`);
      if (!ok) return;
      await busy(delBtn, async () => {
        await api.del(`collections/${enc(collId)}/documents/${enc(d.id)}`);
        li.remove();
        notify('Document deleted.');
        loadCollection();
      }, 'Could not delete the document');
    });
    return li;
  }

  function qualityReport(doc) {
    const qy = doc.quality || {};
    const signals = qy.signals || {};
    const rows = Object.entries(signals).map(([k, v]) => h('tr', null, h('th', { scope: 'row' }, k), h('td', null, typeof v === 'number' ? fmtNum(v, 3) : JSON.stringify(v))));
    const meta = doc.metadata || {};
    return [
      h('p', null, h('strong', null, `Quality ${fmtNum(qy.score, 3)} — ${qy.passed === false ? 'did not pass' : 'passed'}`),
        ` · ${doc.characters ?? '—'} characters · hash ${String(doc.content_hash || '').slice(0, 12)}`),
      (qy.reasons && qy.reasons.length) ? h('ul', null, ...qy.reasons.map((r) => h('li', null, String(r)))) : null,
      rows.length ? h('table', { class: 'kv' }, h('caption', { class: 'sr-only' }, 'Quality signals'), h('tbody', null, ...rows)) : null,
      Object.keys(meta).length ? h('details', null, h('summary', null, 'Metadata'),
        h('table', { class: 'kv' }, h('tbody', null, ...Object.entries(meta).map(([k, v]) => h('tr', null, h('th', { scope: 'row' }, k), h('td', null, typeof v === 'string' ? v : JSON.stringify(v))))))) : null,
    ];
  }

  // -- jobs
  function track(job, label) {
    const placeholder = jobs.querySelector('.empty-item');
    if (placeholder) placeholder.remove();
    const card = jobCard(job, label);
    jobs.prepend(card.el);
    const f = followJob(job.id, (j) => card.update(j), { get: api.get });
    followers.add(f);
    f.done.then((j) => {
      followers.delete(f);
      if (j.state === 'succeeded') notify(`${label}: finished.`);
      loadDocs();
      loadCollection();
    }).catch((e) => {
      followers.delete(f);
      card.error(e);
    });
  }

  async function startUpload(files) {
    clearError();
    const fd = new FormData();
    let total = 0;
    for (const f of files) {
      fd.append('files', f, f.name);
      total += f.size;
    }
    const label = files.length === 1 ? `Upload of ${files[0].name}` : `Upload of ${files.length} files`;
    const bar = h('progress', { max: 1, value: 0, class: 'upload-bar' });
    const text = h('span', { class: 'small muted' }, `Sending ${fmtBytes(total)}…`);
    const row = h('div', { class: 'job', testid: 'upload-progress', dataset: { state: 'uploading' } },
      h('div', { class: 'job-head' }, h('strong', null, label)), bar, text);
    const placeholder = jobs.querySelector('.empty-item');
    if (placeholder) placeholder.remove();
    jobs.prepend(row);
    try {
      const res = await upload(`collections/${enc(collId)}/documents`, fd, (loaded, t) => {
        if (t) {
          bar.value = loaded / t;
          text.textContent = `Sending ${fmtBytes(loaded)} of ${fmtBytes(t)}…`;
        }
      });
      row.remove();
      track(res.job, label);
    } catch (e) {
      row.dataset.state = 'error';
      bar.remove();
      text.textContent = describe(e);
      text.className = 'error-text';
      showError(e, 'The upload was refused');
    }
  }

  crawlForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearError();
    const globs = (s) => s.split(',').map((x) => x.trim()).filter(Boolean);
    const body = {
      start_url: startUrl.value.trim(),
      max_pages: Number(maxPages.value || 100),
      max_depth: Number(maxDepth.value || 0),
      same_host: sameHost.checked,
      requests_per_second: Number(rps.value || 2),
      recrawl_interval_secs: Number(recrawl.value || 0),
    };
    if (globs(include.value).length) body.include = globs(include.value);
    if (globs(exclude.value).length) body.exclude = globs(exclude.value);
    await busy(crawlBtn, async () => {
      try {
        const res = await api.post(`collections/${enc(collId)}/crawl`, body);
        flagField(crawlForm, null);
        track(res.job, `Crawl of ${body.start_url}`);
      } catch (err) {
        flagField(crawlForm, err);
        throw err;
      }
    }, 'Could not start the crawl');
  });

  async function loadJobs() {
    const page = await api.get('jobs', { collection_id: collId, limit: 10 });
    const shown = new Set([...jobs.querySelectorAll('[data-job]')].map((x) => x.dataset.job));
    const fresh = page.items.filter((j) => !shown.has(j.id));
    if (!fresh.length && !shown.size) {
      jobs.appendChild(h('p', { class: 'muted empty-item' }, 'No jobs for this collection yet.'));
      return;
    }
    for (const j of fresh.reverse()) {
      const label = j.kind === 'crawl' ? 'Crawl' : j.kind === 'ingest_upload' ? 'Upload' : j.kind;
      if (['queued', 'running'].includes(j.state)) track(j, label);
      else {
        const card = jobCard(j, label);
        card.update(j);
        jobs.prepend(card.el);
      }
    }
  }

  loadCollection();
  loadDocs();
  loadJobs().catch((e) => showError(e, 'Could not list jobs'));
  return {
    destroy() {
      for (const f of followers) f.stop();
      followers.clear();
    },
  };
}

const FINISHED = new Set(['succeeded', 'failed', 'cancelled', 'dead']);

function fraction(job) {
  if (job.state === 'succeeded') return 1;
  const p = job.progress || {};
  if (p.phase === 'optimizing') return 0.98;
  if (p.files_total) {
    let f = p.files_done / p.files_total;
    if (p.files_total === 1 && p.documents_total) f = Math.max(f, 0.95 * (p.documents_done / p.documents_total));
    else if (p.bytes_total) f = Math.max(f, p.bytes_done / p.bytes_total);
    return Math.min(1, f);
  }
  return null; // a crawl: no total known
}

function jobCard(job, label) {
  const bar = h('progress', { max: 1, class: 'job-bar' });
  const stateEl = h('span', { class: 'badge' });
  const line = h('div', { class: 'small' });
  const result = h('div', { class: 'job-result' });
  const cancel = h('button', { type: 'button', class: 'small', testid: 'job-cancel' }, 'Cancel job');
  const el = h('div', { class: 'job', testid: 'job-progress', dataset: { job: job.id, state: job.state, kind: job.kind } },
    h('div', { class: 'job-head' }, h('strong', null, label), ' ', stateEl, h('small', { class: 'muted' }, ` job ${job.id.slice(0, 8)}`), cancel),
    bar, line, result);
  cancel.addEventListener('click', () => busy(cancel, async () => {
    const j = await api.post(`jobs/${enc(job.id)}/cancel`);
    update(j);
    notify(j.state === 'cancelled' ? 'Job cancelled.' : 'Cancel requested: the job stops at its next checkpoint.');
  }, 'Could not cancel the job'));

  function update(j) {
    el.dataset.state = j.state;
    stateEl.textContent = j.cancel_requested && !FINISHED.has(j.state) ? `${j.state} (cancelling)` : j.state;
    stateEl.className = `badge badge-job-${j.state}`;
    cancel.hidden = FINISHED.has(j.state);
    const f = fraction(j);
    if (f === null && !FINISHED.has(j.state)) bar.removeAttribute('value');
    else bar.value = f === null ? 1 : f;
    bar.setAttribute('aria-valuetext', f === null ? 'in progress' : `${Math.round((f || 0) * 100)}%`);
    const finished = FINISHED.has(j.state);
    const p = (finished && j.result) || j.progress || {};
    const bits = [];
    if (finished) bits.push(`${j.state} ${fmtDate(j.finished_at)}`);
    else if (p.phase) bits.push(p.phase);
    if (p.files_total !== undefined) bits.push(`files ${p.files_done}/${p.files_total}`);
    if (p.pages !== undefined) bits.push(`${p.pages} pages`);
    if (p.documents_done !== undefined) bits.push(`documents ${p.documents_done}${p.documents_total !== undefined ? `/${p.documents_total}` : ''}`);
    if (p.documents_added !== undefined) bits.push(`${p.documents_added} added, ${p.documents_updated} updated, ${p.documents_unchanged} unchanged`);
    if (p.chunks_embedded !== undefined) bits.push(`${p.chunks_embedded} chunks embedded`);
    if (p.elapsed_secs !== undefined) bits.push(`${fmtNum(p.elapsed_secs, 1)} s`);
    if (j.attempts > 1) bits.push(`attempt ${j.attempts}/${j.max_attempts}`);
    line.textContent = bits.join(' · ') || (j.state === 'queued' ? 'waiting for a worker…' : '');
    if (FINISHED.has(j.state)) replace(result, ...resultView(j));
  }

  return {
    el,
    update,
    error(e) {
      line.textContent = `Could not follow the job: ${describe(e)}`;
      line.className = 'error-text';
    },
  };
}

function resultView(j) {
  const r = j.result || j.progress || {};
  const out = [];
  if (j.last_error) out.push(h('p', { class: 'error-text' }, `Error: ${j.last_error}`));
  const skipped = r.skipped || {};
  const skippedTotal = Object.values(skipped).reduce((a, b) => a + (Number(b) || 0), 0);
  const sum = [];
  if (r.documents_added !== undefined) sum.push(`${r.documents_added} added`, `${r.documents_updated} updated`, `${r.documents_unchanged} unchanged`);
  if (r.documents_removed) sum.push(`${r.documents_removed} removed`);
  if (skippedTotal) sum.push(`${skippedTotal} skipped (${Object.entries(skipped).filter(([, n]) => n).map(([k, n]) => `${k} ${n}`).join(', ')})`);
  if (r.chunks_embedded !== undefined) sum.push(`${r.chunks_embedded} chunks embedded, ${r.chunks_kept ?? 0} kept, ${r.chunks_deleted ?? 0} deleted`);
  if (r.urls_fetched !== undefined) sum.push(`${r.urls_fetched} URLs fetched in ${r.requests} requests (${fmtBytes(r.bytes)})${r.complete ? ', whole site seen' : ''}`);
  const counts = (o) => Object.entries(o || {}).filter(([, n]) => n).map(([k, n]) => `${k.replace(/_/g, ' ')} ${n}`).join(', ');
  if (counts(r.url_skips)) sum.push(`URLs skipped: ${counts(r.url_skips)}`);
  if (counts(r.url_failures)) sum.push(`URLs failed: ${counts(r.url_failures)}`);
  if (sum.length) out.push(h('p', { testid: 'job-summary' }, sum.join(' · ')));
  const docs = r.skipped_documents || [];
  if (docs.length) {
    out.push(h('details', { testid: 'job-skipped', open: docs.length <= 10 },
      h('summary', null, `Skipped documents (${docs.length})`),
      h('ul', { class: 'plain-list small' }, ...docs.map((s) => h('li', { testid: 'job-skip' },
        h('strong', null, s.source), ` — ${s.reason}`,
        s.detail ? `: ${s.detail}` : '',
        s.duplicate_of ? ` (repeats ${s.duplicate_of}${s.similarity !== undefined && s.similarity !== null ? `, similarity ${fmtNum(s.similarity, 2)}` : ''})` : '')))));
  }
  const errors = r.errors || [];
  if (errors.length) {
    out.push(h('details', { testid: 'job-errors', open: true },
      h('summary', null, `Files that could not be read (${errors.length})`),
      h('ul', { class: 'plain-list small' }, ...errors.map((e) => h('li', { testid: 'job-error' }, h('strong', null, e.source), ` — ${e.error}`)))));
  }
  const failed = r.failed_urls || [];
  if (failed.length) {
    out.push(h('details', null, h('summary', null, `Failed URLs (${failed.length})`),
      h('ul', { class: 'plain-list small' }, ...failed.map((f) => h('li', null, h('strong', null, f.url), ` — ${f.error}`)))));
  }
  return out;
}

// ==================================================================== users

export function usersView(root) {
  let cursor = null;
  const list = h('ul', { class: 'card-list', testid: 'user-list' });
  const more = h('button', { type: 'button', class: 'subtle', hidden: true, testid: 'users-more' }, 'Load more users');
  const username = h('input', { name: 'username', required: true, minlength: 3, maxlength: 64, testid: 'user-username', autocomplete: 'off', autocapitalize: 'none' });
  const password = h('input', { name: 'password', type: 'password', required: true, minlength: 10, maxlength: 256, testid: 'user-password', autocomplete: 'new-password' });
  const email = h('input', { name: 'email', type: 'email', testid: 'user-email' });
  const role = h('select', { name: 'role', testid: 'user-role' }, h('option', { value: 'user' }, 'user'), h('option', { value: 'admin' }, 'admin'));
  const create = h('button', { type: 'submit', class: 'primary', testid: 'user-create' }, 'Create user');
  const form = h('form', { class: 'panel inline-form', testid: 'user-form' },
    h('h2', null, 'New user'),
    h('div', { class: 'row wrap' },
      field('Username', username, '3–64 of a-z 0-9 . _ -').wrap,
      field('Password', password, 'At least 10 characters').wrap,
      field('Email (optional)', email).wrap,
      field('Role', role).wrap),
    create);
  root.appendChild(h('section', { class: 'admin-page' },
    h('h1', null, 'Administration'), adminTabs('users'), form, h('h2', null, 'Users'), list, more));

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearError();
    await busy(create, async () => {
      try {
        const body = { username: username.value.trim(), password: password.value, role: role.value };
        if (email.value.trim()) body.email = email.value.trim();
        const u = await api.post('admin/users', body);
        flagField(form, null);
        form.reset();
        notify(`User ${u.username} created.`);
        list.appendChild(item(u));
      } catch (err) {
        flagField(form, err);
        throw err;
      }
    }, 'Could not create the user');
  });

  async function load(append = false) {
    try {
      const page = await api.get('admin/users', { limit: 50, cursor: append ? cursor : null });
      if (!append) replace(list);
      for (const u of page.items) list.appendChild(item(u));
      cursor = page.next_cursor;
      more.hidden = !cursor;
    } catch (e) {
      showError(e, 'Could not list users');
    }
  }
  more.addEventListener('click', () => busy(more, () => load(true)));

  function item(u) {
    const me = currentUser() && currentUser().id === u.id;
    const roleId = uid('r');
    const roleSel = h('select', { id: roleId, testid: 'user-role-select' },
      h('option', { value: 'user', selected: u.role === 'user' }, 'user'),
      h('option', { value: 'admin', selected: u.role === 'admin' }, 'admin'));
    const toggle = h('button', { type: 'button', class: u.disabled ? 'small' : 'danger small', testid: 'user-disable' }, u.disabled ? 'Enable' : 'Disable');
    const stateBadge = h('span', { class: u.disabled ? 'badge badge-error' : 'badge' }, u.disabled ? 'disabled' : 'active');
    const li = h('li', { class: 'card user-card', testid: 'user-item', dataset: { id: u.id, username: u.username, disabled: String(u.disabled) } },
      h('div', { class: 'card-head' },
        h('h3', { class: 'card-title' }, u.username, me ? h('small', { class: 'muted' }, ' (you)') : null), stateBadge),
      h('p', { class: 'muted small' }, `${u.email || 'no email'} · created ${fmtDate(u.created_at)}`),
      h('div', { class: 'card-actions' },
        h('span', { class: 'field inline' }, h('label', { for: roleId }, 'Role'), roleSel),
        toggle));
    roleSel.addEventListener('change', async () => {
      const want = roleSel.value;
      const res = await busy(roleSel, async () => {
        const nu = await api.patch(`admin/users/${enc(u.id)}`, { role: want });
        Object.assign(u, nu);
        notify(`${u.username} is now ${nu.role === 'admin' ? 'an admin' : 'a user'}.`);
        return true;
      }, 'Could not change the role');
      if (!res) roleSel.value = u.role;
    });
    toggle.addEventListener('click', async () => {
      const want = !u.disabled;
      if (want) {
        const ok = await confirmDialog('Disable user', `Disable ${u.username}? Their sessions, tokens and API keys stop working at once.`, 'Disable');
        if (!ok) return;
      }
      await busy(toggle, async () => {
        const nu = await api.patch(`admin/users/${enc(u.id)}`, { disabled: want });
        Object.assign(u, nu);
        li.dataset.disabled = String(nu.disabled);
        toggle.textContent = nu.disabled ? 'Enable' : 'Disable';
        toggle.className = nu.disabled ? 'small' : 'danger small';
        stateBadge.textContent = nu.disabled ? 'disabled' : 'active';
        stateBadge.className = nu.disabled ? 'badge badge-error' : 'badge';
        notify(`${u.username} ${nu.disabled ? 'disabled' : 'enabled'}.`);
      }, 'Could not change the user');
    });
    return li;
  }

  load();
  return {};
}
