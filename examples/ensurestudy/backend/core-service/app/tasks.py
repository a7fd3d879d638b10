"""Background jobs run by the celery-worker service."""
from .celery_app import celery


@celery.task(name="add")
def add(a, b):
    """Add two numbers (the smallest job that proves broker, worker and results work)."""
    return a + b
