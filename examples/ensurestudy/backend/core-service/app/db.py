"""Postgres access with psycopg 3: one short connection per request, schema created on first use."""
import threading

import psycopg
from psycopg.rows import dict_row

from . import config

# Serialises CREATE TABLE across processes and threads (CREATE TABLE IF NOT EXISTS alone races).
_SCHEMA_LOCK_KEY = 7_301_946_100
_schema_ready = False
_schema_mutex = threading.Lock()

SCHEMA = """
CREATE TABLE IF NOT EXISTS notes (
    id         BIGSERIAL PRIMARY KEY,
    text       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""


def connect() -> psycopg.Connection:
    return psycopg.connect(
        config.DATABASE_URL,
        connect_timeout=5,
        row_factory=dict_row,
        application_name="ensurestudy-core",
    )


def ping() -> None:
    """A real round trip: log in to the database and run SELECT 1."""
    with connect() as conn:
        row = conn.execute("SELECT 1 AS ok").fetchone()
        if not row or row["ok"] != 1:
            raise RuntimeError(f"unexpected answer to SELECT 1: {row!r}")


def ensure_schema(conn: psycopg.Connection, force: bool = False) -> None:
    global _schema_ready
    if _schema_ready and not force:
        return
    with _schema_mutex:
        if _schema_ready and not force:
            return
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
            conn.execute(SCHEMA)
        _schema_ready = True


def _with_schema(fn):
    """Run fn(conn) with the schema in place; recreate it once if the table was dropped meanwhile."""
    with connect() as conn:
        ensure_schema(conn)
        try:
            with conn.transaction():
                return fn(conn)
        except psycopg.errors.UndefinedTable:
            ensure_schema(conn, force=True)
            with conn.transaction():
                return fn(conn)


def _note(row):
    return {
        "id": row["id"],
        "text": row["text"],
        "created_at": row["created_at"].isoformat(),
    }


def insert_note(text: str) -> dict:
    def run(conn):
        return conn.execute(
            "INSERT INTO notes (text) VALUES (%s) RETURNING id, text, created_at", (text,)
        ).fetchone()

    return _note(_with_schema(run))


def get_note(note_id: int):
    def run(conn):
        return conn.execute(
            "SELECT id, text, created_at FROM notes WHERE id = %s", (note_id,)
        ).fetchone()

    row = _with_schema(run)
    return _note(row) if row else None
