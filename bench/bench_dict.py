"""bench/bench_dict.py -- mmstore.Dict / mmstore.List against dict/list and persistent peers, in one run.

Run:  PYTHONPATH=python python3 bench/bench_dict.py [--n 1000000] [--runs 3] [--peer-n 100000] [--quick]

What it measures (README.md in this directory has the details):
  * two workloads of N entries: int -> int (i -> i) and str -> str (str(i) -> 'v' + str(i));
  * Dict insert (keys in order), Dict random get (keys pre-shuffled with a fixed seed), List append,
    List iterate, List random index (indices pre-shuffled), List extend (one extend(values) call into an
    empty list: the bulk path; compared with list.extend, and its rate in M elements/s);
  * disk bytes per entry after close(): allocated (st_blocks * 512) and apparent (st_size), summed over
    every file the store created.

Fairness rules, so that ratios mean something:
  * every figure is the median of --runs runs; each run starts in a fresh temporary directory;
  * time.perf_counter() brackets only the loop (plus the one commit a transactional peer needs for the data
    to exist: sqlitedict.commit(), the LMDB write transaction, diskcache's transact()); opening, closing
    and reopening are outside; the garbage collector is off during the loop, as in timeit;
  * loops are small module-level functions with the same shape for every peer; no peer binds methods to
    locals (so `txn.put` is looked up on each iteration, as `d[k] = v` dispatches through its type);
  * conversions a peer forces on its user are inside its loop: shelve needs str keys (str(k)), LMDB needs
    bytes (k.to_bytes / str.encode and the matching decode of what get returns);
  * slow peers (shelve, sqlitedict, diskcache) run at --peer-n entries and their per-op time is reported
    as if it held at N (marked '*'): that flatters them, as a smaller store has a smaller working set.

A ratio is peer time / builtin time per operation, taken within each run (peers of a run follow each other
closely, so load from other jobs hits both sides alike) and reported as the median over runs. The mmstore
targets are those of the issue. Results, with every run's figures, also go to bench/results/bench_dict.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import shelve
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import mmstore

try:
    import lmdb
except ImportError:  # pragma: no cover - optional peer
    lmdb = None
try:
    import sqlitedict
except ImportError:  # pragma: no cover
    sqlitedict = None
try:
    import diskcache
except ImportError:  # pragma: no cover
    diskcache = None

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "bench_dict.json"

# Targets for mmstore / builtin per-op time (and absolute bytes per int->int entry), from the issue.
TARGETS = {"insert": 2.0, "get": 1.3, "append": 2.5, "iterate": 2.5, "index": 1.3, "extend": None, "disk": 48.0}
# Quoted from the issue (pyrsistence EMDict/EMList vs builtin), NOT measured by this script.
PYRSISTENCE_QUOTED = {"insert": 7.0, "get": 2.2, "append": 9.6, "iterate": 8.3, "disk_bytes_per_entry": 114}

DICT_OPS = ("insert", "get")
LIST_OPS = ("append", "iterate", "index", "extend")
OP_LABEL = {
    "insert": "Dict insert",
    "get": "Dict random get",
    "append": "List append",
    "iterate": "List iterate",
    "index": "List random index",
    "extend": "List extend",
}
LMDB_MAP_SIZE = 4 << 30


# ---------------------------------------------------------------------------------------------------------
# Timed loops. One shape per operation; variants exist only where a peer forces a conversion on its user.
# ---------------------------------------------------------------------------------------------------------
def insert_subscript(d, keys, vals):
    for k, v in zip(keys, vals):
        d[k] = v


def get_subscript(d, keys):
    for k in keys:
        d[k]


def insert_strkey(d, keys, vals):  # shelve with int keys: the user must write str(k)
    for k, v in zip(keys, vals):
        d[str(k)] = v


def get_strkey(d, keys):
    for k in keys:
        d[str(k)]


def insert_lmdb_int(txn, keys, vals):
    for k, v in zip(keys, vals):
        txn.put(k.to_bytes(8, "big"), v.to_bytes(8, "little", signed=True))


def get_lmdb_int(txn, keys):
    for k in keys:
        int.from_bytes(txn.get(k.to_bytes(8, "big")), "little", signed=True)


def insert_lmdb_str(txn, keys, vals):
    for k, v in zip(keys, vals):
        txn.put(k.encode(), v.encode())


def get_lmdb_str(txn, keys):
    for k in keys:
        txn.get(k.encode()).decode()


def append_method(lst, vals):
    for v in vals:
        lst.append(v)


def iterate(lst):
    for x in lst:
        pass


def index_subscript(lst, idx):
    for i in idx:
        lst[i]


def extend_method(lst, vals):
    lst.extend(vals)


def extend_lmdb_int(txn, vals):
    txn.cursor().putmulti(((i.to_bytes(8, "big"), v.to_bytes(8, "little", signed=True)) for i, v in enumerate(vals)),
                          append=True)


def extend_lmdb_str(txn, vals):
    txn.cursor().putmulti(((i.to_bytes(8, "big"), v.encode()) for i, v in enumerate(vals)), append=True)


def append_lmdb_int(txn, vals):
    for i, v in enumerate(vals):
        txn.put(i.to_bytes(8, "big"), v.to_bytes(8, "little", signed=True), append=True)


def iterate_lmdb_int(txn):
    for x in txn.cursor().iternext(keys=False):
        int.from_bytes(x, "little", signed=True)


def index_lmdb_int(txn, idx):
    for i in idx:
        int.from_bytes(txn.get(i.to_bytes(8, "big")), "little", signed=True)


def append_lmdb_str(txn, vals):
    for i, v in enumerate(vals):
        txn.put(i.to_bytes(8, "big"), v.encode(), append=True)


def iterate_lmdb_str(txn):
    for x in txn.cursor().iternext(keys=False):
        x.decode()


def index_lmdb_str(txn, idx):
    for i in idx:
        txn.get(i.to_bytes(8, "big")).decode()


# ---------------------------------------------------------------------------------------------------------
# Peers. Each adapter opens/reopens/closes a store in a directory; its dict_*/list_* methods are the timed
# units and call exactly one loop above.
# ---------------------------------------------------------------------------------------------------------
class Peer:
    name = ""
    slow = False  # runs at --peer-n
    kinds = ("dict", "list")
    ops = DICT_OPS + LIST_OPS
    note = ""

    def open(self, directory: str, kind: str, kt: str):
        raise NotImplementedError

    def reopen(self, h, directory: str, kind: str, kt: str):
        """Opens again after close(h), as a later program would."""
        return self.open(directory, kind, kt)

    def close(self, h) -> None:
        h.close()

    def dict_insert(self, h, kt, keys, vals):
        insert_subscript(h, keys, vals)

    def dict_get(self, h, kt, keys):
        get_subscript(h, keys)

    def list_append(self, h, kt, vals):
        append_method(h, vals)

    def list_iterate(self, h, kt):
        iterate(h)

    def list_index(self, h, kt, idx):
        index_subscript(h, idx)

    def list_extend(self, h, kt, vals):
        extend_method(h, vals)


class Builtin(Peer):
    name = "builtin"
    note = "dict / list in RAM (the baseline)"

    def open(self, directory, kind, kt):
        return {} if kind == "dict" else []

    def reopen(self, h, directory, kind, kt):
        return h

    def close(self, h):
        pass


class MMStore(Peer):
    name = "mmstore"
    note = "mmstore.Dict / mmstore.List (durable=False)"

    def open(self, directory, kind, kt):
        cls = mmstore.Dict if kind == "dict" else mmstore.List
        return cls(os.path.join(directory, f"{kind}.mms"))


class Lmdb(Peer):
    name = "lmdb"
    note = "py-lmdb, sync/metasync off, one write txn per insert loop, bytes keys/values encoded in the loop"

    def open(self, directory, kind, kt):
        return lmdb.open(directory, map_size=LMDB_MAP_SIZE, sync=False, metasync=False)

    def dict_insert(self, h, kt, keys, vals):
        with h.begin(write=True) as txn:
            (insert_lmdb_int if kt == "int" else insert_lmdb_str)(txn, keys, vals)

    def dict_get(self, h, kt, keys):
        with h.begin() as txn:
            (get_lmdb_int if kt == "int" else get_lmdb_str)(txn, keys)

    def list_append(self, h, kt, vals):
        with h.begin(write=True) as txn:
            (append_lmdb_int if kt == "int" else append_lmdb_str)(txn, vals)

    def list_iterate(self, h, kt):
        with h.begin() as txn:
            (iterate_lmdb_int if kt == "int" else iterate_lmdb_str)(txn)

    def list_index(self, h, kt, idx):
        with h.begin() as txn:
            (index_lmdb_int if kt == "int" else index_lmdb_str)(txn, idx)

    def list_extend(self, h, kt, vals):
        with h.begin(write=True) as txn:
            (extend_lmdb_int if kt == "int" else extend_lmdb_str)(txn, vals)


class Shelve(Peer):
    name = "shelve"
    slow = True
    kinds = ("dict",)
    ops = DICT_OPS

    @property
    def note(self):
        return f"shelve over {_dbm_backend()}, str(k) in the loop for int keys"

    def open(self, directory, kind, kt):
        return shelve.open(os.path.join(directory, "shelf"))

    def dict_insert(self, h, kt, keys, vals):
        (insert_strkey if kt == "int" else insert_subscript)(h, keys, vals)

    def dict_get(self, h, kt, keys):
        (get_strkey if kt == "int" else get_subscript)(h, keys)


class SqliteDictPeer(Peer):
    name = "sqlitedict"
    slow = True
    kinds = ("dict",)
    ops = DICT_OPS
    note = "sqlitedict.SqliteDict(autocommit=False), commit() inside the timed insert"

    def open(self, directory, kind, kt):
        return sqlitedict.SqliteDict(os.path.join(directory, "d.sqlite"), autocommit=False)

    def dict_insert(self, h, kt, keys, vals):
        insert_subscript(h, keys, vals)
        h.commit()


class DiskCache(Peer):
    name = "diskcache"
    slow = True
    ops = DICT_OPS + ("append", "iterate")  # Deque[i] walks the keys from one end: O(n) per index
    note = "diskcache.Cache / diskcache.Deque, writes inside one transact()"

    def open(self, directory, kind, kt):
        path = os.path.join(directory, kind)
        return diskcache.Cache(path) if kind == "dict" else diskcache.Deque(directory=path)

    def close(self, h):
        (h if isinstance(h, diskcache.Cache) else h.cache).close()

    def dict_insert(self, h, kt, keys, vals):
        with h.transact():
            insert_subscript(h, keys, vals)

    def list_append(self, h, kt, vals):
        with h.transact():
            append_method(h, vals)


def _dbm_backend() -> str:
    for mod in ("dbm.gnu", "dbm.ndbm"):
        try:
            __import__(mod)
            return mod
        except ImportError:
            continue
    return "dbm.dumb"


def available_peers(selected: list[str] | None) -> list[Peer]:
    peers: list[Peer] = [Builtin(), MMStore()]
    if lmdb is not None:
        peers.append(Lmdb())
    if sqlitedict is not None:
        peers.append(SqliteDictPeer())
    peers.append(Shelve())
    if diskcache is not None:
        peers.append(DiskCache())
    if selected:
        peers = [p for p in peers if p.name in selected or p.name in ("builtin", "mmstore")]
    return peers


# ---------------------------------------------------------------------------------------------------------
# Driver.
# ---------------------------------------------------------------------------------------------------------
CLOCK = time.perf_counter  # --clock cpu: time.thread_time


def timed(fn, *args) -> float:
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        t0 = CLOCK()
        fn(*args)
        return CLOCK() - t0
    finally:
        if was_enabled:
            gc.enable()


def disk_usage(directory: str) -> tuple[int, int]:
    """(allocated bytes = sum of st_blocks * 512, apparent bytes = sum of st_size) of every file below."""
    blocks = apparent = 0
    for root, _, files in os.walk(directory):
        for f in files:
            st = os.stat(os.path.join(root, f))
            blocks += st.st_blocks * 512
            apparent += st.st_size
    return blocks, apparent


def make_workload(kt: str, n: int, seed: int):
    keys = list(range(n)) if kt == "int" else [str(i) for i in range(n)]
    vals = list(range(n)) if kt == "int" else ["v" + str(i) for i in range(n)]
    shuffled = keys[:]
    random.Random(seed).shuffle(shuffled)
    idx = list(range(n))
    random.Random(seed + 1).shuffle(idx)
    return keys, vals, shuffled, idx


def one_run(peer: Peer, kt: str, wl, tmp_root: str) -> dict:
    keys, vals, shuffled, idx = wl
    n = len(keys)
    out: dict = {}
    if "dict" in peer.kinds:
        directory = tempfile.mkdtemp(prefix=f"mmsbench-{peer.name}-", dir=tmp_root)
        try:
            h = peer.open(directory, "dict", kt)
            out["insert"] = timed(peer.dict_insert, h, kt, keys, vals) / n
            peer.close(h)
            out["dict_disk_blocks"], out["dict_disk_apparent"] = (b / n for b in disk_usage(directory))
            h = peer.reopen(h, directory, "dict", kt)
            out["get"] = timed(peer.dict_get, h, kt, shuffled) / n
            peer.close(h)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
    if "list" in peer.kinds:
        directory = tempfile.mkdtemp(prefix=f"mmsbench-{peer.name}-", dir=tmp_root)
        try:
            h = peer.open(directory, "list", kt)
            out["append"] = timed(peer.list_append, h, kt, vals) / n
            peer.close(h)
            out["list_disk_blocks"], out["list_disk_apparent"] = (b / n for b in disk_usage(directory))
            h = peer.reopen(h, directory, "list", kt)
            out["iterate"] = timed(peer.list_iterate, h, kt) / n
            if "index" in peer.ops:
                out["index"] = timed(peer.list_index, h, kt, idx) / n
            peer.close(h)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
    if "list" in peer.kinds and "extend" in peer.ops:
        directory = tempfile.mkdtemp(prefix=f"mmsbench-{peer.name}-", dir=tmp_root)
        try:
            h = peer.open(directory, "list", kt)
            out["extend"] = timed(peer.list_extend, h, kt, vals) / n
            peer.close(h)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
    return out


def run(args) -> dict:
    peers = available_peers(args.peers)
    results: dict = {
        "config": {
            "n": args.n,
            "peer_n": args.peer_n,
            "runs": args.runs,
            "seed": args.seed,
            "tmp": args.tmp,
            "clock": getattr(args, "clock", "wall"),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "loadavg_start": os.getloadavg(),
            "dbm_backend": _dbm_backend(),
            "peers": {p.name: {"note": p.note, "slow": p.slow} for p in peers},
        },
        "targets": TARGETS,
        "pyrsistence_quoted_not_measured": PYRSISTENCE_QUOTED,
        "workloads": {},
    }
    for kt in ("int", "str"):
        full = make_workload(kt, args.n, args.seed)
        small = make_workload(kt, args.peer_n, args.seed) if 0 < args.peer_n < args.n else full
        per_peer: dict[str, list[dict]] = {p.name: [] for p in peers}
        for r in range(args.runs):
            for p in peers:  # interleave peers within a run, so load drift hits everyone alike
                wl = small if p.slow else full
                t0 = time.perf_counter()
                per_peer[p.name].append(one_run(p, kt, wl, args.tmp))
                if args.verbose:
                    print(f"  [{kt}] run {r + 1}/{args.runs} {p.name:<10} n={len(wl[0]):>9,} "
                          f"{time.perf_counter() - t0:6.1f}s", file=sys.stderr)
        wres = {}
        for p in peers:
            runs = per_peer[p.name]
            entry = {"n": len(small[0]) if p.slow else args.n, "scaled": p.slow and small is not full, "ops": {}}
            for metric in runs[0]:
                vals = [r[metric] for r in runs]
                entry["ops"][metric] = {"median": statistics.median(vals), "min": min(vals), "runs": vals}
                if metric in OP_LABEL:
                    # Paired ratio: this run's time over the builtin's time in the same run, so that load which
                    # drifts between runs (other jobs on the machine) cancels; the table shows the median.
                    ratios = [r[metric] / b[metric] for r, b in zip(runs, per_peer["builtin"])]
                    entry["ops"][metric]["ratio_vs_builtin"] = {"median": statistics.median(ratios), "runs": ratios}
            wres[p.name] = entry
        results["workloads"][kt] = wres
        del full, small
    results["config"]["loadavg_end"] = os.getloadavg()
    return results


# ---------------------------------------------------------------------------------------------------------
# Report.
# ---------------------------------------------------------------------------------------------------------
def _median(res, peer, metric):
    e = res.get(peer)
    if e is None or metric not in e["ops"]:
        return None
    return e["ops"][metric]["median"]


def _ratio(res, peer, op):
    e = res.get(peer)
    if e is None or op not in e["ops"]:
        return None
    return e["ops"][op]["ratio_vs_builtin"]["median"]


def render(results: dict) -> str:
    cfg = results["config"]
    lines = []
    peers = [p for p in cfg["peers"] if p not in ("builtin", "mmstore")]
    for kt, res in results["workloads"].items():
        title = "int -> int" if kt == "int" else "str(i) -> 'v'+str(i)"
        lines.append(f"\n== {title}   N = {cfg['n']:,}   median of {cfg['runs']} runs   (times in ns/op)")
        head = f"{'operation':<20}{'builtin':>9}{'mmstore':>9}{'ratio':>8}{'target':>8}  {'':<5}"
        head += "".join(f"{p + ('*' if res[p]['scaled'] else ''):>12}" for p in peers)
        lines.append(head)
        lines.append("-" * len(head))
        for op in DICT_OPS + LIST_OPS:
            b, m = _median(res, "builtin", op), _median(res, "mmstore", op)
            ratio = _ratio(res, "mmstore", op)
            target = TARGETS[op]
            row = f"{OP_LABEL[op]:<20}{b * 1e9:>9.1f}{m * 1e9:>9.1f}{ratio:>7.2f}x"
            if target is None:
                row += f"{'-':>8}  {'':<5}"
            else:
                row += f"{'<=' + str(target):>8}  {'PASS' if ratio <= target else 'FAIL':<5}"
            for p in peers:
                t = _ratio(res, p, op)
                row += f"{'n/a' if t is None else f'{t:.1f}x':>12}"
            lines.append(row)
        for label, metric in (("disk B/entry alloc", "dict_disk_blocks"), ("disk B/entry size", "dict_disk_apparent")):
            m = _median(res, "mmstore", metric)
            row = f"{label:<20}{'-':>9}{m:>9.1f}{'':>8}"
            if kt == "int":
                row += f"{'<=' + str(int(TARGETS['disk'])):>8}  {'PASS' if m <= TARGETS['disk'] else 'FAIL':<5}"
            else:
                row += f"{'-':>8}  {'':<5}"
            for p in peers:
                t = _median(res, p, metric)
                row += f"{'n/a' if t is None else f'{t:.1f}':>12}"
            lines.append(row)
        ext = _median(res, "mmstore", "extend")
        if ext:
            lines.append(f"mmstore List extend rate: {1e-6 / ext:.1f} M elements/s")
        ld = [(p, _median(res, p, "list_disk_blocks")) for p in ["mmstore"] + peers]
        lines.append("List disk B/entry alloc: " + ", ".join(f"{p} {v:.1f}" for p, v in ld if v is not None))
    lines.append("")
    lines.append("ratio = median over runs of (per-op time / builtin per-op time in the same run): lower is better, and")
    lines.append("pairing within a run cancels load that drifts between runs. Peer columns are such ratios too. Disk rows")
    lines.append("are bytes per entry (st_blocks*512 = alloc, st_size = size) summed over the store's files after close().")
    if any(e["scaled"] for res in results["workloads"].values() for e in res.values()):
        lines.append(f"* run at N = {cfg['peer_n']:,} and scaled per op to N = {cfg['n']:,} (flatters them: smaller working set).")
    for p, info in cfg["peers"].items():
        lines.append(f"  {p:<11} {info['note']}")
    q = PYRSISTENCE_QUOTED
    lines.append(
        "Footnote -- QUOTED from the issue, NOT measured here: pyrsistence EMDict/EMList vs builtin: "
        f"insert {q['insert']}x, get {q['get']}x, append {q['append']}x, iterate {q['iterate']}x, "
        f"{q['disk_bytes_per_entry']} B/entry on disk."
    )
    lines.append(
        f"Load average at start {tuple(round(x, 2) for x in cfg['loadavg_start'])}, "
        f"end {tuple(round(x, 2) for x in cfg['loadavg_end'])} on {cfg['cpus']} CPUs (noise indicator)."
    )
    return "\n".join(lines)


def write_chart(results: dict, path: Path) -> None:
    """A dependency-free SVG: per workload and operation, one bar per peer on a log scale of the ratio to the
    builtin (1x = builtin), with mmstore's target marked."""
    workloads = results["workloads"]
    peers = [p for p in results["config"]["peers"] if p != "builtin"]
    colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
    import math

    row_h, bar_h, left, width = 16 * len(peers) + 14, 14, 170, 620
    max_log = 4.0  # 10,000x at the right edge
    rows = [(kt, op) for kt in workloads for op in DICT_OPS + LIST_OPS]
    height = 40 + row_h * len(rows) + 20 * len(peers)
    x_of = lambda r: left + width * min(max(math.log10(max(r, 0.1)) + 1, 0), max_log + 1) / (max_log + 1)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 20}" height="{height}" '
           'font-family="sans-serif" font-size="11">',
           f'<text x="10" y="16" font-size="13">per-op time / builtin (log scale), N = {results["config"]["n"]:,}</text>']
    for decade in range(-1, int(max_log) + 1):
        x = x_of(10.0 ** decade)
        out.append(f'<line x1="{x:.1f}" y1="24" x2="{x:.1f}" y2="{40 + row_h * len(rows)}" stroke="#ddd"/>')
        out.append(f'<text x="{x:.1f}" y="34" text-anchor="middle">{10.0 ** decade:g}x</text>')
    for i, (kt, op) in enumerate(rows):
        y0 = 40 + i * row_h
        out.append(f'<text x="10" y="{y0 + row_h / 2 + 4:.1f}">{kt}: {OP_LABEL[op]}</text>')
        for j, p in enumerate(peers):
            r = _ratio(workloads[kt], p, op)
            if r is None:
                continue
            y = y0 + 4 + j * 16
            out.append(f'<rect x="{left}" y="{y}" width="{x_of(r) - left:.1f}" height="{bar_h}" '
                       f'fill="{colors[j % len(colors)]}"><title>{p} {r:.2f}x</title></rect>')
        if TARGETS[op] is None:
            continue
        tx = x_of(TARGETS[op])
        out.append(f'<line x1="{tx:.1f}" y1="{y0 + 2}" x2="{tx:.1f}" y2="{y0 + row_h - 2}" stroke="black" '
                   'stroke-dasharray="3,2"/>')
    for j, p in enumerate(peers):
        y = 40 + row_h * len(rows) + 8 + j * 20
        out.append(f'<rect x="{left}" y="{y}" width="12" height="12" fill="{colors[j % len(colors)]}"/>')
        out.append(f'<text x="{left + 18}" y="{y + 10}">{p}</text>')
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="entries per workload (default 1,000,000)")
    ap.add_argument("--runs", type=int, default=3, help="runs per figure; the median is reported (default 3)")
    ap.add_argument("--peer-n", type=int, default=100_000,
                    help="entries for slow peers (shelve, sqlitedict, diskcache); 0 = same as --n (default 100,000)")
    ap.add_argument("--quick", action="store_true", help="smoke run: --n 100000 --peer-n 10000")
    ap.add_argument("--peers", nargs="*", help="restrict to these peers (builtin and mmstore always run)")
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--tmp", default=tempfile.gettempdir(), help="parent of the per-run temporary directories")
    ap.add_argument("--json", default=str(RESULTS), help=f"where to write the results (default {RESULTS})")
    ap.add_argument("--chart", type=Path, help="also draw the ratios as an SVG at this path")
    ap.add_argument("--from-json", type=Path, help="render (and chart) a saved result file instead of measuring")
    ap.add_argument("-v", "--verbose", action="store_true", help="progress on stderr")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall: time.perf_counter (default); cpu: time.thread_time, the CPU time of the timing "
                         "thread (user + system, page faults included), for a machine loaded by other jobs")
    args = ap.parse_args(argv)
    global CLOCK
    CLOCK = time.thread_time if args.clock == "cpu" else time.perf_counter
    if args.quick:
        args.n, args.peer_n = 100_000, 10_000
    if args.peer_n <= 0:
        args.peer_n = args.n

    if args.from_json:
        results = json.loads(args.from_json.read_text())
    else:
        results = run(args)
    print(render(results))
    if not args.from_json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1) + "\n")
        print(f"\nresults written to {out}")
    if args.chart:
        write_chart(results, args.chart)
        print(f"chart written to {args.chart}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
