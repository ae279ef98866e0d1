//! JSON Lines: one document per line, either a BEIR corpus record
//! (`_id`, `title`, `text`) or `{id, title, text}`. Other fields are kept in
//! the metadata under `fields`, apart from the keys this module writes.

use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind};
use std::path::Path;

use serde_json::Value;

use super::beir::BeirDoc;
use super::{FormatError, Kind, Origin, RawDocument};

pub(super) fn load(path: &Path, origin: &Origin) -> Result<Vec<RawDocument>, FormatError> {
    let file = File::open(path).map_err(|e| origin.io(e))?;
    let mut reader = BufReader::new(file);
    let mut docs = Vec::new();
    let mut line = String::new();
    let mut line_no = 0usize;
    loop {
        line.clear();
        line_no += 1;
        match reader.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::InvalidData => {
                return Err(origin.malformed(format!("line {line_no}: not valid UTF-8")));
            }
            Err(e) => return Err(origin.io(e)),
        }
        let record = line.trim_start_matches('\u{feff}').trim();
        if record.is_empty() {
            continue;
        }
        let doc = parse_record(record, origin)
            .map_err(|reason| origin.malformed(format!("line {line_no}: {reason}")))?;
        docs.push(doc);
    }
    Ok(docs)
}

fn parse_record(record: &str, origin: &Origin) -> Result<RawDocument, String> {
    let value: Value = serde_json::from_str(record).map_err(|e| format!("invalid JSON ({e})"))?;
    let Value::Object(mut fields) = value else {
        return Err("expected a JSON object with `_id` (or `id`) and `text`".into());
    };
    let id_key = if fields.contains_key("_id") {
        "_id"
    } else {
        "id"
    };
    let id = match fields.remove(id_key) {
        Some(Value::String(s)) if !s.trim().is_empty() => s,
        Some(Value::String(_)) => return Err(format!("`{id_key}` is empty")),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err(format!("`{id_key}` must be a string or a number")),
        None => return Err("missing `_id` (or `id`)".into()),
    };
    let text = match fields.remove("text") {
        Some(Value::String(s)) => s,
        Some(_) => return Err("`text` must be a string".into()),
        None => return Err("missing `text`".into()),
    };
    let title = match fields.remove("title") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s,
        Some(_) => return Err("`title` must be a string".into()),
    };
    let mut doc = RawDocument::from_beir(BeirDoc { id, title, text }, Some(&origin.source));
    if let (Value::Object(meta), Value::Object(extra)) =
        (&mut doc.metadata, origin.metadata(Kind::Jsonl))
    {
        meta.extend(extra);
        if !fields.is_empty() {
            meta.insert("fields".into(), Value::Object(fields));
        }
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{load as load_upload, Limits};
    use super::*;
    use serde_json::json;

    fn load_lines(text: &str) -> Result<Vec<RawDocument>, FormatError> {
        let dir = tempfile::tempdir().unwrap();
        let path = write_file(dir.path(), "upload", text.as_bytes());
        load_upload(&path, "corpus.jsonl", &Limits::default()).map(|l| l.documents)
    }

    #[test]
    fn jsonl_beir_lines() {
        let docs = load_lines(concat!(
            "\u{feff}{\"_id\": \"d1\", \"title\": \"One\", \"text\": \"Body one\"}\n",
            "\n",
            "{\"_id\": 42, \"text\": \"No title\", \"metadata\": {}}\r\n",
            "{\"_id\": \"d3\", \"title\": null, \"text\": \"Null title\"}",
        ))
        .unwrap();
        let got: Vec<(&str, &str, &str)> = docs
            .iter()
            .map(|d| (d.source.as_str(), d.title.as_str(), d.text.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("d1", "One", "Body one"),
                ("42", "", "No title"),
                ("d3", "", "Null title")
            ]
        );
        assert_eq!(
            docs[0].metadata,
            json!({ "file": "corpus.jsonl", "format": "jsonl", "id": "d1" })
        );
        assert_eq!(docs[1].metadata["fields"], json!({ "metadata": {} }));
    }

    #[test]
    fn jsonl_id_lines_with_extra_fields() {
        let docs = load_lines(concat!(
            "{\"id\": \"faq-1\", \"title\": \"Refunds\", \"text\": \"Within 30 days.\", ",
            "\"lang\": \"en\", \"tags\": [\"billing\"], \"file\": \"theirs\"}\n",
            "{\"id\": 7, \"text\": \"untitled\"}\n",
        ))
        .unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].source, "faq-1");
        assert_eq!(docs[0].title, "Refunds");
        assert_eq!(docs[0].text, "Within 30 days.");
        assert!(!docs[0].markdown);
        assert_eq!(
            docs[0].metadata,
            json!({
                "file": "corpus.jsonl",
                "format": "jsonl",
                "id": "faq-1",
                "fields": { "lang": "en", "tags": ["billing"], "file": "theirs" }
            })
        );
        assert_eq!((docs[1].source.as_str(), docs[1].title.as_str()), ("7", ""));
        assert!(docs[1].metadata.get("fields").is_none());
    }

    #[test]
    fn jsonl_malformed_line_names_its_number() {
        let cases = [
            (
                "{\"_id\": \"a\", \"text\": \"ok\"}\n\n{\"_id\": \"b\", \"text\": ",
                3,
                "invalid JSON",
            ),
            (
                "{\"_id\": \"a\", \"text\": \"ok\"}\n{\"_id\": \"b\"}\n",
                2,
                "missing `text`",
            ),
            ("{\"text\": \"no id\"}\n", 1, "missing `_id`"),
            ("[1, 2]\n", 1, "expected a JSON object"),
            (
                "{\"id\": [1], \"text\": \"x\"}\n",
                1,
                "`id` must be a string or a number",
            ),
            ("{\"_id\": \" \", \"text\": \"x\"}\n", 1, "`_id` is empty"),
            (
                "{\"_id\": \"a\", \"text\": 5}\n",
                1,
                "`text` must be a string",
            ),
            (
                "{\"_id\": \"a\", \"text\": \"x\", \"title\": 5}\n",
                1,
                "`title` must be a string",
            ),
        ];
        for (text, line, reason) in cases {
            let err = load_lines(text).unwrap_err();
            assert!(matches!(err, FormatError::Malformed { .. }), "{err:?}");
            let msg = err.to_string();
            assert!(
                msg.starts_with(&format!("corpus.jsonl: line {line}: {reason}")),
                "{msg}"
            );
        }
    }

    #[test]
    fn jsonl_invalid_utf8_names_its_line() {
        let dir = tempfile::tempdir().unwrap();
        // Past the sniffed head: there, invalid UTF-8 would make it "binary".
        let mut bytes = format!("{{\"_id\": \"a\", \"text\": \"{}\"}}\n", "x".repeat(9000));
        bytes.push_str("{\"_id\": \"b\", \"text\": \"");
        let mut bytes = bytes.into_bytes();
        bytes.extend_from_slice(b"\xff\"}\n");
        let path = write_file(dir.path(), "upload", &bytes);
        let err = load_upload(&path, "c.jsonl", &Limits::default()).unwrap_err();
        assert_eq!(err.to_string(), "c.jsonl: line 2: not valid UTF-8");
    }
}
