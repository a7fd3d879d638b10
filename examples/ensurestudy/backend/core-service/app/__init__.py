"""ensureStudy core service.

One package, two entry points (both run from backend/core-service/):

    python -m flask --app app run            # the REST API: module-level `app` below
    python -m celery -A app.celery worker    # the background worker: `celery` below
"""
from .celery_app import celery
from . import tasks  # noqa: F401  (registers the tasks on `celery`)
from .web import create_app

app = create_app()

__all__ = ["app", "celery", "create_app"]
