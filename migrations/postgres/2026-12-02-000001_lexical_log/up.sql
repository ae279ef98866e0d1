-- The chunk change log that every node's lexical index (Tantivy) follows.
-- Each chunk insert and delete appends a row in the transaction that makes
-- it, so the log and the chunks never disagree. Positions come from the one
-- row of lexical_log_head, bumped in that same transaction (its row lock
-- orders log writers until they commit), not from a sequence: a sequence
-- value taken by one transaction can commit after a larger one taken by
-- another, and a follower that had read the larger would skip the smaller
-- for good. log_id names this log, so an index built from another database
-- is rebuilt rather than followed.
CREATE TABLE lexical_log_head (
    id INTEGER PRIMARY KEY NOT NULL,
    log_id TEXT NOT NULL,
    pos BIGINT NOT NULL
);
INSERT INTO lexical_log_head (id, log_id, pos) VALUES (1, md5(random()::text || clock_timestamp()::text), 0);

CREATE TABLE lexical_log (
    pos BIGINT PRIMARY KEY NOT NULL,
    chunk_id TEXT NOT NULL,
    op TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX lexical_log_created_at ON lexical_log (created_at);
