"""Sphinx extension: draws the benchmark results in bench/results/*.json as SVG charts with matplotlib.

At ``builder-inited`` it writes ``docs/_generated/<name>.svg`` for every results file it knows how to read
and ``docs/_generated/bench_charts.md`` (included by benchmarks.md) listing them, so the site always shows the
committed numbers. A results file of an unknown shape is listed with its raw JSON link instead of failing.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1]
RESULTS = DOCS.parent / "bench" / "results"
OUT = DOCS / "_generated"


def _bars(ax, labels, values, title, xlabel, ref=None):
    ys = range(len(labels))
    ax.barh(list(ys), values, color="#4c72b0")
    ax.set_yticks(list(ys), labels)
    ax.invert_yaxis()
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    if ref is not None:
        ax.axvline(ref, color="#c44e52", linestyle="--", linewidth=1)
    for y, v in zip(ys, values):
        ax.text(v, y, f" {v:.3g}", va="center", fontsize=8)


def _records(data, ax):
    mm, peer = data["mmstore"], data["sharedbuffers"]
    labels, values = [], []
    for k in mm:
        if k in peer and isinstance(mm[k], (int, float)) and mm[k] and peer[k]:
            faster = peer[k] / mm[k] if k.endswith(("_s", "_per_record", "_per_entry")) else mm[k] / peer[k]
            labels.append(k)
            values.append(faster)
    _bars(ax, labels, values, f"typed records vs sharedbuffers, {data.get('n', 0):,} records",
          "mmstore advantage (x; > 1 is better)", ref=1.0)


def _dict(data, ax):
    labels, values = [], []
    for wl, peers in data["workloads"].items():
        for op, r in peers.get("mmstore", {}).get("ops", {}).items():
            ratio = r.get("ratio_vs_builtin", {}).get("median")
            if ratio:
                labels.append(f"{wl}: {op}")
                values.append(ratio)
    _bars(ax, labels, values, "Dict/List vs builtin dict/list (time ratio)", "x the builtin's time (< is better)",
          ref=1.0)


def _shared(data, ax):
    labels, values = [], []
    for peer, ops in data["results"].items():
        for op in ("read", "write", "lock_incr"):
            runs = ops.get(op)
            if runs:
                labels.append(f"{peer}: {op}")
                values.append(statistics.median(runs))
    _bars(ax, labels, values, "SharedDict and peers (operations per second)", "ops/s (median of runs)")
    ax.set_xscale("log")


def _pool(data, ax):
    s = data["summary"]
    _bars(ax, list(s), list(s.values()), "Pool vs Dask's spill buffer (ratio)", "x (see bench/bench_pool.py)", ref=1.0)


def _cpp(data, ax):
    rows = {}
    for b in data["benchmarks"]:
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
            continue
        rows.setdefault(b["run_name"], []).append(b["real_time"])
    labels = list(rows)[:30]
    _bars(ax, labels, [statistics.median(rows[k]) for k in labels], "C++ benchmarks (Google Benchmark)",
          "ns per operation (median)")
    ax.set_xscale("log")


def _arrow(data, ax):
    labels, values = [], []
    for k, v in data["ratios"].items():
        labels.append(k)
        values.append(v)
    _bars(ax, labels, values, f"RecordArray vs pyarrow.feather, {data['config']['n']:,} records",
          "mmstore advantage (x; > 1 is better)", ref=1.0)


def _dask_records(data, ax):
    med = data["medians"]
    _bars(ax, [f"{k}: group-by" for k in med], list(med.values()),
          f"group-by on a Dask LocalCluster, {data['config']['n']:,} records", "seconds (median; < is better)")


_DRAW = {"bench_dask_records": _dask_records, "bench_records": _records, "bench_dict": _dict, "bench_shared": _shared, "bench_pool": _pool,
         "bench_cpp": _cpp, "bench_arrow": _arrow}


def draw_all() -> list[tuple[str, str | None]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    OUT.mkdir(exist_ok=True)
    done = []
    for path in sorted(RESULTS.glob("*.json")):
        name = path.stem
        draw = _DRAW.get(name)
        chart = None
        if draw is not None:
            try:
                data = json.loads(path.read_text())
                fig, ax = plt.subplots(figsize=(8, 0.8 + 0.28 * 14))
                draw(data, ax)
                fig.tight_layout()
                fig.savefig(OUT / f"{name}.svg")
                plt.close(fig)
                chart = f"{name}.svg"
            except (KeyError, TypeError, ValueError, ZeroDivisionError):
                chart = None  # an older shape of the file: listed without a chart
        done.append((name, chart))
    lines = []
    for name, chart in done:
        lines.append(f"## {name}\n")
        if chart:
            lines.append(f"![{name}](/_generated/{chart})\n")
        else:
            lines.append(f"No chart is drawn for this file's shape; the numbers are in `bench/results/{name}.json`.\n")
    (OUT / "bench_charts.md").write_text("\n".join(lines))
    return done


def _on_init(app):
    draw_all()


def setup(app):
    app.connect("builder-inited", _on_init)
    return {"version": "1", "parallel_read_safe": True}
