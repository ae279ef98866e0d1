//! Loader for datasets in the BEIR layout:
//!
//! ```text
//! <dir>/corpus.jsonl         {"_id": .., "title": .., "text": ..} per line
//! <dir>/queries.jsonl        {"_id": .., "text": ..} per line
//! <dir>/qrels/<split>.tsv    query-id <TAB> corpus-id <TAB> score, with a header
//! ```

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::metrics::Qrels;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeirDoc {
    pub id: String,
    /// Empty when the dataset has no title for the document.
    pub title: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeirQuery {
    pub id: String,
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

/// A split of a BEIR dataset with its queries and judgements loaded. The
/// corpus stays on disk, since it can be far larger than the rest; stream it
/// with [`BeirDataset::corpus`].
#[derive(Debug, Clone)]
pub struct BeirDataset {
    pub corpus_path: PathBuf,
    /// Only the queries judged in this split, in file order.
    pub queries: Vec<BeirQuery>,
    /// Restricted to the queries in `queries`.
    pub qrels: Qrels,
}

impl BeirDataset {
    /// Opens `dir` for `split` (e.g. `test`, or `train` for scifact), failing
    /// early, naming the file, if any of the three files is missing.
    pub fn open(dir: &Path, split: &str) -> Result<Self, BeirError> {
        let corpus_path = dir.join("corpus.jsonl");
        let queries_path = dir.join("queries.jsonl");
        let qrels_path = dir.join("qrels").join(format!("{split}.tsv"));
        for path in [&corpus_path, &queries_path, &qrels_path] {
            if !path.is_file() {
                return Err(BeirError::Missing { path: path.clone() });
            }
        }

        let mut qrels = load_qrels(&qrels_path)?;
        // queries.jsonl holds every split's queries; only this split's are judged.
        let queries: Vec<BeirQuery> = load_queries(&queries_path)?
            .into_iter()
            .filter(|q| qrels.contains_key(&q.id))
            .collect();
        // A judged query absent from queries.jsonl cannot be run, and left in
        // the qrels it would count as a zero in every average.
        let known: HashSet<&str> = queries.iter().map(|q| q.id.as_str()).collect();
        qrels.retain(|qid, _| known.contains(qid.as_str()));

        Ok(Self {
            corpus_path,
            queries,
            qrels,
        })
    }

    pub fn corpus(&self) -> Result<impl Iterator<Item = Result<BeirDoc, BeirError>>, BeirError> {
        read_corpus_lines(&self.corpus_path)
    }
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

pub fn load_queries(path: &Path) -> Result<Vec<BeirQuery>, BeirError> {
    JsonLines::<RawQuery>::open(path)?
        .map(|q| {
            q.map(|q| BeirQuery {
                id: q.id,
                text: q.text,
            })
        })
        .collect()
}

/// Reads a qrels TSV. A repeated (query, doc) pair keeps its last grade, as
/// loading into a dict does in BEIR's own evaluation.
pub fn load_qrels(path: &Path) -> Result<Qrels, BeirError> {
    let file = File::open(path).map_err(|source| BeirError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |line: usize, reason: String| BeirError::Tsv {
        path: path.to_path_buf(),
        line,
        reason,
    };

    let mut qrels = Qrels::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line_no = i + 1;
        let line = line.map_err(|source| BeirError::Read {
            path: path.to_path_buf(),
            line: line_no,
            source,
        })?;
        // trim_end also drops the `\r` of files written on Windows.
        let line = line.trim_end();
        if line.is_empty() || (line_no == 1 && line.starts_with("query-id")) {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let [qid, doc_id, score] = fields[..] else {
            return Err(bad(
                line_no,
                format!("expected 3 tab-separated fields, found {}", fields.len()),
            ));
        };
        if qid.is_empty() || doc_id.is_empty() {
            return Err(bad(line_no, "empty query or corpus id".to_string()));
        }
        let score: i32 = score
            .trim()
            .parse()
            .map_err(|_| bad(line_no, format!("score {score:?} is not an integer")))?;
        qrels
            .entry(qid.to_string())
            .or_default()
            .insert(doc_id.to_string(), score);
    }
    Ok(qrels)
}

/// BEIR datasets write `_id` as a string, but some conversions emit numbers.
/// Going through `Value` rather than an untagged enum keeps numbers working if
/// another crate turns on `serde_json`'s `arbitrary_precision`.
fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
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

#[derive(Deserialize)]
struct RawQuery {
    #[serde(rename = "_id", deserialize_with = "string_or_number")]
    id: String,
    text: String,
}

/// One JSON value per line, blank lines skipped, reusing one line buffer.
struct JsonLines<T> {
    reader: BufReader<File>,
    path: PathBuf,
    buf: String,
    line: usize,
    done: bool,
    _record: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> JsonLines<T> {
    fn open(path: &Path) -> Result<Self, BeirError> {
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
mod tests {
    use super::*;
    use std::fs;

    fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(&path, contents).unwrap();
        path
    }

    const CORPUS: &str = concat!(
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

    #[test]
    fn rejects_ids_of_other_types() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "queries.jsonl",
            "{\"_id\": [1], \"text\": \"q\"}\n",
        );
        let err = load_queries(&path).unwrap_err();
        assert!(matches!(err, BeirError::Json { line: 1, .. }), "{err:?}");
    }

    #[test]
    fn qrels_skip_header_blank_lines_and_trailing_whitespace() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "test.tsv",
            "query-id\tcorpus-id\tscore\n1\td1\t2 \n\n1\td2\t0\r\n2\t7\t1\n",
        );
        let qrels = load_qrels(&path).unwrap();
        assert_eq!(qrels.len(), 2);
        assert_eq!(qrels["1"]["d1"], 2);
        assert_eq!(qrels["1"]["d2"], 0);
        assert_eq!(qrels["2"]["7"], 1);
    }

    #[test]
    fn qrels_errors_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (
                "query-id\tcorpus-id\tscore\n1\td1\n",
                2,
                "3 tab-separated fields",
            ),
            (
                "query-id\tcorpus-id\tscore\n1\td1\t1\n1\td2\thigh\n",
                3,
                "not an integer",
            ),
            ("1\td1\t1\t0\n", 1, "found 4"),
        ];
        for (contents, line_no, reason) in cases {
            let path = write(dir.path(), "bad.tsv", contents);
            let err = load_qrels(&path).unwrap_err();
            assert!(
                matches!(err, BeirError::Tsv { line, .. } if line == line_no),
                "{err:?}"
            );
            let msg = err.to_string();
            assert!(msg.contains(&format!("bad.tsv:{line_no}:")), "{msg}");
            assert!(msg.contains(reason), "{msg}");
        }
    }

    #[test]
    fn open_reports_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "corpus.jsonl", CORPUS);
        write(dir.path(), "queries.jsonl", "");
        let err = BeirDataset::open(dir.path(), "dev").unwrap_err();
        assert!(matches!(err, BeirError::Missing { .. }), "{err:?}");
        assert!(err.to_string().contains("dev.tsv"), "{err}");
    }

    #[test]
    fn open_keeps_only_judged_queries() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "corpus.jsonl", CORPUS);
        write(
            dir.path(),
            "queries.jsonl",
            concat!(
                "{\"_id\": \"1\", \"text\": \"first\"}\n",
                "{\"_id\": 2, \"text\": \"unjudged\"}\n",
                "{\"_id\": \"3\", \"text\": \"third\"}\n",
            ),
        );
        // Query 9 is judged but has no text, so it is dropped from the qrels too.
        write(
            dir.path(),
            "qrels/test.tsv",
            "query-id\tcorpus-id\tscore\n3\td1\t1\n1\t42\t2\n9\td3\t1\n",
        );

        let ds = BeirDataset::open(dir.path(), "test").unwrap();
        let ids: Vec<&str> = ds.queries.iter().map(|q| q.id.as_str()).collect();
        assert_eq!(ids, ["1", "3"]);
        let mut judged: Vec<&str> = ds.qrels.keys().map(String::as_str).collect();
        judged.sort_unstable();
        assert_eq!(judged, ["1", "3"]);
        assert_eq!(ds.corpus().unwrap().count(), 4);
    }
}
