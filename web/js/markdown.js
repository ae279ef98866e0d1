// A small, safe Markdown renderer: it builds DOM nodes with createElement and
// textContent only, never innerHTML, so HTML in a document or an answer shows
// as text and cannot run. Supports paragraphs, headings, emphasis, strong,
// inline code, fenced and indented code blocks, ordered/unordered (nested)
// lists, block quotes, rules, http(s) links and [n] citations.

const FENCE = /^\s{0,3}(`{3,}|~{3,})\s*([A-Za-z0-9_+.-]*)[^`]*$/;
const HEADING = /^\s{0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$/;
const RULE = /^\s{0,3}([-*_])(?:\s*\1){2,}\s*$/;
const QUOTE = /^\s{0,3}>\s?(.*)$/;
const ITEM = /^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$/;
const INDENTED_CODE = /^(?: {4}|\t)(.*)$/;

/**
 * Render `src` into a DocumentFragment. `opts.cite(n)` returns the node for a
 * citation [n] or null when n is not a known source (then it stays text).
 */
export function renderMarkdown(src, opts = {}) {
  const lines = String(src || '').replace(/\r\n?/g, '\n').split('\n');
  return renderBlocks(lines, opts, 0);
}

function renderBlocks(lines, opts, depth) {
  const frag = document.createDocumentFragment();
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (!line.trim()) {
      i += 1;
      continue;
    }
    let m = line.match(FENCE);
    if (m) {
      const fence = m[1];
      const lang = m[2];
      const buf = [];
      i += 1;
      while (i < lines.length && !lines[i].trim().startsWith(fence)) {
        buf.push(lines[i]);
        i += 1;
      }
      i += 1; // the closing fence (absent while an answer is still streaming)
      frag.appendChild(codeBlock(buf.join('\n'), lang));
      continue;
    }
    if (depth < 8 && INDENTED_CODE.test(line) && !ITEM.test(line)) {
      const buf = [];
      while (i < lines.length && (INDENTED_CODE.test(lines[i]) || !lines[i].trim())) {
        const mm = lines[i].match(INDENTED_CODE);
        buf.push(mm ? mm[1] : '');
        i += 1;
      }
      while (buf.length && !buf[buf.length - 1].trim()) buf.pop();
      frag.appendChild(codeBlock(buf.join('\n'), ''));
      continue;
    }
    m = line.match(HEADING);
    if (m) {
      const el = document.createElement(`h${Math.min(6, m[1].length + 2)}`);
      el.className = 'md-heading';
      el.appendChild(renderInline(m[2], opts));
      frag.appendChild(el);
      i += 1;
      continue;
    }
    if (RULE.test(line)) {
      frag.appendChild(document.createElement('hr'));
      i += 1;
      continue;
    }
    if (QUOTE.test(line) && depth < 8) {
      const buf = [];
      while (i < lines.length && lines[i].trim() && QUOTE.test(lines[i])) {
        buf.push(lines[i].match(QUOTE)[1]);
        i += 1;
      }
      const q = document.createElement('blockquote');
      q.appendChild(renderBlocks(buf, opts, depth + 1));
      frag.appendChild(q);
      continue;
    }
    m = line.match(ITEM);
    if (m && depth < 8) {
      i = renderList(lines, i, opts, depth, frag);
      continue;
    }
    // A paragraph: lines up to a blank line or the start of another block.
    const buf = [line.trim()];
    i += 1;
    while (i < lines.length) {
      const l = lines[i];
      if (!l.trim() || FENCE.test(l) || HEADING.test(l) || RULE.test(l) || QUOTE.test(l) || ITEM.test(l)) break;
      buf.push(l.trim());
      i += 1;
    }
    const p = document.createElement('p');
    p.appendChild(renderInline(buf.join('\n'), opts));
    frag.appendChild(p);
  }
  return frag;
}

function codeBlock(text, lang) {
  const pre = document.createElement('pre');
  const code = document.createElement('code');
  if (lang) code.className = `language-${lang.replace(/[^A-Za-z0-9_+-]/g, '')}`;
  code.textContent = text;
  pre.appendChild(code);
  return pre;
}

function renderList(lines, start, opts, depth, frag) {
  const first = lines[start].match(ITEM);
  const indent = first[1].length;
  const ordered = /\d/.test(first[2]);
  const list = document.createElement(ordered ? 'ol' : 'ul');
  if (ordered) {
    const n = parseInt(first[2], 10);
    if (n !== 1) list.setAttribute('start', String(n));
  }
  let i = start;
  let item = null;
  let blankSeen = false;
  const flush = () => {
    if (!item) return;
    const li = document.createElement('li');
    const body = renderBlocks(item, opts, depth + 1);
    // A tight item (no blank line inside) shows its text without <p>.
    const tight = !item.some((l) => !l.trim());
    for (const node of [...body.childNodes]) {
      if (tight && node.nodeName === 'P') {
        while (node.firstChild) li.appendChild(node.firstChild);
      } else {
        li.appendChild(node);
      }
    }
    list.appendChild(li);
    item = null;
  };
  while (i < lines.length) {
    const l = lines[i];
    const m = l.match(ITEM);
    if (m && m[1].length <= indent + 1 && /\d/.test(m[2]) === ordered) {
      flush();
      item = [m[3]];
      blankSeen = false;
      i += 1;
      continue;
    }
    if (!l.trim()) {
      // A blank line continues the list only when more of it follows.
      let j = i + 1;
      while (j < lines.length && !lines[j].trim()) j += 1;
      const next = lines[j];
      if (next === undefined) break;
      const nm = next.match(ITEM);
      const continues = (nm && nm[1].length <= indent + 1 && /\d/.test(nm[2]) === ordered) ||
        /^\s+/.test(next) && next.match(/^\s*/)[0].length > indent;
      if (!continues) break;
      if (item) item.push('');
      blankSeen = true;
      i = j;
      continue;
    }
    const lead = l.match(/^\s*/)[0].length;
    if (lead > indent && item) {
      // Continuation or nested block: drop the item's indentation.
      const cut = Math.min(lead, indent + 2 + (ordered ? 1 : 0));
      item.push(l.slice(Math.min(cut, lead)));
      i += 1;
      continue;
    }
    if (item && !blankSeen && !(m) && !HEADING.test(l) && !FENCE.test(l) && !QUOTE.test(l) && !RULE.test(l)) {
      item.push(l.trim()); // a lazy continuation line of the paragraph
      i += 1;
      continue;
    }
    break;
  }
  flush();
  frag.appendChild(list);
  return i;
}

const CITE = /^\[(\d{1,3}(?:\s*[,;]\s*\d{1,3})*)\]/;
const LINK = /^\[([^\]\n]{0,500})\]\(\s*<?((?:[^\s()<>]|\([^\s()<>]*\))+)>?(?:\s+"[^"\n]*")?\s*\)/;
const BARE_URL = /^https?:\/\/[^\s<>()[\]"'`]*[^\s<>()[\]"'`.,;:!?*_]/;
const ANGLE_URL = /^<(https?:\/\/[^\s<>]+)>/;

/** A safe link target: only absolute http(s) URLs. */
export function safeUrl(href) {
  try {
    const u = new URL(href);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : null;
  } catch (_) {
    return null;
  }
}

function link(href, children) {
  const a = document.createElement('a');
  a.href = href;
  a.target = '_blank';
  a.rel = 'noopener noreferrer';
  a.appendChild(children);
  return a;
}

function isWordChar(c) {
  return Boolean(c) && /[\p{L}\p{N}]/u.test(c);
}

/** Inline Markdown into a fragment. */
export function renderInline(text, opts = {}, noLinks = false) {
  const frag = document.createDocumentFragment();
  let buf = '';
  const flushText = () => {
    if (buf) {
      frag.appendChild(document.createTextNode(buf));
      buf = '';
    }
  };
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    const rest = text.slice(i);
    if (c === '\\' && i + 1 < text.length && /[!-/:-@[-`{-~]/.test(text[i + 1])) {
      buf += text[i + 1];
      i += 2;
      continue;
    }
    if (c === '`') {
      const run = rest.match(/^`+/)[0];
      const end = text.indexOf(run, i + run.length);
      if (end > i) {
        flushText();
        const code = document.createElement('code');
        let inner = text.slice(i + run.length, end);
        if (/^ .* $/.test(inner)) inner = inner.slice(1, -1);
        code.textContent = inner;
        frag.appendChild(code);
        i = end + run.length;
        continue;
      }
      buf += run;
      i += run.length;
      continue;
    }
    if (c === '[') {
      let m = rest.match(CITE);
      if (m && opts.cite) {
        const nums = m[1].split(/\s*[,;]\s*/).map((x) => parseInt(x, 10));
        const nodes = nums.map((n) => opts.cite(n));
        if (nodes.every(Boolean)) {
          flushText();
          nodes.forEach((node, k) => {
            if (k > 0) frag.appendChild(document.createTextNode(' '));
            frag.appendChild(node);
          });
          i += m[0].length;
          continue;
        }
      }
      m = noLinks ? null : rest.match(LINK);
      if (m) {
        const href = safeUrl(m[2]);
        flushText();
        const inner = renderInline(m[1], opts, true);
        if (href) frag.appendChild(link(href, inner));
        else frag.appendChild(inner); // not http(s): the text without a link
        i += m[0].length;
        continue;
      }
    }
    if (!noLinks && c === '<') {
      const m = rest.match(ANGLE_URL);
      if (m && safeUrl(m[1])) {
        flushText();
        frag.appendChild(link(safeUrl(m[1]), document.createTextNode(m[1])));
        i += m[0].length;
        continue;
      }
    }
    if (!noLinks && (c === 'h' || c === 'H') && !isWordChar(text[i - 1])) {
      const m = rest.match(BARE_URL);
      if (m && safeUrl(m[0])) {
        flushText();
        frag.appendChild(link(safeUrl(m[0]), document.createTextNode(m[0])));
        i += m[0].length;
        continue;
      }
    }
    if (c === '*' || c === '_') {
      const double = text[i + 1] === c;
      const marker = double ? c + c : c;
      const after = text[i + marker.length];
      const intraword = c === '_' && isWordChar(text[i - 1]);
      if (after && !/\s/.test(after) && !intraword) {
        const end = findClose(text, i + marker.length, marker, c);
        if (end > 0) {
          flushText();
          const el = document.createElement(double ? 'strong' : 'em');
          el.appendChild(renderInline(text.slice(i + marker.length, end), opts, noLinks));
          frag.appendChild(el);
          i = end + marker.length;
          continue;
        }
      }
      buf += marker;
      i += marker.length;
      continue;
    }
    if (c === '\n') {
      // Two trailing spaces make a hard break; otherwise a soft one.
      if (buf.endsWith('  ')) {
        buf = buf.replace(/ +$/, '');
        flushText();
        frag.appendChild(document.createElement('br'));
      } else {
        buf += '\n';
      }
      i += 1;
      continue;
    }
    buf += c;
    i += 1;
  }
  flushText();
  return frag;
}

function findClose(text, from, marker, c) {
  let j = from;
  while (j < text.length) {
    const k = text.indexOf(marker, j);
    if (k < 0) return -1;
    const before = text[k - 1];
    const next = text[k + marker.length];
    const okBefore = before && !/\s/.test(before);
    const okAfter = c !== '_' || !isWordChar(next);
    // "**" must not close a single "*" (and vice versa)
    const single = marker.length === 1 && (next === c || before === c);
    if (okBefore && okAfter && !single && k > from) return k;
    j = k + marker.length;
  }
  return -1;
}
