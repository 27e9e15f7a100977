"""bench/prof_loops.py -- one of bench_dict.py's loops, repeated, for `perf record` (no peers, no timing table).

Run (a build with symbols: the release wheel is stripped, see docs/design.md "Where the nanoseconds go"):

    PYTHONPATH=DIR perf record -e cpu-clock -F 10000 -o OUT.data python3 bench/prof_loops.py int iterate 40
    perf report -i OUT.data --no-children --sort sym

OP is append (1M appends into a new List, REPS times), iterate (REPS passes over a 1M List) or insert
(1M `d[k] = v` into a new Dict, REPS times). The loops are bench_dict.py's own functions, imported. Prints the
CPU time per operation of the measured loops (time.thread_time) on stderr.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import mmstore
from bench_dict import append_method, insert_subscript, iterate  # the very loops bench_dict.py times


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3 or argv[0] not in ("int", "str") or argv[1] not in ("append", "iterate", "insert"):
        print("usage: prof_loops.py int|str append|iterate|insert REPS", file=sys.stderr)
        return 2
    kt, op, reps = argv[0], argv[1], int(argv[2])
    n = 1_000_000
    keys = list(range(n)) if kt == "int" else [str(i) for i in range(n)]
    vals = list(range(n)) if kt == "int" else ["v" + str(i) for i in range(n)]
    spent = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        if op == "iterate":
            lst = mmstore.List(os.path.join(tmp, "l"))
            lst.extend(vals)
        for r in range(reps):
            if op == "append":
                lst = mmstore.List(os.path.join(tmp, f"l{r}"))
                t = time.thread_time()
                append_method(lst, vals)
                spent += time.thread_time() - t
                lst.close()
            elif op == "insert":
                d = mmstore.Dict(os.path.join(tmp, f"d{r}"))
                t = time.thread_time()
                insert_subscript(d, keys, vals)
                spent += time.thread_time() - t
                d.close()
            else:
                t = time.thread_time()
                iterate(lst)
                spent += time.thread_time() - t
        if op == "iterate":
            lst.close()
    print(f"{kt} {op}: {spent / reps / n * 1e9:.1f} ns CPU per operation", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
