"""SoftHSM2 tokens for development and tests: an HSM over PKCS#11 that generates and keeps the
key, as a production HSM does. Only the public key ever leaves the token (to be certified)."""

from __future__ import annotations

import os
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from asn1crypto import keys, pem

MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
)


def find_module() -> str | None:
    for candidate in MODULE_CANDIDATES:
        if Path(candidate).exists():
            return candidate
    return None


@dataclass(frozen=True)
class TokenKey:
    token: str
    key_label: str
    pin_file: Path
    module: str
    public_key: keys.PublicKeyInfo

    def uri(self, cert: Path, chain: Path) -> str:
        return (
            f"pkcs11:token={self.token};object={self.key_label}?module-path={self.module}"
            f"&pin-source=file:{self.pin_file}&cert={cert}&chain={chain}"
        )


class SoftHsm:
    def __init__(self, directory: Path, module: str) -> None:
        self.directory = directory
        self.module = module
        self.conf = directory / "softhsm2.conf"

    @classmethod
    def available(cls, directory: Path) -> SoftHsm | None:
        module = find_module()
        if module is None or not _has_util():
            return None
        return cls(directory, module)

    def activate(self) -> None:
        """Write the configuration and point this process (and its children) at it. SoftHSM
        reads ``SOFTHSM2_CONF`` once, when the module is first initialised."""
        tokens = self.directory / "tokens"
        tokens.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        if not self.conf.exists():
            self.conf.write_text(
                f"directories.tokendir = {tokens}\nobjectstore.backend = file\n"
                "log.level = ERROR\nslots.removable = false\n"
            )
        os.environ["SOFTHSM2_CONF"] = str(self.conf)

    def _token_labels(self) -> list[str]:
        out = subprocess.run(
            ["softhsm2-util", "--show-slots"],
            capture_output=True,
            text=True,
            env=os.environ,
            check=False,
        ).stdout
        return [
            line.split(":", 1)[1].strip()
            for line in out.splitlines()
            if line.strip().startswith("Label:")
        ]

    def ensure_key(self, token: str, key_label: str, key_id: bytes = b"\x01") -> TokenKey:
        """Create the token and an RSA-2048 key pair on it (once); return its public key."""
        self.activate()
        pin_file = self.directory / f"{token}.pin"
        created = token not in self._token_labels()
        if created:
            pin = secrets.token_hex(8)
            so_pin = secrets.token_hex(8)
            fd = os.open(pin_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(pin)
            subprocess.run(
                [
                    "softhsm2-util",
                    "--init-token",
                    "--free",
                    "--label",
                    token,
                    "--so-pin",
                    so_pin,
                    "--pin",
                    pin,
                ],
                check=True,
                capture_output=True,
                env=os.environ,
            )
        pin = pin_file.read_text().strip()

        import pkcs11
        from pkcs11 import Attribute, KeyType, ObjectClass
        from pkcs11.util.rsa import encode_rsa_public_key

        lib = pkcs11.lib(self.module)
        if created:
            # Make a module loaded earlier in this process see the new token. (SoftHSM2 reads
            # SOFTHSM2_CONF only when initialised: a process uses one token directory; tests
            # share the session's, tests/conftest.py SOFTHSM_DIR.)
            lib.reinitialize()
        from pkcs11.exceptions import UserAlreadyLoggedIn

        tok = lib.get_token(token_label=token)
        try:
            opened = tok.open(user_pin=pin, rw=True)
        except UserAlreadyLoggedIn:
            # PKCS#11 login is per application: another session of this process is logged in.
            opened = tok.open(rw=True)
        with opened as session:
            found = list(
                session.get_objects(
                    {Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.LABEL: key_label}
                )
            )
            if found:
                public = found[0]
            else:
                public, _private = session.generate_keypair(
                    KeyType.RSA,
                    2048,
                    label=key_label,
                    id=key_id,
                    store=True,
                    private_template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False},
                )
            rsa_public = keys.RSAPublicKey.load(encode_rsa_public_key(public))
        spki = keys.PublicKeyInfo({"algorithm": {"algorithm": "rsa"}, "public_key": rsa_public})
        return TokenKey(token, key_label, pin_file, self.module, spki)


def write_public_key(path: Path, public_key: keys.PublicKeyInfo) -> bool:
    """Write the PEM; return True when it changed."""
    data = pem.armor("PUBLIC KEY", public_key.dump())
    if path.exists() and path.read_bytes() == data:
        return False
    path.write_bytes(data)
    return True


def _has_util() -> bool:
    from shutil import which

    return which("softhsm2-util") is not None
