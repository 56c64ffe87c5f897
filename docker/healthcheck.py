"""The image's HEALTHCHECK: exit 0 when ``GET /readyz`` on this container's port answers 200
(the database and the object store answer), 1 otherwise. Standard library only (the image has
no curl); the port is ``SIGNING_SERVICE_PORT`` (default 8000)."""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    port = os.environ.get("SIGNING_SERVICE_PORT", "8000")
    url = f"http://127.0.0.1:{port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError, ValueError):
        return 1


if __name__ == "__main__":
    sys.exit(main())
