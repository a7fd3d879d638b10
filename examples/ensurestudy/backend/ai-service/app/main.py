"""ensureStudy AI service: stores and searches embedding vectors in Qdrant.

    uvicorn app.main:app --port 8000      (from backend/ai-service/)

Environment: QDRANT_URL (default http://127.0.0.1:6333), QDRANT_COLLECTION (default
"ensurestudy"), REDIS_URL (checked by /ready), HUGGINGFACE_API_KEY (optional, never echoed).
"""
import os
import re
from contextlib import asynccontextmanager
from typing import Any, Optional

import httpx
import redis.asyncio as aioredis
from fastapi import FastAPI, HTTPException, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from .qdrant import Qdrant, QdrantError

QDRANT_URL = os.environ.get("QDRANT_URL") or "http://127.0.0.1:6333"
DEFAULT_COLLECTION = os.environ.get("QDRANT_COLLECTION") or "ensurestudy"
REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/1"
COLLECTION_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
MAX_DIMENSIONS = 4096


@asynccontextmanager
async def lifespan(app: FastAPI):
    app.state.qdrant = Qdrant(QDRANT_URL)
    app.state.redis = aioredis.Redis.from_url(
        REDIS_URL, socket_connect_timeout=2, socket_timeout=2
    )
    try:
        yield
    finally:
        await app.state.qdrant.close()
        await app.state.redis.aclose()


app = FastAPI(title="ensureStudy AI service", version="0.1.0", lifespan=lifespan)
app.add_middleware(
    CORSMiddleware,
    allow_origins=["*"],
    allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
    allow_headers=["*"],
    max_age=600,
)


class VectorIn(BaseModel):
    id: int = Field(ge=0, le=2**63 - 1, description="point id (unsigned integer)")
    vector: list[float] = Field(min_length=1, max_length=MAX_DIMENSIONS)
    payload: dict[str, Any] = Field(default_factory=dict)
    collection: Optional[str] = Field(default=None, pattern=COLLECTION_PATTERN)


class SearchIn(BaseModel):
    vector: list[float] = Field(min_length=1, max_length=MAX_DIMENSIONS)
    limit: int = Field(default=3, ge=1, le=100)
    collection: Optional[str] = Field(default=None, pattern=COLLECTION_PATTERN)


@app.exception_handler(QdrantError)
async def qdrant_error(request: Request, exc: QdrantError):
    # Qdrant's 4xx (e.g. a vector of the wrong dimension) is the caller's fault; the rest is ours.
    status = 400 if 400 <= exc.status_code < 500 else 502
    return JSONResponse({"detail": f"qdrant: {exc.message}"}, status_code=status)


@app.exception_handler(httpx.RequestError)
async def qdrant_unreachable(request: Request, exc: httpx.RequestError):
    return JSONResponse(
        {"detail": f"qdrant unavailable at {QDRANT_URL}: {type(exc).__name__}: {exc}"},
        status_code=503,
    )


@app.get("/")
async def index():
    return {"service": "ai-service", "endpoints": ["/health", "/ready", "/api/ai/vectors", "/api/ai/search"]}


@app.get("/health")
async def health():
    return {
        "status": "healthy",
        "service": "ai-service",
        "huggingface_api_key_configured": bool(os.environ.get("HUGGINGFACE_API_KEY")),
    }


@app.get("/ready")
async def ready(request: Request):
    checks: dict[str, str] = {}
    try:
        await request.app.state.qdrant.ready()
        checks["qdrant"] = "ok"
    except Exception as exc:
        checks["qdrant"] = f"{type(exc).__name__}: {exc}"
    try:
        await request.app.state.redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"{type(exc).__name__}: {exc}"
    ok = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ready" if ok else "not ready", "checks": checks},
        status_code=200 if ok else 503,
    )


@app.post("/api/ai/vectors", status_code=201)
async def store_vector(point: VectorIn, request: Request):
    collection = point.collection or DEFAULT_COLLECTION
    await request.app.state.qdrant.upsert(collection, point.id, point.vector, point.payload)
    return {"id": point.id, "collection": collection, "dimensions": len(point.vector)}


@app.post("/api/ai/search")
async def search(query: SearchIn, request: Request):
    collection = query.collection or DEFAULT_COLLECTION
    results = await request.app.state.qdrant.search(collection, query.vector, query.limit)
    return {"collection": collection, "results": results}


@app.delete("/api/ai/collections/{name}")
async def delete_collection(name: str, request: Request):
    if not re.fullmatch(COLLECTION_PATTERN, name):
        raise HTTPException(status_code=400, detail="invalid collection name")
    deleted = await request.app.state.qdrant.delete_collection(name)
    return {"collection": name, "deleted": deleted}
