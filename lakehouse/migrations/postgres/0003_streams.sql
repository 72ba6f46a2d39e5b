-- Streams (native streams, and one per OTLP resource and signal), with the native type
-- descriptions needed to decode their blocks.
CREATE TABLE streams (
    stream_id             TEXT PRIMARY KEY,
    process_id            TEXT NOT NULL,
    tags                  TEXT NOT NULL DEFAULT '[]', -- JSON array of strings
    properties            TEXT NOT NULL DEFAULT '{}', -- JSON object of strings
    dependencies_metadata BYTEA,                      -- CBOR, as the producer sent it
    objects_metadata      BYTEA,                      -- CBOR, as the producer sent it
    format                TEXT NOT NULL,              -- 'micromegas-transit' or 'otlp'
    insert_time           BIGINT NOT NULL             -- unix microseconds
);
CREATE INDEX streams_process_id ON streams (process_id);
