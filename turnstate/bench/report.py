"""The benchmark's results as a text table, one block per storage."""

from __future__ import annotations

from turnstate.bench.results import SCALE_FLAT, Run, Sample, StorageResult

_COLUMNS = (
    f" {'turns/s':>9} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'req/turn':>8} {'RU/turn':>7}"
    f" {'cli us':>6} {'srv us':>6}"
)


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _latency(sample: Sample) -> str:
    return f"{sample.p50_ms:>7.2f} {sample.p95_ms:>7.2f} {sample.p99_ms:>7.2f}"


def _storage(result: StorageResult) -> list[str]:
    lines = [f"{result.url}  ({result.storage})"]
    peers = [p.subject for p in result.concurrency[0].peers] if result.concurrency else []
    if result.concurrency:
        head = f"  {'conversations':>13}" + _COLUMNS
        lines.append(head + "".join(f" {name + ' turns/s':>26} {'ts/peer':>7}" for name in peers))
    for row in result.concurrency:
        ours = row.turnstate
        line = (
            f"  {row.conversations:>13} {ours.turns_per_second:>9,.0f} {_latency(ours)} "
            f"{_num(ours.requests_per_turn):>8} {_num(ours.request_units_per_turn):>7} "
            f"{_num(ours.client_cpu_us_per_turn, 0):>6} {_num(ours.server_cpu_us_per_turn, 0):>6}"
        )
        for peer in row.peers:
            line += f" {peer.turns_per_second:>26,.0f} {row.ratios.get(peer.subject, 0):>7.0%}"
        lines.append(line)
    if result.sizes:
        lines.append(f"  {'document KB':>13}" + _COLUMNS + f" {'stored':>7}")
        for size in result.sizes:
            ours = size.turnstate
            lines.append(
                f"  {size.document_kb:>13} {ours.turns_per_second:>9,.0f} {_latency(ours)} "
                f"{_num(ours.requests_per_turn):>8} {_num(ours.request_units_per_turn):>7} "
                f"{_num(ours.client_cpu_us_per_turn, 0):>6} {_num(ours.server_cpu_us_per_turn, 0):>6} "
                f"{_num(None if size.stored_bytes is None else size.stored_bytes / 1024):>5} KB"
            )
    if result.hot:
        lines.append(
            f"  {'hot: writers':>13} {'turns/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'retries/turn':>12} "
            f"{'give-ups':>8} {'count':>6}"
        )
        for hot in result.hot:
            lines.append(
                f"  {hot.writers:>13} {hot.turns_per_second:>9,.0f} {hot.p50_ms:>7.2f} {hot.p99_ms:>7.2f} "
                f"{hot.retries_per_turn:>12.2f} {hot.give_ups:>8} {'ok' if hot.count_ok else 'LOST':>6}"
            )
    if result.scale:
        lines.append(f"  {'other docs':>13} {'turns/s':>9} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7}")
        for scale in result.scale:
            lines.append(
                f"  {scale.other_documents:>13,} {scale.turnstate.turns_per_second:>9,.0f} "
                f"{_latency(scale.turnstate)}"
            )
        spread = result.scale_spread
        if spread is not None:
            verdict = "flat" if spread >= SCALE_FLAT else "NOT flat"
            lines.append(f"  scale: slowest row at {spread:.0%} of the fastest -> {verdict} (within 20%)")
    for target in result.targets:
        met = "met" if target.met else "MISSED"
        lines.append(
            f"  target: turnstate at least {target.min_ratio:.0%} of {target.peer} at every concurrency "
            f"-> {met} (worst {target.worst_ratio:.0%})"
        )
    for name, reason in result.skipped_peers.items():
        lines.append(f"  peer {name} left out: {reason}")
    if result.error is not None:
        lines.append(f"  FAILED: {result.error}")
    return lines


def table(run: Run) -> str:
    """Every storage's rows, with the date, machine and command on top."""
    machine = ", ".join(f"{k} {v}" for k, v in run.machine.items())
    lines = [f"turnstate bench, {run.date}", f"  machine: {machine}", f"  command: {run.command}", ""]
    for result in run.storages:
        lines += [*_storage(result), ""]
    lines.append(
        "turns/s: all conversations' turns over the wall time; latency: one turn, load to end of commit; "
        "req/turn: Redis commands (scripts' included) or Cosmos DB requests; cli us / srv us: CPU "
        "microseconds per turn of this process / of the Redis server; ts/peer: turnstate's turns/s over "
        "the peer's"
    )
    return "\n".join(lines)
