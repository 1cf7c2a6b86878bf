"""Schema migrations: (version, statements). Append new versions; never edit a released one.

`available_at` is when a queued message may next be claimed: its deferred_ts, or the end of
the lease while it is being sent. `version` counts reportable state changes and
`reported_version` the last one the application acknowledged.
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
            user TEXT,
            password TEXT,
            use_tls INTEGER NOT NULL DEFAULT 0,
            per_minute INTEGER,
            per_hour INTEGER,
            per_day INTEGER,
            limit_behavior TEXT NOT NULL DEFAULT 'defer',
            batch_size INTEGER
        )""",
            """CREATE TABLE messages (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            account_id TEXT NOT NULL,
            priority INTEGER NOT NULL,
            status TEXT NOT NULL,
            payload TEXT NOT NULL,
            created_ts REAL NOT NULL,
            available_at REAL NOT NULL,
            deferred_ts REAL,
            sent_ts REAL,
            error_ts REAL,
            finished_ts REAL,
            error TEXT,
            reported_ts REAL,
            attempts INTEGER NOT NULL DEFAULT 0,
            first_attempt_ts REAL,
            refused TEXT,
            version INTEGER NOT NULL DEFAULT 0,
            reported_version INTEGER NOT NULL DEFAULT 0
        )""",
            "CREATE INDEX messages_due ON messages (account_id, priority, available_at) WHERE status = 'queued'",
            "CREATE INDEX messages_report ON messages (seq) WHERE version > reported_version",
            "CREATE INDEX messages_finished ON messages (finished_ts) WHERE status != 'queued'",
            "CREATE INDEX messages_status ON messages (status, seq)",
            "CREATE INDEX messages_account ON messages (account_id, status, seq)",
            """CREATE TABLE attempts (
            message_id TEXT NOT NULL,
            ts REAL NOT NULL,
            outcome TEXT NOT NULL,
            code INTEGER,
            detail TEXT NOT NULL DEFAULT ''
        )""",
            "CREATE INDEX attempts_message ON attempts (message_id, ts)",
            "CREATE TABLE send_log (account_id TEXT NOT NULL, ts REAL NOT NULL)",
            "CREATE INDEX send_log_account ON send_log (account_id, ts)",
            "CREATE TABLE service_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        ],
    ),
    (
        2,
        [
            "ALTER TABLE accounts ADD COLUMN starttls TEXT NOT NULL DEFAULT 'opportunistic'",
            "ALTER TABLE accounts ADD COLUMN allow_insecure_auth INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE accounts ADD COLUMN max_connections INTEGER NOT NULL DEFAULT 4",
            "ALTER TABLE accounts ADD COLUMN ttl_seconds REAL NOT NULL DEFAULT 300",
        ],
    ),
    (
        3,
        [
            # GET /messages?account_id=...&cursor=... walks this index instead of sorting the account's rows.
            "CREATE INDEX messages_account_seq ON messages (account_id, seq)",
            # Counts per status kept by triggers, so /status and /metrics never scan the table.
            "CREATE TABLE message_counts (status TEXT PRIMARY KEY, n INTEGER NOT NULL)",
            "INSERT INTO message_counts (status, n) VALUES ('queued', 0), ('sent', 0), ('error', 0)",
            "UPDATE message_counts SET n = (SELECT count(*) FROM messages m WHERE m.status = message_counts.status)",
            """CREATE TRIGGER messages_count_insert AFTER INSERT ON messages BEGIN
                UPDATE message_counts SET n = n + 1 WHERE status = NEW.status;
            END""",
            """CREATE TRIGGER messages_count_delete AFTER DELETE ON messages BEGIN
                UPDATE message_counts SET n = n - 1 WHERE status = OLD.status;
            END""",
            """CREATE TRIGGER messages_count_status AFTER UPDATE OF status ON messages
                WHEN OLD.status <> NEW.status BEGIN
                UPDATE message_counts SET n = n - 1 WHERE status = OLD.status;
                UPDATE message_counts SET n = n + 1 WHERE status = NEW.status;
            END""",
        ],
    ),
    (
        4,
        [
            # Set while a claim is being sent, cleared by its outcome: tells in-flight messages apart.
            "ALTER TABLE messages ADD COLUMN lease_until REAL",
        ],
    ),
]
