"""Field encryption in whole turns, in CPU instructions counted by valgrind: the turns of
bench_crypto.py (a user document of 12 fields on MemoryStorage, 1 or 10 of them encrypted), against
the same turn without encryption in the same run. Prints the extra instructions per encrypted field.

Steady across runs, unlike CPU time; see benchmarks/instructions.py. Needs valgrind.

    python benchmarks/bench_crypto_instructions.py
"""

from __future__ import annotations

import asyncio
import sys

import bench_crypto
from instructions import per_turn, require_valgrind


async def run_case(case: str, turns: int) -> None:
    count, change = case.split("-")
    turn = await bench_crypto.user_turns(int(count), change)
    for i in range(200 + turns):
        await turn(i)


def main() -> None:
    require_valgrind()
    print("field encryption in whole turns, CPU instructions (valgrind), extra per encrypted field")
    print(f"  {'turn changes':<24} {'fields':>6} {'no encryption':>14} {'encrypted':>10} {'per field':>10}")
    for change, label in (("plain", "a plain field"), ("encrypted", "every field")):
        base = per_turn(__file__, f"0-{change}")
        for count in (1, 10):
            ours = per_turn(__file__, f"{count}-{change}")
            print(
                f"  {label:<24} {count:>6} {base / 1000:>13.1f}k {ours / 1000:>9.1f}k"
                f" {(ours - base) / count / 1000:>9.1f}k"
            )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        asyncio.run(run_case(sys.argv[2], int(sys.argv[3])))
    else:
        main()
