"""Integration tests for the running ensureStudy stack.

Run against a stack that is up, e.g. a throwaway one:
    devstack test -- examples/ensurestudy/.venv/bin/python -m pytest examples/ensurestudy/tests
The connection settings come from the environment (stack.yaml's `test.environment`); the
defaults are the stack's default ports.
"""
import os
import time
import uuid

import httpx
import psycopg
import pytest
import redis

CORE_API_URL = os.environ.get("CORE_API_URL", "http://127.0.0.1:5000").rstrip("/")
AI_API_URL = os.environ.get("AI_API_URL", "http://127.0.0.1:8000").rstrip("/")
DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://user:pass@127.0.0.1:5432/ensurestudy")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
QDRANT_URL = os.environ.get("QDRANT_URL", "http://127.0.0.1:6333").rstrip("/")
FRONTEND_URL = os.environ.get("FRONTEND_URL", "").rstrip("/")
TASK_DEADLINE_S = float(os.environ.get("TASK_DEADLINE_S", "60"))


@pytest.fixture(scope="session")
def http():
    with httpx.Client(timeout=15) as client:
        yield client


def poll(fetch, done, deadline_s, first_interval=0.05, max_interval=0.5):
    """Call fetch() until done(value) or the deadline passes; return the last value."""
    deadline = time.monotonic() + deadline_s
    interval = first_interval
    while True:
        value = fetch()
        if done(value) or time.monotonic() >= deadline:
            return value
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
        interval = min(interval * 2, max_interval)


# --- infrastructure, reached directly ---------------------------------------------------

def test_postgres_accepts_login():
    with psycopg.connect(DATABASE_URL, connect_timeout=5) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_redis_answers_ping():
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5, socket_timeout=5)
    try:
        assert client.ping() is True
    finally:
        client.close()


# --- core-service -----------------------------------------------------------------------

def test_core_health(http):
    response = http.get(f"{CORE_API_URL}/health")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "healthy"


def test_core_ready(http):
    response = http.get(f"{CORE_API_URL}/ready")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"] == {"postgres": "ok", "redis": "ok"}


def test_note_is_written_and_read_back(http):
    text = f"integration note {uuid.uuid4()}"
    created = http.post(f"{CORE_API_URL}/api/v1/notes", json={"text": text})
    assert created.status_code == 201, created.text
    note = created.json()
    assert isinstance(note["id"], int) and note["text"] == text
    assert created.headers.get("access-control-allow-origin") == "*"

    read = http.get(f"{CORE_API_URL}/api/v1/notes/{note['id']}")
    assert read.status_code == 200, read.text
    assert read.json() == note

    # The row really is in Postgres.
    with psycopg.connect(DATABASE_URL, connect_timeout=5) as conn:
        row = conn.execute("SELECT text FROM notes WHERE id = %s", (note["id"],)).fetchone()
    assert row == (text,)


def test_note_errors(http):
    assert http.post(f"{CORE_API_URL}/api/v1/notes", json={}).status_code == 400
    assert http.post(f"{CORE_API_URL}/api/v1/notes", json={"text": "  "}).status_code == 400
    missing = http.get(f"{CORE_API_URL}/api/v1/notes/9000000000000000000")
    assert missing.status_code == 404 and "error" in missing.json()


@pytest.mark.parametrize(
    "url", [f"{CORE_API_URL}/api/v1/notes", f"{AI_API_URL}/api/ai/vectors"], ids=["core", "ai"]
)
def test_cors_preflight(http, url):
    response = http.options(
        url,
        headers={
            "Origin": "http://127.0.0.1:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert response.status_code in (200, 204)
    assert response.headers.get("access-control-allow-origin") == "*"


def test_celery_task_runs_on_the_worker(http):
    queued = http.post(f"{CORE_API_URL}/api/v1/tasks/add", json={"a": 2, "b": 40})
    assert queued.status_code == 202, queued.text
    task_id = queued.json()["task_id"]

    status = poll(
        lambda: http.get(f"{CORE_API_URL}/api/v1/tasks/{task_id}").json(),
        lambda body: body["state"] in ("SUCCESS", "FAILURE"),
        TASK_DEADLINE_S,
    )
    assert status["state"] == "SUCCESS", f"task not done after {TASK_DEADLINE_S}s: {status}"
    assert status["result"] == 42

    # The result came back through the Redis result backend.
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5, socket_timeout=5)
    try:
        assert client.exists(f"celery-task-meta-{task_id}") == 1
    finally:
        client.close()


def test_task_rejects_bad_input(http):
    response = http.post(f"{CORE_API_URL}/api/v1/tasks/add", json={"a": "x", "b": 1})
    assert response.status_code == 400


# --- ai-service -------------------------------------------------------------------------

@pytest.fixture
def collection(http):
    name = f"test_{uuid.uuid4().hex[:16]}"
    yield name
    try:  # best effort: leave no test collection behind in a long-lived stack
        http.delete(f"{AI_API_URL}/api/ai/collections/{name}")
    except httpx.HTTPError:
        pass


def test_ai_health(http):
    response = http.get(f"{AI_API_URL}/health")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "healthy"


def test_vector_is_stored_and_searched(http, collection):
    points = {
        1: ([0.1, 0.9, 0.2, 0.4], {"topic": "algebra"}),
        2: ([0.9, 0.1, 0.0, 0.1], {"topic": "biology"}),
        3: ([0.0, 0.2, 0.9, 0.3], {"topic": "history"}),
    }
    for point_id, (vector, payload) in points.items():
        stored = http.post(
            f"{AI_API_URL}/api/ai/vectors",
            json={"id": point_id, "vector": vector, "payload": payload, "collection": collection},
            headers={"Origin": "http://127.0.0.1:3000"},  # as the frontend page calls it
        )
        assert stored.status_code == 201, stored.text
        assert stored.headers.get("access-control-allow-origin") == "*"

    found = http.post(
        f"{AI_API_URL}/api/ai/search",
        json={"vector": [0.12, 0.88, 0.2, 0.41], "limit": 2, "collection": collection},
    )
    assert found.status_code == 200, found.text
    results = found.json()["results"]
    assert len(results) == 2
    assert results[0]["id"] == 1 and results[0]["payload"] == {"topic": "algebra"}
    assert results[0]["score"] >= results[1]["score"]

    # The points really are in Qdrant: ask its REST API directly.
    direct = http.post(
        f"{QDRANT_URL}/collections/{collection}/points/search",
        json={"vector": [0.9, 0.1, 0.0, 0.1], "limit": 1, "with_payload": True},
    )
    assert direct.status_code == 200, direct.text
    assert direct.json()["result"][0]["id"] == 2


def test_vector_errors(http, collection):
    bad = http.post(f"{AI_API_URL}/api/ai/vectors", json={"id": 1, "vector": []})
    assert bad.status_code == 422
    empty = http.post(
        f"{AI_API_URL}/api/ai/search", json={"vector": [1.0, 0.0], "collection": collection}
    )
    assert empty.status_code == 200 and empty.json()["results"] == []


# --- frontend (only when the suite is told where it is) ---------------------------------

@pytest.mark.skipif(not FRONTEND_URL, reason="FRONTEND_URL not set")
def test_frontend_page(http):
    response = http.get(f"{FRONTEND_URL}/")
    assert response.status_code == 200
    assert "ensureStudy" in response.text and "apiUrl" in response.text
