"""What the Azure SDK raised, as turnstate's errors, naming the container and the keys."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
from azure.core.exceptions import AzureError, HttpResponseError, ServiceRequestError, ServiceResponseError

from turnstate.errors import StorageError, StorageUnavailableError

NATIVE_ERRORS = (AzureError, aiohttp.ClientError, TimeoutError, OSError)
"""What a request through the SDK may raise."""

_UNAVAILABLE_STATUS = frozenset({408, 500, 502, 503, 504})


class Refused(Exception):
    """A write's precondition failed for one key (internal; the storage raises PreconditionFailedError)."""


def error_code(exc: BaseException) -> str | None:
    """Azure's error code (``BlobNotFound``...) as plain text; the SDK gives an enum member or a str."""
    code = getattr(exc, "error_code", None)
    return None if code is None else str(getattr(code, "value", code))


def refused_precondition(exc: HttpResponseError, *, create_only: bool, if_match: bool) -> bool:
    """Azure refused a conditional Put Blob for its condition (not, say, for a lease on the blob)."""
    code = error_code(exc)
    failed_condition = exc.status_code == 412 and code in (None, "ConditionNotMet")
    if create_only:
        return failed_condition or (exc.status_code == 409 and code in (None, "BlobAlreadyExists"))
    return if_match and (failed_condition or blob_missing(exc))


def blob_missing(exc: HttpResponseError) -> bool:
    """A 404 about the blob itself, not about its container."""
    return exc.status_code == 404 and error_code(exc) != "ContainerNotFound"


@dataclass(frozen=True, slots=True)
class BlobErrors:
    """Builds one storage's errors; ``where`` names its container (never with a credential)."""

    where: str

    def for_call(self, action: str, keys: Sequence[str], exc: BaseException) -> StorageError:
        """The error for a request that raised ``exc`` while it tried to ``action`` these keys."""
        if isinstance(exc, StorageError):
            return exc
        status = getattr(exc, "status_code", None)
        code = error_code(exc)
        what = f"{action} {_shown(keys)}" if keys else action
        detail = f"{type(exc).__name__}{f' {status}' if status else ''}{f' {code}' if code else ''}"
        if isinstance(
            exc, ServiceRequestError | ServiceResponseError | aiohttp.ClientError | TimeoutError | OSError
        ) or (status in _UNAVAILABLE_STATUS):
            outcome = (
                " Each key was written completely or not at all, but which is unknown: re-read before"
                " writing again."
                if action == "write"
                else ""
            )
            return StorageUnavailableError(
                f"Azure Blob Storage ({self.where}) failed to {what}: {detail}: {_text(exc)}.{outcome}"
            )
        if code == "ContainerNotFound":
            return StorageError(
                f"Azure Blob Storage ({self.where}) could not {what}: the container does not exist. "
                "Create it (BlobStorage(..., create_container=True), or await storage.create_container())"
            )
        if status in (401, 403):
            return StorageError(
                f"Azure Blob Storage ({self.where}) refused to {what}: {detail}. Check the credential "
                "(account key, SAS token and its permissions and expiry, or the identity's role assignment)"
            )
        return StorageError(f"Azure Blob Storage ({self.where}) refused to {what}: {detail}: {_text(exc)}")


def _shown(keys: Sequence[str]) -> str:
    return ", ".join(repr(k) for k in keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")


def _text(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else "(no message)").rstrip(".")[:300]
