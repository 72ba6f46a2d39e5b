-- Leases: one holder at a time for work that must not run twice (maintenance).
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at BIGINT NOT NULL -- unix microseconds
);
