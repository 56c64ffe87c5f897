"""The moment a verification is made as of (light: the CLI's ``verify`` parses it before
anything heavy is imported)."""

from __future__ import annotations

from datetime import datetime

from signing_service import errors
from signing_service.timefmt import VIETNAM_TZ


def parse_validation_time(value: str, *, assume_vietnam: bool = False) -> datetime:
    """An ISO 8601 moment (``2025-03-16T00:00:00+07:00``, ``…Z``) to validate as of.

    ``assume_vietnam``: a value without an offset (or a bare date) is Vietnam time (+07:00), as
    a person typing at the command line means; the API requires the offset.
    Raises :class:`errors.InvalidValidationTime` otherwise.
    """
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise errors.InvalidValidationTime(details={"validation_time": value[:64]}) from None
    if moment.tzinfo is None:
        if not assume_vietnam:
            raise errors.InvalidValidationTime(details={"validation_time": value[:64]})
        moment = moment.replace(tzinfo=VIETNAM_TZ)
    if (
        not datetime(1990, 1, 1, tzinfo=VIETNAM_TZ)
        <= moment
        <= datetime(2200, 1, 1, tzinfo=VIETNAM_TZ)
    ):
        raise errors.InvalidValidationTime(details={"validation_time": value[:64]})
    return moment
