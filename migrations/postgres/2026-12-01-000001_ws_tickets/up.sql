-- Single-use tickets that open a WebSocket without a long-lived credential in
-- the URL (POST /api/v1/ws-tickets). Stored as SHA-256 hashes, like refresh
-- tokens and API keys. Each names the credential it was issued from (a
-- session, or an API key), which is checked again when the ticket is used.
-- A used ticket is deleted; expired ones are swept when new ones are issued.
CREATE TABLE ws_tickets (
    ticket_hash TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    session_id TEXT REFERENCES sessions(id) ON DELETE CASCADE,
    api_key_id TEXT REFERENCES api_keys(id) ON DELETE CASCADE,
    token_version INTEGER NOT NULL,
    credential_expires_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
CREATE INDEX ws_tickets_expires_at ON ws_tickets (expires_at);
