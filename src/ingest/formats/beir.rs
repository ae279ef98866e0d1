//! The corpus of a dataset in the BEIR layout (`corpus.jsonl`: one
//! `{"_id": .., "title": .., "text": ..}` per line), read as a stream. The
//! queries and judgements of the layout are evaluation's (`eval::beir`).

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeirDoc {
    pub id: String,
    /// Empty when the dataset has no title for the document.
    pub title: String,
    pub text: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BeirError {
    #[error("missing BEIR file {path}")]
    Missing { path: PathBuf },
    #[error("cannot open {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}:{line}: read failed")]
    Read {
        path: PathBuf,
        line: usize,
        #[source]
        source: io::Error,
    },
    #[error("{path}:{line}: invalid JSON record")]
    Json {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}:{line}: {reason}")]
    Tsv {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

/// Streams `corpus.jsonl` one document at a time, so a large corpus is never
/// held in memory. Iteration ends after the first error.
pub fn read_corpus_lines(
    path: &Path,
) -> Result<impl Iterator<Item = Result<BeirDoc, BeirError>>, BeirError> {
    let lines = JsonLines::<RawDoc>::open(path)?;
    Ok(lines.map(|doc| {
        doc.map(|d| BeirDoc {
            id: d.id,
            title: d.title.unwrap_or_default(),
            text: d.text,
        })
    }))
}

pub fn load_corpus(path: &Path) -> Result<Vec<BeirDoc>, BeirError> {
    read_corpus_lines(path)?.collect()
}

/// BEIR datasets write `_id` as a string, but some conversions emit numbers.
/// Going through `Value` rather than an untagged enum keeps numbers working if
/// another crate turns on `serde_json`'s `arbitrary_precision`.
pub fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        _ => Err(serde::de::Error::custom(
            "`_id` must be a string or a number",
        )),
    }
}

#[derive(Deserialize)]
struct RawDoc {
    #[serde(rename = "_id", deserialize_with = "string_or_number")]
    id: String,
    #[serde(default)]
    title: Option<String>,
    text: String,
}

/// One JSON value per line, blank lines skipped, reusing one line buffer.
pub struct JsonLines<T> {
    reader: BufReader<File>,
    path: PathBuf,
    buf: String,
    line: usize,
    done: bool,
    _record: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> JsonLines<T> {
    pub fn open(path: &Path) -> Result<Self, BeirError> {
        let file = File::open(path).map_err(|source| BeirError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self {
            reader: BufReader::new(file),
            path: path.to_path_buf(),
            buf: String::new(),
            line: 0,
            done: false,
            _record: PhantomData,
        })
    }
}

impl<T: DeserializeOwned> Iterator for JsonLines<T> {
    type Item = Result<T, BeirError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            self.buf.clear();
            self.line += 1;
            let err = match self.reader.read_line(&mut self.buf) {
                Ok(0) => return None,
                Ok(_) => {
                    // A byte-order mark would otherwise make the first record invalid JSON.
                    let text = self.buf.trim_start_matches('\u{feff}').trim();
                    if text.is_empty() {
                        continue;
                    }
                    match serde_json::from_str(text) {
                        Ok(record) => return Some(Ok(record)),
                        Err(source) => BeirError::Json {
                            path: self.path.clone(),
                            line: self.line,
                            source,
                        },
                    }
                }
                Err(source) => BeirError::Read {
                    path: self.path.clone(),
                    line: self.line,
                    source,
                },
            };
            // Line numbers are meaningless after a failure, and a failing
            // reader may keep failing forever.
            self.done = true;
            return Some(Err(err));
        }
        None
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::fs;

    pub(crate) fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(&path, contents).unwrap();
        path
    }

    pub(crate) const CORPUS: &str = concat!(
        "{\"_id\": \"d1\", \"title\": \"Title one\", \"text\": \"Body one\"}\n",
        "\n",
        "{\"_id\": 42, \"text\": \"No title\", \"metadata\": {}}\n",
        "{\"_id\": \"d3\", \"title\": \"\", \"text\": \"Empty title\"}\n",
        "{\"_id\": \"d4\", \"title\": null, \"text\": \"Null title\"}   \r\n",
    );

    #[test]
    fn corpus_accepts_string_and_number_ids_and_missing_titles() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "corpus.jsonl", CORPUS);
        let docs = load_corpus(&path).unwrap();
        let got: Vec<(&str, &str, &str)> = docs
            .iter()
            .map(|d| (d.id.as_str(), d.title.as_str(), d.text.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("d1", "Title one", "Body one"),
                ("42", "", "No title"),
                ("d3", "", "Empty title"),
                ("d4", "", "Null title"),
            ]
        );
    }

    #[test]
    fn corpus_error_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "corpus.jsonl",
            "{\"_id\": \"d1\", \"text\": \"ok\"}\n\n{\"_id\": \"d2\"}\n",
        );
        let mut lines = read_corpus_lines(&path).unwrap();
        assert!(lines.next().unwrap().is_ok());
        let err = lines.next().unwrap().unwrap_err();
        assert!(matches!(err, BeirError::Json { line: 3, .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("corpus.jsonl:3"), "{msg}");
        assert!(lines.next().is_none(), "iteration must stop after an error");
    }
}
