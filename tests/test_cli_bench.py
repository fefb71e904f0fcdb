"""``turnstate bench``: the quick run against Memory and File, its JSON and plots, a server with its raw
client as the peer, and refusals of bad arguments."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.cli_targets import one_line_error, turnstate


def _rows(storage: dict[str, Any], name: str, field: str) -> list[Any]:
    return [row[field] for row in storage[name]]


def _check_sample(sample: dict[str, Any]) -> None:
    assert sample["turns"] > 0
    assert sample["turns_per_second"] > 0
    assert 0 < sample["p50_ms"] <= sample["p95_ms"] <= sample["p99_ms"]


def test_quick_run_against_memory_and_file_writes_the_table_json_and_plots(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    output, plots = tmp_path / "bench.json", tmp_path / "plots"
    result = turnstate(
        "bench", "memory:", f"file:{directory}", "--quick", "--json", str(output), "--plot", str(plots),
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "memory:" in result.stdout and f"file:{directory}" in result.stdout
    assert "botbuilder-core turns/s" in result.stdout and "agents-sdk turns/s" in result.stdout

    run = json.loads(output.read_text())
    assert run["command"].startswith("turnstate bench memory: file:")
    assert run["machine"]["cores"] >= 1 and run["machine"]["cpu"]
    assert run["date"] and run["workload"] and run["versions"]["turnstate"]
    assert run["plan"]["levels"] == [1, 8, 64]
    memory, files = run["storages"]
    assert (memory["url"], memory["storage"]) == ("memory:", "MemoryStorage")
    assert files["url"] == f"file:{directory}" and "FileStorage" in files["storage"]
    for storage in (memory, files):
        assert _rows(storage, "concurrency", "conversations") == [1, 8, 64]
        assert _rows(storage, "sizes", "document_kb") == [1, 4, 16, 64]
        assert _rows(storage, "hot", "writers") == [8, 32]
        assert _rows(storage, "scale", "other_documents") == [1_000, 10_000]
        for row in storage["concurrency"]:
            _check_sample(row["turnstate"])
        for size in storage["sizes"]:
            _check_sample(size["turnstate"])
        for hot in storage["hot"]:
            assert hot["turns"] == hot["writers"] * run["plan"]["hot_turns"]
            assert hot["give_ups"] == 0 and hot["count_ok"] is True
            assert hot["retries_per_turn"] >= 0
        assert 0 < storage["scale_spread"] <= 1 and isinstance(storage["scale_flat"], bool)
    peers = {peer["subject"] for row in memory["concurrency"] for peer in row["peers"]}
    assert peers == {"botbuilder-core", "agents-sdk"}
    for row in memory["concurrency"]:
        assert set(row["ratios"]) == peers and all(ratio > 0 for ratio in row["ratios"].values())
    assert files["concurrency"][0]["peers"] == []

    # Everything the run wrote is gone again.
    assert [p for p in directory.rglob("*") if p.is_file()] == []
    pngs = sorted(p.name for p in plots.iterdir())
    assert pngs == ["document-size.png", "latency.png", "throughput.png"]
    assert all((plots / name).read_bytes().startswith(b"\x89PNG") for name in pngs)

    # Saved runs are shown again, merged, without measuring anything.
    again = turnstate("bench", "--from", str(output), str(output), "--json", "-")
    assert again.returncode == 0, again.stderr
    both = json.loads(again.stdout)
    assert both["command"] == f"{run['command']} ; {run['command']}"
    assert [storage["url"] for storage in both["storages"]] == [
        storage["url"] for storage in run["storages"]
    ] * 2
    assert [row["turnstate"] for row in both["storages"][2]["concurrency"]] == [
        row["turnstate"] for row in memory["concurrency"]
    ]


def test_redis_is_compared_with_raw_redis_py_and_left_as_it_was(scenario_redis: Any) -> None:
    url = f"{scenario_redis.url}?prefix=bench-test:"
    with redis.Redis.from_url(scenario_redis.url) as admin:
        before = set(admin.scan_iter())
    result = turnstate(
        "bench", url, "--only", "concurrency,hot", "--seconds", "0.1", "--rounds", "1", "--json", "-", "-q",
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    (storage,) = run["storages"]
    assert storage["server"].startswith("redis ")
    assert storage["sizes"] == [] and storage["scale"] == []
    for row in storage["concurrency"]:
        (peer,) = row["peers"]
        assert peer["subject"] == "redis-py"
        _check_sample(peer)
        # the server's own count: a read script and a write script per document, and what they run
        assert row["turnstate"]["requests_per_turn"] >= 4 and peer["requests_per_turn"] >= 4
    (target,) = storage["targets"]
    assert target["peer"] == "redis-py" and target["min_ratio"] == 0.7
    with redis.Redis.from_url(scenario_redis.url) as admin:
        assert set(admin.scan_iter()) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["memory:", "--only", "speed"], "rows are concurrency, sizes, scale, hot"),
        (["memory:", "--scale", "many"], "is not a comma-separated list of counts"),
    ],
)
def test_bad_options_are_refused_naming_them(args: list[str], message: str) -> None:
    result = turnstate("bench", *args)
    assert result.returncode == 2 and message in result.stderr


def test_an_unknown_storage_is_refused_in_one_line() -> None:
    error = one_line_error(turnstate("bench", "ftp://example/x", "--quick", "-q"), 2)
    assert "unknown scheme 'ftp'" in error


def test_a_storage_built_by_a_function_is_benchmarked(tmp_path: Path) -> None:
    (tmp_path / "benched_bot.py").write_text(
        "from turnstate import FileStorage\n\n"
        f"def make_storage():\n    return FileStorage({str(tmp_path / 'state')!r}, fsync=False)\n"
    )
    result = turnstate(
        "bench", "benched_bot:make_storage", "--only", "concurrency", "--seconds", "0.05", "--rounds", "1",
        "--json", "-", "-q",
        env={"PYTHONPATH": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (storage,) = json.loads(result.stdout)["storages"]
    assert storage["url"] == "benched_bot:make_storage" and "FileStorage" in storage["storage"]
    assert [row["conversations"] for row in storage["concurrency"]] == [1, 8, 64]
    assert [p for p in (tmp_path / "state").rglob("*") if p.is_file() and ".locks" not in p.parts] == []
