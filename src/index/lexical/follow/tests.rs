use std::path::Path;

use super::*;
use crate::db::collections::{self, ensure_collection};
use crate::db::documents::{Chunk, Document};
use crate::db::testing::{backends, TestDb};
use crate::ids::{CollectionId, DocumentId};

fn document(collection: &CollectionId, source: &str, parts: &[&str]) -> (Document, Vec<Chunk>) {
    let t = crate::db::now();
    let doc = Document {
        id: DocumentId::random(),
        collection_id: collection.clone(),
        source: source.into(),
        title: format!("About {source}"),
        content: parts.join(" "),
        content_hash: format!("hash of {}", parts.join(" ")),
        metadata: "{}".into(),
        chunk_count: parts.len() as i32,
        indexed: false,
        created_at: t,
        updated_at: t,
    };
    let chunks = parts
        .iter()
        .enumerate()
        .map(|(i, text)| Chunk {
            id: ChunkId::random(),
            document_id: doc.id.clone(),
            collection_id: collection.clone(),
            position: i as i32,
            text: text.to_string(),
            content_hash: format!("h{i}"),
            char_start: 0,
            char_end: 1,
            token_count: 1,
        })
        .collect();
    (doc, chunks)
}

async fn write(db: &Db, collection: &CollectionId, source: &str, parts: &[&str]) -> Document {
    let (doc, chunks) = document(collection, source, parts);
    documents::replace_documents(db, vec![doc.clone()], chunks)
        .await
        .unwrap();
    doc
}

fn follower(db: &Db, dir: &Path) -> LexicalFollower {
    let index = LexicalIndex::open(dir).unwrap();
    LexicalFollower::new(db.clone(), Arc::new(index), LexicalMetrics::default())
}

/// The index holds exactly the DB's chunks.
async fn assert_mirrors(f: &LexicalFollower, db: &Db) {
    let mut want = documents::all_chunk_ids(db).await.unwrap();
    want.sort();
    let mut have = f.index().chunk_ids().unwrap();
    have.sort();
    assert_eq!(have, want);
}

fn hits(f: &LexicalFollower, q: &str, c: &CollectionId) -> usize {
    f.index()
        .search(q, std::slice::from_ref(c), 10)
        .unwrap()
        .len()
}

async fn setup(test_db: &TestDb) -> CollectionId {
    ensure_collection(&test_db.db, "aero").await.unwrap().id
}

#[tokio::test]
async fn applies_inserts_replacements_and_deletes_in_order() {
    for test_db in backends().await {
        let db = &test_db.db;
        let c = setup(&test_db).await;
        let dir = tempfile::tempdir().unwrap();
        let f = follower(db, dir.path());

        // A new index starts from the DB, whatever the log holds.
        let first = f.catch_up().await.unwrap();
        assert_eq!(first.rebuilt, Some(0));
        let a = write(db, &c, "a", &["shock waves", "boundary layers"]).await;
        write(db, &c, "b", &["expansion fans"]).await;
        let up = f.catch_up().await.unwrap();
        assert_eq!((up.applied, up.rebuilt, up.position), (3, None, 3));
        assert_mirrors(&f, db).await;
        assert_eq!(hits(&f, "shock", &c), 1);

        // A re-upload replacing a's chunks: the vanished one goes, the new one comes.
        let (mut again, mut chunks) = document(&c, "a", &["boundary layers", "oblique shocks"]);
        again.id = a.id.clone();
        for ch in chunks.iter_mut() {
            ch.document_id = a.id.clone();
        }
        documents::replace_documents(db, vec![again], chunks)
            .await
            .unwrap();
        f.catch_up().await.unwrap();
        assert_mirrors(&f, db).await;
        assert_eq!(hits(&f, "waves", &c), 0);
        assert_eq!(hits(&f, "oblique", &c), 1);

        // Deleting a document, then the collection.
        documents::delete_document(db, &a.id).await.unwrap();
        f.catch_up().await.unwrap();
        assert_mirrors(&f, db).await;
        assert_eq!(hits(&f, "boundary", &c), 0);
        assert_eq!(hits(&f, "expansion", &c), 1);
        collections::delete_collection(db, &c).await.unwrap();
        f.catch_up().await.unwrap();
        assert_mirrors(&f, db).await;
        assert_eq!(f.index().count().unwrap(), 0);
        let lag = f.lag().await.unwrap();
        assert_eq!((lag.behind, lag.seconds), (0, Some(0.0)));
        assert_eq!(lag.position, lag.head);
    }
}

#[tokio::test]
async fn a_restart_resumes_from_the_committed_position() {
    for test_db in backends().await {
        let db = &test_db.db;
        let c = setup(&test_db).await;
        let dir = tempfile::tempdir().unwrap();
        let f = follower(db, dir.path());
        write(db, &c, "a", &["shock waves"]).await;
        f.catch_up().await.unwrap();
        let at = f.index().mark().unwrap().position;
        drop(f);

        // Written while the node was down.
        write(db, &c, "b", &["expansion fans", "oblique shocks"]).await;
        let f = follower(db, dir.path());
        assert_eq!(f.index().mark().unwrap().position, at, "mark survives");
        let lag = f.lag().await.unwrap();
        assert_eq!(lag.behind, 2);
        assert!(lag.seconds.is_some_and(|s| s >= 0.0), "{lag:?}");
        let up = f.catch_up().await.unwrap();
        assert_eq!((up.applied, up.rebuilt), (2, None));
        assert_mirrors(&f, db).await;
        // A commit that does not move the mark keeps it.
        f.flush().await.unwrap();
        drop(f);
        let f = follower(db, dir.path());
        assert_eq!(f.index().mark().unwrap().position, at + 2);
    }
}

#[tokio::test]
async fn rebuilds_when_the_log_was_pruned_past_its_position() {
    for test_db in backends().await {
        let db = &test_db.db;
        let c = setup(&test_db).await;
        let dir = tempfile::tempdir().unwrap();
        let f = follower(db, dir.path());
        let a = write(db, &c, "a", &["shock waves"]).await;
        f.catch_up().await.unwrap();
        drop(f);

        write(db, &c, "b", &["expansion fans"]).await;
        documents::delete_document(db, &a.id).await.unwrap();
        write(db, &c, "c", &["boundary layers"]).await;
        // Everything but the newest entry goes.
        let future = crate::db::now() + chrono::TimeDelta::seconds(60);
        assert_eq!(lexical_log::prune(db, 1, future).await.unwrap(), 3);

        let f = follower(db, dir.path());
        assert_eq!(
            f.lag().await.unwrap().seconds,
            None,
            "the next change is gone"
        );
        let up = f.catch_up().await.unwrap();
        assert_eq!(up.rebuilt, Some(2));
        assert_eq!(up.position, lexical_log::head(db).await.unwrap().pos);
        assert_mirrors(&f, db).await;
        assert_eq!(hits(&f, "shock", &c), 0);
    }
}

#[tokio::test]
async fn re_applying_entries_changes_nothing() {
    for test_db in backends().await {
        let db = &test_db.db;
        let c = setup(&test_db).await;
        let dir = tempfile::tempdir().unwrap();
        let f = follower(db, dir.path());
        let a = write(db, &c, "a", &["shock waves", "boundary layers"]).await;
        write(db, &c, "b", &["expansion fans"]).await;
        documents::delete_document(db, &a.id).await.unwrap();
        f.catch_up().await.unwrap();
        let mark = f.index().mark().unwrap();
        // As if the process died after applying but before its mark was
        // committed: the whole log is applied a second time.
        f.index()
            .commit_at(LogMark {
                position: 0,
                ..mark.clone()
            })
            .unwrap();
        let up = f.catch_up().await.unwrap();
        assert_eq!((up.applied as i64, up.rebuilt), (mark.position, None));
        assert_mirrors(&f, db).await;
        assert_eq!(f.index().count().unwrap(), 1);
        assert_eq!(hits(&f, "expansion", &c), 1);
    }
}

#[tokio::test]
async fn an_index_of_another_database_is_rebuilt() {
    let backends = backends().await;
    let (first, second) = (&backends[0], crate::db::testing::sqlite().await);
    let c = setup(first).await;
    let dir = tempfile::tempdir().unwrap();
    let f = follower(&first.db, dir.path());
    write(&first.db, &c, "a", &["shock waves"]).await;
    f.catch_up().await.unwrap();
    drop(f);

    let other = follower(&second.db, dir.path());
    let up = other.catch_up().await.unwrap();
    assert_eq!(up.rebuilt, Some(0));
    assert_eq!(other.index().count().unwrap(), 0);
}
