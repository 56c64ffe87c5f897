"""Liveness and readiness probes (``/healthz``, ``/readyz``)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter
from sqlalchemy import text

from signing_service import errors
from signing_service.api import schemas
from signing_service.api.deps import AppServices, InWorker, error_response

log = logging.getLogger(__name__)

router = APIRouter()


@router.get(
    "/healthz",
    response_model=schemas.Health,
    tags=["vận hành"],
    summary="Kiểm tra tiến trình dịch vụ còn chạy (liveness)",
)
async def healthz() -> schemas.Health:
    return schemas.Health(status="ok")


@router.get(
    "/readyz",
    response_model=schemas.Health,
    tags=["vận hành"],
    summary="Kiểm tra dịch vụ sẵn sàng: cơ sở dữ liệu và kho lưu trữ trả lời (readiness)",
    responses={503: {"model": schemas.ErrorBody}},
)
async def readyz(services: AppServices, in_worker: InWorker) -> Any:
    def probe() -> None:
        with services.db.transaction() as session:
            session.execute(text("SELECT 1"))
        services.store.check()

    try:
        await in_worker(probe)
    except Exception as e:  # noqa: BLE001
        log.warning("not ready: %s", type(e).__name__)
        response = error_response(503, errors.NotReady.code, errors.NotReady.message)
        response.headers["Retry-After"] = str(services.settings.retry_after_seconds)
        return response
    return schemas.Health(status="ready")
