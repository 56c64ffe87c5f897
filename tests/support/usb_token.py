"""A stand-in for an officer's USB token, run as a separate process: it holds the private key
and only ever sees digests (one base64 SHA-256 digest per line in, one base64 signature out).
The real thing is a hardware token behind a browser plug-in; this process plays its part.

An ECDSA key answers in the form a third argument names: ``raw`` (``r‖s``, what PKCS#11
``CKM_ECDSA`` and most tokens return) or ``der`` (the default)."""

from __future__ import annotations

import base64
import sys
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils
from cryptography.hazmat.primitives.serialization import pkcs12


def main() -> None:
    p12, passphrase = Path(sys.argv[1]), sys.argv[2].encode()
    form = sys.argv[3] if len(sys.argv) > 3 else "der"
    key, _cert, _chain = pkcs12.load_key_and_certificates(p12.read_bytes(), passphrase)
    for line in sys.stdin:
        digest = base64.b64decode(line.strip())
        if isinstance(key, ec.EllipticCurvePrivateKey):
            signature = key.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
            if form == "raw":
                size = (key.curve.key_size + 7) // 8
                r, s = utils.decode_dss_signature(signature)
                signature = r.to_bytes(size, "big") + s.to_bytes(size, "big")
        else:
            signature = key.sign(  # type: ignore[union-attr, call-arg]
                digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256())
            )
        print(base64.b64encode(signature).decode(), flush=True)


if __name__ == "__main__":
    main()
