"""Per-turn cost of the state layer in CPU instructions, counted by valgrind: the same turns as
bench_turn.py, against botbuilder-core in the same run.

CPU time on a shared machine moves by 10-30% from run to run; instruction counts do not, so this is the
figure to compare before and after a change. Each case runs twice under ``valgrind --tool=cachegrind``
(1,000 and 3,000 turns after a warm-up) and the difference is divided by 2,000, which cancels start-up.
Needs valgrind (Debian: ``apt-get install valgrind``) and the bench extra (``pip install -e '.[bench]'``).

    python benchmarks/bench_turn_instructions.py
"""

from __future__ import annotations

import asyncio
import sys

import bench_turn
from instructions import per_turn, require_valgrind

CASES = {
    "read-write turn": ("turnstate-write", "botbuilder-write"),
    "  without dedupe": ("turnstate-write-nodedupe", "botbuilder-write"),
    "read-only turn": ("turnstate-read", "botbuilder-read"),
}


async def run_case(case: str, turns: int) -> None:
    known = sorted({name for pair in CASES.values() for name in pair})
    if case not in known:
        raise SystemExit(f"unknown case {case!r}; cases: {', '.join(known)}")
    if case.startswith("turnstate"):
        write, read = bench_turn.turnstate_turns(**({"dedupe": False} if case.endswith("nodedupe") else {}))
    else:
        write, read = bench_turn.botbuilder_turns()
    turn = read if case.endswith("read") else write
    await write(0)  # seeds both documents
    for i in range(200 + turns):
        await turn(i + 1)


def main() -> None:
    require_valgrind()
    counted: dict[str, float] = {}
    print("CPU instructions per turn, conversation + user documents of 10 keys, MemoryStorage (valgrind)")
    print(f"{'':18}{'turnstate':>12}{'botbuilder-core':>18}{'ratio':>9}")
    for name, (ours, peer) in CASES.items():
        for case in (ours, peer):
            if case not in counted:
                counted[case] = per_turn(__file__, case)
        print(
            f"{name:18}{counted[ours] / 1000:>10.1f}k{counted[peer] / 1000:>16.1f}k"
            f"{counted[peer] / counted[ours]:>8.1f}x"
        )
    print("'without dedupe': redelivery detection off (StateManager(dedupe=False)); botbuilder has none.")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        asyncio.run(run_case(sys.argv[2], int(sys.argv[3])))
    else:
        main()
