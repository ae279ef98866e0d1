//! Queries and judgements of a dataset in the BEIR layout:
//!
//! ```text
//! <dir>/corpus.jsonl         {"_id": .., "title": .., "text": ..} per line
//! <dir>/queries.jsonl        {"_id": .., "text": ..} per line
//! <dir>/qrels/<split>.tsv    query-id <TAB> corpus-id <TAB> score, with a header
//! ```
//!
//! The corpus reader is ingestion's (`ingest::formats::beir`), which also
//! loads `corpus.jsonl` files given to `ragchat ingest`.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::metrics::Qrels;
pub use crate::ingest::formats::beir::{load_corpus, read_corpus_lines, BeirDoc, BeirError};
use crate::ingest::formats::beir::{string_or_number, JsonLines};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeirQuery {
    pub id: String,
    pub text: String,
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

#[derive(Deserialize)]
struct RawQuery {
    #[serde(rename = "_id", deserialize_with = "string_or_number")]
    id: String,
    text: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::formats::beir::tests::{write, CORPUS};

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
