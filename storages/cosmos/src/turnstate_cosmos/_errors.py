"""What the Azure SDK raised, as turnstate's errors, naming the container and the keys."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
from azure.core.exceptions import AzureError, ServiceRequestError, ServiceResponseError
from azure.cosmos.exceptions import CosmosHttpResponseError

from turnstate.errors import StorageError, StorageUnavailableError

NATIVE_ERRORS = (AzureError, aiohttp.ClientError, TimeoutError, OSError)
"""What a request through the SDK may raise."""

_UNAVAILABLE_STATUS = frozenset({408, 429, 449, 503})
_OWNER_RESOURCE_NOT_FOUND = 1003  # the sub-status of a 404 whose database or container is missing


def item_missing(exc: CosmosHttpResponseError) -> bool:
    """A 404 about the item itself, not about its database or container (sub-status 1003)."""
    if exc.status_code != 404 or exc.sub_status == _OWNER_RESOURCE_NOT_FOUND:
        return False
    request = getattr(exc.response, "request", None)
    return "/docs/" in str(getattr(request, "url", "/docs/"))


def container_gone(exc: BaseException) -> bool:
    """A failure that says the database or container is missing: a 404 that was not about an item.

    Callers pass only failures that are not an item's own 404 (see :func:`item_missing`).
    """
    return not isinstance(exc, StorageError) and not _unavailable(exc) and _status(exc) == 404


@dataclass(frozen=True, slots=True)
class CosmosErrors:
    """Builds one storage's errors. ``where`` names its container; ``recreates``: a container found
    missing is created again (``create_if_missing``)."""

    where: str
    recreates: bool

    def for_call(self, action: str, keys: Sequence[str], exc: BaseException) -> StorageError:
        """The error for a request that raised ``exc`` while it tried to ``action`` these keys."""
        if isinstance(exc, StorageError):
            return exc
        status = _status(exc)
        what = f"{action} {_shown(keys)}" if keys else action
        if _unavailable(exc):
            outcome = (
                " Each key was written completely or not at all, but which is unknown: re-read before"
                " writing again."
                if action == "write"
                else ""
            )
            return StorageUnavailableError(
                f"Cosmos DB ({self.where}) failed to {what}: {type(exc).__name__}"
                f"{f' {status}' if status else ''}: {_text(exc)}.{outcome}"
            )
        if status == 404:
            return StorageError(
                f"Cosmos DB ({self.where}) could not {what}: the database or container is "
                f"gone ({type(exc).__name__} 404). The next call sets it up again"
                f"{' (creating it)' if self.recreates else ''}."
            )
        return StorageError(
            f"Cosmos DB ({self.where}) refused to {what}: {type(exc).__name__}"
            f"{f' {status}' if status else ''}: {_text(exc)}"
        )


def _status(exc: BaseException) -> object:
    return getattr(exc, "status_code", None)


def _unavailable(exc: BaseException) -> bool:
    """The request got no usable answer: the network, a timeout, or a status that means "try later"."""
    return isinstance(
        exc, ServiceRequestError | ServiceResponseError | aiohttp.ClientError | TimeoutError | OSError
    ) or (_status(exc) in _UNAVAILABLE_STATUS)


def _shown(keys: Sequence[str]) -> str:
    return ", ".join(repr(k) for k in keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")


def _text(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else "(no message)").rstrip(".")[:300]
