"""A group-by on a Dask cluster: a RecordArray read by mmstore.dask.read_records against the same data as
Parquet read by dask.dataframe.read_parquet (issue 12). Same run, same LocalCluster, medians of --runs.

    python bench/bench_dask_records.py [--n 10000000] [--npartitions 8] [--workers 2] [--runs 3]
                                       [--json bench/results/bench_dask_records.json]

Data: {k: int64 (n // 1000 distinct keys), v: float64, s: str 'k%07d'}; the query is
``ddf.groupby("k").v.sum()`` computed on the cluster.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import dask.dataframe as dd
import numpy as np
import pandas as pd
from distributed import Client, LocalCluster

import mmstore
from mmstore.dask import read_records


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--npartitions", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    S = mmstore.Schema.from_fields({"k": mmstore.int64, "v": mmstore.float64, "s": str})
    with tempfile.TemporaryDirectory(prefix="bench-dask-") as tmp:
        rec, pq = os.path.join(tmp, "data.mma"), os.path.join(tmp, "parquet")
        chunk = 1_000_000
        t0 = time.perf_counter()
        rows = ({"k": i % max(1, args.n // 1000), "v": i * 0.5, "s": f"k{i:07d}"} for i in range(args.n))
        mmstore.RecordArray.build(rows, rec, schema=S, progress=False).close()
        build_rec = time.perf_counter() - t0
        t0 = time.perf_counter()
        parts = []
        for start in range(0, args.n, chunk):
            i = np.arange(start, min(args.n, start + chunk))
            parts.append(pd.DataFrame({"k": i % max(1, args.n // 1000), "v": i * 0.5,
                                       "s": [f"k{x:07d}" for x in i.tolist()]}))
        dd.from_pandas(pd.concat(parts, ignore_index=True), npartitions=args.npartitions).to_parquet(pq)
        del parts
        build_pq = time.perf_counter() - t0
        results = {"mmstore": [], "parquet": []}
        with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            for _ in range(args.runs):
                for name, make in (("mmstore", lambda: read_records(rec, npartitions=args.npartitions,
                                                                         columns=["k", "v"])),
                                   ("parquet", lambda: dd.read_parquet(pq, columns=["k", "v"]))):
                    t0 = time.perf_counter()
                    out = client.compute(make().groupby("k").v.sum()).result()
                    results[name].append(time.perf_counter() - t0)
                    assert len(out) == min(args.n, max(1, args.n // 1000))
        med = {k: statistics.median(v) for k, v in results.items()}
        size = {"mmstore": os.path.getsize(rec),
                "parquet": sum(os.path.getsize(os.path.join(pq, f)) for f in os.listdir(pq))}
    print(f"group-by sum over {args.n:,} records, {args.npartitions} partitions, {args.workers} workers")
    print(f"{'':<10}{'query s':>10}{'build s':>10}{'MiB':>8}")
    for name, b in (("mmstore", build_rec), ("parquet", build_pq)):
        print(f"{name:<10}{med[name]:>10.3f}{b:>10.2f}{size[name] / 2**20:>8.1f}")
    print(f"mmstore advantage on the query: {med['parquet'] / med['mmstore']:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": vars(args) | {"loadavg": os.getloadavg()}, "medians": med, "runs": results,
                       "build_s": {"mmstore": build_rec, "parquet": build_pq}, "bytes": size}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
