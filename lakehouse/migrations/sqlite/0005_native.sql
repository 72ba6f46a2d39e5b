-- Native ingestion bookkeeping.
-- Blocks already ingested: a retried block is acknowledged and changes nothing.
CREATE TABLE native_blocks (
    block_id      TEXT PRIMARY KEY,
    stream_id     TEXT NOT NULL,
    process_id    TEXT NOT NULL,
    object_offset BIGINT NOT NULL,
    nb_objects    BIGINT NOT NULL,
    insert_time   BIGINT NOT NULL
);
-- Blocks that arrived before their stream or process: kept, decoded once both are known.
CREATE TABLE pending_blocks (
    block_id    TEXT PRIMARY KEY,
    stream_id   TEXT NOT NULL,
    process_id  TEXT NOT NULL,
    body        BLOB NOT NULL,
    insert_time BIGINT NOT NULL
);
CREATE INDEX pending_blocks_stream ON pending_blocks (stream_id);
CREATE INDEX pending_blocks_process ON pending_blocks (process_id);
-- Span pairing state (open spans, events held behind a missing block), per thread stream
-- and per process (async spans), versioned for optimistic updates.
CREATE TABLE span_state (
    key     TEXT PRIMARY KEY,
    version BIGINT NOT NULL,
    state   TEXT NOT NULL
);
