"""A stand-in for a remote-signing provider (VNPT SmartCA, Viettel MySign…), speaking the Cloud
Signature Consortium API v2 on loopback, with the officer's key on a SoftHSM2 token.

No real provider can be reached from these machines, so the tests run this one. It does what
the service relies on: service authentication by bearer token, credentials/list and /info,
credentials/authorize checking the officer's PIN and binding the SAD to the hashes (SCAL2),
single-use SADs, and signatures/signHash on the token.
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
from typing import Any

import uvicorn
from fastapi import FastAPI, Header, HTTPException
from pydantic import BaseModel

DIGEST_INFO_SHA256 = bytes.fromhex("3031300d060960864801650304020105000420")
SHA256_OID = "2.16.840.1.101.3.4.2.1"


class AuthorizeIn(BaseModel):
    credentialID: str
    numSignatures: int
    hashes: list[str] | None = None
    hashAlgorithmOID: str | None = None
    PIN: str | None = None


class SignHashIn(BaseModel):
    credentialID: str
    SAD: str
    hashes: list[str]
    hashAlgorithmOID: str
    signAlgo: str


class InfoIn(BaseModel):
    credentialID: str
    certificates: str | None = None


def make_app(
    *,
    service_token: str,
    credential_id: str,
    officer_pin: str,
    certificates: list[bytes],
    sign: Any,
) -> FastAPI:
    app = FastAPI()
    sads: dict[str, tuple[set[str], float]] = {}
    lock = threading.Lock()

    def check_service(authorization: str | None) -> None:
        if authorization != f"Bearer {service_token}":
            raise HTTPException(401, "invalid_token")

    @app.post("/csc/v2/credentials/list")
    def credentials_list(authorization: str | None = Header(None)) -> dict[str, Any]:
        check_service(authorization)
        return {"credentialIDs": [credential_id]}

    @app.post("/csc/v2/credentials/info")
    def credentials_info(body: InfoIn, authorization: str | None = Header(None)) -> dict[str, Any]:
        check_service(authorization)
        if body.credentialID != credential_id:
            raise HTTPException(400, "invalid_request")
        return {
            "key": {"status": "enabled", "algo": ["1.2.840.113549.1.1.11"], "len": 2048},
            "cert": {
                "status": "valid",
                "certificates": [base64.b64encode(c).decode() for c in certificates],
            },
            "authMode": "explicit",
            "SCAL": "2",
            "PIN": {"presence": "true"},
            "multisign": 1,
        }

    @app.post("/csc/v2/credentials/authorize")
    def authorize(body: AuthorizeIn, authorization: str | None = Header(None)) -> dict[str, Any]:
        check_service(authorization)
        if body.credentialID != credential_id or officer_pin != body.PIN:
            raise HTTPException(400, "invalid_pin")
        if not body.hashes or len(body.hashes) != body.numSignatures:
            raise HTTPException(400, "invalid_request")
        sad = secrets.token_urlsafe(24)
        with lock:
            sads[sad] = (set(body.hashes), time.monotonic() + 300)
        return {"SAD": sad, "expiresIn": 300}

    @app.post("/csc/v2/signatures/signHash")
    def sign_hash(body: SignHashIn, authorization: str | None = Header(None)) -> dict[str, Any]:
        check_service(authorization)
        with lock:
            bound = sads.pop(body.SAD, None)  # single use
        if bound is None or bound[1] < time.monotonic() or not set(body.hashes) <= bound[0]:
            raise HTTPException(400, "invalid_sad")
        if body.hashAlgorithmOID != SHA256_OID:
            raise HTTPException(400, "invalid_request")
        signatures = [
            base64.b64encode(sign(DIGEST_INFO_SHA256 + base64.b64decode(h))).decode()
            for h in body.hashes
        ]
        return {"signatures": signatures}

    return app


class ProviderServer:
    def __init__(self, app: FastAPI, port: int) -> None:
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.port = port

    def start(self) -> ProviderServer:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
