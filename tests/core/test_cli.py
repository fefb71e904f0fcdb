"""The operator command: python -m turnstate reencrypt, run as a process against a FileStorage directory."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.activities import message
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
    assert "rewritten 3" in result.stdout and "%), " in result.stderr and ", last: " in result.stderr
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


async def test_reencrypt_keeps_each_documents_expiry_unless_ttl_names_its_scope(tmp_path: Path) -> None:
    async with FileStorage(tmp_path, fsync=False) as storage:
        manager = StateManager(
            storage,
            encrypt=["user.email"],
            keys=KeyRing({"k1": OLD}),
            ttl={"user": 3600, "conversation": None},
        )
        for i in range(3):
            async with manager.turn(message(user=f"29:user-{i}")) as state:
                state.user.set("email", f"user{i}@contoso.test")
                state.conversation.set("turns", i)
        keys = sorted([k async for k in storage.list_keys()])
        before = {key: item.expires_at for key, item in (await storage.read(keys)).items()}
    assert sum(expiry is None for expiry in before.values()) == 1  # the conversation's
    env = {"TURNSTATE_KEYS": keys_env(("k2", NEW), ("k1", OLD))}
    result = run("reencrypt", "--file", str(tmp_path), "--encrypt", "user.email", env=env)
    assert result.returncode == 0, result.stderr
    assert "rewritten 3" in result.stdout
    async with FileStorage(tmp_path) as storage:
        after = {key: item.expires_at for key, item in (await storage.read(keys)).items()}
    assert after.keys() == before.keys()
    for key, expiry in before.items():
        assert after[key] == (None if expiry is None else pytest.approx(expiry, abs=1)), key

    third = bytes(range(200, 232))
    env = {"TURNSTATE_KEYS": keys_env(("k3", third), ("k2", NEW))}
    started = time.time()
    told = run("reencrypt", "--file", str(tmp_path), "--encrypt", "user.email", "--ttl", "user=60", env=env)
    assert told.returncode == 0, told.stderr
    async with FileStorage(tmp_path) as storage:
        found = await storage.read(keys)
    for key, item in found.items():
        if key.startswith("user/"):
            assert item.expires_at is not None and started + 60 <= item.expires_at <= time.time() + 60
        else:
            assert item.expires_at is None


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize("what", ["missing", "a-file"])
def test_a_directory_that_is_not_there_is_refused_and_not_created(tmp_path: Path, what: str) -> None:
    env = {"TURNSTATE_KEYS": keys_env(("k1", OLD))}
    target = tmp_path / "typo-dir"
    if what == "a-file":
        target.write_text("")
    result = run("reencrypt", "--file", str(target), "--encrypt", "user.email", env=env)
    message_line = one_line_error(result)
    assert repr(str(target)) in message_line
    assert ("does not exist" if what == "missing" else "not a directory") in message_line
    assert sorted(p.name for p in tmp_path.iterdir()) == ([] if what == "missing" else ["typo-dir"])


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("turnstate_no_such_module:make", "cannot import 'turnstate_no_such_module'"),
        ("json:no_such_function", "has no attribute 'no_such_function'"),
        ("json:__doc__", "has a non-callable attribute '__doc__'"),
        ("json", "MODULE:FUNCTION"),
    ],
)
def test_a_storage_function_that_cannot_be_found_is_a_one_line_error(spec: str, expected: str) -> None:
    env = {"TURNSTATE_KEYS": keys_env(("k1", OLD))}
    result = run("reencrypt", "--storage", spec, "--encrypt", "user.email", env=env)
    assert expected in one_line_error(result)
