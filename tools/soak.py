"""Kill -9 soak: SIGKILL writers of every kind of store at random instants, recover, count what was lost.

    python tools/soak.py --kills 1000        (scripts/soak.sh runs it; CI runs a short version)

Kinds, in rotation:
* Dict and List: the workload and checker of tests/python/test_crash.py, on one file that lives on (each
  writer reopens -- and so repairs -- what the previous kill left). A kill may lose only the operation in
  flight; anything else is a lost acknowledged operation.
* SharedDict: a writer increments a counter and a nested counter, and logs each value increment() returned;
  after the kill the segment must hold the last logged value or the next one (the one in flight), in both.
* Pool: a writer spills 8 MiB arrays until killed; a new pool in the same spill_dir must remove the dead
  pool's directory and work.

Prints kills, recoveries (reopens that passed verify() and matched the log) and lost acknowledged
operations; exits non-zero when anything was lost or a recovery failed.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "python"))

import mmstore  # noqa: E402
import test_crash  # noqa: E402

SHARED_WRITER = textwrap.dedent(
    """
    import os, sys, mmstore
    d = mmstore.SharedDict(sys.argv[1], recurse=True, auto_unlink=False)
    fd = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    print("ready", flush=True)
    while True:
        with d.lock:
            n = d.increment("n")
            d["nested"]["n"] = n
        os.write(fd, b"%d\\n" % n)
    """
)


def soak_shared(rng: random.Random, tmp: Path, kills: int) -> tuple[int, int]:
    name = f"soak-{os.getpid()}"
    log = tmp / "shared.log"
    d = mmstore.SharedDict(name, recurse=True, auto_unlink=False)
    d["n"] = 0
    d["nested"] = {"n": 0}
    recovered = lost = 0
    n = 0  # the counter after the previous recovery: where the next writer starts
    try:
        for _ in range(kills):
            log.unlink(missing_ok=True)  # this writer's acknowledgements only
            child = subprocess.Popen([sys.executable, "-c", SHARED_WRITER, name, str(log)], stdout=subprocess.PIPE, text=True)
            assert child.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.001, 0.05))
            child.kill()
            child.wait()
            child.stdout.close()
            acked = [int(x) for x in log.read_text().split("\n")[:-1]] if log.exists() else []
            # The last value this writer acknowledged or, when it was killed before acknowledging any (a
            # starved writer can be), the value it started from: one increment may have been in flight.
            last = acked[-1] if acked else n
            with d.lock:  # a holder killed inside the block is recovered by this acquisition
                n, nested = d["n"], d["nested"]["n"]
            d.verify()
            ok = n in (last, last + 1) and nested in (n, n - 1)
            if ok:
                recovered += 1
            else:
                lost += 1
                print(f"shared: counter {n} (nested {nested}) after acknowledged {last}", file=sys.stderr)
    finally:
        d.close()
        mmstore.SharedDict.unlink_by_name(name)
    return recovered, lost


SPILLER = textwrap.dedent(
    """
    import sys, numpy as np, mmstore
    pool = mmstore.Pool(max_memory=3 * 8 * (1 << 20), spill_dir=sys.argv[1])
    print("ready", flush=True)
    i = 0
    while True:
        pool.put(np.full(1 << 20, float(i)))
        i += 1
    """
)


def soak_pool(rng: random.Random, tmp: Path, kills: int) -> tuple[int, int]:
    spill = tmp / "spill"
    spill.mkdir(exist_ok=True)
    recovered = failed = 0
    for _ in range(kills):
        child = subprocess.Popen([sys.executable, "-c", SPILLER, str(spill)], stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.01, 0.3))
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        pool = mmstore.Pool(max_memory=1 << 20, spill_dir=str(spill))  # removes the dead pool's directory
        try:
            ref = pool.put(b"x" * (2 << 20))
            pool.move_to_disk(ref)
            ok = pool.get(ref) == b"x" * (2 << 20)
            leftovers = [p for p in spill.iterdir() if str(child.pid) in p.name]
            ok = ok and not leftovers
        finally:
            pool.close()
        recovered += ok
        failed += not ok
    return recovered, failed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kills", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    share = {"dict": 0.35, "list": 0.35, "shared": 0.15, "pool": 0.15}
    plan = {k: max(1, round(args.kills * f)) for k, f in share.items()}
    t0 = time.monotonic()
    totals = {}
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        writers = test_crash.WriterPool()
        try:
            for kind in ("dict", "list"):
                # campaigns of 25 kills on one file each (test_crash checks every kill: a failure raises)
                done = 0
                while done < plan[kind]:
                    n = min(25, plan[kind] - done)
                    sub = tmp / f"{kind}-{done}"
                    sub.mkdir()
                    test_crash.campaign(writers, sub, kind, seed=rng.randrange(1 << 30), kills=n, same_file=True)
                    done += n
                totals[kind] = (done, 0)
        finally:
            writers.close()
        totals["shared"] = soak_shared(rng, tmp, plan["shared"])
        totals["pool"] = soak_pool(rng, tmp, plan["pool"])
    kills = sum(plan.values())
    recovered = sum(r for r, _ in totals.values())
    lost = sum(x for _, x in totals.values())
    print(f"{'kind':8} {'kills':>6} {'recovered':>10} {'lost':>5}")
    for kind, (r, x) in totals.items():
        print(f"{kind:8} {plan[kind]:6d} {r:10d} {x:5d}")
    print(f"{'total':8} {kills:6d} {recovered:10d} {lost:5d}   ({time.monotonic() - t0:.0f} s)")
    return 0 if lost == 0 and recovered == kills else 1


if __name__ == "__main__":
    sys.exit(main())
