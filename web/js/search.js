// Search: POST /api/v1/query with collections, mode, fusion and top_k.

import { api, describe } from './api.js';
import { h, field, replace, fmtNum, uid } from './dom.js';
import { markByteRanges } from './highlight.js';
import { safeUrl } from './markdown.js';
import { showError, clearError, flagField } from './ui.js';

export function searchView(root) {
  const q = h('input', { type: 'search', name: 'query', required: true, maxlength: 2000, testid: 'search-input', placeholder: 'What are you looking for?', autocomplete: 'off' });
  const submit = h('button', { type: 'submit', class: 'primary', testid: 'search-submit' }, 'Search');
  const collBox = h('div', { class: 'check-list', testid: 'search-collections' }, h('span', { class: 'muted' }, 'Loading collections…'));
  const mode = h('select', { name: 'mode', testid: 'search-mode' },
    h('option', { value: 'hybrid' }, 'Hybrid (dense + lexical)'),
    h('option', { value: 'dense' }, 'Dense (embeddings)'),
    h('option', { value: 'lexical' }, 'Lexical (BM25)'));
  const dense = h('input', { type: 'number', name: 'weights', min: 0, max: 100, step: 'any', value: '1', testid: 'search-dense-weight', class: 'narrow' });
  const lexical = h('input', { type: 'number', name: 'weights', min: 0, max: 100, step: 'any', value: '1', testid: 'search-lexical-weight', class: 'narrow' });
  const topK = h('input', { type: 'number', name: 'top_k', min: 1, max: 100, value: '10', testid: 'search-top-k', class: 'narrow' });
  // "Default" sends no fusion at all, so a collection's tuned values apply.
  const fusion = h('select', { name: 'fusion', testid: 'search-fusion' },
    h('option', { value: '' }, 'Default (tuned or configured)'),
    h('option', { value: 'rrf' }, 'Reciprocal rank fusion'),
    h('option', { value: 'convex' }, 'Convex combination of scores'));
  const alpha = h('input', { type: 'number', name: 'alpha', min: 0, max: 1, step: 0.05, value: '0.5', testid: 'search-alpha', class: 'narrow' });
  const norm = h('select', { name: 'normalization', testid: 'search-normalization' },
    h('option', { value: 'theoretical_min' }, 'Theoretical minimum'),
    h('option', { value: 'min_max' }, 'Min-max'));
  const weightsWrap = h('div', { class: 'row wrap' },
    field('Dense weight', dense).wrap, field('Lexical weight', lexical).wrap);
  const convexWrap = h('div', { class: 'row wrap' },
    field('Dense share (alpha)', alpha, '0 to 1').wrap, field('Normalisation', norm).wrap);
  const form = h('form', { class: 'panel search-form', testid: 'search-form' },
    h('div', { class: 'search-bar' }, h('label', { for: q.id || (q.id = uid('q')), class: 'sr-only' }, 'Search query'), q, submit),
    h('details', { class: 'search-options', open: true },
      h('summary', null, 'Options'),
      h('div', { class: 'options-grid' },
        h('fieldset', null, h('legend', null, 'Collections (none ticked: all you can read)'), collBox),
        h('div', { class: 'stack' },
          field('Mode', mode).wrap,
          field('Fusion', fusion).wrap,
          weightsWrap,
          convexWrap,
          field('Results (top_k)', topK, '1 to 100').wrap))));
  const summary = h('p', { class: 'search-summary muted', testid: 'search-summary', 'aria-live': 'polite' });
  const results = h('ol', { class: 'results', testid: 'search-results' });
  root.appendChild(h('section', { class: 'search-page' },
    h('h1', null, 'Search'), form, summary, results));

  const syncWeights = () => {
    const m = mode.value;
    const hybrid = m === 'hybrid';
    fusion.disabled = !hybrid;
    weightsWrap.hidden = !(hybrid && fusion.value === 'rrf');
    convexWrap.hidden = !(hybrid && fusion.value === 'convex');
  };
  mode.addEventListener('change', syncWeights);
  fusion.addEventListener('change', syncWeights);
  syncWeights();

  let seq = 0;
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearError();
    const body = { query: q.value, mode: mode.value, top_k: Number(topK.value || 10) };
    const cols = [...collBox.querySelectorAll('input:checked')].map((c) => c.value);
    if (cols.length) body.collections = cols;
    if (mode.value === 'hybrid' && fusion.value === 'rrf') {
      body.fusion = 'rrf';
      body.weights = { dense: Number(dense.value || 0), lexical: Number(lexical.value || 0) };
    } else if (mode.value === 'hybrid' && fusion.value === 'convex') {
      body.fusion = 'convex';
      body.alpha = Number(alpha.value);
      body.normalization = norm.value;
    }
    seq += 1;
    const mine = seq;
    submit.disabled = true;
    summary.textContent = 'Searching…';
    try {
      const res = await api.post('query', body);
      if (mine !== seq) return;
      flagField(form, null);
      show(res);
    } catch (err) {
      if (mine !== seq) return;
      summary.textContent = '';
      replace(results);
      flagField(form, err);
      showError(err, 'Search failed');
    } finally {
      if (mine === seq) submit.disabled = false;
    }
  });

  function show(res) {
    replace(results);
    const n = res.results.length;
    replace(summary,
      `${n} result${n === 1 ? '' : 's'} for “${res.query}” · ${res.mode}`,
      res.mode === 'hybrid' ? ` (${fusionLabel(res.fusion)})` : '',
      ` · ${res.collections.length ? res.collections.join(', ') : 'no collections'} · ${fmtNum(res.took_ms, 1)} ms · `,
      h('span', { class: res.cached ? 'badge badge-cached' : 'badge', testid: 'search-cached', dataset: { cached: String(res.cached) } },
        res.cached ? 'cached' : 'not cached'));
    if (!n) {
      results.appendChild(h('li', { class: 'muted empty-item' }, 'Nothing found. Try other words, another mode or more collections.'));
      return;
    }
    for (const r of res.results) results.appendChild(resultItem(r));
  }

  function fusionLabel(f) {
    if (!f) return '';
    if (f.method === 'convex') {
      const n = f.normalization === 'min_max' ? 'min-max' : 'theoretical-min';
      return `convex, alpha ${fmtNum(f.alpha, 2)}, ${n} normalisation`;
    }
    return `reciprocal rank fusion, k ${fmtNum(f.rrf_k, 0)}, weights dense ${fmtNum(f.weights.dense, 2)}, lexical ${fmtNum(f.weights.lexical, 2)}`;
  }

  function signal(name, s) {
    const normalised = s && s.normalized != null ? ` · normalised ${fmtNum(s.normalized, 3)}` : '';
    return h('span', { class: 'signal' },
      h('strong', null, name), ' ',
      s ? `rank ${s.rank} · score ${fmtNum(s.score, 4)}${normalised}` : 'not found by this signal');
  }

  function resultItem(r) {
    const url = safeUrl(r.source || '');
    return h('li', { class: 'result', testid: 'search-result', dataset: { rank: String(r.rank), chunk: r.chunk_id } },
      h('div', { class: 'result-head' },
        h('span', { class: 'rank' }, `#${r.rank}`),
        h('h2', { class: 'result-title' }, r.title || r.source || 'Untitled'),
        h('span', { class: 'score', title: 'fused score' }, `score ${fmtNum(r.score, 5)}`)),
      h('div', { class: 'result-source muted' },
        url ? h('a', { href: url, target: '_blank', rel: 'noopener noreferrer' }, r.source) : r.source,
        ` · ${r.collection} · passage ${r.position + 1}`),
      h('p', { class: 'snippet', testid: 'search-snippet' }, ...markByteRanges(r.snippet ? r.snippet.text : '', r.snippet ? r.snippet.ranges : [])),
      h('div', { class: 'signals' }, signal('Dense', r.dense), signal('Lexical', r.lexical)));
  }

  (async () => {
    try {
      const page = await api.get('collections');
      replace(collBox);
      if (!page.items.length) collBox.appendChild(h('span', { class: 'muted' }, 'No collections you can read yet.'));
      for (const c of page.items) {
        const id = uid('c');
        collBox.appendChild(h('span', { class: 'check' },
          h('input', { type: 'checkbox', id, value: c.name, testid: 'search-collection' }),
          h('label', { for: id }, c.name, h('small', { class: 'muted' }, ` (${c.documents} docs${c.public ? ', public' : ''})`))));
      }
    } catch (e) {
      replace(collBox, h('span', { class: 'muted' }, `Could not load collections: ${describe(e)}`));
    }
  })();

  q.focus();
  return {};
}
