"""Resources: flat anonymous memory (DESIGN.md contract 8), instant reopen with no load step, reuse of
disk space, and a full disk (contract 2: the failing operation has no effect).

Memory and timing are measured in fresh subprocesses, so that nothing this test process has allocated or
mapped before is counted; each subprocess prints one JSON line of measurements that the test asserts on.
"""

from __future__ import annotations

import errno
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

import mmstore

MiB = 1 << 20

STATUS = r'''
def status(field):
    """A /proc/self/status field in bytes (RssAnon: heap and other private memory; RssFile: file pages)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)
'''


def run_py(script: str, *args) -> dict:
    """Runs script in a fresh interpreter (PYTHONPATH inherited) and returns its last line, parsed as JSON."""
    env = dict(os.environ)
    pkg = str(Path(mmstore.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = pkg + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    out = subprocess.run(
        [sys.executable, "-c", STATUS + script, *map(str, args)], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, f"subprocess failed (rc {out.returncode}):\n{out.stderr}"
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- anonymous memory stays flat ---------------------------------------------------------------------------

FILL_AND_MEASURE = r'''
import json, sys
import mmstore
path, kind, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
anon0, file0 = status("RssAnon"), status("RssFile")
if kind == "dict":
    s = mmstore.Dict(path)
    for i in range(n):          # no Python list of the keys: range yields them one at a time
        s[i] = i
else:
    s = mmstore.List(path)
    for i in range(n):
        s.append(f"value-{i:020d}")  # 26-byte str: a record per element
anon1, file1 = status("RssAnon"), status("RssFile")
last = s[n - 1]
ok = last == (n - 1 if kind == "dict" else f"value-{n - 1:020d}")
print(json.dumps({"anon_growth": anon1 - anon0, "file_growth": file1 - file0, "entries": len(s),
                  "file_bytes": s.stats()["file_bytes"], "last_ok": ok}))
s.close()
'''


@pytest.mark.parametrize("kind", ["dict", "list"])
def test_anonymous_memory_stays_flat_over_a_million_entries(tmp_path, kind):
    n = 1_000_000
    r = run_py(FILL_AND_MEASURE, tmp_path / f"{kind}.mms", kind, n)
    assert r["entries"] == n and r["last_ok"]
    # The data is far larger than the bound, so a store that kept (a copy of) it on the heap would fail.
    assert r["file_bytes"] > 2 * 16 * MiB, r
    assert r["anon_growth"] < 16 * MiB, f"RssAnon grew by {r['anon_growth'] / MiB:.1f} MiB for {n} entries: {r}"


# -- reopen is O(1): no load step ---------------------------------------------------------------------------

OPEN_TIMES = r'''
import json, sys, time
import mmstore
big, empty = sys.argv[1], sys.argv[2]
d = mmstore.Dict(empty)   # first use of the extension (lazy initialization) is charged to neither store
d.get(0)
d.close()
anon0, file0 = status("RssAnon"), status("RssFile")
d = mmstore.Dict(big)
first = d[123_457]
anon1, file1 = status("RssAnon"), status("RssFile")
d.close()
times = {"big": [], "empty": []}
for _ in range(9):  # interleaved, so drift in machine load hits both alike
    for name, path, key in (("big", big, 999_999), ("empty", empty, 0)):
        t0 = time.perf_counter()
        d = mmstore.Dict(path)
        v = d.get(key)
        t1 = time.perf_counter()
        d.close()
        times[name].append(t1 - t0)
# The fastest of each: machine load only ever adds time, so the minimum is the cost of the operation itself.
print(json.dumps({"big": min(times["big"]), "empty": min(times["empty"]),
                  "first_ok": first == 123_457, "anon_growth": anon1 - anon0, "file_growth": file1 - file0}))
'''


def test_reopen_of_a_million_entries_costs_what_an_empty_store_costs(tmp_path):
    big, empty = tmp_path / "big.mms", tmp_path / "empty.mms"
    with mmstore.Dict(big) as d:
        d.update((i, i) for i in range(1_000_000))
        big_bytes = d.stats()["file_bytes"]
    mmstore.Dict(empty).close()
    # Measured again (at most 3 runs) when one run misses the bound: a load step or scan is in every run,
    # a burst of machine load is not.
    for _ in range(3):
        r = run_py(OPEN_TIMES, big, empty)
        if r["big"] <= 10 * r["empty"] + 0.005:
            break
    assert r["first_ok"]
    # O(1) open, asserted as a ratio against the same operation on an empty store in the same process and
    # run, so the machine's and the disk's speed cancel out; this is not a speed threshold. Both opens pay
    # the same fixed costs (open, flock, map, writing and syncing a header slot: ~4 ms here); a load step or
    # a scan of 1,000,000 entries (tens of MiB of pages; verify() takes ~0.5 s) adds a size-proportional
    # cost far above 10x. The 5 ms absolute slack absorbs scheduler and writeback noise that is not
    # proportional to the store's size; each side is the fastest of 9 interleaved opens. The RSS checks below
    # catch a load step independently of time.
    assert r["big"] <= 10 * r["empty"] + 0.005, (
        f"open+lookup of 1M entries {r['big'] * 1e3:.2f} ms vs empty {r['empty'] * 1e3:.2f} ms"
    )
    # No load step: opening and one lookup touch a few pages of a file of tens of MiB, and allocate nothing.
    assert big_bytes > 32 * MiB
    assert r["file_growth"] < 4 * MiB, f"RssFile grew by {r['file_growth'] / MiB:.1f} MiB on open: {r}"
    assert r["anon_growth"] < 4 * MiB, f"RssAnon grew by {r['anon_growth'] / MiB:.1f} MiB on open: {r}"


# -- disk space is reused ------------------------------------------------------------------------------------


def _blob(rng: random.Random) -> bytes:
    return rng.randbytes(rng.randint(10, 500))


def test_dict_overwrite_rounds_reuse_freed_space(tmp_path):
    rng = random.Random(11)
    model = {}
    with mmstore.Dict(tmp_path / "d.mms") as d:
        sizes = []
        for _ in range(30):
            for k in range(5000):
                d[k] = model[k] = _blob(rng)
            sizes.append(d.stats()["file_bytes"])
        d.verify()
        assert dict(d.items()) == model
    assert sizes[29] <= 1.5 * sizes[2], f"file_bytes by round: {sizes}"


def test_dict_delete_all_then_refill_reuses_freed_space(tmp_path):
    rng = random.Random(12)
    with mmstore.Dict(tmp_path / "d.mms") as d:
        for k in range(5000):
            d[k] = _blob(rng)
        full = d.stats()["file_bytes"]
        for k in range(5000):
            del d[k]
        assert len(d) == 0
        model = {}
        for k in range(5000):
            d[f"again-{k}"] = model[f"again-{k}"] = _blob(rng)
        refilled = d.stats()["file_bytes"]
        d.verify()
        assert dict(d.items()) == model
    assert refilled <= 1.1 * full, f"file_bytes {full} after the first fill, {refilled} after delete + refill"


def test_dict_compact_after_deleting_90_percent_shrinks_the_file(tmp_path):
    rng = random.Random(13)
    path = tmp_path / "d.mms"
    model = {}
    with mmstore.Dict(path) as d:
        for k in range(100_000):
            d[k] = rng.randbytes(rng.randint(50, 150))
        original = d.stats()["file_bytes"]
        for k in range(100_000):
            if k % 10:
                del d[k]
            else:
                model[k] = d[k]
        d.compact()
        compacted = d.stats()["file_bytes"]
        d.verify()
        assert dict(d.items()) == model
    assert os.path.getsize(path) == compacted
    assert compacted <= 0.3 * original, f"file_bytes {original} before, {compacted} after compact()"
    with mmstore.Dict(path) as d:
        assert dict(d.items()) == model


def test_list_overwrite_rounds_reuse_freed_space(tmp_path):
    rng = random.Random(21)
    with mmstore.List(tmp_path / "l.mms") as l:
        model = [_blob(rng) for _ in range(5000)]
        l.extend(model)
        sizes = []
        for _ in range(30):
            for i in range(5000):
                l[i] = model[i] = _blob(rng)
            sizes.append(l.stats()["file_bytes"])
        l.verify()
        assert l.copy() == model
    assert sizes[29] <= 1.5 * sizes[2], f"file_bytes by round: {sizes}"


def test_list_pop_all_then_refill_reuses_freed_space(tmp_path):
    rng = random.Random(22)
    with mmstore.List(tmp_path / "l.mms") as l:
        for _ in range(5000):
            l.append(_blob(rng))
        full = l.stats()["file_bytes"]
        while len(l):
            l.pop()
        model = [_blob(rng) for _ in range(5000)]
        for v in model:
            l.append(v)
        refilled = l.stats()["file_bytes"]
        l.verify()
        assert l.copy() == model
    assert refilled <= 1.1 * full, f"file_bytes {full} after the first fill, {refilled} after pop all + refill"


def test_list_compact_after_deleting_90_percent_shrinks_the_file(tmp_path):
    rng = random.Random(23)
    path = tmp_path / "l.mms"
    with mmstore.List(path) as l:
        l.extend(rng.randbytes(rng.randint(50, 150)) for _ in range(100_000))
        original = l.stats()["file_bytes"]
        model = l.copy()
        for step in (2, 2, 2, 5):  # 100,000 -> 50,000 -> 25,000 -> 12,500 -> 10,000
            del l[1::step]
            del model[1::step]
        assert len(l) == 10_000 and l.copy() == model
        l.compact()
        compacted = l.stats()["file_bytes"]
        l.verify()
        assert l.copy() == model
    assert compacted <= 0.3 * original, f"file_bytes {original} before, {compacted} after compact()"


# -- a full disk ---------------------------------------------------------------------------------------------


@pytest.fixture()
def small_fs(tmp_path):
    """A 4 MiB tmpfs (needs root; the test is skipped where mount is not permitted)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {out.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def _full_value(i: int) -> bytes:
    return random.Random(i).randbytes(100 + i % 300)


# Runs in a subprocess: a SIGBUS from writing to a page the full filesystem cannot back would kill it, and
# that must fail this test rather than take pytest down.
FILL_UNTIL_FULL = r'''
import errno, json, random, sys
import mmstore
def value(i):
    return random.Random(i).randbytes(100 + i % 300)
d = mmstore.Dict(sys.argv[1])
i = 0
err = None
try:
    while i < 1_000_000:
        d[f"key-{i}"] = value(i)
        i += 1
except mmstore.StoreIOError as e:
    err = {"type": type(e).__name__, "errno": e.errno, "msg": str(e)}
# The same handle, right after the failure: consistent, and the failing insert had no effect.
d.verify()
absent = f"key-{i}" not in d and len(d) == i
# An overwrite of an existing key with a larger value either fits in freed space or fails with no effect.
overwrite = None
try:
    d["key-0"] = b"y" * 3000
    overwrite = "stored"
except mmstore.StoreIOError as e:
    overwrite = type(e).__name__
d.verify()
d.close()
print(json.dumps({"inserted": i, "error": err, "absent": absent, "overwrite": overwrite}))
'''


def test_full_disk_fails_the_insert_and_keeps_the_store_intact(small_fs):
    path = small_fs / "d.mms"
    r = run_py(FILL_UNTIL_FULL, path)
    err = r["error"]
    assert err is not None, "the store never hit the 4 MiB limit"
    assert err["type"] == "DiskFullError" or err["errno"] == errno.ENOSPC, err
    assert r["inserted"] > 1000, r  # the store did use most of the filesystem before failing
    assert r["absent"], "the failing insert left its key behind"
    n = r["inserted"]
    with mmstore.Dict(path, create=False) as d:  # close and reopen works
        d.verify()
        assert len(d) == n
        for i in range(n):
            want = b"y" * 3000 if i == 0 and r["overwrite"] == "stored" else _full_value(i)
            assert d[f"key-{i}"] == want, f"key-{i} damaged after the disk filled"
        assert f"key-{n}" not in d


LIST_FILL_UNTIL_FULL = r'''
import json, random, sys
import mmstore
l = mmstore.List(sys.argv[1])
i = 0
err = None
try:
    while i < 1_000_000:
        l.append(random.Random(i).randbytes(100 + i % 300))
        i += 1
except mmstore.StoreIOError as e:
    err = {"type": type(e).__name__, "errno": e.errno}
l.verify()
n = len(l)
l.close()
print(json.dumps({"inserted": i, "len": n, "error": err}))
'''


def test_full_disk_fails_the_append_and_keeps_the_list_intact(small_fs):
    path = small_fs / "l.mms"
    r = run_py(LIST_FILL_UNTIL_FULL, path)
    err = r["error"]
    assert err is not None and (err["type"] == "DiskFullError" or err["errno"] == errno.ENOSPC), r
    assert r["len"] == r["inserted"] > 1000, r
    with mmstore.List(path, create=False) as l:
        l.verify()
        assert len(l) == r["inserted"]
        for i in range(len(l)):
            assert l[i] == _full_value(i), f"element {i} damaged after the disk filled"


def _fill_filesystem(mnt: Path) -> Path:
    filler = mnt / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * (64 << 10))
                f.flush()
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
    return filler


def test_creating_a_store_on_a_full_disk_fails_cleanly_and_works_once_space_is_freed(small_fs):
    filler = _fill_filesystem(small_fs)
    path = small_fs / "d.mms"
    with pytest.raises(mmstore.DiskFullError):
        mmstore.Dict(path)
    filler.unlink()
    with mmstore.Dict(path) as d:  # whatever the failed creation left behind does not block the path
        d.update((i, str(i)) for i in range(1000))
    with mmstore.Dict(path, create=False) as d:
        d.verify()
        assert dict(d.items()) == {i: str(i) for i in range(1000)}


def test_disk_full_error_carries_errno_enospc_like_any_oserror(small_fs):
    _fill_filesystem(small_fs)
    with pytest.raises(mmstore.DiskFullError) as info:
        mmstore.Dict(small_fs / "d.mms")
    assert info.value.errno == errno.ENOSPC
