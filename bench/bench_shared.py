"""bench/bench_shared.py -- mmstore.SharedDict against UltraDict, shared-memory-dict, Manager().dict() and Redis.

Run:  bench/setup_peers.sh   (once: installs the peers below into build/bench-venv)
      PYTHONPATH=python build/bench-venv/bin/python bench/bench_shared.py [--runs 3] [--quick] [--peers ...] [--json PATH]

Packages the peers need (installed by bench/setup_peers.sh, not by scripts/bootstrap.sh since the tests do not
need them; a peer that is missing is skipped with a note):
  * PyPI:   UltraDict, shared-memory-dict, redis      (pip install UltraDict shared-memory-dict redis)
  * Debian: redis-server                              (apt-get install -y redis-server)

What it measures (bench/README.md, section "bench_shared.py", has the details), every figure in operations
per second (higher is better), the median of --runs runs:
  * reads/s and writes/s in one process, on a dict of 1,000 int -> int entries, keys in a pre-shuffled order
    (writes overwrite existing keys with new values). Every peer's reads are current: mmstore reads the
    shared table, UltraDict applies the update stream on each read, the others ask the shared copy;
  * 2 forked processes x 100,000 ``with lock: d['n'] += 1``: aggregate increments/s from the first start to
    the last finish; the final count is checked (``exact`` or how many increments were lost). The lock is
    the peer's own where it has one (``SharedDict.lock``, UltraDict's ``lock``, redis-py's ``Redis.lock``),
    otherwise a ``multiprocessing.Lock`` (shared-memory-dict) or ``Manager().Lock()``;
  * the same with the peer's atomic increment where it has one: ``SharedDict.increment``, Redis ``INCR``;
  * random reads/s at 10,000 and at 1,000,000 entries (per-operation cost must not grow with size); the
    builtin ``dict`` of this process (not shared) runs the read and write rows as a reference for what
    the memory hierarchy alone costs at each size.

Fairness rules: one loop shape per operation, in small module-level functions; conversions a peer forces on
its user are inside its loop (Redis returns bytes: ``int(r.get(k))``); building the stores and starting
processes are outside the timed part; the GC is off while timing; slow peers stop after a time budget
(--budget seconds per measurement) and report the rate reached, so they need not run the full count.
Ratios are peer / UltraDict within the same run, reported as the median over runs.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import pickle
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import mmstore

HERE = Path(__file__).resolve().parent
DEFAULT_JSON = HERE / "results" / "bench_shared.json"
PEERS = ("mmstore", "ultradict", "smd", "manager", "redis", "dict")
LABEL = {"mmstore": "mmstore", "ultradict": "UltraDict", "smd": "shm-dict", "manager": "Manager", "redis": "Redis",
         "dict": "dict (local)"}
# mmstore's goals from the SharedDict issue, as ratios to UltraDict's figure in the same run.
TARGETS = {"read": 2.0, "write": 8.0, "lock_incr": 5.0}
# Quoted from the issue (UltraDict on this machine), NOT measured by this script.
ULTRADICT_QUOTED = {"read": 3.7e6, "write": 0.50e6, "lock_incr": 176e3}
CHUNK = 1000  # timed loops run over chunks of this many operations and check the budget between chunks


# -- timed loops (module level, one shape per operation) ---------------------------------------------------------


def read_loop(d, keys):
    for k in keys:
        d[k]


def read_loop_redis(r, keys):
    for k in keys:
        int(r.get(k))


def write_loop(d, pairs):
    for k, v in pairs:
        d[k] = v


def write_loop_redis(r, pairs):
    for k, v in pairs:
        r.set(k, v)


def lock_incr_loop(d, lock, n):
    for _ in range(n):
        with lock:
            d["n"] += 1


def lock_incr_loop_redis(r, lock, n):
    for _ in range(n):
        with lock:
            r.set("n", int(r.get("n")) + 1)


def incr_loop_mmstore(d, n):
    for _ in range(n):
        d.increment("n")


def incr_loop_redis(r, n):
    for _ in range(n):
        r.incr("n")


def transfer_txn_loop(d, pairs):
    for a, b in pairs:
        with d.transaction() as t:
            t[a] -= 1
            t[b] += 1


def transfer_lock_loop(d, pairs):
    for a, b in pairs:
        with d.lock:
            d[a] -= 1
            d[b] += 1


def get_many_loop(d, pairs):
    for a, b in pairs:
        d.get_many((a, b))


def two_reads_loop(d, pairs):
    for a, b in pairs:
        d[a]
        d[b]


def _timed_chunks(loop, h, chunks, budget: float) -> float:
    """Run ``loop(h, chunk)`` over the chunks until done or ``budget`` seconds passed; operations per second."""
    done = 0
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter()
        for c in chunks:
            loop(h, c)
            done += len(c)
            if time.perf_counter() - t0 > budget:
                break
        elapsed = time.perf_counter() - t0
    finally:
        gc.enable()
    return done / elapsed


def _chunks(items, n_ops):
    reps = -(-n_ops // len(items))
    seq = (items * reps)[:n_ops]
    return [seq[i:i + CHUNK] for i in range(0, len(seq), CHUNK)]


# -- peers -------------------------------------------------------------------------------------------------------


class Peer:
    """One shared-dict implementation: how to build a store, read, write, and count from forked children."""

    name = ""
    slow = False  # runs --slow-ops increments per process instead of --ops

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def build(self, n: int):
        raise NotImplementedError

    def drop(self, h) -> None:
        raise NotImplementedError

    def read(self, h, chunks, budget):
        return _timed_chunks(read_loop, h, chunks, budget)

    def write(self, h, chunks, budget):
        return _timed_chunks(write_loop, h, chunks, budget)

    # increments: counter() -> state inherited by forked children; attach(state) -> (h, lock) in the child
    def counter(self):
        raise NotImplementedError

    def attach(self, state):
        return state

    def lock_incr(self, attached, n):
        h, lock = attached
        lock_incr_loop(h, lock, n)

    def incr(self, attached, n):
        """The peer's atomic increment loop; peers without one keep this method and skip the row."""

    def count(self, state) -> int:
        raise NotImplementedError

    def drop_counter(self, state) -> None:
        raise NotImplementedError

    def feasible(self, n: int) -> str | None:
        """None, or why the peer does not run at ``n`` entries."""
        return None


class MmstorePeer(Peer):
    name = "mmstore"

    def __init__(self):
        if not hasattr(mmstore, "SharedDict"):
            raise ImportError("this mmstore has no SharedDict")

    def build(self, n):
        d = mmstore.SharedDict(create=True, size_hint=n)
        for lo in range(0, n, 100_000):
            d.update_many((i, i) for i in range(lo, min(n, lo + 100_000)))
        return d

    def drop(self, h):
        h.close()  # the creator's close unlinks (auto_unlink)

    def counter(self):
        d = mmstore.SharedDict(create=True)
        d["n"] = 0
        return d

    def attach(self, state):
        d = mmstore.SharedDict(state.name, create=False)  # children attach by name
        return d, d.lock

    def incr(self, attached, n):
        incr_loop_mmstore(attached[0], n)
        return True

    def count(self, state):
        return state["n"]

    def drop_counter(self, state):
        state.close()


class UltraDictPeer(Peer):
    name = "ultradict"

    def __init__(self):
        from UltraDict import UltraDict

        self.cls = UltraDict

    def build(self, n):
        # The default 10,000-byte stream buffer makes loading n keys O(n^2) (a full dump of the growing dict
        # every ~400 writes); a buffer that holds every insert keeps the build short. Reads are unaffected.
        u = self.cls(buffer_size=10_000 if n <= 1000 else 64 * n)
        for i in range(n):
            u[i] = i
        return u

    def drop(self, h):
        h.unlink()

    def counter(self):
        u = self.cls()  # default: multiprocessing.RLock(), the fast lock for forked children
        u["n"] = 0
        return u

    def attach(self, state):
        return state, state.lock  # the forked child uses the inherited object, as UltraDict intends

    def count(self, state):
        return state["n"]

    def drop_counter(self, state):
        state.unlink()


class SmdPeer(Peer):
    name = "smd"
    slow = True

    def __init__(self):
        from shared_memory_dict import SharedMemoryDict

        self.cls = SharedMemoryDict

    def feasible(self, n):
        if n > 100_000:
            return "every access unpickles the whole dict"
        return None

    def _new(self, entries):
        size = len(pickle.dumps(entries)) * 2 + 4096  # every read copies the whole segment: keep it tight
        d = self.cls(name=f"bench_{uuid.uuid4().hex[:12]}", size=size)
        d.update(entries)
        return d

    def build(self, n):
        return self._new({i: i for i in range(n)})

    def drop(self, h):
        h.shm.close()
        h.shm.unlink()

    def counter(self):
        return self._new({"n": 0}), multiprocessing.get_context("fork").Lock()

    def count(self, state):
        return state[0]["n"]

    def drop_counter(self, state):
        self.drop(state[0])


class ManagerPeer(Peer):
    name = "manager"
    slow = True

    def start(self):
        self.mgr = multiprocessing.get_context("fork").Manager()

    def stop(self):
        self.mgr.shutdown()

    def build(self, n):
        return self.mgr.dict({i: i for i in range(n)})

    def drop(self, h):
        h.clear()

    def counter(self):
        d = self.mgr.dict()
        d["n"] = 0
        return d, self.mgr.Lock()

    def count(self, state):
        return state[0]["n"]

    def drop_counter(self, state):
        state[0].clear()


class RedisPeer(Peer):
    name = "redis"
    slow = True

    def __init__(self):
        import redis

        if not shutil.which("redis-server"):
            raise ImportError("redis-server not installed (Debian: apt-get install -y redis-server)")
        self.redis = redis

    def start(self):
        with socket.socket() as s:  # a free loopback port
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.dir = tempfile.mkdtemp(prefix="bench_redis_")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir, "--daemonize", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.r = self.redis.Redis(host="127.0.0.1", port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.r.ping()
                break
            except self.redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)

    def stop(self):
        try:
            self.r.shutdown(nosave=True)
        except self.redis.ConnectionError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _client(self):
        return self.redis.Redis(host="127.0.0.1", port=self.port)

    def build(self, n):
        self.r.flushall()
        pipe = self.r.pipeline(transaction=False)
        for lo in range(0, n, 10_000):
            pipe.mset({i: i for i in range(lo, min(n, lo + 10_000))})
        pipe.execute()
        return self.r

    def drop(self, h):
        h.flushall()

    def read(self, h, chunks, budget):
        return _timed_chunks(read_loop_redis, h, chunks, budget)

    def write(self, h, chunks, budget):
        return _timed_chunks(write_loop_redis, h, chunks, budget)

    def counter(self):
        self.r.set("n", 0)

    def attach(self, state):
        r = self._client()  # a connection of the child's own
        return r, r.lock("bench_lock", sleep=0.0001)

    def lock_incr(self, attached, n):
        lock_incr_loop_redis(attached[0], attached[1], n)

    def incr(self, attached, n):
        incr_loop_redis(attached[0], n)
        return True

    def count(self, state):
        return int(self.r.get("n"))

    def drop_counter(self, state):
        self.r.delete("n")


class BuiltinPeer(Peer):
    """The builtin ``dict`` in this process: not shared, only a reference for what a read or write costs at
    all (and how random reads slow down with size when the data outgrow the CPU caches)."""

    name = "dict"

    def build(self, n):
        return {i: i for i in range(n)}

    def drop(self, h):
        h.clear()

    def counter(self):
        return None

    def lock_incr(self, attached, n):
        raise NotImplementedError


PEER_CLASSES = {"dict": BuiltinPeer, "mmstore": MmstorePeer, "ultradict": UltraDictPeer, "smd": SmdPeer,
                "manager": ManagerPeer, "redis": RedisPeer}


# -- forked increments --------------------------------------------------------------------------------------------


def _incr_child(peer, state, how, n, barrier, results):
    attached = peer.attach(state)
    barrier.wait()
    gc.disable()
    t0 = time.perf_counter()
    if how == "lock":
        peer.lock_incr(attached, n)
    else:
        peer.incr(attached, n)
    t1 = time.perf_counter()
    results.put((t0, t1))


def forked_increments(peer, how: str, per_proc: int, procs: int = 2):
    """Aggregate increments/s of ``procs`` forked children, and the final count (to check exactness)."""
    ctx = multiprocessing.get_context("fork")
    state = peer.counter()
    try:
        barrier = ctx.Barrier(procs + 1)
        results = ctx.Queue()
        children = [ctx.Process(target=_incr_child, args=(peer, state, how, per_proc, barrier, results))
                    for _ in range(procs)]
        for c in children:
            c.start()
        barrier.wait(timeout=60)
        spans = [results.get(timeout=600) for _ in children]
        for c in children:
            c.join(60)
            if c.exitcode != 0:
                raise RuntimeError(f"{peer.name} {how} child exited with {c.exitcode}")
        elapsed = max(t1 for _, t1 in spans) - min(t0 for t0, _ in spans)
        return procs * per_proc / elapsed, peer.count(state)
    finally:
        peer.drop_counter(state)


# -- transactions (issue 11): mmstore only ---------------------------------------------------------------------------

TXN_ACCOUNTS = 100


def _transfer_child(name, loop, pairs, barrier, results):
    d = mmstore.SharedDict(name, create=False)
    barrier.wait()
    gc.disable()
    t0 = time.perf_counter()
    loop(d, pairs)
    results.put((t0, time.perf_counter()))
    d.close()


def forked_transfers(loop, per_proc: int, procs: int = 2, seed: int = 1):
    """Aggregate transfers/s of ``procs`` forked children, and whether the total was conserved."""
    ctx = multiprocessing.get_context("fork")
    d = mmstore.SharedDict()
    try:
        d.update({i: 1_000_000 for i in range(TXN_ACCOUNTS)})
        rng = random.Random(seed)
        work = [[(rng.randrange(TXN_ACCOUNTS), rng.randrange(TXN_ACCOUNTS)) for _ in range(per_proc)] for _ in range(procs)]
        barrier = ctx.Barrier(procs + 1)
        results = ctx.Queue()
        children = [ctx.Process(target=_transfer_child, args=(d.name, loop, w, barrier, results)) for w in work]
        for c in children:
            c.start()
        barrier.wait(timeout=60)
        spans = [results.get(timeout=600) for _ in children]
        for c in children:
            c.join(60)
        elapsed = max(t1 for _, t1 in spans) - min(t0 for t0, _ in spans)
        return procs * per_proc / elapsed, sum(d.get_many(range(TXN_ACCOUNTS))) == TXN_ACCOUNTS * 1_000_000
    finally:
        d.close()
        d.unlink()


def commit_cost(n_entries: int, txns: int, loop=transfer_txn_loop) -> float:
    """Seconds per 2-write transfer (``loop``) on a SharedDict of ``n_entries`` entries."""
    d = mmstore.SharedDict(size_hint=n_entries)
    try:
        d.update_many((i, i) for i in range(n_entries))
        rng = random.Random(5)
        pairs = [(rng.randrange(n_entries), rng.randrange(n_entries)) for _ in range(txns)]
        gc.disable()
        t0 = time.perf_counter()
        loop(d, pairs)
        dt = time.perf_counter() - t0
        gc.enable()
        return dt / txns
    finally:
        d.close()
        d.unlink()


TXN_ROWS = ("txn", "lock_transfer", "get_many", "two_reads", "commit_small", "commit_large", "lock_small", "lock_large")


def run_txn(args) -> dict:
    quick = args.quick
    per_proc = 20_000 if quick else args.incr_ops
    res = {row: [] for row in TXN_ROWS}
    conserved = []
    d = mmstore.SharedDict()
    try:
        d.update({i: i for i in range(TXN_ACCOUNTS)})
        rng = random.Random(3)
        pairs = [(rng.randrange(TXN_ACCOUNTS), rng.randrange(TXN_ACCOUNTS)) for _ in range(100_000 if quick else 500_000)]
        chunks = [pairs[i:i + CHUNK] for i in range(0, len(pairs), CHUNK)]
        for _ in range(1 if quick else args.runs):
            rate, ok = forked_transfers(transfer_txn_loop, per_proc)
            res["txn"].append(rate)
            conserved.append(ok)
            res["lock_transfer"].append(forked_transfers(transfer_lock_loop, per_proc)[0])
            res["get_many"].append(_timed_chunks(get_many_loop, d, chunks, args.budget))
            res["two_reads"].append(_timed_chunks(two_reads_loop, d, chunks, args.budget))
            res["commit_small"].append(commit_cost(1_000, 20_000))
            res["commit_large"].append(commit_cost(100_000 if quick else args.large, 20_000))
            res["lock_small"].append(commit_cost(1_000, 20_000, transfer_lock_loop))
            res["lock_large"].append(commit_cost(100_000 if quick else args.large, 20_000, transfer_lock_loop))
    finally:
        d.close()
        d.unlink()
    return {"results": res, "conserved": conserved, "large": 100_000 if quick else args.large}


def print_txn_table(t: dict) -> None:
    r = {k: median(v) for k, v in t["results"].items()}
    print(f"\n== transactions (issue 11), mmstore only   median of {len(t['results']['txn'])} run(s)")
    print(f"{'2 procs x transfer in d.transaction()':46}{fmt(r['txn']):>10} txn/s   target >=1M/s "
          f"{'PASS' if r['txn'] >= 1e6 else 'FAIL'}; total conserved: {all(t['conserved'])}")
    print(f"{'2 procs x transfer under d.lock (not atomic)':46}{fmt(r['lock_transfer']):>10} /s      "
          f"transaction / lock: {r['txn'] / r['lock_transfer']:.2f}x")
    print(f"{'get_many of 2 keys (one instant, lock-free)':46}{fmt(r['get_many']):>10} /s      "
          f"/ two plain reads ({fmt(r['two_reads'])}/s): {r['get_many'] / r['two_reads']:.2f}x")
    print(f"{'one 2-write transaction at 1,000 entries':46}{r['commit_small'] * 1e6:>9.2f} us")
    print(f"{'one 2-write transaction at ' + format(t['large'], ',') + ' entries':46}{r['commit_large'] * 1e6:>9.2f} us   "
          f"ratio {r['commit_large'] / r['commit_small']:.2f}x")
    print(f"{'the same under d.lock, large / small':46}{r['lock_large'] / r['lock_small']:>9.2f}x  "
          f"(the cache misses of a larger table; a commit O(size) would grow ~{t['large'] // 1000}x)")


# -- the run ---------------------------------------------------------------------------------------------------------

ROWS = ("read", "write", "lock_incr", "incr", "read_small", "read_large")


def row_labels(cfg):
    return {
        "read": f"reads/s ({cfg['base']:,} entries)",
        "write": f"writes/s ({cfg['base']:,} entries)",
        "lock_incr": f"{cfg['procs']} procs x lock: d['n'] += 1",
        "incr": f"{cfg['procs']} procs x atomic increment",
        "read_small": f"reads/s at {cfg['small']:,} entries",
        "read_large": f"reads/s at {cfg['large']:,} entries",
    }


def run(args) -> dict:
    cfg = {
        "runs": 1 if args.quick else args.runs,
        "base": 1000,
        "ops": 100_000 if args.quick else args.ops,
        "incr_ops": 20_000 if args.quick else args.incr_ops,
        "slow_incr_ops": 1000 if args.quick else args.slow_incr_ops,
        "procs": 2,
        "small": 10_000,
        "large": 100_000 if args.quick else args.large,
        "budget": 0.5 if args.quick else args.budget,
        "seed": args.seed,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
    }
    wanted = [p for p in PEERS if p == "mmstore" or p in args.peers]
    notes, peers = {}, {}
    for name in wanted:
        try:
            peers[name] = PEER_CLASSES[name]()
        except ImportError as e:
            notes[name] = f"skipped: not installed ({e})"
    rng = random.Random(args.seed)
    keysets = {}
    for n in (cfg["base"], cfg["small"], cfg["large"]):
        keys = list(range(n))
        rng.shuffle(keys)
        keysets[n] = keys
    read_chunks = {n: _chunks(keys, cfg["ops"]) for n, keys in keysets.items()}
    base_keys = keysets[cfg["base"]]
    write_chunks = _chunks([(k, k + 1) for k in base_keys], cfg["ops"])

    all_peers = dict(peers)
    results = {name: {row: [] for row in ROWS} for name in peers}
    counts = {name: {"lock_incr": [], "incr": []} for name in peers}
    started = []
    stores = {}
    try:
        for name, peer in list(peers.items()):
            try:
                peer.start()
                started.append(peer)
                for n in (cfg["base"], cfg["small"], cfg["large"]):
                    why = peer.feasible(n)
                    if why:
                        notes.setdefault(name, f"not run at {n:,} entries: {why}")
                        continue
                    t = time.perf_counter()
                    stores[name, n] = peer.build(n)
                    log(args, f"built {name} with {n:,} entries in {time.perf_counter() - t:.1f}s")
            except Exception as e:  # noqa: BLE001 -- a peer that cannot start is reported, not fatal
                notes[name] = f"skipped: {type(e).__name__}: {e}"
                del peers[name]
                del results[name]
                del counts[name]
        for r in range(cfg["runs"]):
            for name, peer in peers.items():
                budget = cfg["budget"]
                if (name, cfg["base"]) in stores:
                    h = stores[name, cfg["base"]]
                    results[name]["read"].append(peer.read(h, read_chunks[cfg["base"]], budget))
                    results[name]["write"].append(peer.write(h, write_chunks, budget))
                for row, n in (("read_small", cfg["small"]), ("read_large", cfg["large"])):
                    if (name, n) in stores:
                        results[name][row].append(peer.read(stores[name, n], read_chunks[n], budget))
                per_proc = cfg["slow_incr_ops"] if peer.slow else cfg["incr_ops"]
                for how in ("lock", "incr") if name != "dict" else ():
                    if how == "incr" and type(peer).incr is Peer.incr:
                        continue
                    rate, final = forked_increments(peer, how, per_proc, cfg["procs"])
                    row = "lock_incr" if how == "lock" else "incr"
                    results[name][row].append(rate)
                    counts[name][row].append((final, cfg["procs"] * per_proc))
                log(args, f"run {r + 1}/{cfg['runs']} {name}: " + ", ".join(
                    f"{row}={fmt(v[-1])}" for row, v in results[name].items() if v))
    finally:
        for (name, _), h in stores.items():
            try:
                all_peers[name].drop(h)
            except Exception as e:  # noqa: BLE001 -- keep tearing down the others
                print(f"warning: dropping a {name} store: {e!r}", file=sys.stderr)
        for peer in started:
            peer.stop()
    cfg["loadavg_end"] = os.getloadavg()
    return {"config": cfg, "results": results, "counts": counts, "notes": notes, "targets": TARGETS,
            "ultradict_quoted": ULTRADICT_QUOTED}


def median(xs):
    return statistics.median(xs) if xs else None


def ratios(res: dict, name: str, row: str):
    """Median over runs of (peer / UltraDict) paired within each run."""
    mine, base = res["results"][name][row], res["results"].get("ultradict", {}).get(row, [])
    pairs = [a / b for a, b in zip(mine, base) if b]
    return median(pairs)


def fmt(x) -> str:
    if x is None:
        return "-"
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e3:
        return f"{x / 1e3:.1f}K"
    return f"{x:.0f}"


def fmt_ratio(r: float) -> str:
    if r < 0.01:
        return "<0.01x"
    return f"{r:.1f}x" if r >= 0.95 else f"{r:.2f}x"


def exactness(counts) -> str:
    if not counts:
        return ""
    lost = max(expected - final for final, expected in counts)
    return "exact" if lost == 0 else f"LOST {lost:,}"


def print_table(res: dict) -> None:
    cfg = res["config"]
    names = [p for p in PEERS if p in res["results"]]
    labels = row_labels(cfg)
    print(f"\n== SharedDict vs peers   median of {cfg['runs']} run(s)   ops/s, higher is better   "
          f"(xN = / UltraDict in the same run)")
    header = f"{'operation':38}" + "".join(f"{LABEL[n]:>18}" for n in names) + "   target"
    print(header)
    print("-" * len(header))
    for row in ROWS:
        cells = []
        for n in names:
            v = median(res["results"][n][row])
            if v is None:
                cells.append(f"{'n/a':>18}")
                continue
            rt = ratios(res, n, row) if n != "ultradict" else None
            cell = fmt(v) + (f" {fmt_ratio(rt)}" if rt is not None else "")
            cells.append(f"{cell:>18}")
        target = ""
        if row in TARGETS and "ultradict" in names and "mmstore" in names:
            rt = ratios(res, "mmstore", row)
            ok = rt is not None and rt >= TARGETS[row]
            target = f"   >={TARGETS[row]:.0f}x {'PASS' if ok else 'FAIL'}"
        elif row == "incr" and "mmstore" in names:
            inc, lk = median(res["results"]["mmstore"]["incr"]), median(res["results"]["mmstore"]["lock_incr"])
            if inc and lk:
                target = f"   > lock row {'PASS' if inc > lk else 'FAIL'} ({inc / lk:.2f}x)"
        print(f"{labels[row]:38}" + "".join(cells) + target)
    print()
    for row in ("lock_incr", "incr"):
        line = ", ".join(f"{LABEL[n]} {exactness(res['counts'][n][row])}" for n in names if res["counts"][n][row])
        if line:
            print(f"final counts ({row}): {line}")
    for n in ("mmstore", "dict"):
        small, large = (median(res["results"].get(n, {}).get(r, [])) for r in ("read_small", "read_large"))
        if small and large:
            print(f"{LABEL[n]} reads/s at {cfg['large']:,} entries / at {cfg['small']:,}: {large / small:.2f}x")
    for n, note in res["notes"].items():
        print(f"note: {LABEL[n]}: {note}")
    q = ULTRADICT_QUOTED
    print(f"quoted in the issue (not measured here): UltraDict reads {fmt(q['read'])}/s, writes {fmt(q['write'])}/s, "
          f"forked lock increments {fmt(q['lock_incr'])}/s")
    print(f"load average {cfg['loadavg_start'][0]:.2f} at start, {cfg['loadavg_end'][0]:.2f} at end; "
          f"{cfg['cpus']} CPUs; Python {cfg['python']}")


def log(args, msg: str) -> None:
    if args.verbose:
        print(msg, file=sys.stderr, flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 run, small counts, large = 100,000 entries")
    ap.add_argument("--peers", default=",".join(PEERS[1:]),
                    help=f"comma-separated peers to run besides mmstore (default: all of {', '.join(PEERS[1:])})")
    ap.add_argument("--ops", type=int, default=1_000_000, help="operations per read/write measurement")
    ap.add_argument("--incr-ops", type=int, default=100_000, help="increments per process (mmstore, UltraDict)")
    ap.add_argument("--slow-incr-ops", type=int, default=5_000,
                    help="increments per process for the slow peers (shm-dict, Manager, Redis)")
    ap.add_argument("--large", type=int, default=1_000_000, help="entries of the large read row")
    ap.add_argument("--budget", type=float, default=2.0, help="seconds after which a read/write loop stops")
    ap.add_argument("--seed", type=int, default=12345)
    ap.add_argument("--json", default=str(DEFAULT_JSON), help="where to save the results ('' to skip)")
    ap.add_argument("--txn-only", action="store_true", help="run only the transactions table")
    ap.add_argument("--no-txn", action="store_true", help="skip the transactions table")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    args.peers = {p.strip() for p in args.peers.split(",") if p.strip()}
    unknown = args.peers - set(PEERS)
    if unknown:
        ap.error(f"unknown peers: {', '.join(sorted(unknown))} (choose from {', '.join(PEERS)})")
    if args.txn_only:
        res = {}
    else:
        res = run(args)
        print_table(res)
    if hasattr(mmstore.Dict, "transaction") and not args.no_txn:
        res["transactions"] = run_txn(args)
        print_txn_table(res["transactions"])
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        if (args.txn_only or args.no_txn) and path.exists():
            # A partial run replaces only the tables it ran: the docs' charts read the whole file.
            res = {**json.loads(path.read_text()), **res}
        path.write_text(json.dumps(res, indent=1, default=str) + "\n")
        print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
