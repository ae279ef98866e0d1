//! Loaders: turn files into raw documents (source name, title, text). Each
//! format keeps what a reader would call the content and drops the rest.

use std::path::{Path, PathBuf};

use scraper::{ElementRef, Html, Node, Selector};

use super::formats::beir;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("{0}")]
    Beir(#[from] beir::BeirError),
    #[error(
        "{path}: unsupported file type (expected .txt, .md, .markdown, .html, .htm or .jsonl)"
    )]
    Unsupported { path: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Markdown,
    Html,
    Jsonl,
}

impl Format {
    pub fn from_path(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "txt" | "text" => Some(Format::Text),
            "md" | "markdown" => Some(Format::Markdown),
            "html" | "htm" => Some(Format::Html),
            "jsonl" => Some(Format::Jsonl),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RawDocument {
    /// Stable name within a collection: re-ingesting the same source updates it.
    pub source: String,
    pub title: String,
    pub text: String,
    pub markdown: bool,
    pub metadata: serde_json::Value,
}

impl RawDocument {
    /// A BEIR corpus line: its `_id` is the source name.
    pub fn from_beir(doc: beir::BeirDoc, file: Option<&str>) -> Self {
        let metadata = match file {
            Some(f) => serde_json::json!({ "file": f, "id": doc.id }),
            None => serde_json::json!({ "id": doc.id }),
        };
        RawDocument {
            source: doc.id,
            title: doc.title,
            text: doc.text,
            markdown: false,
            metadata,
        }
    }
}

/// Files to ingest under `path` (itself if a file), sorted for a stable order.
/// Files of unknown type inside a directory are skipped; a single file of
/// unknown type is an error.
pub fn discover(path: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let io = |p: &Path, e: std::io::Error| LoadError::Io {
        path: p.display().to_string(),
        message: e.to_string(),
    };
    let meta = std::fs::metadata(path).map_err(|e| io(path, e))?;
    if meta.is_file() {
        return match Format::from_path(path) {
            Some(_) => Ok(vec![path.to_path_buf()]),
            None => Err(LoadError::Unsupported {
                path: path.display().to_string(),
            }),
        };
    }
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| io(&dir, e))? {
            let entry = entry.map_err(|e| io(&dir, e))?;
            let p = entry.path();
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let ft = entry.file_type().map_err(|e| io(&p, e))?;
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() && Format::from_path(&p).is_some() {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Load one file. `source` names it within the collection (the path relative
/// to the ingested root); BEIR lines use their `_id` instead.
pub fn load_file(path: &Path, source: &str) -> Result<Vec<RawDocument>, LoadError> {
    let format = Format::from_path(path).ok_or_else(|| LoadError::Unsupported {
        path: path.display().to_string(),
    })?;
    if format == Format::Jsonl {
        return Ok(beir::load_corpus(path)?
            .into_iter()
            .map(|d| RawDocument::from_beir(d, Some(source)))
            .collect());
    }
    let bytes = std::fs::read(path).map_err(|e| LoadError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    // Lossy: a stray invalid byte should cost one character, not the document.
    let raw = String::from_utf8_lossy(&bytes);
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| source.to_string());
    let doc = match format {
        Format::Markdown => RawDocument {
            title: markdown_title(&raw).unwrap_or(stem),
            text: raw.into_owned(),
            markdown: true,
            source: source.to_string(),
            metadata: serde_json::json!({ "file": source, "format": "markdown" }),
        },
        Format::Html => {
            let (title, text) = html_to_text(&raw);
            RawDocument {
                title: title.unwrap_or(stem),
                text,
                markdown: false,
                source: source.to_string(),
                metadata: serde_json::json!({ "file": source, "format": "html" }),
            }
        }
        _ => RawDocument {
            title: text_title(&raw).unwrap_or(stem),
            text: raw.into_owned(),
            markdown: false,
            source: source.to_string(),
            metadata: serde_json::json!({ "file": source, "format": "text" }),
        },
    };
    Ok(vec![doc])
}

/// Load everything under `root`, naming sources relative to it.
pub fn load_path(root: &Path) -> Result<Vec<RawDocument>, LoadError> {
    let files = discover(root)?;
    let base = if root.is_file() {
        root.parent().unwrap_or(Path::new(""))
    } else {
        root
    };
    let mut docs = Vec::new();
    for file in files {
        let rel = file.strip_prefix(base).unwrap_or(&file);
        let source = rel.to_string_lossy().replace('\\', "/");
        docs.extend(load_file(&file, &source)?);
    }
    Ok(docs)
}

pub(crate) fn markdown_title(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("# "))
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

pub(crate) fn text_title(text: &str) -> Option<String> {
    let first = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    (first.chars().count() <= 120).then(|| first.to_string())
}

/// Elements whose content is never the page's content.
const SKIP: &[&str] = &[
    "script", "style", "noscript", "nav", "footer", "header", "aside", "form", "svg", "iframe",
    "template", "button", "head",
];
const BLOCK: &[&str] = &[
    "p",
    "div",
    "section",
    "article",
    "main",
    "li",
    "ul",
    "ol",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "pre",
    "blockquote",
    "table",
    "tr",
    "br",
    "hr",
    "dd",
    "dt",
    "figcaption",
];

/// Title and readable text of an HTML page: `<main>` or `<article>` when the
/// page has one, else `<body>`; scripts, navigation, headers and footers are
/// dropped; block elements become line breaks.
pub fn html_to_text(html: &str) -> (Option<String>, String) {
    let doc = Html::parse_document(html);
    let select = |s: &str| Selector::parse(s).ok();
    let text_of = |e: ElementRef| e.text().collect::<String>().trim().to_string();
    let title = select("title")
        .and_then(|s| doc.select(&s).next().map(text_of))
        .filter(|t| !t.is_empty())
        .or_else(|| {
            select("h1")
                .and_then(|s| doc.select(&s).next().map(text_of))
                .filter(|t| !t.is_empty())
        });
    let root = ["main", "article", "body"]
        .iter()
        .filter_map(|s| select(s))
        .find_map(|s| doc.select(&s).next());
    let mut out = String::new();
    match root {
        Some(r) => walk(r, &mut out),
        None => walk(doc.root_element(), &mut out),
    }
    (title, out)
}

fn walk(el: ElementRef, out: &mut String) {
    for child in el.children() {
        match child.value() {
            Node::Text(t) => out.push_str(t),
            Node::Element(e) => {
                let name = e.name();
                if SKIP.contains(&name) {
                    continue;
                }
                if let Some(child_el) = ElementRef::wrap(child) {
                    let block = BLOCK.contains(&name);
                    if block {
                        out.push_str("\n\n");
                    }
                    walk(child_el, out);
                    if block {
                        out.push_str("\n\n");
                    } else if matches!(name, "td" | "th") {
                        out.push(' ');
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::clean::clean_text;

    #[test]
    fn html_keeps_content_and_drops_chrome() {
        let html = r#"<html><head><title>Guide</title><script>var x = "secret";</script></head>
            <body><nav><a href="/">Home</a> | <a href="/x">Menu</a></nav>
            <main><h1>Install</h1><p>Run the <b>script</b>.</p><p>Then start.</p></main>
            <footer>Copyright 2026</footer></body></html>"#;
        let (title, text) = html_to_text(html);
        assert_eq!(title.as_deref(), Some("Guide"));
        let text = clean_text(&text);
        assert_eq!(text, "Install\n\nRun the script.\n\nThen start.");
    }

    #[test]
    fn html_without_main_uses_body_and_h1_title() {
        let (title, text) =
            html_to_text("<body><h1>Hello</h1><div>a<br>b</div><aside>ad</aside></body>");
        assert_eq!(title.as_deref(), Some("Hello"));
        assert_eq!(clean_text(&text), "Hello\n\na\n\nb");
    }

    #[test]
    fn loads_a_directory_with_stable_sources() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("a.md"), "intro\n# Alpha\nbody").unwrap();
        std::fs::write(dir.path().join("sub/b.txt"), "Beta title\n\nbody").unwrap();
        std::fs::write(dir.path().join("skip.bin"), [0u8, 1, 2]).unwrap();
        std::fs::write(dir.path().join(".hidden.md"), "# h").unwrap();
        std::fs::write(
            dir.path().join("c.jsonl"),
            "{\"_id\": \"d1\", \"title\": \"T\", \"text\": \"x\"}\n{\"_id\": 7, \"text\": \"y\"}\n",
        )
        .unwrap();
        let docs = load_path(dir.path()).unwrap();
        let names: Vec<(&str, &str, bool)> = docs
            .iter()
            .map(|d| (d.source.as_str(), d.title.as_str(), d.markdown))
            .collect();
        assert_eq!(
            names,
            vec![
                ("a.md", "Alpha", true),
                ("d1", "T", false),
                ("7", "", false),
                ("sub/b.txt", "Beta title", false)
            ]
        );
        assert!(matches!(
            load_path(&dir.path().join("skip.bin")),
            Err(LoadError::Unsupported { .. })
        ));
        assert!(matches!(
            load_path(&dir.path().join("missing")),
            Err(LoadError::Io { .. })
        ));
    }
}
