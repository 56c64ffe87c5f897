"""An agency administrator's signing profiles (``/v1/admin/profiles``), the images visible
signatures show (``/v1/admin/appearance-images``: the agency's seal, its officers' handwritten
signatures) and the keys the operator registered for the agency (``/v1/admin/keys``,
read-only); admin keys only.

An administrator chooses among the agency's registered keys and the operator's TSAs by name;
nothing here registers key material or names a file, library, URL or secret source."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import Response

from signing_service.api import schemas
from signing_service.api.deps import Admin, AppServices, InWorker, UniqueKeysRoute, actor_of

# The profile use cases are imported by their endpoints on first use: they pull in pyHanko
# (~30 MB), which a process serving only attachments never needs.

# JSON bodies may not repeat a key (deps.UniqueKeysRoute).
router = APIRouter(route_class=UniqueKeysRoute)


@router.get(
    "/v1/admin/profiles",
    response_model=list[schemas.ProfileOut],
    tags=["quản trị"],
    summary="Các cấu hình ký số của cơ quan",
)
async def profiles_list(
    caller: Admin, services: AppServices, in_worker: InWorker
) -> list[schemas.ProfileOut]:
    from signing_service.services.profiles import list_profiles

    views = await in_worker(list_profiles, services, caller.agency)
    return [schemas.ProfileOut(**v.__dict__) for v in views]


@router.post(
    "/v1/admin/profiles",
    status_code=201,
    response_model=schemas.ProfileOut,
    tags=["quản trị"],
    summary="Tạo cấu hình ký số (khóa và chứng thư được kiểm tra)",
    responses={
        403: {"model": schemas.ErrorBody},
        409: {"model": schemas.ErrorBody},
        422: {"model": schemas.ErrorBody},
    },
)
async def profiles_create(
    body: schemas.ProfileIn, caller: Admin, services: AppServices, in_worker: InWorker
) -> schemas.ProfileOut:
    from signing_service.services.profiles import create_profile

    view = await in_worker(
        create_profile,
        services,
        caller.agency,
        body.model_dump(),
        actor=actor_of(caller),
    )
    return schemas.ProfileOut(**view.__dict__)


@router.get(
    "/v1/admin/profiles/{name}",
    summary="Xem một cấu hình ký số của cơ quan",
    response_model=schemas.ProfileOut,
    tags=["quản trị"],
    responses={404: {"model": schemas.ErrorBody}},
)
async def profiles_get(
    name: str, caller: Admin, services: AppServices, in_worker: InWorker
) -> schemas.ProfileOut:
    from signing_service.services.profiles import get_profile

    view = await in_worker(get_profile, services, caller.agency, name)
    return schemas.ProfileOut(**view.__dict__)


@router.patch(
    "/v1/admin/profiles/{name}",
    summary="Sửa một cấu hình ký số (chỉ các trường gửi lên)",
    response_model=schemas.ProfileOut,
    tags=["quản trị"],
    responses={404: {"model": schemas.ErrorBody}, 422: {"model": schemas.ErrorBody}},
)
async def profiles_update(
    name: str,
    body: schemas.ProfileChange,
    caller: Admin,
    services: AppServices,
    in_worker: InWorker,
) -> schemas.ProfileOut:
    from signing_service.services.profiles import update_profile

    view = await in_worker(
        update_profile,
        services,
        caller.agency,
        name,
        body.model_dump(exclude_unset=True),
        actor=actor_of(caller),
    )
    return schemas.ProfileOut(**view.__dict__)


@router.delete(
    "/v1/admin/profiles/{name}",
    summary="Ngừng dùng một cấu hình ký số",
    status_code=204,
    tags=["quản trị"],
    responses={404: {"model": schemas.ErrorBody}},
)
async def profiles_disable(
    name: str, caller: Admin, services: AppServices, in_worker: InWorker
) -> Response:
    from signing_service.services.profiles import disable_profile

    await in_worker(disable_profile, services, caller.agency, name, actor=actor_of(caller))
    return Response(status_code=204)


@router.get(
    "/v1/admin/keys",
    response_model=list[schemas.AgencyKeyOut],
    tags=["quản trị"],
    summary="Các khóa ký và chứng thư người ký đã được đơn vị vận hành đăng ký cho cơ quan",
)
async def keys_list(
    caller: Admin, services: AppServices, in_worker: InWorker
) -> list[schemas.AgencyKeyOut]:
    from signing_service.services.keys import agency_keys

    views = await in_worker(agency_keys, services, caller.agency)
    return [
        schemas.AgencyKeyOut(
            name=v.name,
            kind=v.kind,
            subject=v.subject,
            certificate_sha256=v.certificate_sha256,
            not_after=v.not_after,
            created_at=v.created_at,
        )
        for v in views
    ]


@router.get(
    "/v1/admin/appearance-images",
    response_model=list[schemas.AppearanceImageOut],
    tags=["quản trị"],
    summary="Các ảnh con dấu và chữ ký tay của cơ quan",
)
async def images_list(
    caller: Admin, services: AppServices, in_worker: InWorker
) -> list[schemas.AppearanceImageOut]:
    from signing_service.services.appearance_images import list_images

    views = await in_worker(list_images, services, caller.agency)
    return [schemas.AppearanceImageOut(**v.__dict__) for v in views]


@router.post(
    "/v1/admin/appearance-images",
    status_code=201,
    response_model=schemas.AppearanceImageOut,
    tags=["quản trị"],
    summary="Tải lên ảnh con dấu hoặc chữ ký tay (PNG nền trong suốt)",
    responses={409: {"model": schemas.ErrorBody}, 422: {"model": schemas.ErrorBody}},
)
async def images_upload(
    caller: Admin,
    services: AppServices,
    in_worker: InWorker,
    file: Annotated[UploadFile, File(description="Ảnh PNG nền trong suốt, tối đa 1 MB")],
    name: Annotated[str, Form(max_length=64, examples=["con-dau-so-tu-phap"])],
    role: Annotated[str, Form(max_length=16, description="seal | signature")],
    width_mm: Annotated[float, Form(description="chiều rộng khi in (mm), 5-120")],
    officer: Annotated[str | None, Form(max_length=255, description="người ký")] = None,
) -> schemas.AppearanceImageOut:
    from signing_service.services.appearance_images import upload_image
    from signing_service.signing.stamp_images import MAX_IMAGE_BYTES

    # One byte more than allowed: an oversized image is told apart and refused (422).
    data = await file.read(MAX_IMAGE_BYTES + 1)
    view = await in_worker(
        upload_image,
        services,
        caller.agency,
        name=name,
        role=role,
        width_mm=width_mm,
        officer=officer,
        data=data,
        actor=actor_of(caller),
    )
    return schemas.AppearanceImageOut(**view.__dict__)


@router.delete(
    "/v1/admin/appearance-images/{name}",
    summary="Xóa một hình ảnh chữ ký / con dấu chưa được cấu hình nào dùng",
    status_code=204,
    tags=["quản trị"],
    responses={404: {"model": schemas.ErrorBody}, 409: {"model": schemas.ErrorBody}},
)
async def images_delete(
    name: str, caller: Admin, services: AppServices, in_worker: InWorker
) -> Response:
    from signing_service.services.appearance_images import delete_image

    await in_worker(delete_image, services, caller.agency, name, actor=actor_of(caller))
    return Response(status_code=204)
