"""Handles are safe to share between threads: operations interleave but never crash or corrupt.

Decoding a date, Decimal or pickled value runs Python code that can switch threads in the middle of a
read; another thread then overwriting the value or closing the store must not make the reader touch freed
or unmapped memory.
"""

import datetime as dt
import decimal
import threading

import mmstore


class Slow:
    """Pickled value whose unpickling yields the GIL (so other threads run mid-decode)."""

    def __init__(self, n):
        self.n = n

    def __reduce__(self):
        return (_rebuild, (self.n,))

    def __eq__(self, other):
        return isinstance(other, Slow) and other.n == self.n


def _rebuild(n):
    import time

    time.sleep(0)  # release the GIL inside the decoder
    return Slow(n)


def test_readers_and_writers_in_threads_interleave_without_corruption(tmp_path):
    path = tmp_path / "d.mms"
    d = mmstore.Dict(path)
    values = [(dt.date(2020, 1, 1 + i % 28), decimal.Decimal(i), Slow(i), [i] * 10) for i in range(200)]
    for i, v in enumerate(values):
        d[i] = v
    errors = []

    def reader():
        try:
            for _ in range(20):
                for i in range(200):
                    got = d[i]
                    assert got[0].day == 1 + i % 28 and got[1] == i and got[2].n == i and got[3] == [i] * 10
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def writer():
        try:
            for _ in range(20):
                for i in range(200):
                    d[i] = values[i]  # same value, new record: the old one is freed and reused
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)] + [threading.Thread(target=writer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    d.verify()
    d.close()


def test_closing_while_another_thread_decodes_raises_closed_error_not_a_crash(tmp_path):
    path = tmp_path / "d.mms"
    d = mmstore.Dict(path)
    for i in range(500):
        d[i] = [Slow(i)] * 20
    outcomes = []

    def reader():
        try:
            for i in range(500):
                d[i]
            outcomes.append("done")
        except mmstore.ClosedError:
            outcomes.append("closed")

    t = threading.Thread(target=reader)
    t.start()
    d.close()
    t.join()
    assert outcomes in (["done"], ["closed"])
