-- Table registry: which canonical tables exist and where their Delta logs live.
CREATE TABLE lake_tables (
    name           TEXT PRIMARY KEY,
    uri            TEXT NOT NULL,
    schema_version BIGINT NOT NULL,
    created_at     BIGINT NOT NULL -- unix microseconds
);

-- Processes (native processes and OTLP resources) seen by any gateway.
CREATE TABLE processes (
    process_id          TEXT PRIMARY KEY,
    exe                 TEXT,
    username            TEXT,
    realname            TEXT,
    computer            TEXT,
    distro              TEXT,
    cpu_brand           TEXT,
    tsc_frequency       BIGINT NOT NULL DEFAULT 0,
    start_time          BIGINT NOT NULL, -- unix nanoseconds
    start_ticks         BIGINT NOT NULL DEFAULT 0,
    parent_process_id   TEXT,
    service_name        TEXT,
    service_namespace   TEXT,
    service_version     TEXT,
    service_instance_id TEXT,
    properties          TEXT NOT NULL DEFAULT '{}', -- JSON object of strings
    source              TEXT NOT NULL,              -- 'otlp' or 'native'
    insert_time         BIGINT NOT NULL             -- unix microseconds
);
CREATE INDEX processes_service_name ON processes (service_name);
CREATE INDEX processes_insert_time ON processes (insert_time);
