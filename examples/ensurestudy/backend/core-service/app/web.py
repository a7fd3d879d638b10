"""The Flask REST API: /health, /ready, /api/v1/notes, /api/v1/tasks."""
import logging
import threading

import psycopg
import redis
from celery.result import AsyncResult
from flask import Flask, jsonify, request
from kombu.exceptions import OperationalError as BrokerError
from werkzeug.exceptions import HTTPException

from . import config, db
from .celery_app import celery
from .tasks import add

log = logging.getLogger("ensurestudy.core")

MAX_NOTE_LENGTH = 10_000

_redis = None
_redis_mutex = threading.Lock()


def redis_client() -> redis.Redis:
    global _redis
    with _redis_mutex:
        if _redis is None:
            _redis = redis.Redis.from_url(
                config.REDIS_URL, socket_connect_timeout=2, socket_timeout=2
            )
        return _redis


def _error(status: int, message: str, **extra):
    body = {"error": config.redact(message)}
    body.update(extra)
    return jsonify(body), status


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def create_app(config_name: str = "development") -> Flask:
    """The Flask application. `config_name` is what production's gunicorn passes
    (`app:create_app('production')`); settings themselves come from the environment."""
    app = Flask(__name__)
    app.config["SECRET_KEY"] = config.JWT_SECRET_KEY
    app.config["ENSURESTUDY_CONFIG"] = config_name
    app.json.sort_keys = False

    @app.after_request
    def cors(response):
        # The frontend is served from another origin (its own port): allow it to call us.
        response.headers["Access-Control-Allow-Origin"] = "*"
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type, Authorization"
        response.headers["Access-Control-Max-Age"] = "600"
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return _error(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(psycopg.OperationalError)
    def database_down(exc):
        return _error(503, f"database unavailable: {exc}")

    @app.errorhandler(psycopg.Error)
    def database_error(exc):
        log.exception("database error")
        return _error(500, f"database error: {exc}")

    @app.errorhandler(redis.RedisError)
    def redis_down(exc):
        return _error(503, f"redis unavailable: {exc}")

    @app.errorhandler(BrokerError)
    def broker_down(exc):
        return _error(503, f"task broker unavailable: {exc}")

    @app.get("/")
    def index():
        return jsonify(
            service="core-service",
            endpoints=["/health", "/ready", "/api/v1/notes", "/api/v1/tasks/add"],
        )

    @app.get("/health")
    def health():
        return jsonify(status="healthy", service="core-service")

    @app.get("/ready")
    def ready():
        checks, errors = {}, []
        try:
            db.ping()
            checks["postgres"] = "ok"
        except Exception as exc:  # any failure means not ready
            checks["postgres"] = config.redact(f"{type(exc).__name__}: {exc}")
            errors.append("postgres: " + checks["postgres"])
        try:
            if redis_client().ping() is not True:
                raise RuntimeError("PING did not answer PONG")
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = config.redact(f"{type(exc).__name__}: {exc}")
            errors.append("redis: " + checks["redis"])
        if errors:
            return jsonify(status="not ready", checks=checks, error="; ".join(errors)), 503
        return jsonify(status="ready", checks=checks)

    @app.post("/api/v1/notes")
    def create_note():
        body = request.get_json(silent=True)
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text.strip():
            return _error(400, 'expected a JSON body {"text": "<non-empty string>"}')
        if len(text) > MAX_NOTE_LENGTH:
            return _error(400, f"text is longer than {MAX_NOTE_LENGTH} characters")
        return jsonify(db.insert_note(text)), 201

    @app.get("/api/v1/notes/<int:note_id>")
    def read_note(note_id: int):
        if note_id > 2**63 - 1:
            return _error(404, f"note {note_id} not found")
        note = db.get_note(note_id)
        if note is None:
            return _error(404, f"note {note_id} not found")
        return jsonify(note)

    @app.post("/api/v1/tasks/add")
    def enqueue_add():
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not _is_number(body.get("a")) or not _is_number(body.get("b")):
            return _error(400, 'expected a JSON body {"a": <number>, "b": <number>}')
        result = add.apply_async((body["a"], body["b"]))
        return (
            jsonify(
                task_id=result.id,
                state="PENDING",
                status_url=f"/api/v1/tasks/{result.id}",
            ),
            202,
        )

    @app.get("/api/v1/tasks/<task_id>")
    def task_status(task_id: str):
        result = AsyncResult(task_id, app=celery)
        state = result.state
        body = {"task_id": task_id, "state": state}
        if state == "SUCCESS":
            body["result"] = result.result
        elif state == "FAILURE":
            body["error"] = repr(result.result)
        return jsonify(body)

    return app
