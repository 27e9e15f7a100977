"""Crash safety (DESIGN.md contract 2): ``kill -9`` a writer at random instants, then reopen.

A writer subprocess runs a deterministic workload on a Dict or List and, after each operation *returns*,
appends the operation's number to a log (one ``os.write`` per line, so a logged op really returned). The
parent SIGKILLs it after a seeded random delay, reopens the store (which repairs it), calls ``verify()`` and
replays the logged operations on a plain ``dict`` / ``list``: the store must equal the model after the N
logged operations, or after N + 1 (the one operation that may have been in flight).

The workload is a pure function of (seed, op number): an operation names its key, or a position as a
fraction of the current length, so the same op applies identically to the store and to the model, and a
campaign can continue on the same file from wherever the previous kill left it (reopen -> repair -> keep
writing), which exercises the repair of stores that were themselves repaired.

Writers are started one round ahead and wait after printing "ready", so interpreter start-up and import
are outside both the kill window and the critical path.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import mmstore

# The workload, shared verbatim by the writer subprocess (via -c) and the parent (via exec).
WORKLOAD = r'''
M64 = (1 << 64) - 1
DICT_KEYS = 24_000   # bound of the key space: steady state churns through tombstone rehashes
LIST_MAX = 20_000    # beyond this, growing list ops turn into slice deletions


def _mix(x):
    """splitmix64 finalizer: a cheap, well-spread hash of (seed, op number)."""
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def _value(r, i):
    """A value of 0..300 encoded bytes (most need a record; some fit an inline word)."""
    size = r % 301
    kind = (r >> 9) % 6
    if kind == 0:
        return (r >> 12) - (1 << 50) if size < 150 else ((r >> 12) + 1) ** 4  # small or big int
    if kind == 1:
        return (f"v{i}." * (size // 3 + 1))[:size]
    if kind == 2:
        return (b"%d;" % i * (size // 2 + 1))[:size]
    if kind == 3:
        return ("\u00e9\u4e2d" * (size // 5 + 1))[: size // 5]  # multi-byte UTF-8
    if kind == 4:
        return (i, f"t{r % 1000}", None, float(r % 977) / 8, b"x" * (size // 4))
    return None if size % 2 else True


def dict_op(seed, i, compact_every=0):
    if compact_every and i % compact_every == compact_every - 1:
        return ("compact",)
    r = _mix((seed << 32) ^ i)
    r2 = _mix(r)
    if r % 300_000 == 0:
        return ("clear",)
    c = (r >> 20) % 100
    if c < 1:
        return ("popitem",)
    space = min(64 + i // 2, DICT_KEYS)  # grows: early ops insert new keys through several rehashes
    k = r2 % space
    key = k if k % 2 else f"key-{k}"
    if c < 18:
        return ("del", key)
    return ("set", key, _value(r2 >> 20, i))


def list_op(seed, i, compact_every=0):
    if compact_every and i % compact_every == compact_every - 1:
        return ("compact",)
    r = _mix((seed << 32) ^ i)
    r2 = _mix(r)
    frac = (r >> 8) & 0xFFFFF  # position as a 20-bit fraction of the length at apply time
    c = r % 100
    if r2 % 300_000 == 0:
        return ("clear",)
    if c < 45:
        return ("append", _value(r2, i))
    if c < 62:
        return ("set", frac, _value(r2, i))
    if c < 71:
        return ("insert", frac, _value(r2, i))
    if c < 79:
        return ("pop",)
    if c < 84:
        return ("popat", frac)
    if c < 90:
        return ("delslice", frac, 1 + (r2 >> 40) % 4)
    if c < 96:
        n = (r2 >> 40) % 5
        return ("splice", frac, (r2 >> 44) % 6, [_value(_mix(r2 + j), i) for j in range(n)])
    return ("delstep", frac, 2 + (r2 >> 40) % 6, 2 + (r2 >> 50) % 2)


def apply_dict(d, op):
    """Applies op to a dict or an mmstore.Dict."""
    name = op[0]
    if name == "set":
        d[op[1]] = op[2]
    elif name == "del":
        d.pop(op[1], None)
    elif name == "popitem":
        if len(d):
            d.popitem()
    elif name == "clear":
        d.clear()
    elif name == "compact":
        if not isinstance(d, dict):
            d.compact()
    else:
        raise AssertionError(op)


def apply_list(l, op):
    """Applies op to a list or an mmstore.List."""
    name = op[0]
    n = len(l)
    if n >= LIST_MAX and name in ("append", "insert"):
        name, op = "delslice", ("delslice", op[1] if name == "insert" else 0, 16)
    if n == 0 and name in ("set", "pop", "popat", "delslice", "splice", "delstep"):
        name, op = "append", ("append", op[2] if name == "set" else len(op))
    at = (op[1] * n) >> 20 if name in ("set", "popat", "delslice", "splice", "delstep") else 0
    if name == "append":
        l.append(op[1])
    elif name == "set":
        l[at] = op[2]
    elif name == "insert":
        l.insert((op[1] * (n + 1)) >> 20, op[2])
    elif name == "pop":
        l.pop()
    elif name == "popat":
        l.pop(at)
    elif name == "delslice":
        del l[at : at + op[2]]
    elif name == "splice":
        l[at : at + op[2]] = op[3]
    elif name == "delstep":
        del l[at : at + op[2] : op[3]]
    elif name == "clear":
        l.clear()
    elif name == "compact":
        if not isinstance(l, list):
            l.compact()
    else:
        raise AssertionError(op)


MAKE = {"dict": dict_op, "list": list_op}
APPLY = {"dict": apply_dict, "list": apply_list}
'''

WRITER = WORKLOAD + r'''
import json, os, sys
import mmstore

sys.stdout.write("ready\n")
sys.stdout.flush()
line = sys.stdin.readline()
if not line:
    sys.exit(0)
cfg = json.loads(line)
fd = os.open(cfg["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
make, apply = MAKE[cfg["kind"]], APPLY[cfg["kind"]]
store = (mmstore.Dict if cfg["kind"] == "dict" else mmstore.List)(cfg["path"])
store.verify()  # the store this writer just opened (and repaired, if it was killed) is consistent
os.write(fd, b"open\n")
seed, every, i = cfg["seed"], cfg["compact_every"], cfg["start"]
while True:
    apply(store, make(seed, i, every))
    os.write(fd, b"%d\n" % i)  # the op returned
    i += 1
'''

_W: dict = {}
exec(WORKLOAD, _W)
MAKE, APPLY = _W["MAKE"], _W["APPLY"]


def _env() -> dict:
    env = dict(os.environ)
    pkg = str(Path(mmstore.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = pkg + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


class WriterPool:
    """Keeps one writer interpreter started ahead (imported, waiting on stdin for its job)."""

    def __init__(self) -> None:
        self.env = _env()
        self.spare = self._spawn()

    def _spawn(self) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-c", WRITER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
        )

    def take(self) -> subprocess.Popen:
        proc, self.spare = self.spare, self._spawn()
        line = proc.stdout.readline()
        if line != b"ready\n":
            proc.kill()
            _, err = proc.communicate()
            pytest.fail(f"writer did not start: {line!r}\n{err.decode(errors='replace')}")
        return proc

    def close(self) -> None:
        self.spare.communicate(timeout=30)  # EOF on stdin: the spare exits without touching any store


@pytest.fixture()
def pool():
    p = WriterPool()
    yield p
    p.close()


def _logged_ops(log: Path) -> int:
    try:
        return max(0, log.read_bytes().count(b"\n") - 1)  # minus the "open" line
    except FileNotFoundError:
        return 0


def _last_op(log: Path):
    try:
        lines = log.read_bytes().split(b"\n")[:-1]
    except FileNotFoundError:
        return None
    return int(lines[-1]) if len(lines) > 1 else None


def kill_writer(pool: WriterPool, cfg: dict, delay: float, min_ops: int = 0, in_compact: bool = False) -> None:
    """Starts a writer on cfg, lets it run for `delay` seconds -- and, however busy the machine is, until it
    has logged at least `min_ops` operations -- and SIGKILLs it. The kill instant stays random (the delay),
    while the amount of work a campaign covers no longer depends on the machine's speed."""
    log = Path(cfg["log"])
    log.unlink(missing_ok=True)  # a writer killed before opening its log must not leave a stale one
    proc = pool.take()
    proc.stdin.write((json.dumps(cfg) + "\n").encode())
    proc.stdin.flush()
    time.sleep(delay)
    deadline = time.monotonic() + 120
    while min_ops and _logged_ops(log) < min_ops and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    if in_compact:
        # Wait until the op after the last logged one is a compact(): the writer is then inside it (a
        # compaction of ~20,000 keys takes tens of milliseconds); kill within the first few of them.
        make = MAKE[cfg["kind"]]
        while proc.poll() is None and time.monotonic() < deadline:
            j = _last_op(log)
            if j is not None and make(cfg["seed"], j + 1, cfg["compact_every"])[0] == "compact":
                break
            time.sleep(0.001)
        time.sleep(random.Random(delay).uniform(0, 0.004))
    alive = proc.poll() is None
    proc.kill()
    _, err = proc.communicate()
    assert alive and proc.returncode == -9, (
        f"writer exited on its own (rc {proc.returncode}) before the kill:\n{err.decode(errors='replace')}"
    )


def read_log(log: Path, start: int) -> tuple[bool, int]:
    """(store open returned, number of the first op that had not returned)."""
    if not log.exists():
        return False, start
    lines = log.read_bytes().split(b"\n")[:-1]  # only complete lines
    if not lines:
        return False, start
    assert lines[0] == b"open", lines[:3]
    done = [int(x) for x in lines[1:]]
    assert done == list(range(start, start + len(done))), "log is not a consecutive run of op numbers"
    return True, start + len(done)


def _diff(kind: str, got, want) -> str:
    if kind == "dict":
        missing = [k for k in want if k not in got][:5]
        extra = [k for k in got if k not in want][:5]
        wrong = [k for k in want if k in got and got[k] != want[k]][:5]
        order = list(got) == list(want)
        return f"len {len(got)} vs {len(want)}; missing {missing}; extra {extra}; wrong {wrong}; order ok {order}"
    first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    return f"len {len(got)} vs {len(want)}; first difference at index {first}"


def check_store(kind: str, path: Path, model, seed: int, start: int, opened: bool, end: int, every: int, finish: str):
    """Reopens (repairs) the killed store, verifies it and matches it to the model after ops [start, end)
    or [start, end]. Returns (model, next op number). `finish` is how the handle is dropped: "close" (clean)
    or "abandon" (left dirty, so the next opener repairs a repaired store)."""
    make, apply = MAKE[kind], APPLY[kind]
    for i in range(start, end):
        apply(model, make(seed, i, every))
    store = (mmstore.Dict if kind == "dict" else mmstore.List)(path)
    try:
        store.verify()
        got = dict(store.items()) if kind == "dict" else store.copy()
        got_order = list(store.keys()) if kind == "dict" else None
    finally:
        if finish == "close":
            store.close()
        else:
            store._abandon()

    def same() -> bool:
        return got == model and (got_order is None or got_order == list(model))

    if same():
        return model, end
    before = _diff(kind, got, model)
    if opened:  # the op numbered `end` may have been in flight: it may be there in full
        op = make(seed, end, every)
        apply(model, op)
        if same():
            return model, end + 1
        pytest.fail(
            f"{kind} store after kill matches neither {end - start} nor {end - start + 1} ops from op {start} "
            f"(seed {seed}); in flight: {op[:2]!r}\n after N: {before}\n after N+1: {_diff(kind, got, model)}"
        )
    pytest.fail(f"{kind} store killed before its open returned lost data (seed {seed}): {before}")


def prefill(kind: str, path: Path, seed: int, ops: int):
    """Runs ops [0, ops) of the workload in this process; returns the model."""
    make, apply = MAKE[kind], APPLY[kind]
    model = {} if kind == "dict" else []
    with (mmstore.Dict if kind == "dict" else mmstore.List)(path) as store:
        for i in range(ops):
            op = make(seed, i)
            apply(store, op)
            apply(model, op)
    return model


def campaign(pool, tmp_path: Path, kind: str, seed: int, kills: int, same_file: bool, every: int = 0,
             delays=(0.005, 0.3), prefilled: int = 0, min_ops: int = 0, min_in_compact: int = 0,
             max_kills: int = 0):
    """`kills` kill/reopen rounds, on one file that lives on (same_file) or on a fresh file each round; with
    `min_in_compact`, more rounds (up to `max_kills`) until that many kills landed inside compact(): how many
    of the random kill instants fall inside a compaction depends on the machine's load, so the campaign runs
    until it has covered the case rather than for a fixed number of rounds.
    Returns {"ops": ops done on the last file, "max_len": largest store seen after a kill,
    "in_compact": kills that landed while compact() had not returned}."""
    rng = random.Random(seed)
    log = tmp_path / "ops.log"
    model, start, path = None, 0, None
    seen = {"ops": 0, "max_len": 0, "in_compact": 0}
    k = 0
    while k < kills or (seen["in_compact"] < min_in_compact and k < max_kills):
        k += 1
        if not same_file or path is None:
            path = tmp_path / f"{kind}-{k}.mms"
            model, start = ({} if kind == "dict" else []), 0
            if prefilled:
                model, start = prefill(kind, path, seed, prefilled), prefilled
        cfg = {"kind": kind, "path": str(path), "log": str(log), "seed": seed, "start": start, "compact_every": every}
        kill_writer(pool, cfg, rng.uniform(*delays), min_ops, in_compact=bool(every))
        opened, end = read_log(log, start)
        if opened and MAKE[kind](seed, end, every)[0] == "compact":
            seen["in_compact"] += 1
        if not path.exists():
            assert not opened
            continue
        mode = rng.choice(["close", "abandon", "copy"]) if same_file else "close"
        if mode == "copy":
            # Check a byte-identical copy of the killed file and leave the original as the kill left it:
            # the next writer then repairs the raw killed state itself (and verifies it on open).
            probe = tmp_path / "probe.mms"
            shutil.copyfile(path, probe)
            model, start = check_store(kind, probe, model, seed, start, opened, end, every, "close")
            probe.unlink()
        else:
            model, start = check_store(kind, path, model, seed, start, opened, end, every, mode)
        if not same_file:
            path.unlink()
        seen["ops"], seen["max_len"] = start, max(seen["max_len"], len(model))
    return seen


# 20 + 40 Dict kills, 15 + 35 List kills, 12 + 12 kills during compact(): 134 in all.


def test_dict_kill_at_random_instants_on_fresh_files_loses_only_the_op_in_flight(pool, tmp_path):
    campaign(pool, tmp_path, "dict", seed=101, kills=20, same_file=False)


# The same-file campaigns make each writer log at least 1,100 ops before its kill (kill_writer's min_ops), so
# the kills land in a store of thousands of entries whatever the machine's speed (asserting that the writers
# got that far within their random delays failed on a loaded machine).


def test_dict_kill_and_continue_on_the_same_file_repairs_repaired_stores(pool, tmp_path):
    seen = campaign(pool, tmp_path, "dict", seed=202, kills=40, same_file=True, min_ops=1100)
    assert seen["ops"] > 40 * 1000 and seen["max_len"] > 5_000, seen  # the workload ran: thousands of keys


def test_list_kill_at_random_instants_on_fresh_files_loses_only_the_op_in_flight(pool, tmp_path):
    campaign(pool, tmp_path, "list", seed=303, kills=15, same_file=False)


def test_list_kill_and_continue_on_the_same_file_repairs_repaired_stores(pool, tmp_path):
    seen = campaign(pool, tmp_path, "list", seed=404, kills=35, same_file=True, min_ops=1100)
    assert seen["ops"] > 35 * 1000 and seen["max_len"] > 5_000, seen


def test_dict_kill_during_compact_leaves_old_or_new_content(pool, tmp_path):
    # A compact() every 150 ops on a store of ~20,000 keys: most of the writer's time is spent compacting,
    # so most kills land inside compact(); it counts as an op that changes no content.
    seen = campaign(pool, tmp_path, "dict", seed=505, kills=12, same_file=True, every=150, delays=(0.02, 0.3),
                    prefilled=40_000, min_in_compact=6, max_kills=48)
    assert seen["in_compact"] >= 6 and seen["max_len"] > 5_000, seen


def test_list_kill_during_compact_leaves_old_or_new_content(pool, tmp_path):
    seen = campaign(pool, tmp_path, "list", seed=606, kills=12, same_file=True, every=150, delays=(0.02, 0.3),
                    prefilled=40_000, min_in_compact=6, max_kills=48)
    assert seen["in_compact"] >= 6 and seen["max_len"] > 2_000, seen
