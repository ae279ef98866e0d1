//! What the crawler needs from an HTML page besides its text: links to follow
//! and the page's robots directives.

use scraper::{Html, Selector};
use url::Url;

use crate::ingest::load::html_to_text;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Directives {
    pub(crate) noindex: bool,
    pub(crate) nofollow: bool,
}

impl Directives {
    /// Apply one comma-separated directive list (`noindex, nofollow`, `none`).
    fn apply(&mut self, list: &str) {
        for token in list.split(',').map(|t| t.trim().to_ascii_lowercase()) {
            match token.as_str() {
                "noindex" => self.noindex = true,
                "nofollow" => self.nofollow = true,
                "none" => {
                    self.noindex = true;
                    self.nofollow = true;
                }
                _ => {}
            }
        }
    }

    /// `X-Robots-Tag` header values. A value may start with a user agent
    /// (`otherbot: noindex`): then it only applies when that agent is ours.
    pub(crate) fn apply_headers(&mut self, values: &[String], agent: &str) {
        for value in values {
            let scoped = value.split_once(':').filter(|(who, _)| {
                let who = who.trim();
                // `unavailable_after: <date>` is a directive, not an agent.
                !who.eq_ignore_ascii_case("unavailable_after")
                    && !who.is_empty()
                    && who
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            });
            match scoped {
                Some((who, rest)) if who.trim().eq_ignore_ascii_case(agent) => self.apply(rest),
                Some(_) => {}
                None => self.apply(value),
            }
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct HtmlPage {
    pub(crate) title: Option<String>,
    /// Empty when the page is `noindex` (not worth extracting).
    pub(crate) text: String,
    /// Absolute `<a href>` targets, in document order, not yet normalised or
    /// filtered by scheme; empty when the page is `nofollow`.
    pub(crate) links: Vec<Url>,
    pub(crate) directives: Directives,
}

/// Parse a page fetched from `page_url`. `agent` is our product token:
/// `<meta name="robots">` and `<meta name="{agent}">` both count. Text is
/// extracted only when `want_text` and the page is not `noindex`.
/// CPU-bound (the page is parsed twice: once here for links and meta tags,
/// once by the shared `html_to_text` so crawled and uploaded HTML get the
/// same text); run it off the async threads.
pub(crate) fn analyse(html: &str, page_url: &Url, agent: &str, want_text: bool) -> HtmlPage {
    let doc = Html::parse_document(html);
    let mut directives = Directives::default();
    if let Ok(meta) = Selector::parse("meta[name][content]") {
        for el in doc.select(&meta) {
            let name = el.attr("name").unwrap_or_default().trim();
            if name.eq_ignore_ascii_case("robots") || name.eq_ignore_ascii_case(agent) {
                directives.apply(el.attr("content").unwrap_or_default());
            }
        }
    }
    let mut links = Vec::new();
    if !directives.nofollow {
        // Relative links resolve against <base href> when the page has one.
        let base = Selector::parse("base[href]")
            .ok()
            .and_then(|s| doc.select(&s).next())
            .and_then(|el| el.attr("href"))
            .and_then(|href| page_url.join(href.trim()).ok())
            .unwrap_or_else(|| page_url.clone());
        if let Ok(anchors) = Selector::parse("a[href]") {
            links = doc
                .select(&anchors)
                .filter_map(|el| el.attr("href"))
                .filter_map(|href| base.join(href.trim()).ok())
                .collect();
        }
    }
    let (title, text) = if directives.noindex || !want_text {
        (None, String::new())
    } else {
        html_to_text(html)
    };
    HtmlPage {
        title,
        text,
        links,
        directives,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn links_resolve_against_base_and_page() {
        let html = r#"<html><head><base href="/docs/"></head><body>
            <a href="a">a</a> <a href=" ../b#x "> b</a> <a href="mailto:x@y">m</a>
            <a>no href</a> <a href="http://other/c">c</a></body></html>"#;
        let page = analyse(html, &url("http://h/x/y"), "bot", true);
        let links: Vec<String> = page.links.iter().map(Url::to_string).collect();
        assert_eq!(
            links,
            [
                "http://h/docs/a",
                "http://h/b#x",
                "mailto:x@y",
                "http://other/c"
            ]
        );
    }

    #[test]
    fn meta_robots_for_all_or_for_us() {
        let page = analyse(
            r#"<head><meta name="ROBOTS" content="noindex"><title>T</title></head><a href="/a">a</a>"#,
            &url("http://h/"),
            "bot",
            true,
        );
        assert!(page.directives.noindex && !page.directives.nofollow);
        assert_eq!(page.links.len(), 1);
        assert_eq!(page.text, "");
        let page = analyse(
            r#"<meta name="bot" content="nofollow"><meta name="otherbot" content="noindex"><a href="/a">a</a>"#,
            &url("http://h/"),
            "bot",
            true,
        );
        assert!(!page.directives.noindex && page.directives.nofollow);
        assert!(page.links.is_empty());
        let page = analyse(
            r#"<meta name="robots" content="none">"#,
            &url("http://h/"),
            "bot",
            true,
        );
        assert!(page.directives.noindex && page.directives.nofollow);
    }

    #[test]
    fn x_robots_tag_scoped_by_agent() {
        let mut d = Directives::default();
        d.apply_headers(
            &[
                "otherbot: noindex".into(),
                "unavailable_after: 2030-01-01".into(),
            ],
            "bot",
        );
        assert_eq!(d, Directives::default());
        d.apply_headers(&["BOT: nofollow".into()], "bot");
        assert!(d.nofollow && !d.noindex);
        d.apply_headers(&["noindex".into()], "bot");
        assert!(d.noindex);
    }
}
