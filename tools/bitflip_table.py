"""The table of issue 10: single-bit flips in sample files of every kind, and what reading them gives.

    python tools/bitflip_table.py [--flips 250] [--seed 1]

For each kind, flips one random bit of a sample file per case, opens it, reads everything, and compares with
the undamaged file: "raised" (an mmstore.Error), "correct" (equal), or "wrong" (different data, or another
exception type). Dict, List and SharedDict are read by the suite's own functions
(tests/python/test_bitflips_stores.py), the build-once kinds by tests/python/test_bitflips.py's; the suite
requires 0 wrong for every kind (with byte overwrites mixed in, 2,000 cases per kind).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "python"))

import mmstore  # noqa: E402
import test_bitflips as tb  # noqa: E402
import test_bitflips_stores as ts  # noqa: E402

STORE_KINDS = ("Dict", "List", "SharedDict")


def flip_one_bit(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    pos = rng.randrange(len(b))
    b[pos] ^= 1 << rng.randrange(8)
    return bytes(b)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flips", type=int, default=250)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    print(f"{'kind':12} {'raised':>7} {'correct':>8} {'wrong':>6}")
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        for kind in STORE_KINDS:  # the suite's own reads (test_bitflips_stores), single-bit flips only
            out = ts.run_store_bitflips(kind, tmp, args.flips, seed=args.seed, bits_only=True)
            print(f"{kind:12} {out['error']:7d} {out['equal']:8d} {out['wrong']:6d}")
            for example in out["examples"]:
                print(f"    {example}")
        for kind, (make, read) in tb.KINDS.items():
            orig = tmp / f"{kind}.orig"
            make(orig, tmp) if kind == "spill" else make(orig)
            data, want = orig.read_bytes(), read(orig)
            rng = random.Random(args.seed)
            raised = correct = wrong = 0
            for _ in range(args.flips):
                bad = tmp / f"{kind}.bad"
                bad.write_bytes(flip_one_bit(data, rng))
                try:
                    got = read(bad)
                except mmstore.Error:
                    raised += 1
                    continue
                except Exception:  # noqa: BLE001
                    wrong += 1
                    continue
                correct, wrong = (correct + 1, wrong) if got == want else (correct, wrong + 1)
            print(f"{kind:12} {raised:7d} {correct:8d} {wrong:6d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
