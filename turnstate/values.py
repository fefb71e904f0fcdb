"""What a value set in state becomes: its JSON form, exactly as the next turn will read it back."""

from __future__ import annotations

import math
from typing import Any

import msgspec

from turnstate.document import MAX_DEPTH
from turnstate.errors import StateValueError

_BINARY = (bytes, bytearray, memoryview)
"""Left as they are by msgspec.to_builtins (which would otherwise turn them into base64 text silently)."""


def _as_decoded(value: Any, scope: str, path: str, room: int) -> Any:
    """``value`` (fresh from msgspec.to_builtins) exactly as decoding its JSON would give it back: tuples
    become lists; a non-finite float or binary data, which JSON cannot hold, or objects and lists nested
    more than ``room`` levels deep raise StateValueError."""
    cls = value.__class__
    if cls is float:
        if not math.isfinite(value):
            where = f"{scope}.{path}"
            raise StateValueError(where, f"{value!r} has no JSON form; store None or a string instead")
    elif cls is dict:
        if room <= 0:
            raise too_deep(scope, path)
        for name, item in value.items():
            value[name] = _as_decoded(item, scope, path, room - 1)
    elif cls is list:
        if room <= 0:
            raise too_deep(scope, path)
        for i, item in enumerate(value):
            value[i] = _as_decoded(item, scope, path, room - 1)
    elif cls is tuple:
        if room <= 0:
            raise too_deep(scope, path)
        return [_as_decoded(item, scope, path, room - 1) for item in value]
    elif cls in _BINARY:
        raise StateValueError(
            f"{scope}.{path}",
            f"{cls.__name__} has no JSON form. To store binary data, store it as text yourself, for example "
            f"base64.b64encode(data).decode('ascii'), and read it back as bytes with get({path!r}, bytes)",
        )
    return value


def too_deep(scope: str, path: str) -> StateValueError:
    """The error for a value at ``scope``.``path`` nested past :data:`~turnstate.document.MAX_DEPTH`."""
    return StateValueError(
        f"{scope}.{path}",
        f"nested too deeply: objects and lists would nest more than {MAX_DEPTH} levels deep in the scope "
        f"(a field holding an object is level 1, and each object along the path counts); state holds at "
        f"most {MAX_DEPTH}. Flatten the value, or store its deep part as a JSON string",
    )


def to_storable(value: Any, scope: str, path: str, depth: int = 0) -> Any:
    """Convert a value to its JSON form (dict, list, str, int, float, bool, None) or raise StateValueError.

    The result equals what decoding the stored JSON gives back, so this turn sees what the next one will.
    ``depth``: how many objects the scope holds above the value; with the value's own objects and lists
    they may nest at most :data:`~turnstate.document.MAX_DEPTH` deep.
    """
    cls = value.__class__
    if cls is str or cls is int or cls is bool or value is None:
        return value
    try:
        builtins = msgspec.to_builtins(value, builtin_types=_BINARY, str_keys=True)
    except (TypeError, ValueError, OverflowError) as exc:
        where = f"{scope}.{path}"
        raise StateValueError(where, f"{type(value).__name__} cannot be encoded as JSON ({exc})") from exc
    except RecursionError as exc:
        # converting a value within the depth limit takes a few dozen frames: this one is far deeper
        raise too_deep(scope, path) from exc
    return _as_decoded(builtins, scope, path, MAX_DEPTH - depth)
