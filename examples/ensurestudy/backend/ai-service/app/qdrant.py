"""A minimal Qdrant client over its REST API (httpx), enough for the AI service:
PUT /collections/{name}, PUT /collections/{name}/points, POST /collections/{name}/points/search,
DELETE /collections/{name}, GET /readyz."""
import asyncio
from typing import Any

import httpx


class QdrantError(Exception):
    """Qdrant answered with an error status; carries that status and Qdrant's message."""

    def __init__(self, status_code: int, message: str):
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    status = body.get("status") if isinstance(body, dict) else None
    if isinstance(status, dict) and status.get("error"):
        return str(status["error"])
    return str(body)[:500]


class Qdrant:
    def __init__(self, base_url: str, timeout: float = 10.0):
        self.base_url = base_url.rstrip("/")
        self.http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout)
        self._known: set[str] = set()
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        await self.http.aclose()

    async def ready(self) -> None:
        response = await self.http.get("/readyz")
        if response.status_code != 200:
            raise QdrantError(response.status_code, _message(response))

    async def ensure_collection(self, name: str, size: int) -> None:
        """Create the collection (cosine distance, `size` dimensions) unless it exists."""
        if name in self._known:
            return
        async with self._lock:
            if name in self._known:
                return
            response = await self.http.put(
                f"/collections/{name}",
                json={"vectors": {"size": size, "distance": "Cosine"}},
            )
            exists = response.status_code == 409 or (
                response.status_code == 400 and "already exists" in response.text
            )
            if response.status_code != 200 and not exists:
                raise QdrantError(response.status_code, _message(response))
            self._known.add(name)

    async def upsert(self, name: str, point_id: int, vector: list[float], payload: dict) -> Any:
        body = {"points": [{"id": point_id, "vector": vector, "payload": payload}]}
        for attempt in range(2):
            await self.ensure_collection(name, len(vector))
            response = await self.http.put(
                f"/collections/{name}/points", params={"wait": "true"}, json=body
            )
            if response.status_code == 404 and attempt == 0:
                # The collection was deleted behind our back: create it again, once.
                self._known.discard(name)
                continue
            if response.status_code != 200:
                raise QdrantError(response.status_code, _message(response))
            return response.json().get("result")
        raise AssertionError("unreachable")

    async def search(self, name: str, vector: list[float], limit: int) -> list[dict]:
        response = await self.http.post(
            f"/collections/{name}/points/search",
            json={"vector": vector, "limit": limit, "with_payload": True},
        )
        if response.status_code == 404:
            return []  # nothing stored in that collection yet
        if response.status_code != 200:
            raise QdrantError(response.status_code, _message(response))
        return [
            {"id": hit.get("id"), "score": hit.get("score"), "payload": hit.get("payload") or {}}
            for hit in response.json().get("result") or []
        ]

    async def delete_collection(self, name: str) -> bool:
        self._known.discard(name)
        response = await self.http.delete(f"/collections/{name}")
        if response.status_code == 404:
            return False
        if response.status_code != 200:
            raise QdrantError(response.status_code, _message(response))
        return bool(response.json().get("result", True))
