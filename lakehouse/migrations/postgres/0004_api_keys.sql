-- API keys shared by every gateway; only the SHA-256 of a key is stored.
CREATE TABLE api_keys (
    name       TEXT PRIMARY KEY,
    key_hash   TEXT NOT NULL UNIQUE, -- lowercase hex SHA-256 of the key
    can_ingest BOOLEAN NOT NULL,
    can_query  BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,      -- unix microseconds
    revoked_at BIGINT                -- unix microseconds; NULL while valid
);
