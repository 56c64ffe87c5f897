"""The platform operator's API (``/v1/operator/...``): operator keys only.

An operator key is created on the server's command line (``signing-service operator-key add``)
and belongs to no agency; agency keys (client and admin alike) get 403 ``FORBIDDEN`` here, and
an operator key gets 403 ``OPERATOR_KEY_NOT_AGENCY`` on every agency route. Through this API
the operator issues, lists, revokes and rotates agency keys; operator keys themselves are
issued and rotated only on the command line (a stolen operator key must not mint its own
successors), though any key, operator keys included, may be revoked here.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from signing_service import errors
from signing_service.api import schemas
from signing_service.api.deps import AppServices, InWorker, Operator, UniqueKeysRoute, actor_of
from signing_service.services import accounts
from signing_service.services.auth import OPERATOR_ROLE

# JSON bodies may not repeat a key (deps.UniqueKeysRoute).
router = APIRouter(route_class=UniqueKeysRoute)

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": schemas.ErrorBody},
    403: {"model": schemas.ErrorBody},
}


def _out(view: accounts.ApiKeyView) -> schemas.ApiKeyOut:
    return schemas.ApiKeyOut(**view.__dict__)


def _issued(issued: accounts.IssuedKey) -> schemas.ApiKeyIssued:
    return schemas.ApiKeyIssued(**issued.key.__dict__, api_key=issued.api_key)


@router.get(
    "/v1/operator/api-keys",
    response_model=list[schemas.ApiKeyOut],
    tags=["vận hành"],
    summary="Danh sách khóa API (không bao giờ kèm bí mật)",
    responses={**_ERRORS, 404: {"model": schemas.ErrorBody}, 422: {"model": schemas.ErrorBody}},
)
async def api_keys_list(
    caller: Operator,
    services: AppServices,
    in_worker: InWorker,
    agency: Annotated[str | None, Query(max_length=64, description="mã định danh cơ quan")] = None,
) -> list[schemas.ApiKeyOut]:
    views = await in_worker(accounts.list_api_keys, services, agency_code=agency)
    return [_out(v) for v in views]


@router.post(
    "/v1/operator/api-keys",
    status_code=201,
    response_model=schemas.ApiKeyIssued,
    tags=["vận hành"],
    summary="Cấp khóa API cho một hệ thống của cơ quan (khóa chỉ hiển thị một lần)",
    responses={**_ERRORS, 404: {"model": schemas.ErrorBody}, 422: {"model": schemas.ErrorBody}},
)
async def api_keys_create(
    body: schemas.ApiKeyIn, caller: Operator, services: AppServices, in_worker: InWorker
) -> schemas.ApiKeyIssued:
    if body.role == OPERATOR_ROLE:
        raise errors.OperatorKeyCliOnly()
    if body.role not in ("client", "admin"):
        raise errors.InvalidApiKeyRequest(
            "Vai trò phải là client hoặc admin (khóa của đơn vị vận hành chỉ được tạo bằng dòng "
            "lệnh).",
            details={"fields": ["role"]},
        )
    if body.agency_code is None:
        raise errors.InvalidApiKeyRequest(
            "Cần mã định danh cơ quan (agency_code).", details={"fields": ["agency_code"]}
        )
    issued = await in_worker(
        accounts.issue_api_key,
        services,
        agency_code=body.agency_code,
        name=body.name,
        role=body.role,
        actor=actor_of(caller),
        expires_in_days=body.expires_in_days,
    )
    return _issued(issued)


@router.post(
    "/v1/operator/api-keys/{key_id}/revoke",
    response_model=schemas.ApiKeyOut,
    tags=["vận hành"],
    summary="Thu hồi khóa API (ngừng hiệu lực ngay)",
    responses={**_ERRORS, 404: {"model": schemas.ErrorBody}, 409: {"model": schemas.ErrorBody}},
)
async def api_keys_revoke(
    key_id: str, caller: Operator, services: AppServices, in_worker: InWorker
) -> schemas.ApiKeyOut:
    view = await in_worker(accounts.revoke_api_key, services, key_id, actor=actor_of(caller))
    return _out(view)


@router.post(
    "/v1/operator/api-keys/{key_id}/rotate",
    status_code=201,
    response_model=schemas.ApiKeyRotated,
    tags=["vận hành"],
    summary="Xoay vòng khóa API: cấp khóa mới, khóa cũ còn hiệu lực trong thời gian chuyển tiếp",
    responses={
        **_ERRORS,
        404: {"model": schemas.ErrorBody},
        409: {"model": schemas.ErrorBody},
        422: {"model": schemas.ErrorBody},
    },
)
async def api_keys_rotate(
    key_id: str,
    caller: Operator,
    services: AppServices,
    in_worker: InWorker,
    body: schemas.ApiKeyRotateIn | None = None,
) -> schemas.ApiKeyRotated:
    overlap = (body or schemas.ApiKeyRotateIn()).overlap_hours
    issued, previous = await in_worker(
        accounts.rotate_api_key,
        services,
        key_id,
        actor=actor_of(caller),
        overlap_hours=overlap,
        allow_operator=False,
    )
    return schemas.ApiKeyRotated(new_key=_issued(issued), previous=_out(previous))
