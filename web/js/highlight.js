// Highlighting with <mark> elements built through the DOM (never innerHTML).

/**
 * `ranges` are UTF-8 byte ranges into `text` (as the search API returns
 * them); returns nodes with those parts wrapped in <mark>.
 */
export function markByteRanges(text, ranges) {
  const s = String(text || '');
  if (!Array.isArray(ranges) || ranges.length === 0) return [document.createTextNode(s)];
  // byte offset -> UTF-16 index, at every code point boundary
  const map = new Map();
  let byte = 0;
  let idx = 0;
  for (const ch of s) {
    map.set(byte, idx);
    const cp = ch.codePointAt(0);
    byte += cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    idx += ch.length;
  }
  map.set(byte, idx);
  const toIndex = (b) => {
    let x = Math.max(0, Math.min(b, byte));
    while (!map.has(x) && x > 0) x -= 1; // inside a code point: back to its start
    return map.get(x);
  };
  const spans = ranges
    .filter((r) => Array.isArray(r) && r.length === 2)
    .map(([a, b]) => [toIndex(a), toIndex(b)])
    .filter(([a, b]) => b > a)
    .sort((x, y) => x[0] - y[0]);
  return splitMarks(s, spans);
}

function splitMarks(s, spans) {
  const out = [];
  let pos = 0;
  for (const [a, b] of spans) {
    if (b <= pos) continue;
    const start = Math.max(a, pos);
    if (start > pos) out.push(document.createTextNode(s.slice(pos, start)));
    const m = document.createElement('mark');
    m.textContent = s.slice(start, b);
    out.push(m);
    pos = b;
  }
  if (pos < s.length) out.push(document.createTextNode(s.slice(pos)));
  return out;
}

const STOP = new Set(('a an and are as at be been but by can could did do does doing for from had has have how i if in ' +
  'into is it its me my no not of on or our so than that the their them then there these they this those to ' +
  'was we were what when where which who whom why will with would you your about also any all should').split(' '));

/** A crude stem so "indexes" finds "index" and "rebuilding" finds "rebuild". */
export function stem(w) {
  let s = w.toLowerCase();
  for (const suf of ['ingly', 'edly', 'ing', 'ies', 'ied', 'es', 'ed', 'ly', 's']) {
    if (s.length - suf.length >= 3 && s.endsWith(suf)) {
      s = s.slice(0, -suf.length);
      break;
    }
  }
  return s;
}

export function queryTerms(question) {
  const terms = new Set();
  for (const w of String(question || '').match(/[\p{L}\p{N}]+/gu) || []) {
    const lw = w.toLowerCase();
    if (lw.length < 2 || STOP.has(lw)) continue;
    terms.add(stem(lw));
  }
  return terms;
}

/** Nodes for `text` with the words of `question` in <mark>. */
export function markWords(text, question) {
  const s = String(text || '');
  const terms = queryTerms(question);
  if (terms.size === 0) return [document.createTextNode(s)];
  const spans = [];
  const re = /[\p{L}\p{N}]+/gu;
  let m;
  while ((m = re.exec(s)) !== null) {
    if (terms.has(stem(m[0]))) spans.push([m.index, m.index + m[0].length]);
  }
  return splitMarks(s, spans);
}
