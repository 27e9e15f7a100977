"""bench/bench_pool.py -- mmstore.Pool spill/restore against dd, zict and Dask's SpillBuffer, in one run.

Run:  PYTHONPATH=python python3 bench/bench_pool.py [--runs 3] [--dir DIR] [--quick]

What it measures (bench/README.md has the details):
  1. Throughput of 64 MiB arrays, against dd of the same size to the same directory:
       spill    pool.move_to_disk(ref)            vs  dd if=/dev/zero of=F bs=1M count=64
       restore  pool.get(ref) + read every byte   vs  dd if=F of=/dev/null bs=1M (page cache warm for both)
       synced   spill file written with fsync     vs  dd ... conv=fdatasync (what the disk itself sustains)
     ratio = dd time / mmstore time (>= 0.8 is the target: at least 80% of dd's bandwidth); within a run,
     each figure is the median of 5 interleaved repetitions.
  2. Zero-copy restores: median time of pool.get of a spilled 1 GiB array / of a 1 MiB array (<= 3).
  3. A mixed workload of numpy arrays, dicts holding arrays and small Python data (--mixed-mib in total,
     limit --limit-mib) against zict.Buffer(dict, zict.Func(pickle.dumps, pickle.loads, zict.File(dir)))
     and distributed.spill.SpillBuffer: time to store everything (spilling as the limit requires), time to
     read everything back touching every page, and peak RSS. Each peer runs in its own fresh subprocess,
     whose VmHWM (/proc/self/status) is that peer's own peak.

Every figure is the median over --runs runs; ratios are taken within each run, then the median reported.
Results, with every run's figures, go to bench/results/bench_pool.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import mmstore
from mmstore import _core

HERE = Path(__file__).resolve().parent
MiB = 1 << 20


# ------------------------------------------------------------------------------------- 1. throughput


def dd_seconds(args: list[str]) -> float:
    out = subprocess.run(["dd", *args], capture_output=True, text=True, check=True)
    m = re.search(r"copied, ([0-9.e+-]+) s", out.stderr)
    if not m:
        raise RuntimeError(f"cannot parse dd output: {out.stderr!r}")
    return float(m.group(1))


def read_all(arr: np.ndarray, buf: np.ndarray) -> None:
    """Copy every byte into a 1 MiB buffer, chunk by chunk -- what dd of=/dev/null bs=1M does."""
    flat = arr.reshape(-1).view(np.uint8)
    step = buf.size
    for i in range(0, flat.size, step):
        n = min(step, flat.size - i)
        buf[:n] = flat[i : i + n]


def throughput_once(d: Path, arr: np.ndarray, buf: np.ndarray) -> dict:
    nbytes = arr.nbytes
    count = nbytes // MiB
    dd_file = d / "dd.bin"
    r = {}
    # write: dd creates a fresh file; so does every spill
    dd_file.unlink(missing_ok=True)
    r["dd_write"] = dd_seconds(["if=/dev/zero", f"of={dd_file}", "bs=1M", f"count={count}"])
    with mmstore.Pool(max_memory=2 * nbytes, spill_dir=d) as pool:
        ref = pool.put(arr)
        t0 = time.perf_counter()
        pool.move_to_disk(ref)
        r["spill"] = time.perf_counter() - t0
        # restore: page cache warm for both (just written)
        r["dd_read"] = dd_seconds([f"if={dd_file}", "of=/dev/null", "bs=1M"])
        t0 = time.perf_counter()
        back = pool.get(ref)
        t1 = time.perf_counter()
        read_all(back, buf)
        r["restore"] = time.perf_counter() - t0
        r["restore_get_only"] = t1 - t0
        assert mmstore.is_mapped(back)
        del back
    # synced: the disk's own bandwidth
    dd_file.unlink(missing_ok=True)
    r["dd_write_sync"] = dd_seconds(["if=/dev/zero", f"of={dd_file}", "bs=1M", f"count={count}", "conv=fdatasync"])
    target = str(d / "synced.spill")
    t0 = time.perf_counter()
    _core._spill_write(target, mmstore.encode({"kind": "bytes"}), [arr], sync=True)
    r["spill_sync"] = time.perf_counter() - t0
    os.unlink(target)
    dd_file.unlink(missing_ok=True)
    return r


def throughput_run(d: Path, nbytes: int, reps: int = 5) -> dict:
    """Each figure: the median of `reps` back-to-back repetitions, dd and mmstore interleaved (the machine
    is shared: single 64 MiB writes swing by several times between moments)."""
    arr = np.random.default_rng(1).integers(0, 255, nbytes, dtype=np.uint8)
    buf = np.empty(MiB, np.uint8)
    rows = [throughput_once(d, arr, buf) for _ in range(reps)]
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}


# ------------------------------------------------------------------------------- 2. zero-copy restores


def get_scaling_run(d: Path, big_bytes: int, small_bytes: int, reps: int) -> dict:
    with mmstore.Pool(max_memory=64 * 1024, spill_dir=d) as pool:  # both larger than the limit: never cached
        big = pool.put(np.ones(big_bytes // 8))
        small = pool.put(np.ones(small_bytes // 8))
        out = {}
        for name, ref in (("get_big", big), ("get_small", small)):
            ts = []
            for _ in range(reps):
                t0 = time.perf_counter()
                a = pool.get(ref)
                ts.append(time.perf_counter() - t0)
                del a
            out[name] = statistics.median(ts)
        return out


# --------------------------------------------------------------------------------- 3. mixed workload

PEERS = ("mmstore", "zict", "spillbuffer")


def mixed_objects(total: int, seed: int):
    """Deterministic (key, object) pairs: 50% plain arrays, 30% dicts of arrays and Python data, 20% lists."""
    rng = np.random.default_rng(seed)
    made = i = 0
    while made < total:
        kind = i % 10
        if kind < 5:
            obj = rng.random(int(rng.integers(1 * MiB, 8 * MiB)) // 8)
        elif kind < 8:
            obj = {"x": rng.random(int(rng.integers(MiB // 2, 4 * MiB)) // 8), "ids": list(range(1000)),
                   "meta": {"name": f"part-{i}", "shape": (i, 3)}}
        else:
            obj = [rng.integers(0, 1000, int(rng.integers(64 * 1024, 256 * 1024)) // 8) for _ in range(5)] + [f"s{i}"]
        made += mmstore._pool.sizeof(obj)
        yield f"task-{i}", obj  # str keys: zict.File accepts nothing else
        i += 1


def touch(v) -> int:
    """Read one byte of every page of every array in v (forces mapped data in)."""
    if isinstance(v, np.ndarray):
        b = v.reshape(-1).view(np.uint8)
        return int(b[::4096].sum()) if b.size else 0
    if isinstance(v, dict):
        return sum(touch(x) for x in v.values())
    if isinstance(v, (list, tuple)):
        return sum(touch(x) for x in v)
    return 0


def make_store(peer: str, d: str, limit: int):
    if peer == "mmstore":
        from mmstore.dask import PoolData

        return PoolData(max_memory=limit, spill_dir=d)
    if peer == "zict":
        import pickle

        import zict
        from dask.sizeof import sizeof

        return zict.Buffer(dict(), zict.Func(pickle.dumps, pickle.loads, zict.File(d)), n=limit,
                           weight=lambda k, v: sizeof(v))
    if peer == "spillbuffer":
        from distributed.spill import SpillBuffer

        return SpillBuffer(d, target=limit)
    raise ValueError(peer)


def proc_status(field: str) -> int:
    """VmRSS / VmHWM of this process in bytes. VmHWM is this image's own peak: unlike ru_maxrss it does not
    inherit the RSS of the parent that forked us before exec."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def mixed_child(peer: str, d: str, total: int, limit: int, seed: int) -> dict:
    store = make_store(peer, d, limit)
    gc.collect()
    base = proc_status("VmRSS")
    keys = []
    t_put = 0.0
    for key, obj in mixed_objects(total, seed):
        t0 = time.perf_counter()
        store[key] = obj
        t_put += time.perf_counter() - t0
        keys.append(key)
        del obj
    check = 0
    t_get = 0.0
    for key in keys:
        t0 = time.perf_counter()
        v = store[key]
        check += touch(v)
        t_get += time.perf_counter() - t0
        del v
    peak = proc_status("VmHWM")
    return {"spill_s": t_put, "restore_s": t_get, "peak_rss": peak, "base_rss": base, "check": check,
            "objects": len(keys)}


# Two process environments: glibc's defaults, and the one Dask's nanny gives its workers
# (distributed.nanny.pre-spawn-environ: MALLOC_TRIM_THRESHOLD_=65536 returns freed heap memory promptly).
ENVS = {"default": {}, "dask": {"MALLOC_TRIM_THRESHOLD_": "65536"}}


def run_mixed(peer: str, d: Path, total: int, limit: int, seed: int, extra_env: dict) -> dict:
    sub = d / f"mixed-{peer}"
    sub.mkdir()
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--child", peer, "--dir", str(sub), "--mixed-mib", str(total // MiB),
             "--limit-mib", str(limit // MiB), "--seed", str(seed)],
            capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), **extra_env),
        )
        if out.returncode != 0:
            raise RuntimeError(f"{peer} failed:\n{out.stderr}")
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(sub, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- main


def med(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", default=None, help="directory for spill files and dd (default: system temp)")
    ap.add_argument("--size-mib", type=int, default=64)
    ap.add_argument("--big-mib", type=int, default=1024)
    ap.add_argument("--mixed-mib", type=int, default=768)
    ap.add_argument("--limit-mib", type=int, default=192)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run, not for the record)")
    ap.add_argument("--json", default=str(HERE / "results" / "bench_pool.json"))
    ap.add_argument("--child", choices=PEERS, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        print(json.dumps(mixed_child(args.child, args.dir, args.mixed_mib * MiB, args.limit_mib * MiB, args.seed)))
        return
    if args.quick:
        args.big_mib, args.mixed_mib, args.limit_mib = 128, 128, 32

    base = Path(tempfile.mkdtemp(prefix="bench_pool-", dir=args.dir))
    print(f"# bench_pool: {platform.node()} {platform.python_version()} load {os.getloadavg()[0]:.2f}, dir {base}",
          flush=True)
    runs = []
    try:
        for run in range(args.runs):
            r = throughput_run(base, args.size_mib * MiB)
            r.update(get_scaling_run(base, args.big_mib * MiB, MiB, reps=21))
            for env_name, env in ENVS.items():
                for peer in PEERS:
                    m = run_mixed(peer, base, args.mixed_mib * MiB, args.limit_mib * MiB, args.seed, env)
                    for k, v in m.items():
                        r[f"{env_name}_{peer}_{k}"] = v
            checks = {r[f"{e}_{p}_check"] for e in ENVS for p in PEERS}
            assert len(checks) == 1, f"peers read back different data: {checks}"
            runs.append(r)
            print(f"  run {run + 1}/{args.runs} done", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    size = args.size_mib * MiB
    ratio = lambda a, b: statistics.median(x[a] / x[b] for x in runs)  # noqa: E731
    bw = lambda k: size / med(runs, k) / 1e9  # noqa: E731
    print(f"\n## 1. Throughput, {args.size_mib} MiB arrays (GB/s; ratio = dd time / mmstore time; target >= 0.80)\n")
    print("| operation | dd | mmstore | ratio | target |")
    print("|---|---|---|---|---|")
    rows = [
        ("spill (page cache)", "dd_write", "spill", True),
        ("restore: get + read every byte", "dd_read", "restore", True),
        ("spill, synced to disk (fsync)", "dd_write_sync", "spill_sync", False),
    ]
    summary = {}
    for name, dk, mk, is_target in rows:
        q = ratio(dk, mk)
        summary[mk] = q
        verdict = ("PASS" if q >= 0.8 else "FAIL") if is_target else "(info)"
        print(f"| {name} | {bw(dk):.2f} | {bw(mk):.2f} | {q:.2f} | {verdict} |")
    print(f"| restore: get alone (zero-copy) | | {med(runs, 'restore_get_only') * 1e6:.0f} µs | | |")

    q = ratio("get_big", "get_small")
    summary["get_ratio"] = q
    print(f"\n## 2. Zero-copy restores (median of 21 gets per run)\n")
    print("| get of 1 MiB | get of {} MiB | ratio | target |".format(args.big_mib))
    print("|---|---|---|---|")
    print(f"| {med(runs, 'get_small') * 1e6:.0f} µs | {med(runs, 'get_big') * 1e6:.0f} µs | {q:.2f} | "
          f"{'PASS' if q <= 3 else 'FAIL'} (<= 3) |")

    for env_name, env in ENVS.items():
        print(f"\n## 3{'ab'[list(ENVS).index(env_name)]}. Mixed workload: {args.mixed_mib} MiB of arrays and dicts, "
              f"limit {args.limit_mib} MiB ({runs[0]['default_mmstore_objects']} objects), environment: "
              f"{' '.join(f'{k}={v}' for k, v in env.items()) or 'glibc defaults'}\n")
        print("| peer | spill s | restore s | peak RSS MiB | RSS above start MiB | spill vs mmstore | restore vs mmstore |")
        print("|---|---|---|---|---|---|---|")
        for p in PEERS:
            k = f"{env_name}_{p}"
            m = f"{env_name}_mmstore"
            print(f"| {p} | {med(runs, k + '_spill_s'):.3f} | {med(runs, k + '_restore_s'):.3f} | "
                  f"{med(runs, k + '_peak_rss') / MiB:.0f} | "
                  f"{statistics.median((x[k + '_peak_rss'] - x[k + '_base_rss']) for x in runs) / MiB:.0f} | "
                  f"{ratio(k + '_spill_s', m + '_spill_s'):.2f}x | {ratio(k + '_restore_s', m + '_restore_s'):.2f}x |")
    print("\n(ratios > 1: the peer takes longer than mmstore)")

    if args.json and not args.quick:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "summary": summary, "runs": runs,
                       "machine": {"node": platform.node(), "python": platform.python_version()}}, f, indent=1)
        print(f"\nresults: {args.json}")


if __name__ == "__main__":
    main()
