"""A writable open of a cleanly closed store writes nothing durable until its first write.

The dirty commit slot (docs/format.md 1.5) is written and synced by the first write under the lock, not at
open (issue 13: a reopen waited for that disk write, 3-160 ms on a busy disk). These tests pin down both
halves of the contract: an open that only reads leaves the commit slots as the close left them, the first
write records the store dirty before it changes anything, and a kill between the open and the first write
leaves the store whole.
"""

import os
import signal
import subprocess
import sys

import mmstore

PAGE = 4096


def slot_pages(path) -> bytes:
    """Commit slots A and B (format.md 1.4: pages 1 and 2), as any reader of the file sees them."""
    with open(path, "rb") as f:
        f.seek(PAGE)
        return f.read(2 * PAGE)


def newest_slot_dirty(pages: bytes) -> int:
    """The `dirty` field (slot +32) of the slot with the higher generation (slot +0)."""
    gens = [int.from_bytes(pages[i * PAGE:i * PAGE + 8], "little") for i in (0, 1)]
    i = 0 if gens[0] > gens[1] else 1
    return int.from_bytes(pages[i * PAGE + 32:i * PAGE + 40], "little")


def test_dict_reopen_that_reads_leaves_the_commit_slots_alone_until_the_first_write(tmp_path):
    path = tmp_path / "d.mms"
    with mmstore.Dict(path) as d:
        d.update((i, i) for i in range(1000))
    closed = slot_pages(path)
    assert newest_slot_dirty(closed) == 0
    with mmstore.Dict(path) as d:
        assert d[500] == 500 and len(d) == 1000 and 7 in d
        assert slot_pages(path) == closed
        d[1000] = "new"
        first = slot_pages(path)
        assert first != closed and newest_slot_dirty(first) == 1
        d[1001] = "newer"
        assert slot_pages(path) == first  # once per handle
    assert newest_slot_dirty(slot_pages(path)) == 0


def test_list_reopen_that_reads_leaves_the_commit_slots_alone_until_the_first_write(tmp_path):
    path = tmp_path / "l.mms"
    with mmstore.List(path) as lst:
        lst.extend(range(1000))
    closed = slot_pages(path)
    with mmstore.List(path) as lst:
        assert lst[999] == 999 and sum(lst) == sum(range(1000))
        assert slot_pages(path) == closed
        lst.append(1000)
        assert newest_slot_dirty(slot_pages(path)) == 1


def test_second_handle_that_writes_first_records_the_store_dirty(tmp_path):
    # The first opener read only; the other handle's first write must still write the dirty slot.
    path = tmp_path / "d.mms"
    with mmstore.Dict(path) as d:
        d["a"] = 1
    closed = slot_pages(path)
    with mmstore.Dict(path) as first, mmstore.Dict(path) as second:
        assert first["a"] == 1
        assert slot_pages(path) == closed
        second["b"] = 2
        assert newest_slot_dirty(slot_pages(path)) == 1
        assert first["b"] == 2


OPEN_AND_WAIT = r"""
import sys, mmstore
d = mmstore.Dict(sys.argv[1])
assert d[123] == 123
print("ready", flush=True)
sys.stdin.read()
"""


def test_kill_between_open_and_first_write_leaves_the_store_whole(tmp_path):
    path = tmp_path / "d.mms"
    with mmstore.Dict(path) as d:
        d.update((i, i) for i in range(5000))
    closed = slot_pages(path)
    p = subprocess.Popen([sys.executable, "-c", OPEN_AND_WAIT, str(path)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready", p.stderr.read()
        assert slot_pages(path) == closed
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        p.stdin.close()
        p.stdout.close()
        p.stderr.close()
    assert p.returncode == -signal.SIGKILL
    with mmstore.Dict(path) as d:
        d.verify()
        assert len(d) == 5000
        assert all(d[i] == i for i in range(5000))
        d[5000] = 5000
    with mmstore.Dict(path) as d:
        d.verify()
        assert d[5000] == 5000
