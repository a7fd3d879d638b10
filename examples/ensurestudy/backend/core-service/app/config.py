"""Settings from the environment (stack.yaml sets them; the defaults match its default ports)."""
import os
from urllib.parse import urlsplit

DATABASE_URL = os.environ.get(
    "DATABASE_URL", "postgresql://user:pass@127.0.0.1:5432/ensurestudy"
)
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or REDIS_URL
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND") or CELERY_BROKER_URL
JWT_SECRET_KEY = os.environ.get("JWT_SECRET_KEY") or "dev-only-jwt-secret"


def _passwords():
    for url in (DATABASE_URL, REDIS_URL, CELERY_BROKER_URL, CELERY_RESULT_BACKEND):
        try:
            password = urlsplit(url).password
        except ValueError:
            password = None
        if password:
            yield password


def redact(message: str) -> str:
    """Error text for clients: never echo a password taken from a connection URL."""
    for password in _passwords():
        message = message.replace(password, "***")
    return message.strip()
