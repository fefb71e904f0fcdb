"""The operator command: python -m turnstate reencrypt, run as a process against a FileStorage directory."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

from tests.activities import message
from turnstate import StateManager
from turnstate.keyring import KeyRing
from turnstate.storage.file import FileStorage

OLD, NEW = bytes(range(32)), bytes(range(100, 132))


def keys_env(*pairs: tuple[str, bytes]) -> str:
    return ",".join(f"{kid}:{base64.b64encode(key).decode()}" for kid, key in pairs)


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "turnstate", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **env},
    )


async def seed(directory: Path, users: int) -> None:
    async with FileStorage(directory, fsync=False) as storage:
        manager = StateManager(storage, encrypt=["user.email"], keys=KeyRing({"k1": OLD}))
        for i in range(users):
            async with manager.turn(message(user=f"29:user-{i}")) as state:
                state.user.set("email", f"user{i}@contoso.test")


def stored(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in directory.iterdir() if p.is_file())


async def test_reencrypt_rewrites_every_document_under_the_new_primary(tmp_path: Path) -> None:
    await seed(tmp_path, 3)
    assert stored(tmp_path).count(b".k1.") == 3
    env = {"TURNSTATE_KEYS": keys_env(("k2", NEW), ("k1", OLD))}
    result = run("reencrypt", "--file", str(tmp_path), "--encrypt", "user.email", env=env)
    assert result.returncode == 0, result.stderr
    assert "rewritten 3" in result.stdout and "%), last: " in result.stdout
    assert b".k1." not in stored(tmp_path) and stored(tmp_path).count(b".k2.") == 3
    again = run("reencrypt", "--file", str(tmp_path), "--encrypt", "user.email", env=env)
    assert "rewritten 0" in again.stdout and "already under 'k2' 3" in again.stdout
    async with FileStorage(tmp_path) as storage:  # readable with the new key alone
        manager = StateManager(storage, encrypt=["user.email"], keys=KeyRing({"k2": NEW}))
        async with manager.turn(message(user="29:user-1")) as state:
            assert state.user.get("email") == "user1@contoso.test"


async def test_resume_after_skips_the_keys_already_done(tmp_path: Path) -> None:
    await seed(tmp_path, 4)
    async with FileStorage(tmp_path) as storage:
        keys = sorted([k async for k in storage.list_keys("user/")])
    env = {"TURNSTATE_KEYS": keys_env(("k2", NEW), ("k1", OLD))}
    result = run(
        "reencrypt", "--file", str(tmp_path), "--encrypt", "user.email", "--resume-after", keys[1], env=env
    )
    assert result.returncode == 0, result.stderr
    assert "scanned 2: rewritten 2" in result.stdout
    assert stored(tmp_path).count(b".k1.") == 2


def test_bad_keys_fail_clearly_without_showing_key_material(tmp_path: Path) -> None:
    short = base64.b64encode(os.urandom(31)).decode()
    result = run(
        "reencrypt", "--file", str(tmp_path), "--encrypt", "user.email", env={"TURNSTATE_KEYS": f"k1:{short}"}
    )
    assert result.returncode == 2
    assert "error:" in result.stderr and "31 bytes" in result.stderr and "exactly 32" in result.stderr
    assert short not in result.stderr + result.stdout
    missing = run("reencrypt", "--file", str(tmp_path), "--encrypt", "user.email", env={"TURNSTATE_KEYS": ""})
    assert missing.returncode == 2 and "TURNSTATE_KEYS" in missing.stderr


def test_storage_factory_and_ttl_options_are_checked(tmp_path: Path) -> None:
    env = {"TURNSTATE_KEYS": keys_env(("k1", OLD))}
    bad_ttl = run("reencrypt", "--file", str(tmp_path), "--encrypt", "user.email", "--ttl", "user", env=env)
    assert bad_ttl.returncode != 0 and "--ttl" in bad_ttl.stderr
    bad_factory = run("reencrypt", "--storage", "json:dumps", "--encrypt", "user.email", env=env)
    assert bad_factory.returncode != 0
