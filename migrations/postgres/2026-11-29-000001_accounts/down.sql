DROP TABLE messages;
DROP TABLE conversations;
DROP TABLE collection_grants;
DROP TABLE api_keys;
DROP TABLE refresh_tokens;
DROP TABLE sessions;
DROP TABLE users;
ALTER TABLE collections DROP COLUMN public;
