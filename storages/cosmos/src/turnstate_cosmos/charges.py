"""Request charges: how many requests a CosmosStorage made and the request units (RU) they cost."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

REQUEST_CHARGE_HEADER = "x-ms-request-charge"


@dataclass(frozen=True, slots=True)
class RequestCharges:
    """Requests answered by Cosmos DB and the request units it charged for them (``x-ms-request-charge``).

    ``point_reads``: reads of one item by id (absent items included); ``writes``: creates, replaces,
    upserts and deletes; ``queries``: pages of query results; ``request_units``: the RU of all of them.
    Failed requests that got an answer (404, 409, 412, 429 ...) count; requests that got none do not.
    Records add and subtract: ``storage.charges - before`` is what was spent since ``before``.
    """

    point_reads: int = 0
    writes: int = 0
    queries: int = 0
    request_units: float = 0.0

    @property
    def requests(self) -> int:
        """Every request counted."""
        return self.point_reads + self.writes + self.queries

    def __add__(self, other: RequestCharges) -> RequestCharges:
        return RequestCharges(
            self.point_reads + other.point_reads,
            self.writes + other.writes,
            self.queries + other.queries,
            self.request_units + other.request_units,
        )

    def __sub__(self, other: RequestCharges) -> RequestCharges:
        return RequestCharges(
            self.point_reads - other.point_reads,
            self.writes - other.writes,
            self.queries - other.queries,
            self.request_units - other.request_units,
        )


Hook = Callable[[Mapping[str, Any], Any], None]


class Meter:
    """Counts the responses of one storage call (internal).

    Each SDK call gets :meth:`hook` as its ``response_hook``, which the SDK calls with that call's own
    response headers, so concurrent calls never mix their charges up.
    """

    __slots__ = ("point_reads", "queries", "request_units", "writes")

    def __init__(self) -> None:
        self.point_reads = self.writes = self.queries = 0
        self.request_units = 0.0

    def count(self, kind: str, headers: Mapping[str, Any] | None) -> None:
        """One answered request of ``kind`` (point_reads, writes or queries) with these headers."""
        setattr(self, kind, getattr(self, kind) + 1)
        self.request_units += _charge(headers)

    def hook(self, kind: str) -> Hook:
        def response_hook(headers: Mapping[str, Any], _body: Any) -> None:
            self.count(kind, headers)

        return response_hook

    def charges(self) -> RequestCharges:
        return RequestCharges(self.point_reads, self.writes, self.queries, self.request_units)


def _charge(headers: Mapping[str, Any] | None) -> float:
    if not headers:
        return 0.0
    value = headers.get(REQUEST_CHARGE_HEADER)
    try:
        return float(value) if value is not None else 0.0
    except (TypeError, ValueError):
        return 0.0
