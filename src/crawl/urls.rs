//! URL identity and scope: one normal form per page, so that de-duplication,
//! robots.txt checks, patterns and the documents' source names all agree.

use url::Url;

/// The normal form of an absolute URL, or `None` when it is not something the
/// crawler fetches (`mailto:`, `javascript:`, `tel:`, `data:`, `ftp:`, no host…).
///
/// Parsing with `url` already lowercases scheme and host, drops the scheme's
/// default port and resolves `.`/`..` segments. On top of that:
/// - the fragment is dropped (`/a#x` is the page `/a`);
/// - user name and password are dropped: they would end up in source names;
/// - an empty query (`/a?`) is dropped;
/// - percent-escapes are upper-cased (`%2f` → `%2F`, equivalent per RFC 3986).
///
/// The query is kept in its original order: servers may treat parameter
/// order as significant, and two orders of one page only cost a duplicate.
/// Trailing slashes are kept for the same reason (`/a` and `/a/` may differ).
pub fn normalize(mut url: Url) -> Option<Url> {
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return None;
    }
    url.set_fragment(None);
    // Both only fail for URLs that cannot have credentials; http(s) can.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    if url.query() == Some("") {
        url.set_query(None);
    }
    let path = upper_escapes(url.path());
    if path != url.path() {
        url.set_path(&path);
    }
    if let Some(query) = url.query().map(upper_escapes) {
        if Some(query.as_str()) != url.query() {
            url.set_query(Some(&query));
        }
    }
    Some(url)
}

/// Parse and normalise a URL given as text (the start URL, a caller's source
/// name): `None` when it does not parse or is not http(s).
pub fn normalize_str(url: &str) -> Option<Url> {
    Url::parse(url.trim()).ok().and_then(normalize)
}

fn upper_escapes(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
        {
            out.push('%');
            out.push(char::from(bytes[i + 1].to_ascii_uppercase()));
            out.push(char::from(bytes[i + 2].to_ascii_uppercase()));
            i += 3;
        } else {
            // Multi-byte characters are copied whole: only ASCII is inspected.
            let ch_len = s[i..].chars().next().map_or(1, char::len_utf8);
            out.push_str(&s[i..i + ch_len]);
            i += ch_len;
        }
    }
    out
}

/// The part of a URL that include/exclude patterns see: path plus `?query`.
pub fn path_and_query(url: &Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    }
}

/// A glob over a URL's path and query (as in [`path_and_query`], in the
/// normalised, percent-encoded form). `*` matches any run of characters,
/// including `/` and `?`; every other character matches itself. The match is
/// anchored at both ends: `/docs/*` matches `/docs/` and `/docs/a/b?x=1` but
/// not `/docs`; `*.pdf` matches any path ending in `.pdf`; `*?*` matches any
/// URL with a query. Chosen over regular expressions because the crate has
/// no regex dependency and globs cover how people scope a crawl.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(String);

impl Pattern {
    pub fn new(pattern: &str) -> Self {
        Pattern(pattern.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, subject: &str) -> bool {
        glob_match(self.0.as_bytes(), subject.as_bytes())
    }
}

/// Wildcard matching with single-star backtracking: linear in practice,
/// O(pattern × subject) at worst, never exponential.
fn glob_match(pattern: &[u8], subject: &[u8]) -> bool {
    let (mut p, mut s) = (0, 0);
    // Position of the last `*` seen and the subject position it was tried at.
    let mut star: Option<(usize, usize)> = None;
    while s < subject.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, s));
            p += 1;
        } else if p < pattern.len() && pattern[p] == subject[s] {
            p += 1;
            s += 1;
        } else if let Some((sp, ss)) = star {
            // Let the last star swallow one more character and retry.
            p = sp + 1;
            s = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> Option<String> {
        normalize_str(s).map(String::from)
    }

    #[test]
    fn normalises_to_one_form() {
        assert_eq!(
            norm("HTTP://Example.COM:80/a#x").as_deref(),
            Some("http://example.com/a")
        );
        assert_eq!(
            norm("https://example.com:443").as_deref(),
            Some("https://example.com/")
        );
        assert_eq!(
            norm("http://example.com:8080/a/./b/../c?").as_deref(),
            Some("http://example.com:8080/a/c")
        );
        assert_eq!(
            norm("http://user:pw@example.com/%2fa%c3%a9?q=%2f").as_deref(),
            Some("http://example.com/%2Fa%C3%A9?q=%2F")
        );
        assert_eq!(
            norm("http://example.com/a?b=2&a=1").as_deref(),
            Some("http://example.com/a?b=2&a=1")
        );
        assert_eq!(
            norm("http://example.com/é").as_deref(),
            Some("http://example.com/%C3%A9")
        );
        assert_eq!(norm("http://h/a"), norm("http://h/a#frag"));
    }

    #[test]
    fn rejects_what_is_not_crawled() {
        for url in [
            "mailto:a@b.c",
            "javascript:void(0)",
            "tel:+123",
            "ftp://h/x",
            "data:text/plain,x",
            "not a url",
        ] {
            assert_eq!(norm(url), None, "{url}");
        }
    }

    #[test]
    fn globs_match_path_and_query() {
        let p = Pattern::new("/docs/*");
        assert!(p.matches("/docs/"));
        assert!(p.matches("/docs/a/b?x=1"));
        assert!(!p.matches("/docs"));
        assert!(!p.matches("/blog/docs/a"));
        assert!(Pattern::new("*.pdf").matches("/a/b.pdf"));
        assert!(!Pattern::new("*.pdf").matches("/a/b.pdf?x"));
        assert!(Pattern::new("*?*").matches("/a?x=1"));
        assert!(!Pattern::new("*?*").matches("/a"));
        assert!(Pattern::new("/a").matches("/a"));
        assert!(!Pattern::new("/a").matches("/ab"));
        assert!(Pattern::new("/*/x/*/y").matches("/a/x/b/x/c/y"));
        assert!(Pattern::new("*").matches(""));
    }

    #[test]
    fn path_and_query_is_what_patterns_see() {
        let url = normalize_str("http://h/a/b?x=1#f").unwrap_or_else(|| panic!("parse"));
        assert_eq!(path_and_query(&url), "/a/b?x=1");
    }
}
