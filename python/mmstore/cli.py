"""The ``mmstore`` command line: ``python -m mmstore demo | stats PATH | verify PATH | compact PATH``.

The help texts below are plain text (argparse prints them as they are), so they carry no reST markup.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import CorruptFileError, Dict, Error, List, WrongKindError

_DESCRIPTION = "Inspect mmstore files, or run a short demo of what mmstore does."
_EPILOG = """examples:
  python -m mmstore demo                      a tour of the four faces (about 5 s)
  python -m mmstore demo --keep /tmp/mms      the same, keeping its files for the commands below
  python -m mmstore stats /tmp/mms/demo.mms   a Dict's or List's statistics as JSON
  python -m mmstore verify /tmp/mms/demo.mms  check every invariant (exit 3 if the file is corrupt)
  python -m mmstore compact /tmp/mms/demo.mms rewrite at the minimal size

exit codes: 0 success, 1 a demo check failed, 2 an error (missing file, locked store, bad argument),
3 a corrupt, truncated or foreign file"""



def _open_any(path: str, readonly: bool = True):
    try:
        return Dict(path, create=False, readonly=readonly)
    except WrongKindError:
        return List(path, create=False, readonly=readonly)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mmstore", description=_DESCRIPTION, epilog=_EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="{demo,stats,verify,compact}")
    demo_help = ("a tour of the four faces: Dict/List files reopened in a new process, a writer killed with "
                 "SIGKILL, typed records, a SharedDict shared by three processes, the spilling Pool, and C++ "
                 "reading what Python wrote")
    d = sub.add_parser("demo", help=demo_help, description=demo_help + ". Needs no numpy (says what it skips).")
    d.add_argument("--n", type=int, default=100_000, metavar="N", help="entries per store (default: 100,000)")
    d.add_argument("--keep", metavar="DIR", help="write the files to DIR and keep them (default: a temporary "
                   "directory removed at the end)")
    d.add_argument("--xlang", metavar="PATH", help="the C++ example tool mmstore_xlang (default: $MMSTORE_XLANG, "
                   "else ./build/test-cpp/mmstore_xlang; skipped with a note when absent)")
    for name, help_ in (("stats", "print a store's statistics as JSON"), ("verify", "check every invariant"),
                        ("compact", "rewrite a store at its minimal size")):
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.add_argument("path", help="a Dict or List file")
    args = p.parse_args(argv)
    if args.cmd == "demo":
        from ._demo import run

        return run(args.n, keep=args.keep, xlang=args.xlang)
    try:
        store = _open_any(args.path, readonly=args.cmd != "compact")
        with store:
            if args.cmd == "stats":
                print(json.dumps({"kind": type(store).__name__, **store.stats()}, indent=2))
            elif args.cmd == "verify":
                store.verify()
                print(f"{args.path}: OK ({len(store):,} entries)")
            else:
                store.compact()
                print(json.dumps(store.stats(), indent=2))
    except CorruptFileError as exc:
        print(f"mmstore: {exc}", file=sys.stderr)
        return 3
    except Error as exc:
        print(f"mmstore: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
