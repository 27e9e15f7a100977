"""sharedbuffers' id mappers through mmstore.compat.sharedbuffers: the workload of sharedbuffers' own "huge"
tests (tests/mapped_struct.py, IdMapperTest._testBuild: build N (key, id) pairs, then look every key up in a
Python loop), as CPU time per entry, so that a loaded machine changes the figures little.

Variants run in their own subprocesses, interleaved, and every figure is the median of --repeat runs:

    python3 bench/bench_compat_sharedbuffers.py                    # this tree's installed mmstore
    python3 bench/bench_compat_sharedbuffers.py --also DIR         # + an mmstore installed in DIR (pip --target):
                                                                   #   a previous build, to measure a change
    python3 bench/bench_compat_sharedbuffers.py --peer-python build/bench-venv/bin/python   # + sharedbuffers

Ratios are against the first variant.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

WORKER = r"""
import json, os, sys, time
if sys.argv[1] == "sharedbuffers":
    from sharedbuffers import mapped_struct
else:
    from mmstore.compat.sharedbuffers import mapped_struct
n = int(sys.argv[2])


def measure(cls, key):  # IdMapperTest._testBuild's loops, in a function as there
    def gen():
        pairs = zip(range(n), range(0, 2 * n, 2))
        if key is None:  # ObjectIdMapperTest: an int, a str and a tuple key per id
            return ((kk, v) for k, v in pairs for kk in (k, str(k), (k,)))
        return ((str(k), v) for k, v in pairs) if key is str else pairs
    entries = 3 * n if key is None else n
    cpu = time.process_time
    t0 = cpu()
    rv = cls.build(gen(), tempdir=None)
    t1 = cpu()
    rvget = rv.get
    for k, v in gen():
        rvv = rvget(k)
        if rvv != v and not (isinstance(rvv, list) and v in rvv):
            raise SystemExit(f"{cls.__name__}: {k!r} -> {rvv!r}, not {v!r}")
    t2 = cpu()
    return 1e6 * (t1 - t0) / entries, 1e6 * (t2 - t1) / entries


out = {name: measure(getattr(mapped_struct, name), key)
       for name, key in (("NumericIdMapper", int), ("ObjectIdMapper", None), ("ApproxStringIdMultiMapper", str))}
print(json.dumps(out))
"""


def run(python, kind, n, path):
    env = dict(os.environ)
    if path:
        env["PYTHONPATH"] = path + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([python, "-c", WORKER, kind, str(n)], env=env, capture_output=True, text=True, cwd="/")
    if out.returncode:
        raise SystemExit(f"{kind} ({python} {path or ''}) failed:\n{out.stderr}")
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="ids per mapper (default 1M)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--also", action="append", default=[], help="directory of another mmstore install")
    ap.add_argument("--peer-python", help="a Python with sharedbuffers installed")
    ap.add_argument("--out", help="write the medians as JSON")
    a = ap.parse_args()
    variants = [("mmstore (this tree)", sys.executable, "mmstore", None)]
    variants += [(f"mmstore ({d})", sys.executable, "mmstore", d) for d in a.also]
    if a.peer_python:
        variants.append(("sharedbuffers", a.peer_python, "sharedbuffers", None))
    runs = {v[0]: [] for v in variants}
    for _ in range(a.repeat):
        for label, py, kind, path in variants:  # interleaved: load changes hit every variant alike
            runs[label].append(run(py, kind, a.n, path))
    med = {label: {m: tuple(statistics.median(r[m][i] for r in rs) for i in (0, 1)) for m in rs[0]}
           for label, rs in runs.items()}
    base = variants[0][0]
    print(f"CPU time per entry, medians of {a.repeat}, n = {a.n:,} (ObjectIdMapper: 3 keys per id)")
    print(f"{'mapper':28s} {'variant':44s} {'build us':>9s} {'lookup us':>10s} {'build x':>8s} {'lookup x':>9s}")
    for m in med[base]:
        for label in med:
            b, l = med[label][m]
            print(f"{m:28s} {label:44s} {b:9.2f} {l:10.2f} {b / med[base][m][0]:8.2f} {l / med[base][m][1]:9.2f}")
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"n": a.n, "repeat": a.repeat, "medians": med}, f, indent=1)


if __name__ == "__main__":
    main()
