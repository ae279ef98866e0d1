-- The durable job queue. A collection's jobs go with it (ON DELETE CASCADE):
-- a deleted collection leaves nothing runnable behind, and a worker still
-- running one of them loses its lease (its next renew/complete reports so).
-- The creator is history only: removing a user keeps the job.
CREATE TABLE jobs (
    id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    collection_id TEXT REFERENCES collections(id) ON DELETE CASCADE,
    created_by TEXT REFERENCES users(id) ON DELETE SET NULL,
    state TEXT NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'dead')),
    payload TEXT NOT NULL DEFAULT '{}',
    result TEXT,
    progress TEXT NOT NULL DEFAULT '{}',
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL DEFAULT 3,
    run_after TIMESTAMP NOT NULL,
    lease_owner TEXT,
    lease_expires_at TIMESTAMP,
    last_error TEXT,
    cancel_requested BOOLEAN NOT NULL DEFAULT 0,
    dedupe_key TEXT,
    created_at TIMESTAMP NOT NULL,
    started_at TIMESTAMP,
    finished_at TIMESTAMP,
    updated_at TIMESTAMP NOT NULL
);

-- Claiming: runnable queued jobs by run_after, and expired running leases.
CREATE INDEX jobs_state_run_after ON jobs (state, run_after);
-- Listing newest first, overall and per collection (also serves the cascade).
CREATE INDEX jobs_created ON jobs (created_at, id);
CREATE INDEX jobs_collection_created ON jobs (collection_id, created_at, id);
-- One live job per dedupe key; finished jobs free the key.
CREATE UNIQUE INDEX jobs_dedupe_live ON jobs (dedupe_key)
    WHERE dedupe_key IS NOT NULL AND state IN ('queued', 'running');
