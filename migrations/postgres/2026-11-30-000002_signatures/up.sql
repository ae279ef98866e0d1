-- Per-document fingerprints for duplicate detection at ingestion: the hash of
-- the normalised text (exact duplicates) and a MinHash signature (near
-- duplicates). Derived data, deleted with the document.
CREATE TABLE document_signatures (
    document_id TEXT PRIMARY KEY NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    collection_id TEXT NOT NULL,
    source TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    minhash TEXT NOT NULL
);
CREATE INDEX document_signatures_collection ON document_signatures (collection_id, text_hash);
