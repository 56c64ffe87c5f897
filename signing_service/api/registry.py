"""The registry of issued documents (issue 11): the anonymous public record
(``GET /v1/registry/{public_id}``) and the issuing agency's record and status changes
(``/v1/registered-documents/{public_id}``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from signing_service import errors
from signing_service.api import schemas
from signing_service.api.deps import (
    AppServices,
    Client,
    InWorker,
    UniqueKeysRoute,
    VerificationThreads,
    actor_of,
)
from signing_service.services import registry

# JSON bodies may not repeat a key (deps.UniqueKeysRoute).
router = APIRouter(route_class=UniqueKeysRoute)

NOT_FOUND = {404: {"model": schemas.ErrorBody, "description": "REGISTRY_RECORD_NOT_FOUND"}}


def _public(services: Any, public_id: str) -> dict[str, Any]:
    record = registry.lookup_public_id(services, public_id)
    if record is None:
        # Malformed, unknown: one answer (the id is not echoed).
        raise errors.RegistryRecordNotFound()
    return record.to_public_dict()


@router.get(
    "/v1/registry/{public_id}",
    response_model=schemas.PublicRecordOut,
    tags=["sổ đăng ký"],
    summary="Tra cứu công khai một văn bản trong sổ đăng ký văn bản đã phát hành",
    description=(
        "Chỉ thông tin công khai: cơ quan, loại chữ ký, mã hồ sơ, mã kết quả, số ký hiệu, "
        "thời điểm phát hành, trạng thái (in_force | revoked | superseded). Không bao giờ có "
        "nội dung văn bản hay thông tin người nộp hồ sơ. Không cần khóa API."
    ),
    responses={**NOT_FOUND, 429: {"model": schemas.ErrorBody}, 503: {"model": schemas.ErrorBody}},
)
async def public_record(
    public_id: str, services: AppServices, in_lane: VerificationThreads
) -> dict[str, Any]:
    # The public lane's threads: anonymous lookups never take the threads agencies sign with.
    return await in_lane(_public, services, public_id)


@router.get(
    "/v1/registered-documents/{public_id}",
    response_model=schemas.AgencyRecordOut,
    tags=["sổ đăng ký"],
    summary="Bản ghi đầy đủ của một văn bản do cơ quan phát hành",
    responses=NOT_FOUND,
)
async def agency_record(
    public_id: str, caller: Client, services: AppServices, in_worker: InWorker
) -> dict[str, Any]:
    assert caller.agency is not None
    record = await in_worker(registry.get_for_agency, services, caller.agency, public_id)
    return record.to_agency_dict()


@router.post(
    "/v1/registered-documents/{public_id}/revoke",
    response_model=schemas.AgencyRecordOut,
    tags=["sổ đăng ký"],
    summary="Thu hồi một văn bản đã phát hành (trạng thái cuối cùng)",
    responses={
        **NOT_FOUND,
        409: {"model": schemas.ErrorBody, "description": "REGISTRY_STATUS_FINAL"},
        422: {"model": schemas.ErrorBody, "description": "INVALID_REGISTRY_REASON"},
    },
)
async def revoke(
    public_id: str,
    body: schemas.RevokeIn,
    caller: Client,
    services: AppServices,
    in_worker: InWorker,
) -> dict[str, Any]:
    assert caller.agency is not None
    record = await in_worker(
        registry.revoke,
        services,
        caller.agency,
        public_id,
        reason=body.reason,
        actor=actor_of(caller),
    )
    return record.to_agency_dict()


@router.post(
    "/v1/registered-documents/{public_id}/supersede",
    response_model=schemas.AgencyRecordOut,
    tags=["sổ đăng ký"],
    summary="Đánh dấu văn bản đã được thay thế bởi một văn bản khác của cơ quan",
    responses={
        **NOT_FOUND,
        409: {"model": schemas.ErrorBody, "description": "REGISTRY_STATUS_FINAL"},
        422: {
            "model": schemas.ErrorBody,
            "description": "INVALID_REGISTRY_REASON | INVALID_SUPERSEDING_DOCUMENT",
        },
    },
)
async def supersede(
    public_id: str,
    body: schemas.SupersedeIn,
    caller: Client,
    services: AppServices,
    in_worker: InWorker,
) -> dict[str, Any]:
    assert caller.agency is not None
    record = await in_worker(
        registry.supersede,
        services,
        caller.agency,
        public_id,
        superseded_by=body.superseded_by,
        reason=body.reason,
        actor=actor_of(caller),
    )
    return record.to_agency_dict()
