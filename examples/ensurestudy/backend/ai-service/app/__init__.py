"""ensureStudy AI service (FastAPI): `uvicorn app.main:app`."""
