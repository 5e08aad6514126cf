/**
 * Outbox schema, one entry a version: migrations[i] takes a file from user_version i to i + 1.
 * Append only: a released migration is never edited, because gateways in the field have already run it.
 */
export const migrations: readonly string[] = [
  `
  CREATE TABLE events (
    -- AUTOINCREMENT (not a plain rowid) so a seq is never handed out twice, even after the newest rows are
    -- evicted: subscribers use the per-gateway seq to spot gaps and duplicates.
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT    NOT NULL UNIQUE,
    camera_id       TEXT    NOT NULL,
    type            TEXT    NOT NULL,
    topic           TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    evidence_path   TEXT,
    evidence_sha256 TEXT,
    created_at      INTEGER NOT NULL,            -- ms since the Unix epoch
    state           TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'acked')),
    attempts        INTEGER NOT NULL DEFAULT 0,  -- publishes handed to the MQTT client
    acked_at        INTEGER                      -- ms since the Unix epoch, set on PUBACK
  );
  -- The uplink reads "pending rows after seq X in seq order" on every drain step; acked rows pile up
  -- behind it, so the index holds pending rows only.
  CREATE INDEX events_pending ON events (seq) WHERE state = 'pending';
  `,
];
