"""The Redis counter sample, run as a user would: instance processes sharing one real redis-server."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from redis_test_servers import RedisServer

SAMPLE = Path(__file__).parent.parent / "samples" / "redis_bot" / "bot.py"
WEEK = 7 * 24 * 3600


@pytest.fixture
def prefix() -> str:
    return f"counterbot-test-{uuid.uuid4().hex[:12]}:"


def run(
    server: RedisServer, prefix: str, *args: str, stdin: str = "", expect: int = 0
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, str(SAMPLE), "--redis", server.url, "--key-prefix", prefix, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == expect, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def replies(result: subprocess.CompletedProcess[str]) -> list[str]:
    """Reply texts without the ``[instance request-id]`` tag, which is checked separately."""
    lines = [line for line in result.stdout.splitlines() if line.startswith("bot> ")]
    return [line.split("] ", 1)[1] for line in lines]


def instances_answering(result: subprocess.CompletedProcess[str]) -> list[str]:
    return re.findall(r"^bot> \[(\S+) [0-9a-f]{8}\]", result.stdout, re.MULTILINE)


def stored(server: RedisServer, prefix: str) -> dict[str, tuple[dict[str, Any], int]]:
    """Every document under ``prefix``, read straight from Redis: key -> (data, TTL in seconds)."""
    with redis.Redis.from_url(server.url) as client:
        found = {}
        for name in client.scan_iter(match=prefix.encode() + b"*"):
            raw = client.get(name)
            magic, _etag, value = raw.split(b"|", 2)
            assert magic == b"ts1"
            key = name.decode()[len(prefix) :]
            found[key] = (json.loads(value)["data"], client.ttl(name))
        return found


def scope(docs: dict[str, tuple[dict[str, Any], int]], name: str) -> tuple[dict[str, Any], int]:
    (match,) = [doc for key, doc in docs.items() if key.startswith(f"{name}/")]
    return match


def test_second_instance_continues_the_first_ones_count(scenario_redis: RedisServer, prefix: str) -> None:
    a = run(scenario_redis, prefix, "--instance", "A", "hello", "hi")
    assert instances_answering(a) == ["A", "A"]
    assert replies(a) == [
        "Turn #1 in this conversation. Ann, you have sent 1.",
        "Turn #2 in this conversation (previous turn answered by A). Ann, you have sent 2.",
    ]
    b = run(scenario_redis, prefix, "--instance", "B", stdin="from B\n\nagain\n")
    assert instances_answering(b) == ["B", "B"]
    assert replies(b) == [
        "Turn #3 in this conversation (previous turn answered by A). Ann, you have sent 3.",
        "Turn #4 in this conversation (previous turn answered by B). Ann, you have sent 4.",
    ]
    back = run(scenario_redis, prefix, "--instance", "A", "--user", "bob", "back to A")
    assert replies(back) == [
        "Turn #5 in this conversation (previous turn answered by B). Bob, you have sent 1."
    ]


def test_documents_live_under_the_prefix_with_the_conversation_ttl(
    scenario_redis: RedisServer, prefix: str
) -> None:
    run(scenario_redis, prefix, "--instance", "A", "hello")
    docs = stored(scenario_redis, prefix)
    assert len(docs) == 2
    conversation, conversation_ttl = scope(docs, "conversation")
    user, user_ttl = scope(docs, "user")
    assert conversation == {"turnCount": 1, "lastInstance": "A", "lastMessage": "hello"}
    assert 0 < conversation_ttl <= WEEK
    assert user == {"displayName": "Ann", "messagesSent": 1}
    assert user_ttl == -1  # no expiry


def test_reset_clears_the_conversation_only_and_show_state_prints_it(
    scenario_redis: RedisServer, prefix: str
) -> None:
    run(scenario_redis, prefix, "--instance", "A", "one", "two")
    out = run(scenario_redis, prefix, "--instance", "B", "--show-state", "reset", "three")
    assert replies(out) == [
        "Conversation state cleared.",
        "Turn #1 in this conversation. Ann, you have sent 3.",
    ]
    assert f"state kept in Redis under {prefix!r}:" in out.stdout
    shown = [line.strip() for line in out.stdout.splitlines() if line.startswith(f"  {prefix}")]
    assert sorted(key.split("/", 1)[0] for key in shown) == [f"{prefix}conversation", f"{prefix}user"]


def demo_figures(result: subprocess.CompletedProcess[str]) -> tuple[int, int, int, int]:
    """final count, expected count, total conflicts and total merges as the demo printed them."""
    final = re.search(r"^final count: (\d+) \(expected (\d+):", result.stdout, re.MULTILINE)
    assert final is not None, result.stdout
    per_instance = re.findall(
        r"^instance [A-Z]: .* (\d+) conflicts, (\d+) merges", result.stdout, re.MULTILINE
    )
    conflicts = sum(int(c) for c, _ in per_instance)
    merges = sum(int(m) for _, m in per_instance)
    return int(final[1]), int(final[2]), conflicts, merges


def test_two_instances_at_once_lose_no_turn(scenario_redis: RedisServer, prefix: str) -> None:
    conversation = f"demo-{uuid.uuid4().hex[:8]}"
    args = ("--instances", "2", "--turns", "20", "--conversation", conversation)
    first = run(scenario_redis, prefix, *args)
    final, expected, conflicts, merges = demo_figures(first)
    assert (final, expected) == (40, 40)
    assert len(re.findall(r"^instance [AB]: 20 commits,", first.stdout, re.MULTILINE)) == 2
    # The instances did overlap, and the losing commits were merged rather than overwritten.
    assert conflicts > 0
    assert merges > 0
    assert "nothing lost" in first.stdout
    assert scope(stored(scenario_redis, prefix), "conversation")[0]["turnCount"] == 40

    again = run(scenario_redis, prefix, *args)
    assert "final count: 80 (expected 80: 40 before + 40 turns)" in again.stdout
    assert scope(stored(scenario_redis, prefix), "user")[0]["messagesSent"] == 80


def test_rerun_mode_replies_come_from_every_instance(scenario_redis: RedisServer, prefix: str) -> None:
    out = run(scenario_redis, prefix, "--instances", "3", "--turns", "10", "--rerun-on-conflict", "-v")
    final, expected, _, _ = demo_figures(out)
    assert (final, expected) == (30, 30)
    answering = instances_answering(out)
    assert sorted(set(answering)) == ["A", "B", "C"]
    assert len(answering) == 30


def test_unreachable_redis_fails_with_the_reason_and_a_fix() -> None:
    # A bound but not listening socket refuses connections for as long as this test holds it.
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        url = f"redis://127.0.0.1:{holder.getsockname()[1]}"
        result = subprocess.run(
            [sys.executable, str(SAMPLE), "--redis", url, "--instance", "A", "hello"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 1
    assert "Redis is unavailable" in result.stderr
    assert url in result.stderr
    assert "redis-server --port" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--instances", "1"], "--instances takes 2 to 26, got 1"),
        (["--instances", "2", "--turns", "0"], "--turns must be at least 1, got 0"),
        (["--instances", "2", "hello"], "--instances sends its own messages"),
        (["--work-ms", "-1", "hello"], "--work-ms takes 0 to 60000, got -1"),
    ],
)
def test_bad_options_are_refused_before_connecting(args: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, str(SAMPLE), "--redis", "redis://127.0.0.1:1", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert message in result.stderr
