"""Application factory for uvicorn worker processes (``serve --workers N``)."""

from __future__ import annotations

from fastapi import FastAPI

from signing_service.api.app import create_app
from signing_service.api.server import settle_heap
from signing_service.services.container import Services
from signing_service.settings import Settings


def app_factory() -> FastAPI:
    app = create_app(Services.build(Settings(), prepare=False))
    settle_heap()
    return app
