-- Fusion parameters chosen for this collection by `ragchat eval --tune
-- --store` (JSON of `config::Fusion`); NULL uses the configured defaults.
ALTER TABLE collections ADD COLUMN retrieval TEXT;
