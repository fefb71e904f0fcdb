from __future__ import annotations

import subprocess
import sys

import turnstate


def test_public_surface_is_sorted_and_importable() -> None:
    assert turnstate.__all__ == sorted(turnstate.__all__)
    for name in turnstate.__all__:
        assert getattr(turnstate, name) is not None
    assert {"MemoryStorage", "FileStorage", "StateManager", "Scope", "KeyRing", "TurnStateError"} <= set(
        turnstate.__all__
    )


def test_field_encryption_is_a_field_codec() -> None:
    """The codec protocol a custom transform implements is public, and field encryption is one."""
    assert "FieldCodec" in turnstate.__all__
    codec: turnstate.FieldCodec = turnstate.FieldEncryption(
        ["user.email"], turnstate.KeyRing({"k1": bytes(32)})
    )
    assert codec.scopes == frozenset({"user"})
    stored = codec.encrypt_data("user", "user/u", {"email": "a@example.com", "name": "A"})
    assert stored["name"] == "A" and stored["email"] != "a@example.com"
    assert codec.decrypt_data("user", "user/u", stored) == {"email": "a@example.com", "name": "A"}


def test_every_error_derives_from_the_base() -> None:
    errors = [getattr(turnstate, n) for n in turnstate.__all__ if n.endswith("Error")]
    assert errors and all(issubclass(e, turnstate.TurnStateError) for e in errors)


def test_importing_the_core_loads_no_network_backend() -> None:
    code = (
        "import sys, turnstate, turnstate.runtime; "
        "banned = ('redis', 'azure', 'aiohttp', 'turnstate_redis'); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in banned))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_package_is_typed() -> None:
    from importlib.resources import files

    assert files("turnstate").joinpath("py.typed").is_file()
