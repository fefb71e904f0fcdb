"""Storage URLs: which storage a command works on, named on the command line.

``file:./dir`` or ``file:///abs/dir`` (``?fsync=0`` skips fsync), ``redis://`` / ``rediss://`` /
``unix://`` (``?cluster=1`` for Redis Cluster, ``?prefix=`` for the key prefix; other query arguments go
to redis-py), ``cosmos://HOST:PORT/DATABASE/CONTAINER`` (HTTPS; the account key from
``TURNSTATE_COSMOS_KEY``, else an azure-identity credential; ``?verify=0`` skips certificate checks,
``?ca=FILE`` trusts that CA) or ``MODULE:FUNCTION``, a function (sync or async, no arguments) that
returns the storage. ``blob:CONTAINER`` is an Azure Blob Storage container of the account whose connection
string is in ``TURNSTATE_BLOB_CONNECTION_STRING``; ``blob://ACCOUNT_HOST/CONTAINER`` signs in to that
account with azure-identity.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from turnstate.cli.console import Refused
from turnstate.storage.base import Storage

COSMOS_KEY_ENV = "TURNSTATE_COSMOS_KEY"
BLOB_CONNECTION_ENV = "TURNSTATE_BLOB_CONNECTION_STRING"
STALE_TEMP_AFTER = 60.0
"""How old a FileStorage temporary file must be (seconds) before a purge removes it."""

FORMS = (
    "file:DIR, redis://HOST:PORT[/DB][?cluster=1&prefix=P], rediss://..., "
    "cosmos://HOST:PORT/DATABASE/CONTAINER[?verify=0|ca=FILE], blob:CONTAINER, blob://ACCOUNT_HOST/CONTAINER "
    "or MODULE:FUNCTION"
)
_FACTORY = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@asynccontextmanager
async def opened(spec: str, *, create: bool = False, option: str = "--storage") -> AsyncIterator[Storage]:
    """Open the storage ``spec`` names and close it (and anything opened for it) on the way out.

    ``create``: a destination may be created (a missing directory, database or container); a source is
    refused instead, so a typo creates nothing. Bad specs raise Refused with a one-line message.
    """
    async with AsyncExitStack() as stack:
        storage = await _open(spec, create, option, stack)
        stack.push_async_callback(storage.aclose)
        yield storage


async def _open(spec: str, create: bool, option: str, stack: AsyncExitStack) -> Storage:
    if not isinstance(spec, str) or not spec:
        raise Refused(f"{option} is empty; give one of {FORMS}")
    scheme = spec.split(":", 1)[0].lower() if ":" in spec else ""
    if scheme == "file":
        return _file(spec, create, option)
    if scheme == "blob":
        return _blob(spec, create, option)
    if "://" in spec:
        if scheme in ("redis", "rediss", "unix"):
            return _redis(spec, option)
        if scheme == "cosmos":
            return _cosmos(spec, create, option, stack)
        raise Refused(f"{option} {spec!r}: unknown scheme {scheme!r}; use {FORMS}")
    if _FACTORY.fullmatch(spec):
        return await _factory(spec, option)
    raise Refused(f"{option} takes a storage URL or MODULE:FUNCTION, got {spec!r}; use {FORMS}")


def _blob(spec: str, create: bool, option: str) -> Storage:
    try:
        from turnstate_blob import BlobStorage
    except ImportError as exc:
        raise Refused(f"{option} {spec!r} needs the Blob storage: pip install turnstate-blob") from exc
    if spec.startswith("blob://"):
        parts = urlsplit(spec)
        container = parts.path.strip("/")
        if not parts.hostname or not container or "/" in container or parts.query:
            raise Refused(f"{option} {spec!r}: write blob://ACCOUNT_HOST/CONTAINER or blob:CONTAINER")
        return BlobStorage(container, account_url=f"https://{parts.netloc}", create_container=create)
    container = spec[len("blob:") :]
    if not container or "/" in container or "?" in container:
        raise Refused(f"{option} {spec!r}: write blob:CONTAINER or blob://ACCOUNT_HOST/CONTAINER")
    connection = os.environ.get(BLOB_CONNECTION_ENV)
    if not connection:
        raise Refused(
            f"{option} {spec!r}: set {BLOB_CONNECTION_ENV} to the storage account's connection string, "
            "or name the account as blob://ACCOUNT_HOST/CONTAINER to sign in with azure-identity"
        )
    return BlobStorage(container, connection_string=connection, create_container=create)


def _flag(label: str, name: str, value: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise Refused(f"{label}: {name}={value!r} is not a yes/no value (use 1 or 0)")


def _query(label: str, query: str, known: tuple[str, ...]) -> tuple[dict[str, str], str]:
    """Our own query arguments, and the rest re-encoded to pass on."""
    ours: dict[str, str] = {}
    rest: list[tuple[str, str]] = []
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in known:
            if name in ours:
                raise Refused(f"{label}: {name}= is given twice")
            ours[name] = value
        else:
            rest.append((name, value))
    return ours, urlencode(rest)


def file_storage(directory: str, *, create: bool, fsync: bool, what: str) -> Storage:
    """A FileStorage on ``directory``; refused (nothing created) if it is missing and not ``create``."""
    from turnstate.storage.file import FileStorage

    if not create and not os.path.isdir(directory):
        problem = "is not a directory" if os.path.lexists(directory) else "does not exist"
        raise Refused(
            f"{what} {problem}; give the FileStorage directory the bot writes to (nothing was created)"
        )
    return FileStorage(directory, fsync=fsync, stale_temp_after=STALE_TEMP_AFTER)


def _file(spec: str, create: bool, option: str) -> Storage:
    rest = spec[len("file:") :]
    rest, _, query = rest.partition("?")
    label = f"{option} {spec!r}"
    ours, others = _query(label, query, ("fsync",))
    if others:
        raise Refused(f"{option} {spec!r}: file: URLs take only ?fsync=0|1, got {others!r}")
    if rest.startswith("//"):
        parts = urlsplit("file:" + rest)
        if parts.netloc not in ("", "localhost"):
            raise Refused(
                f"{option} {spec!r}: a file: URL names a local directory, not host {parts.netloc!r}"
            )
        directory = unquote(parts.path)
    else:
        directory = unquote(rest)
    if not directory:
        raise Refused(f"{option} {spec!r} names no directory; write file:./dir or file:///abs/dir")
    fsync = _flag(label, "fsync", ours["fsync"]) if "fsync" in ours else True
    return file_storage(
        directory, create=create, fsync=fsync, what=f"{option} {spec!r}: directory {directory!r}"
    )


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """What a ``redis://`` URL names: the URL redis-py is given, cluster or not, and the key prefix."""

    url: str
    cluster: bool
    key_prefix: str | None


def redis_target(spec: str, option: str = "--storage") -> RedisTarget:
    """Parse a ``redis://``, ``rediss://`` or ``unix://`` URL; Refused if its own arguments are bad."""
    parts = urlsplit(spec)
    label = f"{option} {_shown(spec)}"
    ours, others = _query(label, parts.query, ("cluster", "prefix"))
    cluster = _flag(label, "cluster", ours["cluster"]) if "cluster" in ours else False
    return RedisTarget(urlunsplit(parts._replace(query=others)), cluster, ours.get("prefix"))


def _redis(spec: str, option: str) -> Storage:
    try:
        from turnstate_redis import RedisStorage
    except ImportError as exc:
        raise Refused(f"{option} {spec!r} needs the Redis storage: pip install turnstate-redis") from exc
    target = redis_target(spec, option)
    options: dict[str, Any] = {}
    if target.key_prefix is not None:
        options["key_prefix"] = target.key_prefix
    try:
        return RedisStorage(target.url, cluster=target.cluster, **options)
    except (ValueError, TypeError) as exc:
        raise Refused(f"{option} {_shown(spec)}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class CosmosTarget:
    """What a ``cosmos://`` URL names: the arguments of an ``azure.cosmos.aio.CosmosClient`` and the
    database and container."""

    endpoint: str
    credential: Any
    database: str
    container: str
    options: dict[str, Any]


def cosmos_target(spec: str, stack: AsyncExitStack, option: str = "--storage") -> CosmosTarget:
    """Parse a ``cosmos://`` URL; the credential (and any scratch files) close with ``stack``."""
    parts = urlsplit(spec)
    names = [unquote(name) for name in parts.path.split("/")[1:]]
    if not parts.hostname or len(names) != 2 or not all(names):
        raise Refused(f"{option} {_shown(spec)}: write cosmos://HOST:PORT/DATABASE/CONTAINER")
    if parts.username or parts.password:
        raise Refused(f"{option}: put the Cosmos account key in {COSMOS_KEY_ENV}, not in the URL")
    label = f"{option} {spec!r}"
    ours, others = _query(label, parts.query, ("verify", "ca", "cert", "key"))
    if others:
        raise Refused(f"{label}: unknown query arguments {others!r}; cosmos: URLs take verify, ca, cert, key")
    try:
        port = parts.port or 443
    except ValueError as exc:
        raise Refused(f"{option} {spec!r}: {exc}") from exc
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    options: dict[str, Any] = {}
    if "verify" in ours and not _flag(label, "verify", ours["verify"]):
        options["connection_verify"] = False
    if "ca" in ours:
        options["ssl_config"] = _trusting(spec, option, ours, stack)
    credential = _cosmos_credential(option, stack)
    return CosmosTarget(f"https://{host}:{port}/", credential, names[0], names[1], options)


def _cosmos(spec: str, create: bool, option: str, stack: AsyncExitStack) -> Storage:
    try:
        from turnstate_cosmos import CosmosStorage
    except ImportError as exc:
        raise Refused(f"{option} {spec!r} needs the Cosmos storage: pip install turnstate-cosmos") from exc
    target = cosmos_target(spec, stack, option)
    return CosmosStorage(
        target.endpoint,
        target.credential,
        target.database,
        target.container,
        create_if_missing=create,
        **target.options,
    )


def _trusting(spec: str, option: str, ours: dict[str, str], stack: AsyncExitStack) -> Any:
    from azure.cosmos import SSLConfiguration

    for name in ("ca", "cert", "key"):
        if name in ours and not os.path.isfile(ours[name]):
            raise Refused(f"{option} {spec!r}: {name}={ours[name]!r} is not a file")
    if ("cert" in ours) != ("key" in ours):
        raise Refused(f"{option} {spec!r}: cert= and key= (a client certificate) go together")
    ssl = SSLConfiguration()
    ssl.SSLCaCerts = ours["ca"]
    if "cert" in ours:
        ssl.SSLCertFile, ssl.SSLKeyFile = ours["cert"], ours["key"]
    else:
        # The SDK presents a client certificate whenever it is given a CA file; a throwaway one will do
        # for servers that ask for none.
        from turnstate.testing.tls import self_signed_certificate

        scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="turnstate-cli-"))
        cert, key = self_signed_certificate(Path(scratch), "client")
        ssl.SSLCertFile, ssl.SSLKeyFile = str(cert), str(key)
    return ssl


def _cosmos_credential(option: str, stack: AsyncExitStack) -> Any:
    key = os.environ.get(COSMOS_KEY_ENV)
    if key:
        return key
    try:
        from azure.identity.aio import (  # type: ignore[import-untyped, import-not-found, unused-ignore]
            DefaultAzureCredential,
        )
    except ImportError as exc:
        raise Refused(
            f"{option}: set {COSMOS_KEY_ENV} to the account key, or pip install azure-identity to sign in "
            "with a managed identity or the Azure CLI"
        ) from exc
    credential = DefaultAzureCredential()
    stack.push_async_callback(credential.close)
    return credential


async def _factory(spec: str, option: str) -> Storage:
    module_name, _, function_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise Refused(f"{option} {spec!r}: cannot import {module_name!r} ({exc}); check the name") from exc
    factory: Callable[[], Any] | None = getattr(module, function_name, None)
    if not callable(factory):
        found = "a non-callable" if hasattr(module, function_name) else "no"
        raise Refused(f"{option} {spec!r}: module {module_name!r} has {found} attribute {function_name!r}")
    storage = factory()
    if inspect.isawaitable(storage):
        storage = await storage
    if not isinstance(storage, Storage):
        raise Refused(f"{option} {spec!r} returned {type(storage).__name__}, not a turnstate Storage")
    return storage


def redacted(spec: str) -> str:
    """The URL with any password replaced by ``***``, for messages and reports."""
    parts = urlsplit(spec) if "://" in spec else None
    if parts is None or parts.password is None:
        return spec
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _shown(spec: str) -> str:
    return repr(redacted(spec))
