"""bench/ab_dict.py -- before/after: bench_dict.py against two builds of mmstore, interleaved.

Run:  python3 bench/ab_dict.py --a DIR_A --b DIR_B [--rounds 3] [--n 1000000] [--clock wall|cpu]

DIR_A and DIR_B are directories that hold an installed `mmstore` package each (e.g. `pip install --target
DIR --no-deps .` of two commits; an empty string means the mmstore the interpreter imports by default).
Each round runs `bench_dict.py --runs 1 --peers none` once with A and once with B (alternating which goes
first), so load that drifts over the minutes hits both alike; each figure is the median over rounds of the
ratio mmstore / builtin taken inside one run. Two _core extensions cannot share one process, hence the
subprocesses.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
OPS = ("insert", "get", "append", "iterate", "index", "extend")
LABEL = {"insert": "Dict insert", "get": "Dict random get", "append": "List append", "iterate": "List iterate",
         "index": "List random index", "extend": "List extend"}


def one(pkg: str, n: int, out: Path, clock: str) -> dict:
    env = dict(os.environ)
    if pkg:
        env["PYTHONPATH"] = pkg + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    subprocess.run([sys.executable, str(HERE / "bench_dict.py"), "--n", str(n), "--runs", "1", "--peers", "none",
                    "--json", str(out), "--clock", clock], env=env, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--a", required=True, help="directory holding build A's mmstore (before)")
    ap.add_argument("--b", required=True, help="directory holding build B's mmstore (after)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="passed to bench_dict.py")
    args = ap.parse_args(argv)
    ratios: dict = {"a": {}, "b": {}}
    ns: dict = {"a": {}, "b": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for side in (("a", "b") if r % 2 == 0 else ("b", "a")):
                res = one(getattr(args, side), args.n, Path(tmp) / f"{side}{r}.json", args.clock)
                for kt, w in res["workloads"].items():
                    for op in OPS:
                        e = w["mmstore"]["ops"].get(op)
                        if e is None:
                            continue
                        ratios[side].setdefault((kt, op), []).append(e["ratio_vs_builtin"]["median"])
                        ns[side].setdefault((kt, op), []).append(e["median"] * 1e9)
                print(f"round {r + 1}/{args.rounds} {side} done", file=sys.stderr)
    print(f"mmstore / builtin, median of {args.rounds} interleaved rounds, N = {args.n:,}, {args.clock} clock "
          f"(A = {args.a or 'default'}, B = {args.b or 'default'})")
    print(f"{'row':<20}{'kind':<6}{'A ratio':>9}{'B ratio':>9}{'A ns':>9}{'B ns':>9}")
    for kt in ("int", "str"):
        for op in OPS:
            k = (kt, op)
            if k not in ratios["a"] or k not in ratios["b"]:
                continue
            ra, rb = statistics.median(ratios["a"][k]), statistics.median(ratios["b"][k])
            na, nb = statistics.median(ns["a"][k]), statistics.median(ns["b"][k])
            print(f"{LABEL[op]:<20}{kt:<6}{ra:>8.2f}x{rb:>8.2f}x{na:>9.1f}{nb:>9.1f}")
    print(f"load average at the end: {tuple(round(x, 1) for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
