from __future__ import annotations

from enum import StrEnum


class SignatureLevel(StrEnum):
    """PAdES baseline levels (ETSI EN 319 142-1)."""

    B_B = "B-B"
    B_T = "B-T"
    B_LT = "B-LT"
    B_LTA = "B-LTA"

    @property
    def needs_timestamp(self) -> bool:
        return self is not SignatureLevel.B_B

    @property
    def needs_revocation_info(self) -> bool:
        return self in (SignatureLevel.B_LT, SignatureLevel.B_LTA)

    @classmethod
    def parse(cls, value: str) -> SignatureLevel:
        normalised = value.strip().upper().replace("_", "-")
        if not normalised.startswith("B-"):
            normalised = "B-" + normalised
        for level in cls:
            if level.value == normalised:
                return level
        raise ValueError(value)
