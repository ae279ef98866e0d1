-- The chunk change log that every node's lexical index (Tantivy) follows.
-- Each chunk insert and delete appends a row in the transaction that makes
-- it, so the log and the chunks never disagree. Positions come from the one
-- row of lexical_log_head, bumped in that same transaction: positions are
-- gapless and in commit order (see db::lexical_log). log_id names this log,
-- so an index built from another database is rebuilt rather than followed.
CREATE TABLE lexical_log_head (
    id INTEGER PRIMARY KEY NOT NULL,
    log_id TEXT NOT NULL,
    pos BIGINT NOT NULL
);
INSERT INTO lexical_log_head (id, log_id, pos) VALUES (1, lower(hex(randomblob(16))), 0);

CREATE TABLE lexical_log (
    pos BIGINT PRIMARY KEY NOT NULL,
    chunk_id TEXT NOT NULL,
    op TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX lexical_log_created_at ON lexical_log (created_at);
