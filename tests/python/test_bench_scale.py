"""bench/bench_scale.py runs, and anonymous memory stays flat as the number of entries grows.

The bench itself (1M-100M entries, rates, reopen times) is run by hand; this only checks that it works at
small sizes and that its memory figure -- the child's peak RssAnon -- does not grow with the store
(DESIGN.md contract 8: the data lives in mapped pages, not in the heap). No timing is asserted.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "bench_scale.py"

pytestmark = pytest.mark.skipif(not BENCH.exists(), reason="bench/ is not shipped with the package")


def run_bench(tmp_path, sizes, kinds):
    out = tmp_path / "scale.json"
    p = subprocess.run(
        [sys.executable, str(BENCH), "--sizes", sizes, "--kinds", kinds, "--gets", "20000", "--reopens", "1",
         "--dir", str(tmp_path), "--out", str(out)],
        capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(out.read_text())["rows"]


def test_bench_scale_reports_every_figure_and_anonymous_memory_stays_flat(tmp_path):
    rows = run_bench(tmp_path, "50k,400k", "dict-int,list-str")
    assert [(r["kind"], r["n"]) for r in rows] == [
        ("dict-int", 50_000), ("dict-int", 400_000), ("list-str", 50_000), ("list-str", 400_000)]
    for r in rows:
        for key in ("insert_rate", "get_rate", "st_size", "alloc", "peak_anon_mib", "peak_rss_mib", "reopen_ms"):
            assert r[key] > 0, (r["kind"], r["n"], key)
        # The closed file is dense: no table-sized holes (int entries: 14.5 bytes of table per slot). The
        # list's str elements are records (more than 6 payload bytes, docs/format.md §3) placed between the
        # array's growths, so the space of earlier arrays below them stays free inside the file: at most one
        # more array (8 bytes per element) beyond the blocks in use.
        slack = (1 << 20) + (8 * r["n"] if r["kind"] == "list-str" else 0)
        assert r["st_size"] <= r["alloc"] + slack, r
    for kind in ("dict-int", "list-str"):
        small, big = (r for r in rows if r["kind"] == kind)
        # 350k more entries: a heap that grew with the store (a list of keys, a per-entry cache) would add
        # >= 350k * 8 bytes (2.7 MiB) and typically 10x that; the mapped file does not count as anonymous.
        assert big["peak_anon_mib"] - small["peak_anon_mib"] < 2.5, (small, big)
        # ...while the store itself did grow (the file pages are in VmRSS, not RssAnon).
        assert big["st_size"] > 4 * small["st_size"]


def test_bench_scale_rejects_an_unknown_kind(tmp_path):
    p = subprocess.run([sys.executable, str(BENCH), "--kinds", "dict-float", "--out", ""], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode != 0
    assert "unknown kind 'dict-float'" in p.stderr
