"""The Celery application (exported as `app.celery`): broker and result backend on Redis."""
from celery import Celery
from celery.backends.redis import RedisBackend

from . import config


class PolledRedisBackend(RedisBackend):
    """Celery's Redis result backend, minus the pub/sub subscription made on every send.

    The API reads task state by polling (`AsyncResult.state`, a plain GET), so the eager
    SUBSCRIBE is useless to it; worse, with Redis down it retries for ~20 s and then answers
    "the Celery application must be restarted" instead of failing fast. `result.get()` still
    subscribes on its own when something does wait for a result.
    """

    def on_task_call(self, producer, task_id):
        return {}


def _backend_url(url: str) -> str:
    # "<class path>+<url>" selects a backend class; only Redis URLs get the polled variant.
    if url.startswith(("redis://", "rediss://", "unix://")):
        return f"{__name__}:PolledRedisBackend+{url}"
    return url


celery = Celery(
    "ensurestudy",
    broker=config.CELERY_BROKER_URL,
    backend=_backend_url(config.CELERY_RESULT_BACKEND),
    include=["app.tasks"],
)
celery.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_expires=3600,
    task_track_started=True,
    # Keep retrying the broker while the worker starts (Redis may come up later).
    broker_connection_retry_on_startup=True,
    worker_cancel_long_running_tasks_on_connection_loss=True,
    # The web process must not hang on a dead broker: fail fast and answer 503.
    broker_connection_timeout=3,
    broker_transport_options={"socket_connect_timeout": 3, "socket_timeout": 5},
    task_publish_retry_policy={
        "max_retries": 2,
        "interval_start": 0,
        "interval_step": 0.5,
        "interval_max": 1,
    },
    redis_socket_connect_timeout=3,
    redis_socket_timeout=5,
)
