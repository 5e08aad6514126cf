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
  // Version 2: priorities, the sent and confirmed states, evidence accounted in bytes, a byte total kept by
  // triggers (so it is exact in every committed state without a scan), and drop counters.
  `
  CREATE TABLE events_v2 (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT    NOT NULL UNIQUE,
    camera_id       TEXT    NOT NULL,
    type            TEXT    NOT NULL,
    topic           TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    priority        TEXT    NOT NULL DEFAULT 'normal' CHECK (priority IN ('high', 'normal', 'low')),
    bytes           INTEGER NOT NULL DEFAULT 0,  -- UTF-8 length of payload
    evidence_path   TEXT,                        -- relative to the outbox file's folder
    evidence_sha256 TEXT,
    evidence_bytes  INTEGER NOT NULL DEFAULT 0,
    evidence_state  TEXT CHECK (evidence_state IN ('kept', 'dropped')),
    created_at      INTEGER NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'acked', 'confirmed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    acked_at        INTEGER,
    confirmed_at    INTEGER
  );
  INSERT INTO events_v2 (seq, id, camera_id, type, topic, payload, bytes, evidence_path, evidence_sha256, evidence_state,
    created_at, state, attempts, acked_at)
    SELECT seq, id, camera_id, type, topic, payload, length(CAST(payload AS BLOB)), evidence_path, evidence_sha256,
      CASE WHEN evidence_path IS NULL THEN NULL ELSE 'kept' END, created_at, state, attempts, acked_at FROM events;
  -- Carry the AUTOINCREMENT high-water mark over: it may be above max(seq) after the newest rows were deleted.
  DELETE FROM sqlite_sequence WHERE name = 'events_v2';
  INSERT INTO sqlite_sequence (name, seq) SELECT 'events_v2', seq FROM sqlite_sequence WHERE name = 'events';
  DROP TABLE events;
  ALTER TABLE events_v2 RENAME TO events;
  -- The drain reads unsent rows in seq order; eviction walks delivered rows, then kept evidence and rows by
  -- priority, oldest first; the service-ack timeout looks for old acked rows. Each walk has its own index.
  CREATE INDEX events_unsent ON events (seq) WHERE state IN ('pending', 'sent');
  CREATE INDEX events_delivered ON events (seq) WHERE state IN ('acked', 'confirmed');
  CREATE INDEX events_priority ON events (priority, seq);
  CREATE INDEX events_evidence ON events (priority, seq) WHERE evidence_state = 'kept';
  CREATE INDEX events_acked_at ON events (acked_at) WHERE state = 'acked';

  CREATE TABLE usage (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    bytes INTEGER NOT NULL
  );
  INSERT INTO usage (id, bytes) SELECT 1, coalesce(sum(bytes + CASE WHEN evidence_state = 'kept' THEN evidence_bytes ELSE 0 END), 0) FROM events;
  CREATE TRIGGER events_usage_insert AFTER INSERT ON events BEGIN
    UPDATE usage SET bytes = bytes + NEW.bytes + CASE WHEN NEW.evidence_state = 'kept' THEN NEW.evidence_bytes ELSE 0 END;
  END;
  CREATE TRIGGER events_usage_delete AFTER DELETE ON events BEGIN
    UPDATE usage SET bytes = bytes - OLD.bytes - CASE WHEN OLD.evidence_state = 'kept' THEN OLD.evidence_bytes ELSE 0 END;
  END;
  CREATE TRIGGER events_usage_update AFTER UPDATE OF bytes, evidence_state, evidence_bytes ON events BEGIN
    UPDATE usage SET bytes = bytes
      - OLD.bytes - CASE WHEN OLD.evidence_state = 'kept' THEN OLD.evidence_bytes ELSE 0 END
      + NEW.bytes + CASE WHEN NEW.evidence_state = 'kept' THEN NEW.evidence_bytes ELSE 0 END;
  END;

  -- Every drop, counted by what, why and priority; 'reported' is how many of them an alert event has announced.
  CREATE TABLE drops (
    what     TEXT    NOT NULL CHECK (what IN ('event', 'evidence')),
    reason   TEXT    NOT NULL,
    priority TEXT    NOT NULL,
    count    INTEGER NOT NULL DEFAULT 0,
    bytes    INTEGER NOT NULL DEFAULT 0,
    reported INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (what, reason, priority)
  ) WITHOUT ROWID;
  `,
  // Version 3: the acknowledged-up-to watermark and state counts kept in `usage`. With delivery: broker, the
  // uplink records a run of PUBACKs that arrived in seq order as one `acks` row ("every unacknowledged row up to
  // seq N is acked") instead of rewriting each row (docs/decisions/0019-outbox-drain-watermark.md). The rows
  // keep their stored state; the table is renamed to event_rows and `events` becomes a view that shows every
  // row's effective state, so readers of the file (the sqlite3 shell, tests) see what the outbox means.
  `
  ALTER TABLE events RENAME TO event_rows;
  DROP TRIGGER events_usage_insert;
  DROP TRIGGER events_usage_delete;
  DROP TRIGGER events_usage_update;
  -- The state column in the index lets a watermark advance count pending and sent rows from the index alone.
  DROP INDEX events_unsent;
  CREATE INDEX events_unsent ON event_rows (seq, state) WHERE state IN ('pending', 'sent');

  -- One row per watermark advance: rows with seq <= up_to still stored as pending or sent were acked at 'at'
  -- (the smallest up_to at or above a row's seq is the advance that covered it). max(up_to) is the watermark.
  CREATE TABLE acks (
    up_to INTEGER PRIMARY KEY,
    at    INTEGER NOT NULL
  );

  -- Effective state counts (a stored pending/sent row at or below the watermark counts as acked), kept by the
  -- triggers below in the transaction that changes a row or the watermark; ack_epoch changes whenever rows go
  -- back to pending (replay, service-ack timeout), which voids a watermark claim made before it.
  ALTER TABLE usage ADD COLUMN pending   INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE usage ADD COLUMN sent      INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE usage ADD COLUMN acked     INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE usage ADD COLUMN confirmed INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE usage ADD COLUMN ack_epoch INTEGER NOT NULL DEFAULT 0;
  UPDATE usage SET
    pending   = (SELECT count(*) FROM event_rows WHERE state = 'pending'),
    sent      = (SELECT count(*) FROM event_rows WHERE state = 'sent'),
    acked     = (SELECT count(*) FROM event_rows WHERE state = 'acked'),
    confirmed = (SELECT count(*) FROM event_rows WHERE state = 'confirmed');

  CREATE TRIGGER event_rows_insert AFTER INSERT ON event_rows BEGIN
    UPDATE usage SET
      bytes     = bytes + NEW.bytes + CASE WHEN NEW.evidence_state = 'kept' THEN NEW.evidence_bytes ELSE 0 END,
      pending   = pending + (NEW.state = 'pending' AND NEW.seq > (SELECT coalesce(max(up_to), 0) FROM acks)),
      sent      = sent + (NEW.state = 'sent' AND NEW.seq > (SELECT coalesce(max(up_to), 0) FROM acks)),
      acked     = acked + (NEW.state = 'acked' OR (NEW.state IN ('pending', 'sent') AND NEW.seq <= (SELECT coalesce(max(up_to), 0) FROM acks))),
      confirmed = confirmed + (NEW.state = 'confirmed');
  END;
  CREATE TRIGGER event_rows_delete AFTER DELETE ON event_rows BEGIN
    UPDATE usage SET
      bytes     = bytes - OLD.bytes - CASE WHEN OLD.evidence_state = 'kept' THEN OLD.evidence_bytes ELSE 0 END,
      pending   = pending - (OLD.state = 'pending' AND OLD.seq > (SELECT coalesce(max(up_to), 0) FROM acks)),
      sent      = sent - (OLD.state = 'sent' AND OLD.seq > (SELECT coalesce(max(up_to), 0) FROM acks)),
      acked     = acked - (OLD.state = 'acked' OR (OLD.state IN ('pending', 'sent') AND OLD.seq <= (SELECT coalesce(max(up_to), 0) FROM acks))),
      confirmed = confirmed - (OLD.state = 'confirmed');
  END;
  CREATE TRIGGER event_rows_update AFTER UPDATE OF state, bytes, evidence_state, evidence_bytes ON event_rows BEGIN
    UPDATE usage SET
      bytes     = bytes
        - OLD.bytes - CASE WHEN OLD.evidence_state = 'kept' THEN OLD.evidence_bytes ELSE 0 END
        + NEW.bytes + CASE WHEN NEW.evidence_state = 'kept' THEN NEW.evidence_bytes ELSE 0 END,
      pending   = pending - (OLD.state = 'pending' AND OLD.seq > (SELECT coalesce(max(up_to), 0) FROM acks))
                          + (NEW.state = 'pending' AND NEW.seq > (SELECT coalesce(max(up_to), 0) FROM acks)),
      sent      = sent - (OLD.state = 'sent' AND OLD.seq > (SELECT coalesce(max(up_to), 0) FROM acks))
                       + (NEW.state = 'sent' AND NEW.seq > (SELECT coalesce(max(up_to), 0) FROM acks)),
      acked     = acked - (OLD.state = 'acked' OR (OLD.state IN ('pending', 'sent') AND OLD.seq <= (SELECT coalesce(max(up_to), 0) FROM acks)))
                        + (NEW.state = 'acked' OR (NEW.state IN ('pending', 'sent') AND NEW.seq <= (SELECT coalesce(max(up_to), 0) FROM acks))),
      confirmed = confirmed - (OLD.state = 'confirmed') + (NEW.state = 'confirmed');
  END;
  -- A watermark only moves up by an insert (lowering it first rewrites the rows it covered, see Outbox.replay):
  -- the pending and sent rows between the previous watermark and the new one now count as acked.
  CREATE TRIGGER acks_advance AFTER INSERT ON acks BEGIN
    UPDATE usage SET
      pending = pending - (SELECT count(*) FROM event_rows WHERE state IN ('pending', 'sent') AND state = 'pending'
        AND seq > (SELECT coalesce(max(up_to), 0) FROM acks WHERE up_to < NEW.up_to) AND seq <= NEW.up_to),
      sent = sent - (SELECT count(*) FROM event_rows WHERE state IN ('pending', 'sent') AND state = 'sent'
        AND seq > (SELECT coalesce(max(up_to), 0) FROM acks WHERE up_to < NEW.up_to) AND seq <= NEW.up_to),
      acked = acked + (SELECT count(*) FROM event_rows WHERE state IN ('pending', 'sent')
        AND seq > (SELECT coalesce(max(up_to), 0) FROM acks WHERE up_to < NEW.up_to) AND seq <= NEW.up_to);
  END;

  CREATE VIEW events AS SELECT seq, id, camera_id, type, topic, payload, priority, bytes, evidence_path, evidence_sha256,
    evidence_bytes, evidence_state, created_at,
    CASE WHEN state IN ('pending', 'sent') AND seq <= (SELECT coalesce(max(up_to), 0) FROM acks) THEN 'acked' ELSE state END AS state,
    -- A delivered row went out at least once; 0 means the one hand-over was never written on its own.
    CASE WHEN state = 'confirmed' OR state = 'acked' OR seq <= (SELECT coalesce(max(up_to), 0) FROM acks) THEN max(attempts, 1) ELSE attempts END AS attempts,
    CASE WHEN acked_at IS NULL AND state IN ('pending', 'sent') AND seq <= (SELECT coalesce(max(up_to), 0) FROM acks)
      THEN (SELECT at FROM acks WHERE up_to >= event_rows.seq ORDER BY up_to LIMIT 1) ELSE acked_at END AS acked_at,
    confirmed_at
    FROM event_rows;
  `,
  // Version 4: the task inbox (docs/decisions/0047-task-inbox.md): every task the gateway was sent, by id, with
  // its state and the seq of the last state it published (the states themselves are event_rows on the state topic).
  `
  CREATE TABLE tasks (
    id          TEXT    PRIMARY KEY,
    kind        TEXT,                        -- null: the payload could not be read as a task
    camera_id   TEXT,                        -- the camera it runs on; null for kinds that use none
    payload     TEXT    NOT NULL,            -- the task JSON as received
    version     INTEGER NOT NULL DEFAULT 1,
    state       TEXT    NOT NULL CHECK (state IN ('accepted', 'rejected', 'running', 'succeeded', 'failed', 'expired', 'canceled')),
    reason      TEXT,
    checkpoint  TEXT,                        -- JSON a resumable kind saves while running
    state_seq   INTEGER NOT NULL DEFAULT 0,  -- seq of the last state published for the task
    received_at INTEGER NOT NULL,            -- ms since the Unix epoch
    updated_at  INTEGER NOT NULL
  );
  -- At start the agent reads the tasks that were queued or running, in the order they came.
  CREATE INDEX tasks_open ON tasks (received_at) WHERE state IN ('accepted', 'running');
  `,
];
