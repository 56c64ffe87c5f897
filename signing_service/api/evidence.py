"""Evidence per signature (issue 12; services/evidence.py): the signature's record, its sealed
evidence ZIP, legal holds on signatures and documents, and the agency's retention."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from signing_service.api import schemas
from signing_service.api.deps import Admin, AppServices, Client, InWorker, UniqueKeysRoute, actor_of
from signing_service.services import evidence

# JSON bodies may not repeat a key (deps.UniqueKeysRoute).
router = APIRouter(route_class=UniqueKeysRoute)
_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": schemas.ErrorBody},
}


class EvidenceLegalHoldIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool
    reason: Annotated[str, Field(max_length=500), AfterValidator(schemas.clean_text)] | None = (
        Field(default=None, description="Lý do (căn cứ) phong tỏa")
    )


class RetentionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    document_kind: schemas.Text128 = Field(
        examples=["seal"],
        description="Loại văn bản (kiểu hiển thị chữ ký): person, seal, copy, annex, digitised, "
        "none, unspecified, hoặc * cho mọi loại chưa có thời hạn riêng",
    )
    years: int | None = Field(
        examples=[20], description="Số năm lưu từ thời điểm ký (1–100); null: bỏ thời hạn riêng"
    )


@router.get(
    "/v1/signatures/{signature_id}",
    summary="Thông tin một chữ ký: chứng thư, kết quả kiểm tra trước khi ký, bằng chứng lưu giữ",
    tags=["bằng chứng ký"],
    responses=_ERRORS,
)
async def signature_record(
    signature_id: str, caller: Client, services: AppServices, in_worker: InWorker
) -> dict[str, Any]:
    assert caller.agency_id is not None
    return await in_worker(evidence.signature_record, services, caller.agency_id, signature_id)


@router.get(
    "/v1/signatures/{signature_id}/evidence",
    summary="Tải gói bằng chứng của chữ ký (ZIP có manifest, niêm phong bằng con dấu của dịch vụ)",
    tags=["bằng chứng ký"],
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}}, **_ERRORS},
)
async def signature_evidence(
    signature_id: str, caller: Client, services: AppServices, in_worker: InWorker
) -> Response:
    data = await in_worker(
        evidence.evidence_zip, services, caller.agency, signature_id, actor=actor_of(caller)
    )
    return Response(
        data,
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="bang-chung-{signature_id}.zip"',
        },
    )


@router.put(
    "/v1/signatures/{signature_id}/legal-hold",
    summary="Bật/tắt phong tỏa pháp lý bằng chứng của một chữ ký (không bị xóa khi hết hạn)",
    tags=["bằng chứng ký"],
    responses={403: {"model": schemas.ErrorBody}, **_ERRORS},
)
async def signature_legal_hold(
    signature_id: str,
    body: EvidenceLegalHoldIn,
    caller: Admin,
    services: AppServices,
    in_worker: InWorker,
) -> dict[str, Any]:
    return await in_worker(
        evidence.set_legal_hold,
        services,
        caller.agency,
        "signature",
        signature_id,
        body.enabled,
        reason=body.reason,
        actor=actor_of(caller),
    )


@router.put(
    "/v1/documents/{document_id}/legal-hold",
    summary="Bật/tắt phong tỏa pháp lý một văn bản: giữ bằng chứng của mọi chữ ký trên nó",
    tags=["bằng chứng ký"],
    responses={403: {"model": schemas.ErrorBody}, **_ERRORS},
)
async def document_legal_hold(
    document_id: str,
    body: EvidenceLegalHoldIn,
    caller: Admin,
    services: AppServices,
    in_worker: InWorker,
) -> dict[str, Any]:
    return await in_worker(
        evidence.set_legal_hold,
        services,
        caller.agency,
        "document",
        document_id,
        body.enabled,
        reason=body.reason,
        actor=actor_of(caller),
    )


@router.get(
    "/v1/admin/evidence-retention",
    summary="Thời hạn lưu trữ bằng chứng ký của cơ quan theo loại văn bản",
    tags=["bằng chứng ký"],
)
async def retention_list(
    caller: Admin, services: AppServices, in_worker: InWorker
) -> dict[str, Any]:
    assert caller.agency_id is not None
    return await in_worker(evidence.list_retention, services, caller.agency_id)


@router.put(
    "/v1/admin/evidence-retention",
    summary="Đặt thời hạn lưu trữ bằng chứng ký cho một loại văn bản (1–100 năm)",
    tags=["bằng chứng ký"],
    responses={403: {"model": schemas.ErrorBody}, 422: {"model": schemas.ErrorBody}},
)
async def retention_set(
    body: RetentionIn, caller: Admin, services: AppServices, in_worker: InWorker
) -> dict[str, Any]:
    return await in_worker(
        evidence.set_retention,
        services,
        caller.agency,
        body.document_kind,
        body.years,
        actor=actor_of(caller),
    )
