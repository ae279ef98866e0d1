//! Text normalisation before hashing and chunking, so the same content always
//! hashes the same and chunk offsets refer to the text we store.

use unicode_normalization::UnicodeNormalization;

/// Unicode NFC, control characters dropped, runs of spaces and tabs collapsed,
/// lines trimmed, and at most one blank line between paragraphs. Line breaks
/// survive because the markdown splitter and paragraph boundaries need them.
pub fn clean_text(raw: &str) -> String {
    let nfc: String = raw
        .replace("\r\n", "\n")
        .replace('\r', "\n")
        .nfc()
        .collect();
    let mut out = String::with_capacity(nfc.len());
    let mut blank_run = 0usize;
    for line in nfc.split('\n') {
        let mut cleaned = String::with_capacity(line.len());
        let mut last_space = true;
        for ch in line.chars() {
            let ch = if ch == '\t' || ch == '\u{a0}' {
                ' '
            } else {
                ch
            };
            if ch.is_control() || matches!(ch, '\u{200b}' | '\u{feff}') {
                continue;
            }
            if ch.is_whitespace() {
                if !last_space {
                    cleaned.push(' ');
                }
                last_space = true;
            } else {
                cleaned.push(ch);
                last_space = false;
            }
        }
        let cleaned = cleaned.trim_end();
        if cleaned.is_empty() {
            blank_run += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank_run > 0 { "\n\n" } else { "\n" });
        }
        blank_run = 0;
        out.push_str(cleaned);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_whitespace_controls_and_unicode() {
        // "e" + combining acute becomes the single code point é under NFC.
        let raw = "  Caf\u{65}\u{301}\t\tbar \u{0007}\r\n\r\n\r\n\nnext   line  \n\u{feff}last";
        assert_eq!(clean_text(raw), "Caf\u{e9} bar\n\nnext line\nlast");
    }

    #[test]
    fn is_idempotent() {
        let raw = "a  b\n\n\n c\t\td \n";
        let once = clean_text(raw);
        assert_eq!(clean_text(&once), once);
        assert_eq!(once, "a b\n\nc d");
    }

    #[test]
    fn empty_and_blank_inputs() {
        assert_eq!(clean_text(""), "");
        assert_eq!(clean_text(" \n\t\n "), "");
    }
}
