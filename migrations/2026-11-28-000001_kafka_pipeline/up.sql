-- The Kafka pipeline: the outbox mark on tasks, and how worker replicas share the
-- topic's partitions (rskafka has no consumer groups, so PostgreSQL keeps them).
--
-- Additive only, so the previous release keeps running against this schema.

-- When the broker acknowledged the task's record. NULL while the task has not been
-- handed to Kafka (inline mode, or a publish that did not complete): the API's outbox
-- sweeper publishes Kafka-mode tasks left in that state.
ALTER TABLE tasks ADD COLUMN enqueued_at TIMESTAMPTZ;

-- Finds PENDING tasks that were never handed to Kafka without scanning the others.
CREATE INDEX tasks_unenqueued_idx ON tasks (created_at)
    WHERE enqueued_at IS NULL AND status = 'PENDING';

-- Live worker replicas of a topic. A replica renews its row at every heartbeat; a row
-- past expires_at belongs to a replica that died.
CREATE TABLE consumer_members (
    topic        TEXT        NOT NULL,
    worker_id    TEXT        NOT NULL,
    joined_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (topic, worker_id)
);

-- One row per partition of a topic: who may consume it, under which fencing epoch,
-- until when, and the offset consumption resumes from.
CREATE TABLE partition_leases (
    topic            TEXT        NOT NULL,
    partition        INTEGER     NOT NULL,
    -- NULL when released; a non-NULL owner with expires_at in the past is dead.
    owner            TEXT,
    -- Increases at every change of owner. Every offset commit and result write names
    -- the epoch it was acquired under and is refused once the epoch has moved on.
    epoch            BIGINT      NOT NULL DEFAULT 0,
    expires_at       TIMESTAMPTZ,
    -- The first offset not yet fully processed: consumption resumes here.
    committed_offset BIGINT      NOT NULL DEFAULT 0,
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition),
    CONSTRAINT partition_leases_partition_check CHECK (partition >= 0),
    CONSTRAINT partition_leases_offset_check CHECK (committed_offset >= 0),
    CONSTRAINT partition_leases_owner_has_expiry CHECK ((owner IS NULL) = (expires_at IS NULL))
);
