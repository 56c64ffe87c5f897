"""Trust anchors with pinned fingerprints, and validation contexts built from them.

Roots are pinned by SHA-256 in ``certs/trust/anchors.json`` together with the kind of signature
they vouch for: the Government CA (Ban Cơ yếu Chính phủ, VGCA) hierarchy issues *public-duty*
certificates (chữ ký số chuyên dùng công vụ), the NEAC national roots stand above the licensed
public CAs (chữ ký số công cộng); Luật Giao dịch điện tử 2023 Art. 22–23, TT 15/2025 Art. 6.
Intermediates are chain-building material only, never anchors, but keep their kind so a report
can name them. The development root (kind ``development``) is added only in development mode.

Loading is cheap on purpose (asn1crypto parsing and one SHA-256 per file): pyHanko's validation
machinery is imported only when a validation context is first needed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from asn1crypto import pem, x509

from signing_service._asn1 import parse_certificates
from signing_service.oserror import reason_vi
from signing_service.timefmt import VIETNAM_TZ

if TYPE_CHECKING:
    from pyhanko_certvalidator import ValidationContext


log = logging.getLogger(__name__)


class TrustStoreError(Exception):
    """The trust manifest or a certificate file is unreadable, malformed or not the pinned one."""


class AnchorKind(StrEnum):
    """Which kind of signature a certificate hierarchy vouches for."""

    # Chữ ký số chuyên dùng công vụ: the Government CA of Ban Cơ yếu Chính phủ (VGCA).
    PUBLIC_DUTY = "public_duty"
    # Chữ ký số công cộng: licensed public CAs under the NEAC national roots.
    PUBLIC = "public"
    # The generated development PKI, trusted in development mode only.
    DEVELOPMENT = "development"


KIND_LABELS_VI: dict[AnchorKind, str] = {
    AnchorKind.PUBLIC_DUTY: "chuyên dùng công vụ (Ban Cơ yếu Chính phủ)",
    AnchorKind.PUBLIC: "công cộng (NEAC)",
    AnchorKind.DEVELOPMENT: "thử nghiệm",
}

# Kinds an operator may give a configured (extra) anchor; "development" is reserved for the
# generated dev root so that production checks can recognise it.
CONFIGURABLE_KINDS = frozenset({AnchorKind.PUBLIC_DUTY, AnchorKind.PUBLIC})


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the certificate's DER encoding, lower-case hex without separators (as every
    SHA-256 the API and the CLI show; the pinned values may be written in either case)."""
    return hashlib.sha256(cert.dump()).hexdigest()


def load_certs(path: Path) -> list[x509.Certificate]:
    """Certificates from a PEM (one or more) or DER file.

    Raises ``OSError`` when the file cannot be read and ``ValueError`` when it holds no
    parseable certificate.
    """
    data = path.read_bytes()
    if pem.detect(data):
        certs = [x509.Certificate.load(der) for _, _, der in pem.unarmor(data, multiple=True)]
    else:
        certs = [x509.Certificate.load(data)]
    # Trust anchors and intermediates are shared by every thread of the process.
    parse_certificates(certs)
    return certs


def _first_attribute(name: x509.Name, attribute: str) -> str | None:
    # A configured certificate may encode an attribute in a type asn1crypto refuses to
    # decode; a missing display name is better than a start-up traceback.
    try:
        value = name.native.get(attribute)
    except (ValueError, TypeError, KeyError):
        return None
    if isinstance(value, list):
        value = value[0] if value else None
    return value if isinstance(value, str) else None


def _display_name(name: x509.Name) -> str:
    common_name = _first_attribute(name, "common_name")
    if common_name:
        return common_name
    try:
        return str(name.human_friendly)
    except (ValueError, TypeError, KeyError):
        return "?"


@dataclass(frozen=True)
class TrustedCertificate:
    """A certificate of the trust store with the metadata people are shown.

    ``source``: where it came from (``pinned:<file>``, ``configured:<path>``, ``development``);
    ``authority``: who operates the hierarchy (e.g. "Ban Cơ yếu Chính phủ"), when known;
    ``provenance``: how the pinned copy was obtained and checked (from the manifest).
    ``name``, ``sha256`` and ``not_after`` (aware, UTC) are derived from the certificate.
    """

    cert: x509.Certificate
    source: str
    kind: AnchorKind = AnchorKind.PUBLIC
    authority: str | None = None
    provenance: str | None = None
    name: str = field(init=False)
    sha256: str = field(init=False)
    not_after: datetime = field(init=False)

    def __post_init__(self) -> None:
        # Frozen dataclass: the derived fields are set once here, so that lookups by
        # fingerprint never hash a certificate twice.
        subject = self.cert.subject
        object.__setattr__(self, "kind", AnchorKind(self.kind))
        object.__setattr__(self, "name", _display_name(subject))
        object.__setattr__(self, "sha256", fingerprint(self.cert))
        object.__setattr__(self, "not_after", self.cert.not_valid_after)

    @property
    def dev(self) -> bool:
        return self.kind is AnchorKind.DEVELOPMENT

    @property
    def is_public_duty(self) -> bool:
        """True for the Government CA hierarchy (chữ ký số chuyên dùng công vụ)."""
        return self.kind is AnchorKind.PUBLIC_DUTY

    @property
    def kind_label(self) -> str:
        """The kind in Vietnamese, e.g. "chuyên dùng công vụ (Ban Cơ yếu Chính phủ)"."""
        return KIND_LABELS_VI[self.kind]

    @property
    def role(self) -> str:
        return "root"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description; ``not_after`` is ISO 8601 in Vietnam time (+07:00)."""
        return {
            "name": self.name,
            "role": self.role,
            "kind": self.kind.value,
            "kind_label": self.kind_label,
            "authority": self.authority,
            "not_after": self.not_after.astimezone(VIETNAM_TZ).isoformat(),
            "sha256": self.sha256,
            "source": self.source,
            "provenance": self.provenance,
        }


@dataclass(frozen=True)
class Anchor(TrustedCertificate):
    """A trust anchor: a path that ends in its certificate is trusted (as its ``kind``)."""


@dataclass(frozen=True)
class ChainCertificate(TrustedCertificate):
    """An intermediate offered for chain building only. Never a trust anchor: a path is trusted
    because it reaches an :class:`Anchor`, whatever intermediates it passes."""

    @property
    def role(self) -> str:
        return "intermediate"


class ExtraAnchorLike(Protocol):
    """A configured extra anchor (``Settings.extra_trust_anchors`` items have this shape)."""

    @property
    def file(self) -> Path: ...

    @property
    def kind(self) -> str: ...


def _extra_spec(item: Path | str | ExtraAnchorLike) -> tuple[Path, AnchorKind]:
    if isinstance(item, (str, Path)):
        return Path(item), AnchorKind.PUBLIC
    try:
        kind: AnchorKind | None = AnchorKind(item.kind)
    except ValueError:
        kind = None
    if kind is None or kind not in CONFIGURABLE_KINDS:
        raise TrustStoreError(
            f"chứng thư tin cậy bổ sung {item.file}: loại {item.kind!r} không phải một trong "
            f"{sorted(k.value for k in CONFIGURABLE_KINDS)}"
        )
    return Path(item.file), kind


def _read_one(path: Path) -> x509.Certificate:
    try:
        certs = load_certs(path)
        if len(certs) != 1:
            raise TrustStoreError(f"{path}: cần đúng một chứng thư, tệp có {len(certs)}")
        cert = certs[0]
        # Touch the fields the store uses so that a malformed file fails here, at start-up,
        # and not in the middle of a verification.
        cert.subject.native  # noqa: B018
        cert.not_valid_after  # noqa: B018
    except TrustStoreError:
        raise
    except OSError as e:
        raise TrustStoreError(f"không đọc được chứng thư {path}: {reason_vi(e)}") from e
    except (ValueError, TypeError, KeyError) as e:
        raise TrustStoreError(f"{path}: không phải chứng thư X.509 đọc được ({e})") from e
    return cert


@dataclass
class TrustStore:
    """The anchors a validation may end in, and the certificates offered for chain building.

    ``anchors``: roots (pinned, configured, development).
    ``intermediates``: certificates offered to path building (the pinned intermediates plus any
    added at run time, e.g. the development intermediate); ``chain_certificates``: metadata of
    the pinned and described ones among them.
    """

    anchors: list[Anchor] = field(default_factory=list)
    intermediates: list[x509.Certificate] = field(default_factory=list)
    chain_certificates: list[ChainCertificate] = field(default_factory=list)
    fetch_timeout: float = 5.0
    # AIA caIssuers URL prefixes a missing issuer certificate may be fetched from
    # (SIGNING_SERVICE_CA_ISSUER_URLS; verification/revinfo_cache.py).
    ca_issuer_urls: tuple[str, ...] = ()

    @property
    def roots(self) -> list[x509.Certificate]:
        return [a.cert for a in self.anchors]

    @property
    def has_dev_root(self) -> bool:
        return any(a.dev for a in self.anchors)

    def anchor_for(self, cert: x509.Certificate) -> Anchor | None:
        """The anchor whose certificate is exactly ``cert`` (same SHA-256 of the DER), else None.

        Pass the root of a validated path (see :meth:`anchor_for_path`). An intermediate, even
        a pinned one, is never an anchor and gives None.
        """
        fp = fingerprint(cert)
        return next((a for a in self.anchors if a.sha256 == fp), None)

    def anchor_for_path(self, path: Any) -> Anchor | None:
        """The anchor a validated ``pyhanko_certvalidator.path.ValidationPath`` ends in.

        pyHanko wraps each of :attr:`roots` in a ``CertTrustAnchor``; a path's
        ``trust_anchor.certificate`` is therefore one of our anchor certificates. None when the
        path ends in something else (a key-only anchor, or an object without a trust anchor).
        ``anchor.kind`` then says public-duty or public; ``anchor.kind_label`` in Vietnamese.
        """
        trust_anchor = getattr(path, "trust_anchor", None)
        cert = getattr(trust_anchor, "certificate", None)
        if not isinstance(cert, x509.Certificate):
            return None
        return self.anchor_for(cert)

    def chain_certificate_for(self, cert: x509.Certificate) -> ChainCertificate | None:
        """Metadata of a pinned intermediate (name, kind, authority), else None."""
        fp = fingerprint(cert)
        return next((c for c in self.chain_certificates if c.sha256 == fp), None)

    def is_anchor(self, cert: x509.Certificate) -> bool:
        return self.anchor_for(cert) is not None

    @classmethod
    def load(
        cls,
        manifest: Path,
        extra: Iterable[Path | str | ExtraAnchorLike] | None = None,
        dev_root: Path | None = None,
        fetch_timeout: float = 5.0,
        ca_issuer_urls: Iterable[str] = (),
    ) -> TrustStore:
        """Read the pinned manifest, the configured extra anchors and the development root.

        ``manifest``: ``anchors.json`` (``{"anchors": [{"file", "role": "root"|"intermediate",
        "kind": "public_duty"|"public", "sha256", "authority"?, "provenance"?, …}]}``), files
        relative to it. ``extra``: paths (kind ``public``) or objects with ``file`` and ``kind``
        (``public_duty``|``public``). ``dev_root``: the development root, kind ``development``.

        Raises :class:`TrustStoreError` for an unreadable or malformed manifest or file, a file
        whose SHA-256 differs from the pinned one (the service must not start then), an unknown
        role or kind.
        """
        store = cls(fetch_timeout=fetch_timeout, ca_issuer_urls=tuple(ca_issuer_urls))
        # Every reason in Vietnamese: the message reaches the operator (exit 6).
        form = 'cần JSON dạng {"anchors": [{"file", "role", "kind", "sha256"}, …]}'
        try:
            spec = json.loads(manifest.read_text(encoding="utf-8"))
        except OSError as e:
            raise TrustStoreError(
                f"không đọc được danh mục chứng thư tin cậy {manifest}: {reason_vi(e)}"
            ) from e
        except json.JSONDecodeError as e:
            raise TrustStoreError(
                f"danh mục chứng thư tin cậy {manifest} không phải JSON hợp lệ (lỗi ở dòng "
                f"{e.lineno}, cột {e.colno}; {form}, như certs/trust/anchors.json)"
            ) from e
        except ValueError as e:  # not UTF-8
            raise TrustStoreError(
                f"danh mục chứng thư tin cậy {manifest} không phải văn bản UTF-8 ({form})"
            ) from e
        entries = spec.get("anchors") if isinstance(spec, dict) else None
        if not isinstance(entries, list):
            raise TrustStoreError(f"danh mục chứng thư tin cậy {manifest}: {form}")
        for entry in entries:
            store._add_pinned(manifest, entry)
        for item in extra or []:
            path, kind = _extra_spec(item)
            try:
                certs = load_certs(path)
            except OSError as e:
                raise TrustStoreError(
                    f"không đọc được chứng thư tin cậy bổ sung {path}: {reason_vi(e)}"
                ) from e
            except (ValueError, TypeError) as e:
                raise TrustStoreError(
                    f"chứng thư tin cậy bổ sung {path}: không phải chứng thư ({e})"
                ) from e
            for cert in certs:
                # Only a root is an anchor (RFC 5280 §6.1: the path starts at a trust anchor;
                # an intermediate as anchor cuts its issuer's revocation and policy out of every
                # path). Red team F10: the dev PKI's intermediate was accepted in production.
                if not cert.self_issued:
                    raise TrustStoreError(
                        f"chứng thư tin cậy bổ sung {path}: "
                        f"{_first_attribute(cert.subject, 'common_name')!r} không phải chứng thư "
                        f"gốc (do {_first_attribute(cert.issuer, 'common_name')!r} cấp); chỉ "
                        "chứng thư gốc tự ký mới được làm điểm tin cậy"
                    )
                try:
                    anchor = Anchor(
                        cert,
                        f"configured:{path}",
                        kind=kind,
                        authority=_first_attribute(cert.subject, "organization_name"),
                    )
                except (ValueError, TypeError, KeyError) as e:
                    raise TrustStoreError(
                        f"chứng thư tin cậy bổ sung {path}: không đọc được ({e})"
                    ) from e
                store.anchors.append(anchor)
        if dev_root is not None:
            store.anchors.append(
                Anchor(
                    _read_one(dev_root),
                    "development",
                    kind=AnchorKind.DEVELOPMENT,
                    authority="PKI thử nghiệm (chỉ dùng ở chế độ phát triển)",
                )
            )
        return store

    def _add_pinned(self, manifest: Path, entry: Any) -> None:
        try:
            file, role, pinned = entry["file"], entry["role"], entry["sha256"]
            kind = AnchorKind(entry["kind"])
        except (KeyError, TypeError) as e:
            raise TrustStoreError(f"{manifest}: mục {entry!r} thiếu {e}") from e
        except ValueError as e:
            raise TrustStoreError(f"{manifest}: {file}: loại không biết {entry['kind']!r}") from e
        if kind not in CONFIGURABLE_KINDS:
            raise TrustStoreError(f"{manifest}: {file}: loại {kind.value!r} không thể ghim")
        path = manifest.parent / file
        cert = _read_one(path)
        actual = fingerprint(cert)
        if actual != str(pinned).replace(":", "").lower():
            raise TrustStoreError(f"{path}: SHA-256 {actual} khác giá trị đã ghim {pinned}")
        meta: dict[str, Any] = {
            "kind": kind,
            "authority": entry.get("authority"),
            "provenance": entry.get("provenance"),
        }
        if role == "root":
            self.anchors.append(Anchor(cert, f"pinned:{file}", **meta))
        elif role == "intermediate":
            self.intermediates.append(cert)
            self.chain_certificates.append(ChainCertificate(cert, f"pinned:{file}", **meta))
        else:
            raise TrustStoreError(f"{manifest}: {file}: vai trò không biết {role!r}")

    def validation_context(
        self,
        *,
        other_certs: Sequence[x509.Certificate] = (),
        moment: datetime | None = None,
        allow_fetching: bool = True,
        revocation_mode: str = "soft-fail",
        crls: list[bytes] | None = None,
        ocsps: list[bytes] | None = None,
        retroactive_revinfo: bool = False,
        fetcher_backend: Any = None,
    ) -> ValidationContext:
        # pyHanko's validation machinery is imported when a context is first needed.
        from pyhanko_certvalidator import ValidationContext
        from pyhanko_certvalidator.fetchers.api import FetchLimits
        from pyhanko_certvalidator.fetchers.requests_fetchers import RequestsFetcherBackend

        # Issuer certificates are never chased through AIA caIssuers URLs: those URLs come from
        # the (untrusted, attacker-supplied) signed document, so following them would let anyone
        # make the service fetch arbitrary addresses. Revocation sources are only consulted for
        # certificates on a path that already chains to an anchor.
        backend = fetcher_backend or RequestsFetcherBackend(
            per_request_timeout=self.fetch_timeout,
            limits=FetchLimits(max_requests=20, max_cert_requests=0),
        )
        return ValidationContext(
            trust_roots=self.roots,
            other_certs=[*self.intermediates, *other_certs],
            moment=moment,
            allow_fetching=allow_fetching,
            revocation_mode=revocation_mode,
            fetcher_backend=backend,
            crls=crls or (),
            ocsps=ocsps or (),
            # Past-time validation (a seal proven by its timestamp): revocation answers issued
            # after that time still say the certificate was not revoked then.
            retroactive_revinfo=retroactive_revinfo,
        )


# The production refusal of development anchors, here (not in services/container.py) so that
# `signing-service verify` applies it without importing the ORM (red team 14 F8). ``settings``
# is a signing_service.settings.Settings (not imported: the cores may not depend on it).
def dev_root_copies(settings: Any, trust: TrustStore) -> list[str]:
    """Anchors that are a development root wherever their file lives (a copy outside the dev
    PKI directory passed the path check): the SHA-256 of this machine's dev root, if one was
    ever generated here, or the dev root's subject as ``certs/dev/certomancer.yml`` names it
    (a dev root generated on another machine has other keys but the same name)."""
    fingerprints: set[str] = set()
    local_root = settings.pki_dir / "root.cert.pem"
    if local_root.is_file():
        try:
            fingerprints.update(fingerprint(c) for c in load_certs(local_root))
        except (OSError, ValueError):
            log.warning("unreadable development root %s", local_root)
    names = _dev_root_names(settings.dev_pki_config)
    # Any certificate of the dev PKI carries its organization (red team F10: its intermediate
    # was accepted as an anchor in production).
    organizations = {organization for organization, _ in names if organization}
    found = []
    for anchor in trust.anchors:
        subject = anchor.cert.subject.native
        name = (subject.get("organization_name"), subject.get("common_name"))
        if anchor.sha256 in fingerprints or name in names or name[0] in organizations:
            found.append(f"{anchor.name} (SHA-256 {anchor.sha256})")
    return found


def dev_anchor_problem(settings: Any, trust: TrustStore) -> str | None:
    """Production: why the trust store must not be used (development material in it), in
    Vietnamese naming the settings, or None. Shared by start-up and ``trust list``."""
    if not settings.is_production:
        return None
    if trust.has_dev_root:
        return "kho chứng thư tin cậy chứa gốc của PKI thử nghiệm"
    copied = dev_root_copies(settings, trust)
    if copied:
        return (
            "chứng thư của PKI thử nghiệm (bản sao) nằm trong kho chứng thư tin cậy "
            "(SIGNING_SERVICE_EXTRA_TRUST_ANCHORS hoặc SIGNING_SERVICE_TRUST_ANCHORS_FILE): "
            + ", ".join(copied)
        )
    return None


def _dev_root_names(config: Path) -> set[tuple[str | None, str | None]]:
    """(organization, common name) of the root entity of the dev PKI configuration."""
    try:
        import yaml

        spec = yaml.safe_load(config.read_text(encoding="utf-8"))
        arch = spec["pki-architectures"]["dev"]
        root = arch["entities"]["root"]
        organization = root.get("organization-name") or arch["entity-defaults"].get(
            "organization-name"
        )
        return {(organization, root.get("common-name"))}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, ImportError):
        log.warning("cannot read the dev PKI configuration %s", config)
        return set()
