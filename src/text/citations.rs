//! Citation markers in a streaming answer.
//!
//! The answer reaches the client delta by delta, so markers are checked as
//! they stream: a marker that points at a source the model was not sent is
//! removed before the client sees it (and counted), and the numbers that were
//! cited are collected for the stored message.
//!
//! A marker is `[n]` or `[n, m, …]` (`,` or `;` between numbers, spaces
//! allowed); `[n][m]` is simply two markers. Numbers have at most
//! [`MAX_DIGITS`] digits, so a bracketed year such as `[2024]` is text, not a
//! citation. Any other bracket (`[see above]`, `[x]`, `[^1]`, `[]`) is text
//! and passes through unchanged.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// Longest number read as a citation; no answer is sent a thousand sources.
pub const MAX_DIGITS: usize = 3;

/// Longest marker (in bytes) held back while waiting for its `]`, so a model
/// that writes `[1, 2, 3, …` forever cannot stall the stream.
const MAX_MARKER_LEN: usize = 64;

/// What the answer cited, for the stored message and the `done` frame.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CitationReport {
    /// Valid source numbers cited at least once, ascending.
    pub cited: Vec<usize>,
    /// References to numbers that match no source sent (each number in a
    /// multi-number marker counts on its own). These were removed.
    pub dropped: usize,
}

/// Streaming marker checker: feed it deltas with [`push`](Self::push), send
/// what it returns, and call [`finish`](Self::finish) at the end of the
/// answer (also after a cancel or error, to flush what it held back).
///
/// It holds back two things: a possibly incomplete marker at the end of a
/// delta (`[`, `[1`, `[1, 2`), and trailing whitespace, because removing a
/// marker may need to drop the space before it (`big [9].` becomes `big.`).
/// Output therefore never depends on where the deltas were split.
#[derive(Debug, Clone)]
pub struct CitationFilter {
    valid: BTreeSet<usize>,
    /// Input starting at a `[` whose fate is not known yet.
    held: String,
    /// Whitespace since the last visible character, not yet emitted.
    pending_ws: String,
    /// Whether a removed marker sits inside `pending_ws`'s run.
    removed_in_run: bool,
    emitted_any: bool,
    cited: BTreeSet<usize>,
    dropped: usize,
}

enum Parse {
    Marker { len: usize, numbers: Vec<usize> },
    NotMarker,
    Incomplete,
}

impl CitationFilter {
    /// `valid` are the source numbers actually sent to the model.
    pub fn new(valid: &[usize]) -> Self {
        Self {
            valid: valid.iter().copied().collect(),
            held: String::new(),
            pending_ws: String::new(),
            removed_in_run: false,
            emitted_any: false,
            cited: BTreeSet::new(),
            dropped: 0,
        }
    }

    /// Filter a whole answer at once (non-streaming endpoints).
    pub fn apply(text: &str, valid: &[usize]) -> (String, CitationReport) {
        let mut filter = Self::new(valid);
        let mut out = filter.push(text);
        let (rest, report) = filter.finish();
        out.push_str(&rest);
        (out, report)
    }

    /// Take the next delta; return the text that is safe to show now.
    pub fn push(&mut self, delta: &str) -> String {
        let mut input = std::mem::take(&mut self.held);
        input.push_str(delta);
        let mut out = String::new();
        self.process(&input, false, &mut out);
        out
    }

    /// End of the answer: the rest of the text and what was cited.
    pub fn finish(mut self) -> (String, CitationReport) {
        let input = std::mem::take(&mut self.held);
        let mut out = String::new();
        self.process(&input, true, &mut out);
        // Whitespace left around a removed marker at the very end is the
        // marker's own spacing; other trailing whitespace is the model's.
        if !self.removed_in_run {
            out.push_str(&self.pending_ws);
        }
        let report = CitationReport {
            cited: self.cited.into_iter().collect(),
            dropped: self.dropped,
        };
        (out, report)
    }

    /// Numbers cited so far, ascending (e.g. for progress logging).
    pub fn cited_so_far(&self) -> Vec<usize> {
        self.cited.iter().copied().collect()
    }

    fn process(&mut self, input: &str, last: bool, out: &mut String) {
        let mut i = 0;
        while let Some(c) = input[i..].chars().next() {
            if c == '[' {
                match parse_marker(&input[i..]) {
                    Parse::Incomplete if !last => {
                        self.held = input[i..].to_string();
                        return;
                    }
                    Parse::Marker { len, numbers } => {
                        self.marker(&input[i..i + len], &numbers, out);
                        i += len;
                        continue;
                    }
                    Parse::Incomplete | Parse::NotMarker => {}
                }
            }
            if c.is_whitespace() {
                self.pending_ws.push(c);
            } else {
                self.flush_ws(c, out);
                out.push(c);
                self.emitted_any = true;
            }
            i += c.len_utf8();
        }
    }

    fn marker(&mut self, raw: &str, numbers: &[usize], out: &mut String) {
        let kept: Vec<usize> = numbers
            .iter()
            .copied()
            .filter(|n| self.valid.contains(n))
            .collect();
        self.dropped += numbers.len() - kept.len();
        if kept.is_empty() {
            self.removed_in_run = true;
            return;
        }
        self.cited.extend(kept.iter().copied());
        self.flush_ws('[', out);
        if kept.len() == numbers.len() {
            out.push_str(raw);
        } else {
            let list: Vec<String> = kept.iter().map(usize::to_string).collect();
            out.push('[');
            out.push_str(&list.join(", "));
            out.push(']');
        }
        self.emitted_any = true;
    }

    /// Emit the held whitespace before the visible character `next`. Around a
    /// removed marker the run is collapsed so that no double space, no space
    /// before punctuation and no leading space is left behind.
    fn flush_ws(&mut self, next: char, out: &mut String) {
        let ws = std::mem::take(&mut self.pending_ws);
        if !std::mem::take(&mut self.removed_in_run) {
            out.push_str(&ws);
            return;
        }
        if !self.emitted_any {
            return;
        }
        let newlines: String = ws.chars().filter(|&c| c == '\n').collect();
        if !newlines.is_empty() {
            out.push_str(&newlines);
        } else if !ws.is_empty() && !is_closing_punctuation(next) {
            out.push(' ');
        }
    }
}

/// Remove every citation marker (keeps other brackets), e.g. from source text
/// that carries its own reference numbers.
pub fn strip_markers(text: &str) -> String {
    CitationFilter::apply(text, &[]).0
}

fn is_closing_punctuation(c: char) -> bool {
    matches!(c, '.' | ',' | ';' | ':' | '!' | '?' | ')' | '…')
}

/// Read a marker at the start of `s` (which starts with `[`).
fn parse_marker(s: &str) -> Parse {
    let b = s.as_bytes();
    let mut i = 1;
    let mut numbers = Vec::new();
    loop {
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
            if i - start > MAX_DIGITS {
                return Parse::NotMarker;
            }
        }
        if i == b.len() {
            return if i > MAX_MARKER_LEN {
                Parse::NotMarker
            } else {
                Parse::Incomplete
            };
        }
        if i == start {
            return Parse::NotMarker;
        }
        // At most MAX_DIGITS ASCII digits, so this cannot fail or overflow.
        let n = s[start..i].parse::<usize>().unwrap_or(usize::MAX);
        numbers.push(n);
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        if i >= MAX_MARKER_LEN {
            return Parse::NotMarker;
        }
        match b.get(i) {
            None => return Parse::Incomplete,
            Some(b']') => {
                return Parse::Marker {
                    len: i + 1,
                    numbers,
                }
            }
            Some(b',' | b';') => i += 1,
            Some(_) => return Parse::NotMarker,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(deltas: &[&str], valid: &[usize]) -> (String, CitationReport) {
        let mut f = CitationFilter::new(valid);
        let mut out = String::new();
        for d in deltas {
            out.push_str(&f.push(d));
        }
        let (rest, report) = f.finish();
        out.push_str(&rest);
        (out, report)
    }

    fn char_boundaries(s: &str) -> Vec<usize> {
        s.char_indices().map(|(i, _)| i).chain([s.len()]).collect()
    }

    const SAMPLE: &str = "Paris is the capital [1]. It has 2.1 million people [2, 9]\
        , see [the census] and [x]. Old claim [7] stands [3][8]. \
        Ünïcödé [ 2 ; 3 ] text[9]\n[12] ends [1";

    const SAMPLE_OUT: &str = "Paris is the capital [1]. It has 2.1 million people [2]\
        , see [the census] and [x]. Old claim stands [3]. \
        Ünïcödé [ 2 ; 3 ] text\nends [1";

    #[test]
    fn whole_sample() {
        let (out, report) = CitationFilter::apply(SAMPLE, &[1, 2, 3]);
        assert_eq!(out, SAMPLE_OUT);
        assert_eq!(report.cited, vec![1, 2, 3]);
        // 9, 7, 8, 9, 12
        assert_eq!(report.dropped, 5);
    }

    #[test]
    fn every_two_way_split_matches_unsplit() {
        let whole = CitationFilter::apply(SAMPLE, &[1, 2, 3]);
        for &i in &char_boundaries(SAMPLE) {
            let got = run(&[&SAMPLE[..i], &SAMPLE[i..]], &[1, 2, 3]);
            assert_eq!(got, whole, "split at {i}");
        }
    }

    #[test]
    fn every_three_way_split_matches_unsplit() {
        let whole = CitationFilter::apply(SAMPLE, &[1, 2, 3]);
        let cuts = char_boundaries(SAMPLE);
        for (a, &i) in cuts.iter().enumerate() {
            for &j in &cuts[a..] {
                let got = run(&[&SAMPLE[..i], &SAMPLE[i..j], &SAMPLE[j..]], &[1, 2, 3]);
                assert_eq!(got, whole, "split at {i} and {j}");
            }
        }
    }

    #[test]
    fn char_by_char_matches_unsplit() {
        let whole = CitationFilter::apply(SAMPLE, &[1, 2, 3]);
        let chars: Vec<String> = SAMPLE.chars().map(String::from).collect();
        let deltas: Vec<&str> = chars.iter().map(String::as_str).collect();
        assert_eq!(run(&deltas, &[1, 2, 3]), whole);
    }

    #[test]
    fn invalid_markers_are_removed_and_counted() {
        let (out, r) = CitationFilter::apply("Paris is big [9] and old [1].", &[1]);
        assert_eq!(out, "Paris is big and old [1].");
        assert_eq!(r.cited, vec![1]);
        assert_eq!(r.dropped, 1);

        let (out, r) = CitationFilter::apply("Zero [0] is never a source.", &[1]);
        assert_eq!(out, "Zero is never a source.");
        assert_eq!(r.dropped, 1);
        assert!(r.cited.is_empty());
    }

    #[test]
    fn no_sources_means_every_marker_is_dropped() {
        let (out, r) = CitationFilter::apply("A [1]. B [2, 3].", &[]);
        assert_eq!(out, "A. B.");
        assert_eq!(r.dropped, 3);
        assert!(r.cited.is_empty());
    }

    #[test]
    fn multi_markers_keep_their_valid_numbers() {
        let cases = [
            ("x [1, 7] y", "x [1] y", 1),
            ("x [2, 7, 3] y", "x [2, 3] y", 1),
            ("x [2,3] y", "x [2,3] y", 0),
            ("x [1][7] y", "x [1] y", 1),
            ("x [7][1] y", "x [1] y", 1),
            ("x [7, 8] y", "x y", 2),
            ("x [7] [8] [1].", "x [1].", 2),
            ("x [2; 9; 1].", "x [2, 1].", 1),
        ];
        for (input, want, dropped) in cases {
            let (out, r) = CitationFilter::apply(input, &[1, 2, 3]);
            assert_eq!(out, want, "{input}");
            assert_eq!(r.dropped, dropped, "{input}");
        }
    }

    #[test]
    fn removal_leaves_no_stray_whitespace() {
        let cases = [
            ("a [9] b", "a b"),
            ("a [9]b", "a b"),
            ("a[9] b", "a b"),
            ("a[9]b", "ab"),
            ("a [9], b", "a, b"),
            ("Done. [9]", "Done."),
            ("Done. [9] ", "Done."),
            ("[9] Hello", "Hello"),
            ("  [9] Hello", "Hello"),
            ("Done [9]\nNext", "Done\nNext"),
            ("Done [9]\n\nNext", "Done\n\nNext"),
            ("a [9] [8] b", "a b"),
            ("a [9]  (b)", "a (b)"),
        ];
        for (input, want) in cases {
            assert_eq!(CitationFilter::apply(input, &[1]).0, want, "{input:?}");
        }
    }

    #[test]
    fn whitespace_is_kept_when_nothing_is_removed() {
        for text in ["a  b", "trailing \n", "  leading", "a [1]  b\n\n"] {
            assert_eq!(CitationFilter::apply(text, &[1]).0, text);
        }
    }

    #[test]
    fn non_markers_pass_through() {
        for text in [
            "[see above]",
            "[x]",
            "[1a]",
            "[]",
            "[ ]",
            "[2024]",
            "[^1]",
            "[1 2]",
            "[1,]",
            "[-1]",
            "a[",
            "ends with [1",
            "ends with [1, ",
            "[[1]] nested",
        ] {
            let (out, r) = CitationFilter::apply(text, &[1]);
            if text == "[[1]] nested" {
                assert_eq!(out, text);
                assert_eq!(r.cited, vec![1]);
                continue;
            }
            assert_eq!(out, text, "{text:?}");
            assert_eq!(r, CitationReport::default(), "{text:?}");
        }
    }

    #[test]
    fn holds_back_only_what_it_must() {
        let mut f = CitationFilter::new(&[1]);
        assert_eq!(f.push("See ["), "See");
        assert_eq!(f.push("1"), "");
        assert_eq!(f.push("] and"), " [1] and");
        assert_eq!(f.push(" more [x"), " more [x");
        assert_eq!(f.cited_so_far(), vec![1]);
        let (rest, report) = f.finish();
        assert_eq!(rest, "");
        assert_eq!(report.cited, vec![1]);
    }

    #[test]
    fn runaway_bracket_is_released() {
        let long = format!("[1,{}", " 2,".repeat(40));
        let mut f = CitationFilter::new(&[1, 2]);
        let shown = f.push(&long);
        assert_eq!(
            shown, long,
            "a never-closing marker must not stall the stream"
        );
    }

    #[test]
    fn cited_is_sorted_and_unique() {
        let (_, r) = CitationFilter::apply("a [3] b [1] c [3] d [2, 1]", &[1, 2, 3]);
        assert_eq!(r.cited, vec![1, 2, 3]);
        assert_eq!(r.dropped, 0);
    }

    #[test]
    fn strip_markers_keeps_other_brackets() {
        assert_eq!(
            strip_markers("Rome was founded [3] in 753 BC [note] [4, 5]."),
            "Rome was founded in 753 BC [note]."
        );
    }
}
