//! Offline retrieval evaluation: BEIR datasets in, TREC runs and
//! trec_eval-compatible scores out.

pub mod answers;
pub mod beir;
pub mod metrics;
pub mod run;
pub mod trec;
pub mod tune;

pub use beir::{
    load_corpus, load_qrels, load_queries, read_corpus_lines, BeirDataset, BeirDoc, BeirError,
    BeirQuery,
};
pub use metrics::{evaluate, mrr_at_k, ndcg_at_k, recall_at_k, Qrels, Scores};
pub use trec::write_run;
