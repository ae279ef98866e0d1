//! The cleaning stage before chunking: normalise the text, then skip what a
//! collection should not hold — empty documents, low-quality ones, and exact
//! or near duplicates of documents already in it (or earlier in the same
//! upload). Every skip is reported with its reason and, for duplicates, the
//! document it repeats.

use std::collections::HashMap;

use serde::Serialize;

use super::clean::clean_text;
use super::dedup::{DedupSettings, Deduplicator, MinHashSignature, Verdict};
use super::load::RawDocument;
use super::pipeline::document_id;
use super::quality::{assess, QualitySettings};
use crate::config::CleaningSettings;
use crate::db::documents::{self, DocumentSignature};
use crate::db::Db;
use crate::error::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    Empty,
    LowQuality,
    Duplicate,
    NearDuplicate,
    /// A file or archive entry of a type we cannot read.
    Unsupported,
    /// A file that could not be read (malformed, no text layer, over a limit).
    Unreadable,
}

impl SkipReason {
    pub const ALL: [SkipReason; 6] = [
        SkipReason::Empty,
        SkipReason::LowQuality,
        SkipReason::Duplicate,
        SkipReason::NearDuplicate,
        SkipReason::Unsupported,
        SkipReason::Unreadable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Empty => "empty",
            SkipReason::LowQuality => "low_quality",
            SkipReason::Duplicate => "duplicate",
            SkipReason::NearDuplicate => "near_duplicate",
            SkipReason::Unsupported => "unsupported",
            SkipReason::Unreadable => "unreadable",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SkippedDoc {
    pub source: String,
    pub reason: SkipReason,
    pub detail: String,
    /// The source name of the document this one duplicates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub similarity: Option<f64>,
}

/// What passed, with the fingerprints to store once the documents are.
#[derive(Debug, Default)]
pub struct Screened {
    pub accepted: Vec<RawDocument>,
    pub signatures: Vec<DocumentSignature>,
    pub skipped: Vec<SkippedDoc>,
}

/// Screening state for one collection: its documents' fingerprints plus
/// those accepted so far in this run.
pub struct Screener {
    collection_id: String,
    settings: CleaningSettings,
    quality: QualitySettings,
    dedup: Deduplicator,
    /// Document id → source name, to name what a duplicate repeats.
    sources: HashMap<String, String>,
}

impl Screener {
    /// Seeded from the collection's stored signatures.
    pub async fn for_collection(
        db: &Db,
        collection_id: &str,
        settings: &CleaningSettings,
    ) -> Result<Self, Error> {
        let rows = documents::signatures(db, collection_id).await?;
        let settings = settings.clone();
        let collection_id = collection_id.to_string();
        tokio::task::spawn_blocking(move || Self::build(collection_id, settings, rows))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
    }

    fn build(
        collection_id: String,
        settings: CleaningSettings,
        rows: Vec<DocumentSignature>,
    ) -> Result<Self, Error> {
        let dedup_settings = DedupSettings {
            // A threshold of 1 turns near-duplicate detection off; the index
            // still needs a valid one to hold exact fingerprints.
            threshold: f64::from(settings.near_duplicate_threshold).min(0.99),
            ..DedupSettings::default()
        };
        let mut sources = HashMap::with_capacity(rows.len());
        let entries: Vec<(String, String, MinHashSignature)> = rows
            .into_iter()
            .filter_map(|r| {
                // A signature from another algorithm version is dropped: the
                // document is then only checked, not checked against.
                let sig = MinHashSignature::from_base64(&r.minhash).ok()?;
                let id = String::from(r.document_id);
                sources.insert(id.clone(), r.source);
                Some((id, r.text_hash, sig))
            })
            .collect();
        let dedup = Deduplicator::from_existing(&dedup_settings, entries)
            .map_err(|e| Error::Internal(format!("duplicate index: {e}")))?;
        let quality = QualitySettings {
            min_score: settings.min_quality,
            ..QualitySettings::default()
        };
        Ok(Self {
            collection_id,
            settings,
            quality,
            dedup,
            sources,
        })
    }

    /// Clean and screen `docs`. CPU-bound: run it on a blocking thread.
    pub fn screen(&mut self, docs: Vec<RawDocument>) -> Screened {
        let mut out = Screened::default();
        for mut doc in docs {
            let text = clean_text(&doc.text);
            let skip = |reason, detail: String| SkippedDoc {
                source: doc.source.clone(),
                reason,
                detail,
                duplicate_of: None,
                similarity: None,
            };
            if text.is_empty() {
                out.skipped
                    .push(skip(SkipReason::Empty, "no text after cleaning".into()));
                continue;
            }
            let report = assess(&text, &self.quality);
            if self.settings.min_quality > 0.0 && !report.passed() {
                let detail = format!(
                    "quality {:.2} below {:.2}: {}",
                    report.score,
                    self.settings.min_quality,
                    report.reasons.join("; ")
                );
                out.skipped.push(skip(SkipReason::LowQuality, detail));
                continue;
            }
            let id = document_id(&self.collection_id, &doc.source).to_string();
            let fp = self.dedup.fingerprint(&text);
            if self.settings.skip_duplicates {
                let verdict = self.dedup.check_fingerprint(&fp, Some(&id));
                let near_on = self.settings.near_duplicate_threshold < 1.0;
                let dup = match verdict {
                    Verdict::ExactDuplicate { of } => {
                        Some((SkipReason::Duplicate, of, None, "same text".to_string()))
                    }
                    Verdict::NearDuplicate { of, similarity } if near_on => Some((
                        SkipReason::NearDuplicate,
                        of,
                        Some(similarity),
                        format!(
                            "estimated Jaccard similarity {similarity:.2} ≥ {:.2}",
                            self.settings.near_duplicate_threshold
                        ),
                    )),
                    _ => None,
                };
                if let Some((reason, of, similarity, detail)) = dup {
                    let mut s = skip(reason, detail);
                    s.duplicate_of = Some(self.sources.get(&of).cloned().unwrap_or(of));
                    s.similarity = similarity;
                    out.skipped.push(s);
                    continue;
                }
            }
            out.signatures.push(DocumentSignature {
                document_id: id.as_str().into(),
                collection_id: self.collection_id.as_str().into(),
                source: doc.source.clone(),
                text_hash: fp.normalized_hash.clone(),
                minhash: fp.signature.to_base64(),
            });
            self.sources.insert(id.clone(), doc.source.clone());
            // Cannot fail: the fingerprint came from this deduplicator's hasher.
            let _ = self.dedup.add(id, fp);
            if let serde_json::Value::Object(m) = &mut doc.metadata {
                m.insert(
                    "quality".into(),
                    serde_json::to_value(&report).unwrap_or_default(),
                );
            }
            doc.text = text;
            out.accepted.push(doc);
        }
        out
    }
}
