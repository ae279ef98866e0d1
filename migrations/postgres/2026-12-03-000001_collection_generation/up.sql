-- What a cached /query result depends on: `generation` is bumped after every
-- change to the collection's chunks (or its name) is in the database and the
-- vector index; `log_position` is the chunk change log's head at that bump,
-- which a node's lexical index must have applied before its results for the
-- collection may be cached.
ALTER TABLE collections ADD COLUMN generation BIGINT NOT NULL DEFAULT 0;
ALTER TABLE collections ADD COLUMN log_position BIGINT NOT NULL DEFAULT 0;
