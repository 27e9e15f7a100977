"""Crash safety of List.extend (chunks appended under one hold of the lock): SIGKILL a writer that runs
extend after extend, then reopen (repair), verify, and check the list is what the returned extends made plus
a prefix of the one in flight -- nothing lost that an extend returned, nothing torn. Rounds continue on the
same file until several kills landed inside an extend (not between two).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import mmstore

CHUNK = r'''
BASE = [j if j % 4 == 0 else f"e{j}" if j % 4 == 1 else f"a longer record value {j}" if j % 4 == 2 else (j, -j)
        for j in range(20_000)]


def chunk(i):
    """The elements of extend number i: 3000..9999 of them (so many cross the 4096-element chunk boundary),
    inline ints and short strs, and records (long strs, tuples). A slice of BASE, so that the writer spends
    its time in extend(), not in making the values."""
    start = (i * 7919) % 10_000
    return BASE[start:start + 3000 + (i * 104_729) % 7000]
'''

WRITER = CHUNK + r'''
import os, sys
import mmstore
path, log, i = sys.argv[1], sys.argv[2], int(sys.argv[3])
l = mmstore.List(path)
fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
sys.stdout.write("ready\n")
sys.stdout.flush()
while True:
    l.extend(chunk(i) if i % 2 else iter(chunk(i)))  # sized (reserves once) and unsized sources
    os.write(fd, b"%d\n" % i)  # this extend returned
    i += 1
'''

_G: dict = {}
exec(CHUNK, _G)
chunk = _G["chunk"]


def _env() -> dict:
    env = dict(os.environ)
    pkg = str(Path(mmstore.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = pkg + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _logged(log: Path) -> list[int]:
    if not log.exists():
        return []
    return [int(x) for x in log.read_text().split()]


def test_list_extend_killed_leaves_every_returned_extend_and_a_prefix_of_the_one_in_flight(tmp_path):
    path, log = tmp_path / "l.mms", tmp_path / "log"
    model: list = []
    nxt = 0  # number of the next extend
    inside = 0
    rng = random.Random(7)
    # Rounds until 3 kills landed inside an extend (a machine's load decides how many that takes; the cap
    # only stops a writer that never gets there).
    for round_ in range(300):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(log), str(nxt)],
                                stdout=subprocess.PIPE, env=_env())
        try:
            assert proc.stdout.readline() == b"ready\n"
            # Kill once 1..3 more extends returned, at a random point of the next one: a random fraction of
            # the time the last extend took (the writer spends nearly all its time inside extend()).
            want = len(_logged(log)) + 1 + round_ % 3
            seen, last, took = len(_logged(log)), time.monotonic(), 0.0
            while seen < want:
                assert proc.poll() is None, "writer died"
                time.sleep(0.0005)
                n = len(_logged(log))
                if n > seen:
                    now = time.monotonic()
                    seen, last, took = n, now, now - last
            time.sleep(rng.uniform(0.1, 0.9) * took)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
            proc.stdout.close()
        done = [i for i in _logged(log) if i >= nxt]
        assert done == list(range(nxt, nxt + len(done)))
        for i in done:
            model.extend(chunk(i))
        nxt += len(done)
        with mmstore.List(path) as l:  # repairs the killed writer's store
            l.verify()
            got = list(l)
        assert got[: len(model)] == model, f"round {round_}: an extend that returned is not all there"
        tail = got[len(model):]
        in_flight = chunk(nxt)
        assert tail == in_flight[: len(tail)], f"round {round_}: the in-flight extend left a non-prefix"
        if 0 < len(tail) < len(in_flight):
            inside += 1
        # The in-flight extend's prefix stays; the next writer goes on with the extend after it.
        model = got
        nxt += 1
        if inside >= 3:
            break
    assert inside >= 3, f"only {inside} kills landed inside an extend"
