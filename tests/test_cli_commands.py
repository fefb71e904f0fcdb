"""Every command of the installed ``turnstate`` script, run as a process against File, Redis and Cosmos."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cosmos_test_server import EMULATOR_KEY

from tests.support.activities import message
from tests.support.backends import Backend, blob_backend, cosmos_backend, file_backend, redis_backend
from tests.support.cli_targets import backend_env, one_line_error, storage_url, turnstate
from turnstate import StateManager
from turnstate.document import encode, encode_data
from turnstate.keyring import KeyRing
from turnstate.storage.base import Storage, WriteItem
from turnstate.storage.file import FileStorage
from turnstate.testing.tls import self_signed_certificate

OLD, NEW = bytes(range(32)), bytes(range(100, 132))


def ring(*pairs: tuple[str, bytes]) -> str:
    return ",".join(f"{kid}:{base64.b64encode(key).decode()}" for kid, key in pairs)


@pytest.fixture(params=["file", "redis", "cosmos", "blob"])
async def target(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """A fresh storage of each kind the command line can name."""
    if request.param == "file":
        backend = file_backend(tmp_path / "state")
    elif request.param == "redis":
        backend = redis_backend(request.getfixturevalue("scenario_redis").url, cluster=False)
    elif request.param == "blob":
        backend = blob_backend(request.getfixturevalue("scenario_blob"))
    else:
        server = request.getfixturevalue("scenario_cosmos")
        backend = cosmos_backend(server.endpoint, EMULATOR_KEY, str(server.certificate), str(server.key))
    backend.open()  # creates the directory, database or container
    yield backend
    await backend.close_all()


def doc(**fields: Any) -> bytes:
    return encode(encode_data(fields))


async def put(storage: Storage, documents: dict[str, tuple[bytes, float | None]]) -> None:
    await storage.write({key: WriteItem(value, ttl=ttl) for key, (value, ttl) in documents.items()})


async def seed_encrypted(storage: Storage, users: int, keys: KeyRing, ttl: float | None = 3600) -> list[str]:
    manager = StateManager(storage, encrypt=["user.email"], keys=keys, ttl={"user": ttl})
    for i in range(users):
        async with manager.turn(message(user=f"29:user-{i}")) as state:
            state.user.set("email", f"user{i}@contoso.test")
            state.user.set("name", f"User {i}")
    return sorted([k async for k in storage.list_keys("user/")])


def lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# -- ls ------------------------------------------------------------------------------------------------


async def test_ls_lists_keys_with_size_etag_and_expiry(target: Backend) -> None:
    storage = target.open()
    await put(
        storage,
        {"user/a": (doc(n=1), 3600), "user/b": (doc(n=22), None), "conversation/c": (doc(), 60)},
    )
    stored = await storage.read(["user/a", "user/b", "conversation/c"])
    url, env = storage_url(target), backend_env(target)

    listed = turnstate("ls", "--json", "-s", url, env=env)
    assert listed.returncode == 0, listed.stderr
    records = {r["key"]: r for r in lines(listed.stdout)}
    assert sorted(records) == ["conversation/c", "user/a", "user/b"]
    for key, item in stored.items():
        assert records[key]["size"] == len(item.value)
        assert records[key]["etag"] == item.etag
        assert records[key]["expires_at"] == (
            None if item.expires_at is None else pytest.approx(item.expires_at)
        )
    assert 0 < records["user/a"]["remaining"] <= 3600 and records["user/b"]["remaining"] is None

    scoped = turnstate("ls", "--scope", "user", "-s", url, env=env)
    assert scoped.returncode == 0, scoped.stderr
    assert "user/a" in scoped.stdout and "conversation/c" not in scoped.stdout
    assert "2 documents under 'user/'" in scoped.stdout and "never" in scoped.stdout
    by_prefix = turnstate("ls", "conv", "--json", "-s", url, env=env)
    assert [r["key"] for r in lines(by_prefix.stdout)] == ["conversation/c"]


# -- show ----------------------------------------------------------------------------------------------


async def test_show_masks_encrypted_fields_unless_decrypting(target: Backend) -> None:
    storage = target.open()
    key = (await seed_encrypted(storage, 1, KeyRing({"k1": OLD})))[0]
    etag = (await storage.read([key]))[key].etag
    url, env = storage_url(target), backend_env(target)

    shown = turnstate("show", key, "-s", url, env=env)
    assert shown.returncode == 0, shown.stderr
    assert f"etag: {etag}" in shown.stdout
    assert '"email": "<encrypted>"' in shown.stdout and '"name": "User 0"' in shown.stdout
    assert "contoso" not in shown.stdout and "$enc" not in shown.stdout

    keys = ring(("k1", OLD))
    plain = turnstate("show", key, "--decrypt", "--json", "-s", url, env={**env, "TURNSTATE_KEYS": keys})
    assert plain.returncode == 0, plain.stderr
    record = json.loads(plain.stdout)
    assert record["etag"] == etag and record["key"] == key
    assert record["document"]["v"] == 1
    assert record["document"]["data"] == {"email": "user0@contoso.test", "name": "User 0"}
    assert keys.split(":")[1] not in plain.stdout + plain.stderr

    no_keys = turnstate("show", key, "--decrypt", "-s", url, env=env)
    assert "TURNSTATE_KEYS" in one_line_error(no_keys, 2)
    wrong = turnstate("show", key, "--decrypt", "-s", url, env={**env, "TURNSTATE_KEYS": ring(("k2", NEW))})
    line = one_line_error(wrong, 1)
    assert repr(key) in line and "contoso" not in wrong.stdout + wrong.stderr
    absent = turnstate("show", "user/nobody", "-s", url, env=env)
    assert "'user/nobody'" in one_line_error(absent, 1)


# -- rm ------------------------------------------------------------------------------------------------


async def test_rm_is_conditional_on_the_etag_show_printed(target: Backend) -> None:
    storage = target.open()
    await put(storage, {"user/a": (doc(n=1), None), "user/b": (doc(n=2), None)})
    url, env = storage_url(target), backend_env(target)
    first = json.loads(turnstate("show", "user/a", "--json", "-s", url, env=env).stdout)["etag"]
    await put(storage, {"user/a": (doc(n=3), None)})  # a bot writes meanwhile

    stale = turnstate("rm", "user/a", "--etag", first, "-s", url, env=env)
    assert "'user/a'" in one_line_error(stale, 3)
    assert (await storage.read(["user/a"]))["user/a"].value == doc(n=3)

    current = json.loads(turnstate("show", "user/a", "--json", "-s", url, env=env).stdout)["etag"]
    done = turnstate("rm", "user/a", "--etag", current, "-s", url, env=env)
    assert done.returncode == 0, done.stderr
    assert "deleted 'user/a'" in done.stdout
    assert await storage.read(["user/a"]) == {}

    unconfirmed = turnstate("rm", "user/b", "--force", "-s", url, env=env)
    assert "--yes" in one_line_error(unconfirmed, 2)
    assert "user/b" in await storage.read(["user/b"])
    forced = turnstate("rm", "user/b", "--force", "--yes", "-s", url, env=env)
    assert forced.returncode == 0, forced.stderr
    assert await storage.read(["user/b"]) == {}
    neither = turnstate("rm", "user/b", "-s", url, env=env)
    assert "--etag" in one_line_error(neither, 2)


# -- purge ---------------------------------------------------------------------------------------------


async def test_purge_removes_expired_documents_after_a_dry_run(target: Backend) -> None:
    storage = target.open()
    await put(storage, {"user/short": (doc(), 0.5), "user/long": (doc(), 3600), "user/never": (doc(), None)})
    url, env = storage_url(target), backend_env(target)
    time.sleep(1.0)  # let the short one expire
    if target.spec["kind"] == "blob":  # expired blobs read as absent until a purge deletes them
        result = turnstate("purge", "--yes", "--json", "-s", url, env=env)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["removed"] == 1
        assert sorted([k async for k in storage.list_keys()]) == ["user/long", "user/never"]
        return
    if target.spec["kind"] != "file":
        result = turnstate("purge", "--yes", "-s", url, env=env)
        assert result.returncode == 0, result.stderr
        assert "nothing to purge" in result.stdout and "removes expired documents itself" in result.stdout
        return
    directory = Path(target.spec["path"])
    leftover = directory / ".tmp-crashed"
    leftover.write_bytes(b"{}")
    os.utime(leftover, (time.time() - 3600, time.time() - 3600))
    expired_file = Path(FileStorage(directory).path_for("user/short"))
    assert expired_file.exists()

    dry = turnstate("purge", "--dry-run", "-s", url, env=env)
    assert dry.returncode == 0, dry.stderr
    assert "would remove expired document 'user/short'" in dry.stdout
    assert "would remove stale temporary file '.tmp-crashed'" in dry.stdout
    assert "user/long" not in dry.stdout and "nothing was removed" in dry.stdout
    assert expired_file.exists() and leftover.exists()

    refused = turnstate("purge", "-s", url, env=env)
    assert "--yes" in one_line_error(refused, 2)
    done = turnstate("purge", "--yes", "--json", "-s", url, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["removed"] == 2
    assert not expired_file.exists() and not leftover.exists()
    assert sorted([k async for k in storage.list_keys()]) == ["user/long", "user/never"]


# -- export / import -----------------------------------------------------------------------------------


async def test_export_then_import_keeps_bytes_and_expiry(target: Backend, tmp_path: Path) -> None:
    storage = target.open()
    documents = {f"user/{i:03}": (doc(i=i, text='é"\\'), 3600.0 if i % 2 else None) for i in range(30)}
    await put(storage, documents)
    await put(storage, {"conversation/x": (doc(), None)})
    source = await storage.read(list(documents))
    url, env = storage_url(target), backend_env(target)

    exported = turnstate("export", "user/", "-s", url, env=env)
    assert exported.returncode == 0, exported.stderr
    records = lines(exported.stdout)
    assert [r["key"] for r in records] == sorted(documents)
    assert "exported 30 documents" in exported.stderr
    dump = tmp_path / "dump.jsonl"
    dump.write_text(exported.stdout)

    into = tmp_path / "restored"
    imported = turnstate("import", str(dump), "-s", f"file:{into}?fsync=0")
    assert imported.returncode == 0, imported.stderr
    assert "imported 30, already present 0" in imported.stdout
    async with FileStorage(into) as restored:
        copies = await restored.read(list(documents))
    for key, item in source.items():
        assert copies[key].value == item.value, key
        if item.expires_at is None:
            assert copies[key].expires_at is None
        else:
            assert copies[key].expires_at == pytest.approx(item.expires_at, abs=2)

    # back into the same storage: create-only keeps what is there
    again = turnstate("import", str(dump), "--json", "-s", url, env=env)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["already_present"] == 30
    await put(storage, {"user/000": (doc(changed=True), None)})
    conflict = turnstate("import", str(dump), "-s", url, env=env)
    assert conflict.returncode == 3 and "'user/000'" in conflict.stderr
    assert (await storage.read(["user/000"]))["user/000"].value == doc(changed=True)
    overwrite = turnstate("import", str(dump), "--overwrite", "--yes", "-s", url, env=env)
    assert overwrite.returncode == 0, overwrite.stderr
    assert (await storage.read(["user/000"]))["user/000"].value == source["user/000"].value


def test_import_refuses_a_bad_line_naming_it(tmp_path: Path) -> None:
    dump = tmp_path / "dump.jsonl"
    dump.write_text('{"key":"user/a","value":{"v":1,"data":{}},"expires_at":null}\nnot json\n')
    result = turnstate("import", str(dump), "-s", f"file:{tmp_path / 'into'}")
    assert "line 2" in one_line_error(result, 2)


# -- migrate -------------------------------------------------------------------------------------------


async def test_migrate_copies_everything_create_only_and_verifies(target: Backend, tmp_path: Path) -> None:
    storage = target.open()
    await put(storage, {f"user/{i:02}": (doc(i=i), 3600.0 if i % 3 else None) for i in range(25)})
    source = await storage.read([f"user/{i:02}" for i in range(25)])
    url, env = storage_url(target), backend_env(target)
    into = f"file:{tmp_path / 'copy'}?fsync=0"

    copied = turnstate("migrate", url, into, env=env)
    assert copied.returncode == 0, copied.stderr
    assert "copied 25" in copied.stdout and "verified: 25 of 25" in copied.stdout
    async with FileStorage(tmp_path / "copy") as destination:
        copies = await destination.read(list(source))
    for key, item in source.items():
        assert copies[key].value == item.value
        assert (copies[key].expires_at is None) == (item.expires_at is None)

    # back the other way, into the (non-empty) source: needs --yes, copies nothing twice
    refused = turnstate("migrate", into, url, env=env)
    assert "--yes" in one_line_error(refused, 2)
    back = turnstate("migrate", into, url, "--yes", "--json", env=env)
    assert back.returncode == 0, back.stderr
    summary = json.loads(back.stdout)
    assert summary["written"] == 0 and summary["already_present"] == 25 and summary["verified"] == 25
    etags = {key: item.etag for key, item in (await storage.read(list(source))).items()}
    assert etags == {key: item.etag for key, item in source.items()}


# -- reencrypt -----------------------------------------------------------------------------------------


async def test_reencrypt_rewrites_under_the_new_primary_keeping_expiry(target: Backend) -> None:
    storage = target.open()
    keys = await seed_encrypted(storage, 3, KeyRing({"k1": OLD}))
    before = await storage.read(keys)
    url, env = storage_url(target), backend_env(target)
    result = turnstate(
        "reencrypt",
        "--encrypt",
        "user.email",
        "-s",
        url,
        env={**env, "TURNSTATE_KEYS": ring(("k2", NEW), ("k1", OLD))},
    )
    assert result.returncode == 0, result.stderr
    assert "rewritten 3" in result.stdout and "last: " in result.stderr
    after = await storage.read(keys)
    for key in keys:
        assert b".k2." in after[key].value and b".k1." not in after[key].value
        assert after[key].expires_at == pytest.approx(before[key].expires_at, abs=2)
    manager = StateManager(storage, encrypt=["user.email"], keys=KeyRing({"k2": NEW}))
    async with manager.turn(message(user="29:user-2")) as state:
        assert state.user.get("email") == "user2@contoso.test"


# -- doctor --------------------------------------------------------------------------------------------


async def test_doctor_checks_the_storage_keys_and_documents(target: Backend) -> None:
    storage = target.open()
    await seed_encrypted(storage, 2, KeyRing({"k1": OLD}))
    url, env = storage_url(target), backend_env(target)
    keys = {"TURNSTATE_KEYS": ring(("k1", OLD))}

    healthy = turnstate("doctor", "-s", url, env={**env, **keys})
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    for check in ("connectivity", "read latency", "write+delete latency", "capabilities", "key ring"):
        assert f"ok    {check}:" in healthy.stdout
    assert "2 of 2 sampled documents decoded and decrypted" in healthy.stdout
    assert "primary 'k1'" in healthy.stdout and keys["TURNSTATE_KEYS"].split(":")[1] not in healthy.stdout
    if target.spec["kind"] == "cosmos":
        assert "container settings: database=" in healthy.stdout and "('/id',)" in healthy.stdout
    assert [k async for k in storage.list_keys("turnstate-doctor/")] == []

    await put(storage, {"user/broken": (b'{"not":"a turnstate document"}', None)})
    broken = turnstate("doctor", "--json", "-s", url, env={**env, **keys})
    assert broken.returncode == 1
    report = json.loads(broken.stdout)
    assert report["ok"] is False
    documents = next(c for c in report["checks"] if c["name"] == "documents")
    assert list(documents["data"]["unreadable"]) == ["user/broken"]

    if target.spec["kind"] == "file":  # a damaged file is counted too, and named in a warning
        damaged = Path(target.spec["path"]) / "user%2fdamaged"
        damaged.write_bytes(b"\x00garbage")
        result = turnstate("doctor", "-s", url, env={**env, **keys})
        assert result.returncode == 1 and "FAIL  documents" in result.stdout
        assert "1 unreadable files" in result.stdout and "user%2fdamaged" in result.stderr
        damaged.unlink()

    wrong_ring = turnstate("doctor", "-s", url, env={**env, "TURNSTATE_KEYS": ring(("k2", NEW))})
    assert wrong_ring.returncode == 1 and "FAIL  documents" in wrong_ring.stdout
    bad_ring = turnstate("doctor", "-s", url, env={**env, "TURNSTATE_KEYS": "k1:short"})
    assert bad_ring.returncode == 1 and "FAIL  key ring" in bad_ring.stdout
    assert "short" not in bad_ring.stdout.replace("FAIL  key ring", "")


# -- storage URLs and errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("bogus", "MODULE:FUNCTION"),
        ("ftp://host/x", "unknown scheme 'ftp'"),
        ("file:", "names no directory"),
        ("file:/no/such/turnstate/dir", "does not exist"),
        ("file:./x?fsync=maybe", "fsync='maybe'"),
        ("redis://127.0.0.1:6379?cluster=perhaps", "cluster='perhaps'"),
        ("cosmos://127.0.0.1:8081/only-database", "cosmos://HOST:PORT/DATABASE/CONTAINER"),
        ("cosmos://127.0.0.1:8081/db/c?ca=/no/such.pem", "is not a file"),
        ("cosmos://127.0.0.1:8081/db/c?colour=blue", "unknown query arguments"),
        ("turnstate_no_such_module:make", "cannot import 'turnstate_no_such_module'"),
        ("json:no_such_function", "has no attribute 'no_such_function'"),
    ],
)
def test_a_bad_storage_url_is_a_one_line_error(url: str, expected: str) -> None:
    result = turnstate("ls", "-s", url, env={"TURNSTATE_COSMOS_KEY": EMULATOR_KEY})
    assert expected in one_line_error(result, 2)
    assert result.stdout == ""


def test_no_storage_named_is_a_usage_error() -> None:
    assert "--storage" in one_line_error(turnstate("ls"), 2)


def test_an_unreachable_storage_exits_4(tmp_path: Path) -> None:
    result = turnstate("ls", "-s", "redis://127.0.0.1:1?prefix=x:")
    assert "127.0.0.1:1" in one_line_error(result, 4)
    (tmp_path / "state").mkdir()
    copy = turnstate("migrate", f"file:{tmp_path / 'state'}", "redis://127.0.0.1:1?prefix=x:")
    assert "127.0.0.1:1" in one_line_error(copy, 4)


def test_doctor_reports_an_unreachable_storage_as_a_failed_check() -> None:
    result = turnstate("doctor", "-s", "redis://127.0.0.1:1?prefix=x:")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL  connectivity" in result.stdout and "127.0.0.1:1" in result.stdout
    assert "some checks FAILED" in result.stdout


async def test_a_redis_cluster_is_named_with_cluster_1(scenario_cluster: Any, tmp_path: Path) -> None:
    source = tmp_path / "state"
    async with FileStorage(source, fsync=False) as storage:
        await put(storage, {f"user/{i}": (doc(i=i), 3600.0) for i in range(20)})
    url = f"{scenario_cluster.url}?cluster=1&prefix=cli-{os.urandom(4).hex()}:"
    copied = turnstate("migrate", f"file:{source}", url)
    assert copied.returncode == 0, copied.stderr
    assert "verified: 20 of 20" in copied.stdout
    listed = turnstate("ls", "--json", "-s", url)
    assert sorted(r["key"] for r in lines(listed.stdout)) == sorted(f"user/{i}" for i in range(20))
    assert all(3500 < r["remaining"] <= 3600 for r in lines(listed.stdout))


def test_the_storage_url_can_come_from_the_environment(tmp_path: Path) -> None:
    result = turnstate("ls", env={"TURNSTATE_STORAGE": f"file:{tmp_path}"})
    assert result.returncode == 0 and "0 documents" in result.stdout


@pytest.mark.parametrize(
    "command",
    [[], ["ls"], ["show"], ["rm"], ["export"], ["import"], ["migrate"], ["purge"], ["reencrypt"], ["doctor"]],
)
def test_help_describes_each_command(command: list[str]) -> None:
    result = turnstate(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: turnstate")
    assert "exit codes:" in result.stdout and "3  precondition failed" in result.stdout
    assert "TURNSTATE_STORAGE" in result.stdout


def test_cosmos_urls_take_tls_options_and_never_create_a_source(scenario_cosmos: Any, tmp_path: Path) -> None:
    host = f"127.0.0.1:{scenario_cosmos.port}"
    database = f"cli-{os.urandom(4).hex()}"
    env = {"TURNSTATE_COSMOS_KEY": EMULATOR_KEY}
    dump = tmp_path / "one.jsonl"
    dump.write_text('{"key":"user/a","value":{"v":1,"data":{"n":1}},"expires_at":null}\n')

    created = turnstate("import", str(dump), "-s", f"cosmos://{host}/{database}/state?verify=0", env=env)
    assert created.returncode == 0, created.stderr
    listed = turnstate(
        "ls", "--json", "-s", f"cosmos://{host}/{database}/state?ca={scenario_cosmos.certificate}", env=env
    )
    assert listed.returncode == 0, listed.stderr
    assert [r["key"] for r in lines(listed.stdout)] == ["user/a"]

    missing = turnstate("ls", "-s", f"cosmos://{host}/{database}-typo/state", env=env)
    assert f"{database}-typo" in one_line_error(missing, 1)
    other_ca, _ = self_signed_certificate(tmp_path, "other")
    untrusted = turnstate("ls", "-s", f"cosmos://{host}/{database}/state?ca={other_ca}", env=env)
    assert "CERTIFICATE_VERIFY_FAILED" in one_line_error(untrusted, 4)
    assert len(untrusted.stderr.splitlines()) == 1, untrusted.stderr
