"""The ``mmstore`` command line: ``python -m mmstore demo | info | stats | verify | compact | dump | load | shm``.

Every store kind is handled: Dict, List, RecordArray, Mapping and Pool save files by path, SharedDict segments
by name as ``shm:NAME``. The inspection commands live in ``_cli_store.py``, the demo in ``_demo.py``; this
file keeps the argument parser. The help texts are plain text (argparse prints them as they are), so they
carry no reST markup.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import CorruptFileError, Error

_DESCRIPTION = "Inspect mmstore files of every kind, or run a short demo of what mmstore does."
_EPILOG = """examples:
  python -m mmstore demo                      a tour of the four faces (about 5 s)
  python -m mmstore demo --keep /tmp/mms      the same, keeping its files for the commands below
  python -m mmstore info /tmp/mms/demo.mms    kind, format version, sizes, clean or dirty
  python -m mmstore stats /tmp/mms/demo.mms   a store's statistics as JSON
  python -m mmstore verify /tmp/mms/demo.mms  check every invariant (exit 3 if the file is corrupt)
  python -m mmstore dump /tmp/mms/demo.mms    JSON lines; 'mmstore load' reads them back
  python -m mmstore shm ls                    SharedDict segments, their size, creator and use

exit codes: 0 success, 1 a demo check failed, 2 an error (missing file, locked store, bad argument),
3 a corrupt, truncated or foreign file"""


_TARGET_HELP = "a store file (Dict, List, RecordArray, Mapping, Pool save file) or shm:NAME for a SharedDict"
_COMMANDS = {  # name: (help, takes a target)
    "info": ("kind, format version, sizes, schema or element types, clean/dirty", True),
    "stats": ("a store's statistics (JSON)", True),
    "verify": ("check every invariant (reads the whole file); exit 3 when it fails", True),
    "compact": ("rewrite a Dict/List/SharedDict at its minimal size", True),
    "upgrade": ("convert a Dict/List file written by mmstore 0.2 (format 2) to the current format, in place", True),
}



def _entries(n: int) -> str:
    return f"{n:,} {'entry' if n == 1 else 'entries'}"

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mmstore", description=_DESCRIPTION, epilog=_EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    demo_help = ("a tour of the four faces: Dict/List files reopened in a new process, a writer killed with "
                 "SIGKILL, typed records, a SharedDict shared by three processes, the spilling Pool, and C++ "
                 "reading what Python wrote")
    d = sub.add_parser("demo", help=demo_help, description=demo_help + ". Needs no numpy (says what it skips).")
    d.add_argument("--n", type=int, default=100_000, metavar="N", help="entries per store (default: 100,000)")
    d.add_argument("--keep", metavar="DIR", help="write the files to DIR and keep them (default: a temporary "
                   "directory removed at the end)")
    d.add_argument("--xlang", metavar="PATH", help="the C++ example tool mmstore_xlang (default: $MMSTORE_XLANG, "
                   "else ./build/test-cpp/mmstore_xlang; skipped with a note when absent)")
    for name, (help_, _) in _COMMANDS.items():
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.add_argument("path", metavar="TARGET", help=_TARGET_HELP)
        sp.add_argument("--json", action="store_true", help="print the result as JSON")
        if name == "verify":
            sp.add_argument("--progress", action="store_true",
                            help="draw a progress bar on stderr (default: only on a terminal, for files of "
                                 "64 MiB or more; never with --json)")
    sp = sub.add_parser("dump", help="write a store as JSON lines (or an Arrow file for records)",
                        description="Write a store as JSON lines: a header line, then one line per entry; types "
                                    "JSON cannot carry are tagged {\"$t\": type, \"v\": ...}.")
    sp.add_argument("path", metavar="TARGET", help=_TARGET_HELP)
    sp.add_argument("-o", "--output", help="output file (default: stdout)")
    sp.add_argument("--format", choices=("jsonl", "arrow"), default="jsonl",
                    help="jsonl (default) or arrow (an Arrow IPC file; RecordArray and Mapping only)")
    sp.add_argument("--json", action="store_true", help="print a JSON summary on stderr")
    sp = sub.add_parser("load", help="read a dump back into a new store",
                        description="Read a dump made by 'mmstore dump' (JSON lines or Arrow) into a new store.")
    sp.add_argument("dump", help="the dump file")
    sp.add_argument("path", metavar="TARGET", help="the new store: a path, or shm:NAME for a SharedDict")
    sp.add_argument("--json", action="store_true", help="print the result as JSON")
    shm = sub.add_parser("shm", help="list and remove SharedDict segments", description="SharedDict segments.")
    shm_sub = shm.add_subparsers(dest="shm_cmd", required=True, metavar="ACTION")
    sp = shm_sub.add_parser("ls", help="list segments with size, creator pid and whether they are in use")
    sp.add_argument("--json", action="store_true", help="print the result as JSON")
    sp = shm_sub.add_parser("rm", help="remove a segment (refused while in use unless --force)")
    sp.add_argument("name", help="segment name (NAME or shm:NAME)")
    sp.add_argument("--force", action="store_true", help="remove it even if a process has it attached")
    sp.add_argument("--json", action="store_true", help="print the result as JSON")
    sp = shm_sub.add_parser("gc", help="remove every segment no process has attached (left by crashes)")
    sp.add_argument("--json", action="store_true", help="print the result as JSON")
    return p


def _print(result, as_json: bool, text) -> None:
    if as_json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(text(result))


def _kv(result: dict) -> str:
    return "\n".join(f"{k}: {v}" for k, v in result.items())


def _run(args) -> int:
    from . import _cli_store as cs

    if args.cmd == "info":
        _print(cs.info(args.path), args.json, _kv)
    elif args.cmd == "stats":
        _print(cs.stats(args.path), True, None)
    elif args.cmd == "verify":
        progress = False if args.json else (True if args.progress else None)
        _print(cs.verify(args.path, progress), args.json, lambda r: f"{args.path}: OK ({_entries(r['entries'])})")
    elif args.cmd == "compact":
        _print(cs.compact(args.path), True, None)
    elif args.cmd == "upgrade":
        _print(cs.upgrade(args.path), args.json,
               lambda r: f"{args.path}: format {r['from_version']} -> {r['to_version']} ({_entries(r['entries'])})"
               if r["from_version"] != r["to_version"] else f"{args.path}: already format {r['to_version']}")
    elif args.cmd == "dump":
        out = open(args.output, "wb") if args.output else sys.stdout.buffer
        try:
            n = cs.dump(args.path, out, args.format)
        finally:
            if args.output:
                out.close()
        if args.json:
            print(json.dumps({"target": args.path, "entries": n, "format": args.format}), file=sys.stderr)
    elif args.cmd == "load":
        n = cs.load(args.dump, args.path)
        _print({"target": args.path, "entries": n}, args.json, lambda r: f"{args.path}: loaded {n:,} entries")
    elif args.shm_cmd == "ls":
        rows = cs.shm_ls()
        _print(rows, args.json, lambda r: "\n".join(
            [f"{'NAME':<32} {'SIZE':>12} {'PID':>8} IN_USE"]
            + [f"{x['name']:<32} {x['size']:>12,} {x['creator_pid']:>8} {'yes' if x['in_use'] else 'no'}" for x in r]))
    elif args.shm_cmd == "rm":
        _print(cs.shm_rm(args.name, args.force), args.json, lambda r: f"removed {r['removed'][0]}")
    else:
        _print(cs.shm_gc(), args.json, lambda r: f"removed {len(r['removed'])} unused segment(s)"
               + "".join(f"\n  {n}" for n in r["removed"]))
    return 0


def main(argv: list[str] | None = None) -> int:
    from ._cli_store import CliError

    args = _parser().parse_args(argv)
    if args.cmd == "demo":
        from ._demo import run

        return run(args.n, keep=args.keep, xlang=args.xlang)
    try:
        return _run(args)
    except BrokenPipeError:  # `mmstore dump x | head`
        return 0
    except CorruptFileError as exc:
        print(f"mmstore: {exc}", file=sys.stderr)
        return 3
    except (Error, CliError, ValueError, TypeError, OSError) as exc:
        print(f"mmstore: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
