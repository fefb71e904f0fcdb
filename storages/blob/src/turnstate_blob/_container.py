"""The container a BlobStorage uses, and how it is reached.

It is given (``container_client=``), or named on a service client that is given (``service_client=``) or
built from a connection string or an account URL; only clients and credentials built here are owned
(closed) by the storage.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from azure.core.credentials import AzureSasCredential
from azure.storage.blob.aio import BlobServiceClient, ContainerClient


@dataclass(frozen=True, slots=True)
class Target:
    """The container's client, what it is called in messages, and what the storage must close."""

    client: ContainerClient
    where: str
    owned: tuple[Any, ...] = ()


def target(
    container: str | None,
    *,
    connection_string: str | None,
    account_url: str | None,
    credential: Any,
    sas_token: str | None,
    service_client: BlobServiceClient | None,
    container_client: ContainerClient | None,
    options: Mapping[str, Any],
) -> Target:
    """The target the constructor's arguments name; TypeError for a combination that names none."""
    sources = [
        name
        for name, value in (
            ("connection_string", connection_string),
            ("account_url", account_url),
            ("service_client", service_client),
            ("container_client", container_client),
        )
        if value is not None
    ]
    if len(sources) != 1:
        raise TypeError(
            "BlobStorage needs exactly one of connection_string=, account_url=, service_client= or "
            f"container_client=; got {', '.join(sources) or 'none'}"
        )
    if container_client is not None:
        return _given_container(container_client, container, options)
    if not isinstance(container, str) or not container:
        raise TypeError("BlobStorage needs the container name (a non-empty str) as its first argument")
    if (credential is not None or sas_token is not None) and account_url is None:
        raise TypeError("credential= and sas_token= go with account_url=")
    owned: tuple[Any, ...] = ()
    if service_client is not None:
        service = _given_service(service_client, options)
    elif connection_string is not None:
        service = BlobServiceClient.from_connection_string(connection_string, **options)
        owned = (service,)
    else:
        assert account_url is not None
        service, owned = _account_service(account_url, credential, sas_token, options)
    client = service.get_container_client(container)
    return Target(client, _describe(client), owned)


def _given_container(
    container_client: ContainerClient, container: str | None, options: Mapping[str, Any]
) -> Target:
    if container is not None or options:
        raise TypeError("BlobStorage(container_client=...) takes no container name or client options")
    if not isinstance(container_client, ContainerClient):
        raise TypeError(
            "container_client must be an azure.storage.blob.aio.ContainerClient (the synchronous one "
            f"cannot be used), got {_type_name(container_client)}"
        )
    return Target(container_client, _describe(container_client))


def _given_service(service_client: BlobServiceClient, options: Mapping[str, Any]) -> BlobServiceClient:
    if options:
        raise TypeError("BlobStorage(service_client=...) takes no client options")
    if not isinstance(service_client, BlobServiceClient):
        raise TypeError(
            "service_client must be an azure.storage.blob.aio.BlobServiceClient (the synchronous one "
            f"cannot be used), got {_type_name(service_client)}"
        )
    return service_client


def _account_service(
    account_url: str, credential: Any, sas_token: str | None, options: Mapping[str, Any]
) -> tuple[BlobServiceClient, tuple[Any, ...]]:
    """A service client for the account URL, and what was built for it (client, then credential)."""
    if credential is not None and sas_token is not None:
        raise TypeError("give credential= or sas_token=, not both")
    owned_credential: tuple[Any, ...] = ()
    if sas_token is not None:
        credential = AzureSasCredential(sas_token.lstrip("?"))
    elif credential is None and "sig=" not in account_url:
        credential = _default_credential()
        owned_credential = (credential,)
    service = BlobServiceClient(account_url, credential=credential, **options)
    return service, (service, *owned_credential)


def _default_credential() -> Any:
    """azure-identity's DefaultAzureCredential (async), imported only when it is needed."""
    try:
        identity = importlib.import_module("azure.identity.aio")
    except ImportError as exc:
        raise TypeError(
            "BlobStorage(account_url=...) without credential= or sas_token= signs in with azure-identity's "
            "DefaultAzureCredential, which is not installed: pip install 'turnstate-blob[identity]', or pass "
            "credential= (the account key or a token credential) or sas_token="
        ) from exc
    return identity.DefaultAzureCredential()


def _describe(container: ContainerClient) -> str:
    """Container, account and host, never the URL's query (a SAS token would be in it)."""
    return (
        f"container {container.container_name!r} of account {container.account_name!r} at "
        f"{container.scheme}://{container.primary_hostname}"
    )


def _type_name(value: object) -> str:
    return f"{type(value).__module__}.{type(value).__name__}"
