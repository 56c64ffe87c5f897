"""Signing: one document, the two-step flow for a signer's own token (external start and
complete) and batches (``/v1/signatures``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import (
    APIRouter,
    Depends,
    File,
    Form,
    Header,
    Query,
    Request,
    Response,
    UploadFile,
)
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator
from starlette.datastructures import QueryParams
from starlette.requests import ClientDisconnect

from signing_service import errors
from signing_service.api import schemas
from signing_service.api.deps import (
    AppServices,
    Client,
    InWorker,
    UniqueKeysRoute,
    WorkerThreads,
    actor_of,
    document_out,
    read_upload,
)
from signing_service.services.documents import (
    MAX_FILENAME_CHARS,
    base_filename,
    batch_codes,
    check_filename,
    printable,
)
from signing_service.store.models import Agency

if TYPE_CHECKING:
    from signing_service.services.container import Services
    from signing_service.services.signing import QrRequest, SignResult
    from signing_service.settings import Settings
    from signing_service.store.models import ApiClient

# The signing and two-step use cases are imported by their endpoints on first use: they pull in
# pyHanko (~30 MB), which a process serving only attachments never needs.

# JSON bodies may not repeat a key (deps.UniqueKeysRoute).
router = APIRouter(route_class=UniqueKeysRoute)

# Fields that may repeat (the batch's documents); any other field sent twice is refused: the
# last one silently won, so a gateway or audit proxy reading the first saw another request than
# the one executed (red team, issue 9).
_REPEATABLE = frozenset({"files"})


def _declared_fields(request: Request) -> frozenset[str] | None:
    """The form fields the endpoint declares (its body parameters), ``None`` when unknown."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return None
    return frozenset(field.alias for field in dependant.body_params)


# Headers that carry one value: sent twice, the first silently won (red team 15, F6).
_SINGLE_HEADERS = ("Idempotency-Key", "X-Signer-Authorization")


def repeated_headers(request: Request) -> list[dict[str, Any]]:
    """One validation problem per single-valued header the request sends more than once."""
    return [
        {"loc": ("header", name), "msg": "tiêu đề bị gửi nhiều lần", "type": "value_error"}
        for name in _SINGLE_HEADERS
        if len(request.headers.getlist(name)) > 1
    ]


async def single_headers(request: Request) -> None:
    """422 ``INVALID_REQUEST`` when a single-valued header is sent more than once."""
    problems = repeated_headers(request)
    if problems:
        raise RequestValidationError(problems)


async def _single_valued(request: Request) -> None:
    """422 ``INVALID_REQUEST`` naming each single-valued form field sent more than once, and
    each field the endpoint does not take. The form is the one FastAPI already parsed for the
    endpoint (Starlette caches it).

    Unknown fields were ignored: a batch sent with ``dossier_code`` was signed and stored
    without it, and the caller never learnt (issue 10); a misspelt ``result_code`` would
    do the same."""
    form = await request.form()
    repeated = sorted(
        {name for name in form if name not in _REPEATABLE and len(form.getlist(name)) > 1}
    )
    declared = _declared_fields(request)
    unknown = sorted({name for name in form if declared is not None and name not in declared})
    problems = (
        repeated_headers(request)
        + [
            {"loc": ("body", name), "msg": "trường bị gửi nhiều lần", "type": "value_error"}
            for name in repeated
        ]
        + [
            {
                "loc": ("body", name),
                "msg": "trường không được hỗ trợ ở yêu cầu này",
                "type": "value_error",
            }
            for name in unknown
        ]
    )
    if problems:
        raise RequestValidationError(problems)


SINGLE_VALUED = [Depends(_single_valued)]

# Form fields reach the database (profile names, dossier codes) and key sources: checked at
# the edge for length and control characters, the same on both databases (422).
CLEAN = AfterValidator(schemas.clean_text)

RESULT_CODE_FIELD = Form(
    description="Mã kết quả {mã hồ sơ}-KQ{n} (Nghị định 45/2020, Điều 14.3), hoặc auto: "
    "dịch vụ cấp số tiếp theo của hồ sơ (cần dossier_code)",
    examples=["auto", "000.00.12.H12-261127-0001-KQ1"],
    max_length=64,
)
QR_FIELD = Annotated[
    bool,
    Form(
        description="Thêm mã QR (Thông tư 01/2023/TT-VPCP) ở góc trên bên trái trang 1: mã "
        "hồ sơ, mã thủ tục, tên văn bản, hệ thống phát hành, thời gian, liên kết tra cứu"
    ),
]
PROCEDURE_CODE_FIELD = Annotated[
    str | None,
    Form(description="Mã thủ tục hành chính (cho mã QR)", examples=["1.001234"], max_length=64),
]
APPLICANT_ID_FIELD = Annotated[
    str | None,
    Form(
        description="Mã định danh người nộp hồ sơ (cho mã QR): số định danh cá nhân hoặc mã số "
        "doanh nghiệp",
        max_length=32,
    ),
]
DOCUMENT_NAME_FIELD = Annotated[
    str | None,
    Form(description="Tên văn bản (cho mã QR; mặc định: tên tệp)", max_length=255),
    CLEAN,
]
# The batch's per-document codes: a JSON array in file order (README, batch signing).
MAX_CODES_CHARS = 256 * 1024


# A prepared empty signature field to fill (placement, issue 10): one-step, two-step, batch.
FieldNameField = Annotated[
    str | None,
    Form(
        description="Tên trường chữ ký trống có sẵn trong tài liệu cần điền (tùy chọn); "
        "mặc định: trường của cấu hình ký số, hoặc trường trống duy nhất của tài liệu",
        examples=["ChuKyLanhDao"],
        max_length=128,
    ),
    CLEAN,
]
# The appearance fields of a sign request (issue 10): checked by the use case, which answers
# UNKNOWN_APPEARANCE_KIND / INVALID_DOCUMENT_NUMBER / APPEARANCE_INCOMPLETE.
AppearanceKindField = Annotated[
    str | None,
    Form(
        description="hình thức chữ ký thay cho của cấu hình: person, seal, copy, annex, "
        "digitised, none",
        max_length=16,
    ),
    CLEAN,
]
CopyKindField = Annotated[
    str | None,
    Form(description="với copy: SAO Y, SAO LỤC hoặc TRÍCH SAO", max_length=16),
    CLEAN,
]
DocumentNumberField = Annotated[
    str | None,
    Form(
        description="với annex: số, ký hiệu văn bản chính", examples=["123/QĐ-STP"], max_length=64
    ),
    CLEAN,
]


def _echo(filename: str | None) -> str | None:
    """A refused document's file name as the answer may carry it (control characters
    escaped, cut to the longest accepted name)."""
    return printable(filename, MAX_FILENAME_CHARS) if filename else filename


def _qr_request(
    qr: bool, procedure_code: str | None, document_name: str | None, applicant_id: str | None
) -> QrRequest | None:
    """The QR code asked for, or ``None``; its fields without ``qr=true`` are refused, not
    ignored (422 ``INVALID_REQUEST`` naming them, as every other field refusal)."""
    from signing_service.services.signing import QrRequest

    given = {
        "procedure_code": procedure_code or None,
        "document_name": document_name or None,
        "applicant_id": applicant_id or None,
    }
    if not qr:
        unused = [name for name, value in given.items() if value is not None]
        if unused:
            raise errors.InvalidRequestFields(
                "Các trường procedure_code, document_name, applicant_id chỉ dùng cùng qr=true.",
                details={"fields": unused},
            )
        return None
    return QrRequest(**given)


def _signature_out(result: SignResult) -> schemas.SignatureOut:
    return schemas.SignatureOut(
        signature_id=result.signature_id,
        level=result.level,
        profile=result.profile,
        signed_at=result.signed_at,
        certificate_sha256=result.certificate_sha256,
        document=document_out(result.document),
        input_document=document_out(result.input_document),
        repaired=result.repaired,
        registry=_registry_ref(result),
        existing_signatures=_existing_out(result.existing_signatures),
    )


def _existing_out(found: Any) -> list[schemas.ExistingSignatureOut]:
    """The earlier signatures of a signed document (services/existing.py), for an answer."""
    return [schemas.ExistingSignatureOut(**item.to_dict()) for item in found]


def _registry_ref(result: SignResult) -> schemas.RegistryRefOut | None:
    if result.public_id is None:
        return None
    return schemas.RegistryRefOut(public_id=result.public_id, link=result.link)


@router.post(
    "/v1/signatures",
    status_code=201,
    response_model=schemas.SignatureOut,
    tags=["ký số"],
    summary="Ký số một tài liệu PDF bằng cấu hình ký số của cơ quan",
    responses={
        200: {"model": schemas.SignatureOut, "description": "Gửi lại cùng Idempotency-Key"},
        401: {"model": schemas.ErrorBody},
        404: {"model": schemas.ErrorBody},
        409: {"model": schemas.ErrorBody},
        413: {"model": schemas.ErrorBody},
        503: {"model": schemas.ErrorBody},
    },
    dependencies=SINGLE_VALUED,
)
async def create_signature(
    caller: Client,
    services: AppServices,
    in_worker: InWorker,
    response: Response,
    file: Annotated[UploadFile, File(description="Tài liệu PDF cần ký")],
    profile: Annotated[
        str,
        Form(description="Tên cấu hình ký số", examples=["agency-a-seal"], max_length=128),
        CLEAN,
    ],
    level: Annotated[
        str | None, Form(description="B-B, B-T, B-LT hoặc B-LTA", max_length=16), CLEAN
    ] = None,
    # Not CLEAN: matched whole against the dossier-code pattern, which refuses control
    # characters with the more precise INVALID_DOSSIER_CODE.
    dossier_code: Annotated[
        str | None,
        Form(
            description="Mã hồ sơ, hoặc mã kết quả {mã hồ sơ}-KQ{n}",
            examples=["000.00.12.H12-261127-0001"],
            max_length=64,
        ),
    ] = None,
    result_code: Annotated[str | None, RESULT_CODE_FIELD] = None,  # matched whole later
    authorization: Annotated[
        str | None,
        Form(description="Ký từ xa (CSC): mã PIN/OTP của người ký", max_length=1024),
        CLEAN,
    ] = None,
    field_name: FieldNameField = None,
    appearance_kind: AppearanceKindField = None,
    copy_kind: CopyKindField = None,
    document_number: DocumentNumberField = None,
    qr: QR_FIELD = False,
    procedure_code: PROCEDURE_CODE_FIELD = None,  # matched whole later
    document_name: DOCUMENT_NAME_FIELD = None,
    applicant_id: APPLICANT_ID_FIELD = None,  # matched whole later
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Khóa chống ký trùng khi gửi lại (tối đa 128 ký tự chữ, số, '-', '_', "
            "'.', ':'; riêng cho mỗi cơ quan): gửi lại cùng khóa và cùng yêu cầu trả về chữ ký "
            "đã tạo (200), không ký thêm; cùng khóa với yêu cầu khác: 409",
        ),
    ] = None,
) -> schemas.SignatureOut:
    return await _sign_request(
        caller,
        services,
        in_worker,
        response,
        lambda: read_upload(file, services.settings),
        filename=file.filename,
        profile=profile,
        level=level,
        dossier_code=dossier_code,
        result_code=result_code,
        authorization=authorization,
        field_name=field_name,
        appearance_kind=appearance_kind,
        copy_kind=copy_kind,
        document_number=document_number,
        qr=qr,
        procedure_code=procedure_code,
        document_name=document_name,
        applicant_id=applicant_id,
        idempotency_key=idempotency_key,
    )


async def _sign_request(
    caller: ApiClient,
    services: Services,
    in_worker: WorkerThreads,
    response: Response,
    read: Callable[[], Awaitable[bytes]],
    *,
    filename: str | None,
    profile: str,
    level: str | None,
    dossier_code: str | None,
    result_code: str | None,
    authorization: str | None,
    field_name: str | None,
    appearance_kind: str | None,
    copy_kind: str | None,
    document_number: str | None,
    qr: bool,
    procedure_code: str | None,
    document_name: str | None,
    applicant_id: str | None,
    idempotency_key: str | None,
) -> schemas.SignatureOut:
    """One document signed, whichever form carried it (multipart or the raw body): the same
    checks in the same order, the same use case. ``read``: the document's bytes, called after
    the request's own fields are checked (a malformed request is refused before its body is
    read)."""
    from signing_service.services.appearance_images import AppearanceRequest
    from signing_service.services.signing import check_idempotency_key, sign_document

    # Kept as its base name, without format characters (documents.base_filename).
    filename = check_filename(filename)
    # A malformed key is refused before the file is read (422 INVALID_IDEMPOTENCY_KEY).
    check_idempotency_key(idempotency_key)
    qr_request = _qr_request(qr, procedure_code, document_name, applicant_id)
    data = await read()
    agency: Agency = caller.agency
    result = await in_worker(
        sign_document,
        services,
        agency,
        profile_name=profile,
        pdf=data,
        level=level,
        filename=filename,
        dossier_code=dossier_code,
        result_code=result_code,
        actor=actor_of(caller),
        authorization=authorization,
        field_name=field_name,
        appearance=AppearanceRequest(
            kind=appearance_kind, copy_kind=copy_kind, document_number=document_number
        ),
        qr=qr_request,
        idempotency_key=idempotency_key,
    )
    response.headers["Location"] = f"/v1/documents/{result.document.id}"
    if result.replayed:
        response.status_code = 200
    return _signature_out(result)


# The raw-body form of POST /v1/signatures (issue 9, the API's cost per signature): the PDF is
# the request body (Content-Type: application/pdf), the fields are query parameters, the
# remote-signing PIN/OTP a header (a query string lands in access logs and proxies). No
# multipart framing to parse: about 1 ms of CPU less per 1 MB document (bench/run.py, the
# "raw" API rows).
RAW_SIGNATURES_PATH = "/v1/signatures/raw"
PDF_MEDIA_TYPE = "application/pdf"


async def _single_valued_query(request: Request) -> None:
    """422 ``INVALID_REQUEST`` naming each query parameter sent more than once or not taken by
    the endpoint: as :func:`_single_valued` for form fields (a repeated field's last value
    silently won; a misspelt one was ignored)."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    declared = (
        frozenset(field.alias for field in dependant.query_params)
        if dependant is not None
        else None
    )
    names = [name for name, _ in request.query_params.multi_items()]
    repeated = sorted({name for name in names if names.count(name) > 1})
    unknown = sorted({name for name in names if declared is not None and name not in declared})
    problems = (
        repeated_headers(request)
        + [
            {"loc": ("query", name), "msg": "trường bị gửi nhiều lần", "type": "value_error"}
            for name in repeated
        ]
        + [
            {
                "loc": ("query", name),
                "msg": "trường không được hỗ trợ ở yêu cầu này",
                "type": "value_error",
            }
            for name in unknown
        ]
    )
    if problems:
        raise RequestValidationError(problems)
    items = request.query_params.multi_items()
    if any(value == "" for _, value in items):
        # An empty query value is an absent field, as an empty form field is on the multipart
        # form (FastAPI's rule for Form, not for Query): a client that sends every parameter,
        # empty when unset, gets the same answers from both forms (red team 15b, R6). Set on
        # the request before FastAPI reads the endpoint's query parameters (route
        # dependencies are solved first), through Starlette's cached QueryParams.
        request._query_params = QueryParams([(k, v) for k, v in items if v != ""])


async def read_pdf_body(request: Request, settings: Settings) -> bytes:
    """The raw request body of a PDF upload, at most ``settings.max_document_bytes + 1`` bytes
    (one more than any use case allows, so it can refuse an oversized file with 413, as
    :func:`read_upload` does for multipart). 415 ``INVALID_REQUEST`` unless the body is
    declared ``application/pdf`` (parameters such as ``; charset`` aside); the bytes are
    then checked as every upload is (EMPTY_FILE, NOT_A_PDF, FILE_TOO_LARGE)."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != PDF_MEDIA_TYPE:
        raise errors.UnsupportedMediaType()
    limit = settings.max_document_bytes + 1
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            chunks.append(chunk)
            size += len(chunk)
            if size >= limit:
                break
    except ClientDisconnect:
        # The client hung up, or the body read timed out: as for a multipart upload
        # (api/uploads.py), not a 500 (red team 15b, R1).
        raise errors.UploadIncomplete() from None
    # One copy of the body (the chunks joined), as the multipart form's read makes.
    data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    return data[:limit] if len(data) > limit else data


_RAW_BODY = {
    "requestBody": {
        "required": True,
        "description": "Tài liệu PDF cần ký (toàn bộ nội dung yêu cầu)",
        "content": {PDF_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
    }
}


@router.post(
    RAW_SIGNATURES_PATH,
    status_code=201,
    response_model=schemas.SignatureOut,
    tags=["ký số"],
    summary="Ký số một tài liệu PDF gửi nguyên dạng (application/pdf), các trường ở tham số "
    "truy vấn",
    description="Cùng yêu cầu và cùng kết quả như POST /v1/signatures, không đóng gói "
    "multipart: nội dung yêu cầu là tệp PDF (Content-Type: application/pdf), các trường là "
    "tham số truy vấn; mã PIN/OTP ký từ xa ở tiêu đề X-Signer-Authorization.",
    responses={
        200: {"model": schemas.SignatureOut, "description": "Gửi lại cùng Idempotency-Key"},
        401: {"model": schemas.ErrorBody},
        404: {"model": schemas.ErrorBody},
        409: {"model": schemas.ErrorBody},
        413: {"model": schemas.ErrorBody},
        415: {"model": schemas.ErrorBody},
        503: {"model": schemas.ErrorBody},
    },
    dependencies=[Depends(_single_valued_query)],
    openapi_extra=_RAW_BODY,
)
async def create_signature_raw(
    caller: Client,
    services: AppServices,
    in_worker: InWorker,
    request: Request,
    response: Response,
    profile: Annotated[
        str,
        Query(description="Tên cấu hình ký số", examples=["agency-a-seal"], max_length=128),
        CLEAN,
    ],
    filename: Annotated[
        str | None,
        Query(description="Tên tệp (tùy chọn)", examples=["quyet-dinh.pdf"]),
    ] = None,  # checked whole by check_filename (INVALID_FILENAME), as a multipart name
    level: Annotated[
        str | None, Query(description="B-B, B-T, B-LT hoặc B-LTA", max_length=16), CLEAN
    ] = None,
    dossier_code: Annotated[
        str | None,
        Query(
            description="Mã hồ sơ, hoặc mã kết quả {mã hồ sơ}-KQ{n}",
            examples=["000.00.12.H12-261127-0001"],
            max_length=64,
        ),
    ] = None,  # matched whole later
    result_code: Annotated[
        str | None,
        Query(
            description="Mã kết quả {mã hồ sơ}-KQ{n}, hoặc auto (cần dossier_code)",
            max_length=64,
        ),
    ] = None,  # matched whole later
    field_name: Annotated[
        str | None, Query(description="Tên trường chữ ký trống cần điền", max_length=128), CLEAN
    ] = None,
    appearance_kind: Annotated[
        str | None,
        Query(description="person, seal, copy, annex, digitised, none", max_length=16),
        CLEAN,
    ] = None,
    copy_kind: Annotated[
        str | None,
        Query(description="với copy: SAO Y, SAO LỤC hoặc TRÍCH SAO", max_length=16),
        CLEAN,
    ] = None,
    document_number: Annotated[
        str | None,
        Query(description="với annex: số, ký hiệu văn bản chính", max_length=64),
        CLEAN,
    ] = None,
    qr: Annotated[bool, Query(description="Thêm mã QR (Thông tư 01/2023/TT-VPCP)")] = False,
    procedure_code: Annotated[str | None, Query(max_length=64)] = None,  # matched whole later
    document_name: Annotated[str | None, Query(max_length=255), CLEAN] = None,
    applicant_id: Annotated[str | None, Query(max_length=32)] = None,  # matched whole later
    signer_authorization: Annotated[
        str | None,
        Header(
            alias="X-Signer-Authorization",
            description="Ký từ xa (CSC): mã PIN/OTP của người ký",
            max_length=1024,
        ),
        CLEAN,
    ] = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Như ở POST /v1/signatures",
        ),
    ] = None,
) -> schemas.SignatureOut:
    return await _sign_request(
        caller,
        services,
        in_worker,
        response,
        lambda: read_pdf_body(request, services.settings),
        filename=filename,
        profile=profile,
        level=level,
        dossier_code=dossier_code,
        result_code=result_code,
        authorization=signer_authorization,
        field_name=field_name,
        appearance_kind=appearance_kind,
        copy_kind=copy_kind,
        document_number=document_number,
        qr=qr,
        procedure_code=procedure_code,
        document_name=document_name,
        applicant_id=applicant_id,
        idempotency_key=idempotency_key,
    )


@router.post(
    "/v1/signatures/external",
    status_code=201,
    response_model=schemas.ExternalStartOut,
    tags=["ký số"],
    summary="Ký hai bước, bước 1: chuẩn bị tài liệu, trả về dữ liệu cần ký bằng USB token",
    responses={
        200: {"model": schemas.ExternalStartOut, "description": "Gửi lại cùng Idempotency-Key"},
        401: {"model": schemas.ErrorBody},
        404: {"model": schemas.ErrorBody},
        409: {"model": schemas.ErrorBody},
        422: {"model": schemas.ErrorBody},
    },
    dependencies=SINGLE_VALUED,
)
async def external_start(
    caller: Client,
    services: AppServices,
    in_worker: InWorker,
    response: Response,
    file: Annotated[UploadFile, File(description="Tài liệu PDF cần ký")],
    profile: Annotated[str, Form(examples=["agency-a-officer"], max_length=128), CLEAN],
    certificate: Annotated[
        UploadFile | None,
        File(
            description="Chứng thư số người ký (PEM/DER): phải là một chứng thư đã được đơn vị "
            "vận hành đăng ký cho cơ quan"
        ),
    ] = None,
    officer: Annotated[
        str | None,
        Form(
            description="Hoặc: tên chứng thư người ký đã đăng ký (GET /v1/admin/keys)",
            examples=["nguyen-van-an"],
            max_length=128,
        ),
        CLEAN,
    ] = None,
    level: Annotated[str | None, Form(description="B-B hoặc B-T", max_length=16), CLEAN] = None,
    dossier_code: Annotated[str | None, Form(max_length=64)] = None,  # matched whole later
    field_name: FieldNameField = None,
    result_code: Annotated[str | None, RESULT_CODE_FIELD] = None,
    qr: QR_FIELD = False,
    procedure_code: PROCEDURE_CODE_FIELD = None,
    document_name: DOCUMENT_NAME_FIELD = None,
    applicant_id: APPLICANT_ID_FIELD = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Khóa chống tạo trùng phiên khi gửi lại: cùng khóa và cùng yêu cầu trả "
            "về phiên đã tạo (200); cùng khóa với yêu cầu khác: 409",
        ),
    ] = None,
) -> schemas.ExternalStartOut:
    from signing_service.services.external import start_external
    from signing_service.services.signing import check_idempotency_key

    filename = check_filename(file.filename)
    check_idempotency_key(idempotency_key)
    qr_request = _qr_request(qr, procedure_code, document_name, applicant_id)
    data = await read_upload(file, services.settings)
    cert = await certificate.read(256 * 1024) if certificate is not None else None
    started = await in_worker(
        start_external,
        services,
        caller.agency,
        profile_name=profile,
        pdf=data,
        certificate=cert,
        officer=officer,
        level=level,
        filename=filename,
        dossier_code=dossier_code,
        result_code=result_code,
        actor=actor_of(caller),
        field_name=field_name,
        qr=qr_request,
        idempotency_key=idempotency_key,
    )
    if started.replayed:
        response.status_code = 200
    fields = {
        k: v for k, v in started.__dict__.items() if k not in ("replayed", "existing_signatures")
    }
    return schemas.ExternalStartOut(
        **fields,
        complete_url=f"/v1/signatures/external/{started.session_id}/complete",
        existing_signatures=_existing_out(started.existing_signatures),
    )


@router.post(
    "/v1/signatures/external/{session_id}/complete",
    status_code=201,
    response_model=schemas.SignatureOut,
    tags=["ký số"],
    summary="Ký hai bước, bước 2: gửi chữ ký (hoặc gói CMS) để hoàn tất",
    responses={
        401: {"model": schemas.ErrorBody},
        404: {"model": schemas.ErrorBody},
        409: {"model": schemas.ErrorBody},
        410: {"model": schemas.ErrorBody},
        422: {"model": schemas.ErrorBody},
    },
)
async def external_complete(
    session_id: str,
    body: schemas.ExternalCompleteIn,
    caller: Client,
    services: AppServices,
    in_worker: InWorker,
    response: Response,
) -> schemas.SignatureOut:
    import base64
    import binascii

    from signing_service.services.external import complete_external

    if (body.signature is None) == (body.cms is None):
        raise errors.InvalidRequest("Gửi đúng một trong hai trường: signature hoặc cms.")
    try:
        raw = base64.b64decode(body.signature, validate=True) if body.signature else None
        cms = base64.b64decode(body.cms, validate=True) if body.cms else None
    except (binascii.Error, ValueError):
        raise errors.InvalidRequest("Chữ ký phải được mã hóa base64.") from None
    result = await in_worker(
        complete_external,
        services,
        caller.agency,
        session_id,
        signature=raw,
        signature_cms=cms,
        actor=actor_of(caller),
    )
    response.headers["Location"] = f"/v1/documents/{result.document.id}"
    return _signature_out(result)


@router.post(
    "/v1/signatures/batch",
    response_model=schemas.BatchOut,
    tags=["ký số"],
    summary="Ký hàng loạt: nhiều tài liệu, một cấu hình ký số, một lần xác thực",
    responses={
        401: {"model": schemas.ErrorBody},
        404: {"model": schemas.ErrorBody},
        409: {"model": schemas.ErrorBody},
        413: {"model": schemas.ErrorBody},
        422: {"model": schemas.ErrorBody},
    },
    dependencies=SINGLE_VALUED,
)
async def create_batch(
    caller: Client,
    services: AppServices,
    in_worker: InWorker,
    files: Annotated[list[UploadFile], File(description="Các tài liệu PDF cần ký")],
    profile: Annotated[str, Form(description="Tên cấu hình ký số", max_length=128), CLEAN],
    level: Annotated[
        str | None, Form(description="B-B, B-T, B-LT hoặc B-LTA", max_length=16), CLEAN
    ] = None,
    authorization: Annotated[
        str | None,
        Form(description="Ký từ xa (CSC): một lần xác thực cho cả lô", max_length=1024),
        CLEAN,
    ] = None,
    field_name: FieldNameField = None,
    appearance_kind: AppearanceKindField = None,
    copy_kind: CopyKindField = None,
    document_number: DocumentNumberField = None,
    codes: Annotated[
        str | None,
        Form(
            description="Mã của từng tài liệu: mảng JSON theo thứ tự tệp, mỗi phần tử null "
            'hoặc {"dossier_code": ..., "result_code": ...}',
            examples=['[{"dossier_code": "000.00.12.H12-261127-0001", "result_code": "auto"}]'],
            max_length=MAX_CODES_CHARS,
        ),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Khóa chống ký trùng khi gửi lại cả lô (tối đa 122 ký tự chữ, số, '-', "
            "'_', '.', ':'; riêng cho mỗi cơ quan): gửi lại cùng khóa và cùng lô trả về các chữ "
            "ký đã tạo (replayed), chỉ ký lại các tài liệu chưa ký được; cùng khóa với lô khác: "
            "409",
        ),
    ] = None,
) -> schemas.BatchOut:
    from signing_service.services.appearance_images import AppearanceRequest
    from signing_service.services.signing import check_batch_idempotency_key, sign_batch

    # A malformed key is refused before the files are read (422 INVALID_IDEMPOTENCY_KEY).
    check_batch_idempotency_key(idempotency_key)
    settings = services.settings
    if len(files) > settings.max_batch_documents:
        raise errors.BatchTooLarge(
            f"Mỗi lô ký tối đa {settings.max_batch_documents} tài liệu.",
            details={"max_documents": settings.max_batch_documents},
        )
    per_document = batch_codes(codes, len(files), caller.agency.code)
    # Base names (a name with a control character is kept whole: its document is refused
    # INVALID_FILENAME in its place).
    items = [
        (base_filename(upload.filename), await read_upload(upload, services.settings))
        for upload in files
    ]
    results = await in_worker(
        sign_batch,
        services,
        caller.agency,
        profile_name=profile,
        items=items,
        level=level,
        actor=actor_of(caller),
        authorization=authorization,
        field_name=field_name,
        appearance=AppearanceRequest(
            kind=appearance_kind, copy_kind=copy_kind, document_number=document_number
        ),
        codes=per_document,
        idempotency_key=idempotency_key,
        client_id=caller.id,
    )
    out = []
    for index, item in enumerate(results):
        if isinstance(item, errors.ServiceError):
            out.append(
                schemas.BatchItemOut(
                    index=index,
                    filename=_echo(items[index][0]),
                    status="failed",
                    error=schemas.ErrorBody(**item.to_dict()),
                )
            )
        else:
            out.append(
                schemas.BatchItemOut(
                    index=index,
                    filename=items[index][0],
                    status="signed",
                    signature_id=item.signature_id,
                    document=document_out(item.document),
                    repaired=item.repaired,
                    registry=_registry_ref(item),
                    replayed=item.replayed or None,
                    existing_signatures=_existing_out(item.existing_signatures),
                )
            )
    signed = sum(1 for item in out if item.status == "signed")
    return schemas.BatchOut(profile=profile, signed=signed, failed=len(out) - signed, results=out)
