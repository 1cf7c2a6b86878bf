"""PostgreSQL schema migrations: (version, statements), applied in order under an advisory lock.

Same tables and meaning as the SQLite schema (see adapters/sqlite/schema.py); `username` because
`user` is reserved here.
"""

from __future__ import annotations

MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            """CREATE TABLE accounts (
                id TEXT PRIMARY KEY,
                host TEXT NOT NULL,
                port INTEGER NOT NULL,
                username TEXT,
                password TEXT,
                use_tls BOOLEAN NOT NULL DEFAULT FALSE,
                per_minute INTEGER,
                per_hour INTEGER,
                per_day INTEGER,
                limit_behavior TEXT NOT NULL DEFAULT 'defer',
                batch_size INTEGER,
                starttls TEXT NOT NULL DEFAULT 'opportunistic',
                allow_insecure_auth BOOLEAN NOT NULL DEFAULT FALSE,
                max_connections INTEGER NOT NULL DEFAULT 4,
                ttl_seconds DOUBLE PRECISION NOT NULL DEFAULT 300
            )""",
            """CREATE TABLE messages (
                seq BIGSERIAL PRIMARY KEY,
                id TEXT NOT NULL UNIQUE,
                account_id TEXT NOT NULL,
                priority SMALLINT NOT NULL,
                status TEXT NOT NULL,
                payload TEXT NOT NULL,
                created_ts DOUBLE PRECISION NOT NULL,
                available_at DOUBLE PRECISION NOT NULL,
                deferred_ts DOUBLE PRECISION,
                sent_ts DOUBLE PRECISION,
                error_ts DOUBLE PRECISION,
                finished_ts DOUBLE PRECISION,
                error TEXT,
                reported_ts DOUBLE PRECISION,
                attempts INTEGER NOT NULL DEFAULT 0,
                first_attempt_ts DOUBLE PRECISION,
                refused TEXT,
                version INTEGER NOT NULL DEFAULT 0,
                reported_version INTEGER NOT NULL DEFAULT 0
            )""",
            "CREATE INDEX messages_due ON messages (account_id, priority, available_at) WHERE status = 'queued'",
            "CREATE INDEX messages_report ON messages (seq) WHERE version > reported_version",
            "CREATE INDEX messages_finished ON messages (finished_ts) WHERE status <> 'queued'",
            "CREATE INDEX messages_status ON messages (status, seq)",
            "CREATE INDEX messages_account ON messages (account_id, status, seq)",
            """CREATE TABLE attempts (
                message_id TEXT NOT NULL,
                ts DOUBLE PRECISION NOT NULL,
                outcome TEXT NOT NULL,
                code INTEGER,
                detail TEXT NOT NULL DEFAULT ''
            )""",
            "CREATE INDEX attempts_message ON attempts (message_id, ts)",
            "CREATE TABLE send_log (account_id TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL)",
            "CREATE INDEX send_log_account ON send_log (account_id, ts)",
            "CREATE TABLE service_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        ],
    ),
    (
        2,
        [
            "CREATE INDEX messages_account_seq ON messages (account_id, seq)",
            # Set while a claim is being sent, cleared by its outcome: tells in-flight messages apart.
            "ALTER TABLE messages ADD COLUMN lease_until DOUBLE PRECISION",
        ],
    ),
]
