//! The full-text index: Tantivy on disk, BM25 over chunk title and text with an
//! English stemming analyzer, filtered by collection, with highlighted snippets.
//! Writes are buffered until `commit`, so a batch becomes visible at once.
//!
//! Each node's index follows the database's chunk change log (`follow`); the
//! position it has applied is committed with the index (Tantivy's commit
//! payload), so the index and its position cannot disagree after a crash.

pub mod follow;

use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::ids::{ChunkId, CollectionId, DocumentId};
use tantivy::collector::TopDocs;
use tantivy::query::{
    BooleanQuery, BoostQuery, ConstScoreQuery, EmptyQuery, Occur, Query, TermQuery,
};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value, STORED, STRING,
};
use tantivy::snippet::SnippetGenerator;
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer,
};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use super::{Hit, IndexError, IndexResult};

const ANALYZER: &str = "ragchat_en";
const WRITER_MEMORY: usize = 64 * 1024 * 1024;
/// Titles are short and say what a passage is about; a mild boost helps
/// without letting a title match drown the body text.
const TITLE_BOOST: f32 = 1.2;

/// The text a chunk contributes to the lexical index.
#[derive(Debug, Clone)]
pub struct LexicalDoc {
    pub chunk_id: ChunkId,
    pub document_id: DocumentId,
    pub collection_id: CollectionId,
    pub title: String,
    pub text: String,
}

/// A highlighted fragment: `text` plus byte ranges of matched terms, and the
/// same as HTML with `<mark>` tags (text escaped).
#[derive(
    Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
pub struct Highlight {
    pub text: String,
    pub html: String,
    pub ranges: Vec<(usize, usize)>,
}

/// See [`LexicalIndex::term_evidence`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TermEvidence {
    pub terms: usize,
    pub matched: usize,
    pub idf_share: f32,
}

struct Fields {
    chunk_id: Field,
    document_id: Field,
    collection_id: Field,
    title: Field,
    text: Field,
}

/// Where an index stands in the change log it follows: the log's identity
/// (a database's log, not another's) and the last position applied.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogMark {
    pub log_id: String,
    pub position: i64,
}

pub struct LexicalIndex {
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    fields: Fields,
    analyzer: TextAnalyzer,
    /// The mark of the last commit; every commit carries it again, so a
    /// commit that does not move it cannot erase it.
    mark: Mutex<Option<LogMark>>,
}

fn err(e: impl std::fmt::Display) -> IndexError {
    IndexError::Lexical(e.to_string())
}

fn schema() -> Schema {
    let mut b = Schema::builder();
    b.add_text_field("chunk_id", STRING | STORED);
    b.add_text_field("document_id", STRING | STORED);
    b.add_text_field("collection_id", STRING | STORED);
    let text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(ANALYZER)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    b.add_text_field("title", text.clone());
    b.add_text_field("text", text);
    b.build()
}

fn analyzer() -> IndexResult<TextAnalyzer> {
    let stop = StopWordFilter::new(Language::English)
        .ok_or_else(|| err("no English stop word list in this tantivy build"))?;
    Ok(TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(stop)
        .filter(Stemmer::new(Language::English))
        .build())
}

impl LexicalIndex {
    /// Open the index in `dir`, creating it if the directory holds none.
    pub fn open(dir: &Path) -> IndexResult<Self> {
        std::fs::create_dir_all(dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
        let directory = tantivy::directory::MmapDirectory::open(dir).map_err(err)?;
        let index = Index::open_or_create(directory, schema()).map_err(err)?;
        let analyzer = analyzer()?;
        index.tokenizers().register(ANALYZER, analyzer.clone());
        let s = index.schema();
        let field = |name: &str| s.get_field(name).map_err(err);
        let fields = Fields {
            chunk_id: field("chunk_id")?,
            document_id: field("document_id")?,
            collection_id: field("collection_id")?,
            title: field("title")?,
            text: field("text")?,
        };
        // An unreadable payload (an index from before the log) counts as no
        // mark: the follower rebuilds it.
        let mark = index
            .load_metas()
            .map_err(err)?
            .payload
            .and_then(|p| serde_json::from_str::<LogMark>(&p).ok());
        let writer = index.writer(WRITER_MEMORY).map_err(err)?;
        // Manual reload: we reload right after each commit, so readers never
        // see a half-applied batch and there is no background watcher thread.
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(err)?;
        Ok(Self {
            reader,
            writer: Mutex::new(writer),
            fields,
            analyzer,
            mark: Mutex::new(mark),
        })
    }

    /// The log position of the last commit, if it has one.
    pub fn mark(&self) -> Option<LogMark> {
        self.mark.lock().map(|m| m.clone()).unwrap_or(None)
    }

    fn writer(&self) -> IndexResult<std::sync::MutexGuard<'_, IndexWriter>> {
        self.writer.lock().map_err(|_| err("writer lock poisoned"))
    }

    /// Add chunks, replacing any earlier version with the same chunk id.
    /// Visible after `commit`.
    pub fn upsert(&self, docs: &[LexicalDoc]) -> IndexResult<()> {
        let f = &self.fields;
        let writer = self.writer()?;
        for d in docs {
            writer.delete_term(Term::from_field_text(f.chunk_id, &d.chunk_id));
            let mut doc = TantivyDocument::default();
            doc.add_text(f.chunk_id, &d.chunk_id);
            doc.add_text(f.document_id, &d.document_id);
            doc.add_text(f.collection_id, &d.collection_id);
            doc.add_text(f.title, &d.title);
            doc.add_text(f.text, &d.text);
            writer.add_document(doc).map_err(err)?;
        }
        Ok(())
    }

    /// Delete chunks by id. Visible after `commit`.
    pub fn delete(&self, chunk_ids: &[ChunkId]) -> IndexResult<()> {
        let writer = self.writer()?;
        for id in chunk_ids {
            writer.delete_term(Term::from_field_text(self.fields.chunk_id, id));
        }
        Ok(())
    }

    pub fn delete_collection(&self, collection_id: &CollectionId) -> IndexResult<()> {
        self.writer()?.delete_term(Term::from_field_text(
            self.fields.collection_id,
            collection_id,
        ));
        Ok(())
    }

    pub fn clear(&self) -> IndexResult<()> {
        self.writer()?.delete_all_documents().map_err(err)?;
        Ok(())
    }

    /// Make pending writes durable and visible to searches.
    pub fn commit(&self) -> IndexResult<()> {
        self.commit_with(None)
    }

    /// Commit, recording that the index now holds every change up to `mark`.
    pub fn commit_at(&self, mark: LogMark) -> IndexResult<()> {
        self.commit_with(Some(mark))
    }

    /// Commit with `new` as the mark, or the current one again.
    fn commit_with(&self, new: Option<LogMark>) -> IndexResult<()> {
        {
            let mut writer = self.writer()?;
            let mut mark = self.mark.lock().map_err(|_| err("mark lock poisoned"))?;
            let payload = new
                .as_ref()
                .or(mark.as_ref())
                .map(serde_json::to_string)
                .transpose()
                .map_err(err)?;
            let mut prepared = writer.prepare_commit().map_err(err)?;
            if let Some(p) = &payload {
                prepared.set_payload(p);
            }
            prepared.commit().map_err(err)?;
            // Searches see the commit before the mark says so: whoever reads
            // the mark (the result cache) may trust that searches started
            // after the read see at least that much.
            self.reader.reload().map_err(err)?;
            if new.is_some() {
                *mark = new;
            }
        }
        Ok(())
    }

    /// Drop the writes made since the last commit (a batch that failed half
    /// way must not be committed by the next one).
    pub fn rollback(&self) -> IndexResult<()> {
        self.writer()?.rollback().map_err(err)?;
        Ok(())
    }

    pub fn count(&self) -> IndexResult<u64> {
        let searcher = self.reader.searcher();
        Ok(searcher.num_docs())
    }

    /// Every chunk id in the index (for consistency checks).
    pub fn chunk_ids(&self) -> IndexResult<Vec<ChunkId>> {
        let searcher = self.reader.searcher();
        let mut out = Vec::with_capacity(searcher.num_docs() as usize);
        for segment in searcher.segment_readers() {
            let store = segment.get_store_reader(64).map_err(err)?;
            for doc_id in segment.doc_ids_alive() {
                let doc: TantivyDocument = store.get(doc_id).map_err(err)?;
                if let Some(id) = doc.get_first(self.fields.chunk_id).and_then(|v| v.as_str()) {
                    out.push(ChunkId::from(id));
                }
            }
        }
        Ok(out)
    }

    /// A bag-of-words BM25 query: user text is analysed like the documents
    /// and never read as query syntax, so `AND`, quotes or colons in a
    /// question are just words (or nothing).
    fn parse(&self, query: &str) -> Box<dyn Query> {
        let mut analyzer = self.analyzer.clone();
        let mut stream = analyzer.token_stream(query);
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        while stream.advance() {
            let word = &stream.token().text;
            for (field, boost) in [(self.fields.title, TITLE_BOOST), (self.fields.text, 1.0)] {
                let term = TermQuery::new(
                    Term::from_field_text(field, word),
                    IndexRecordOption::WithFreqs,
                );
                clauses.push((
                    Occur::Should,
                    Box::new(BoostQuery::new(Box::new(term), boost)),
                ));
            }
        }
        if clauses.is_empty() {
            return Box::new(EmptyQuery);
        }
        Box::new(BooleanQuery::new(clauses))
    }

    /// BM25 top `limit` chunks for `query` among `collections`.
    pub fn search(
        &self,
        query: &str,
        collections: &[CollectionId],
        limit: usize,
    ) -> IndexResult<Vec<Hit>> {
        if collections.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let f = &self.fields;
        let filter: Vec<(Occur, Box<dyn Query>)> = collections
            .iter()
            .map(|c| {
                let term = Term::from_field_text(f.collection_id, c);
                (
                    Occur::Should,
                    Box::new(TermQuery::new(term, IndexRecordOption::Basic)) as Box<dyn Query>,
                )
            })
            .collect();
        // The filter contributes no score, so ranking is BM25 on the text alone.
        let full = BooleanQuery::new(vec![
            (Occur::Must, self.parse(query)),
            (
                Occur::Must,
                Box::new(ConstScoreQuery::new(
                    Box::new(BooleanQuery::new(filter)),
                    0.0,
                )),
            ),
        ]);
        let searcher = self.reader.searcher();
        let top = searcher
            .search(&full, &TopDocs::with_limit(limit).order_by_score())
            .map_err(err)?;
        let mut hits = Vec::with_capacity(top.len());
        for (score, addr) in top {
            let doc: TantivyDocument = searcher.doc(addr).map_err(err)?;
            let id = |field| doc.get_first(field).and_then(|v| v.as_str());
            if let (Some(chunk_id), Some(document_id), Some(collection_id)) =
                (id(f.chunk_id), id(f.document_id), id(f.collection_id))
            {
                hits.push(Hit {
                    chunk_id: chunk_id.into(),
                    document_id: document_id.into(),
                    collection_id: collection_id.into(),
                    score,
                });
            }
        }
        Ok(hits)
    }

    /// How much of `query` the given passages contain: its distinct analysed
    /// terms (stemmed, stop words out), how many occur in at least one
    /// passage, and the share of the query's total IDF those carry. Rare
    /// terms weigh most, so "what is the effect of X on Y" answered from
    /// passages that mention "effect" but neither X nor Y scores low.
    pub fn term_evidence(&self, query: &str, texts: &[&str]) -> IndexResult<TermEvidence> {
        let terms = self.terms(query);
        if terms.is_empty() {
            return Ok(TermEvidence::default());
        }
        let mut found = std::collections::HashSet::new();
        for text in texts {
            found.extend(self.terms(text));
        }
        let searcher = self.reader.searcher();
        let n = searcher.num_docs().max(1) as f64;
        let mut total = 0.0;
        let mut matched_idf = 0.0;
        let mut matched = 0;
        for t in &terms {
            let df = searcher
                .doc_freq(&Term::from_field_text(self.fields.text, t))
                .map_err(err)? as f64;
            // BM25's IDF, never negative.
            let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
            total += idf;
            if found.contains(t) {
                matched += 1;
                matched_idf += idf;
            }
        }
        Ok(TermEvidence {
            terms: terms.len(),
            matched,
            idf_share: if total > 0.0 {
                (matched_idf / total) as f32
            } else {
                0.0
            },
        })
    }

    /// The distinct analysed terms of `text`.
    fn terms(&self, text: &str) -> std::collections::HashSet<String> {
        let mut analyzer = self.analyzer.clone();
        let mut stream = analyzer.token_stream(text);
        let mut out = std::collections::HashSet::new();
        while stream.advance() {
            out.insert(stream.token().text.clone());
        }
        out
    }

    /// Highlighted fragments of `texts` for `query`, at most `max_chars` long
    /// each. Works for hits from either signal, since it reads the given text.
    pub fn highlight(
        &self,
        query: &str,
        texts: &[&str],
        max_chars: usize,
    ) -> IndexResult<Vec<Highlight>> {
        let searcher = self.reader.searcher();
        let q = self.parse(query);
        let mut gen = SnippetGenerator::create(&searcher, &*q, self.fields.text).map_err(err)?;
        gen.set_max_num_chars(max_chars);
        Ok(texts
            .iter()
            .map(|text| {
                let s = gen.snippet(text);
                if s.fragment().is_empty() {
                    // No term matched (a dense-only hit): show the passage start.
                    let head = truncate_chars(text, max_chars);
                    return Highlight {
                        html: escape_html(head),
                        text: head.to_string(),
                        ranges: Vec::new(),
                    };
                }
                Highlight {
                    text: s.fragment().to_string(),
                    html: s
                        .to_html()
                        .replace("<b>", "<mark>")
                        .replace("</b>", "</mark>"),
                    ranges: s.highlighted().iter().map(|r| (r.start, r.end)).collect(),
                }
            })
            .collect())
    }
}

fn truncate_chars(text: &str, max_chars: usize) -> &str {
    match text.char_indices().nth(max_chars) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Async helpers: Tantivy is synchronous and may touch disk, so calls go to the
/// blocking pool.
pub async fn blocking<T, F>(index: &Arc<LexicalIndex>, f: F) -> IndexResult<T>
where
    T: Send + 'static,
    F: FnOnce(&LexicalIndex) -> IndexResult<T> + Send + 'static,
{
    let index = index.clone();
    tokio::task::spawn_blocking(move || f(&index))
        .await
        .map_err(|e| IndexError::Join(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(collection: &CollectionId, title: &str, text: &str) -> LexicalDoc {
        LexicalDoc {
            chunk_id: ChunkId::random(),
            document_id: DocumentId::random(),
            collection_id: collection.clone(),
            title: title.into(),
            text: text.into(),
        }
    }

    #[test]
    fn term_evidence_weighs_rare_terms() {
        let dir = tempfile::tempdir().unwrap();
        let idx = LexicalIndex::open(dir.path()).unwrap();
        let a = CollectionId::random();
        let mut docs = vec![doc(&a, "Heat", "Heat transfer in a boundary layer.")];
        for i in 0..9 {
            docs.push(doc(&a, "Flow", &format!("Flow study number {i}.")));
        }
        idx.upsert(&docs).unwrap();
        idx.commit().unwrap();
        // "the" is a stop word; "flows" stems to "flow" (in 9 of 10 chunks),
        // "transfer" is in one.
        let e = idx
            .term_evidence("the flows of transfer", &["heat transfer"])
            .unwrap();
        assert_eq!((e.terms, e.matched), (2, 1));
        assert!(e.idf_share > 0.6, "{e:?}");
        let e = idx
            .term_evidence("the flows of transfer", &["a flow"])
            .unwrap();
        assert_eq!(e.matched, 1);
        assert!(e.idf_share < 0.4, "{e:?}");
        let none = idx.term_evidence("the of", &["anything"]).unwrap();
        assert_eq!(none, TermEvidence::default());
    }

    #[test]
    fn search_filters_stems_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let idx = LexicalIndex::open(dir.path()).unwrap();
        let (a, b) = (CollectionId::random(), CollectionId::random());
        let d1 = doc(
            &a,
            "Boundary layers",
            "The boundary layer thickens downstream of the plate.",
        );
        let d2 = doc(&a, "Shocks", "Oblique shock waves at supersonic speeds.");
        let d3 = doc(&b, "Boundary layer notes", "Boundary layer separation.");
        idx.upsert(&[d1.clone(), d2.clone(), d3.clone()]).unwrap();
        idx.commit().unwrap();
        assert_eq!(idx.count().unwrap(), 3);

        // "layers" stems to "layer"; collection b is filtered out.
        let hits = idx.search("layers", std::slice::from_ref(&a), 10).unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].chunk_id, d1.chunk_id);
        assert_eq!(hits[0].collection_id, a);
        assert!(idx.search("layers", &[], 10).unwrap().is_empty());
        assert_eq!(
            idx.search("layer", &[a.clone(), b.clone()], 10)
                .unwrap()
                .len(),
            2
        );

        // Query syntax in user text is harmless: operators and quotes are words or nothing.
        assert_eq!(
            idx.search("shock: \"waves AND (", std::slice::from_ref(&a), 10)
                .unwrap()
                .len(),
            1
        );
        assert!(idx
            .search("the of and", std::slice::from_ref(&a), 10)
            .unwrap()
            .is_empty());

        // Upsert replaces, delete removes.
        let mut d2b = d2.clone();
        d2b.text = "Expansion fans.".into();
        idx.upsert(&[d2b]).unwrap();
        idx.delete(std::slice::from_ref(&d1.chunk_id)).unwrap();
        idx.commit().unwrap();
        assert_eq!(idx.count().unwrap(), 2);
        assert!(idx
            .search("shock waves", std::slice::from_ref(&a), 10)
            .unwrap()
            .iter()
            .all(|h| h.chunk_id == d2.chunk_id));
        assert!(idx
            .search("boundary", std::slice::from_ref(&a), 10)
            .unwrap()
            .is_empty());
        let mut ids = idx.chunk_ids().unwrap();
        ids.sort();
        let mut want = vec![d2.chunk_id.clone(), d3.chunk_id.clone()];
        want.sort();
        assert_eq!(ids, want);

        idx.delete_collection(&b).unwrap();
        idx.commit().unwrap();
        assert_eq!(idx.count().unwrap(), 1);
        drop(idx);

        // Durable across reopen.
        let idx = LexicalIndex::open(dir.path()).unwrap();
        assert_eq!(idx.count().unwrap(), 1);
        idx.clear().unwrap();
        idx.commit().unwrap();
        assert_eq!(idx.count().unwrap(), 0);
    }

    #[test]
    fn highlights_matches_and_falls_back_to_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let idx = LexicalIndex::open(dir.path()).unwrap();
        // Snippets weigh terms by document frequency, so the term must be indexed.
        idx.upsert(&[doc(
            &CollectionId::random(),
            "Shocks",
            "Oblique shock waves.",
        )])
        .unwrap();
        idx.commit().unwrap();
        let h = idx
            .highlight(
                "shock",
                &["Before. Oblique <shock> waves.", "Nothing here at all."],
                200,
            )
            .unwrap();
        assert!(h[0].html.contains("<mark>shock</mark>"), "{:?}", h[0]);
        assert!(h[0].html.contains("&lt;"), "{:?}", h[0]);
        let (s, e) = h[0].ranges[0];
        assert_eq!(&h[0].text[s..e], "shock");
        assert_eq!(h[1].text, "Nothing here at all.");
        assert!(h[1].ranges.is_empty());
    }
}
