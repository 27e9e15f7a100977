"""Bad files and bad bytes: wrong kind, foreign files, newer versions, truncation and random corruption.

Contract 5 of DESIGN.md: every offset and length read from a file is checked; a corrupt, truncated,
foreign-kind or newer-version file raises a specific ``mmstore.CorruptFileError`` subclass -- never a crash,
never garbage. Anything that could crash runs in a child process (``WORKER``), in batches to keep the run
short: a crash shows up as a negative return code and the last ``BEGIN`` line names the input that caused it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime as dt
import json
import os
import random
import struct
import subprocess
import sys

import numpy as np
import pytest

import mmstore

HEADER_CHECKSUM_OFFSET = 56  # FileHeader.checksum: XXH3-64 of bytes [0, 56), little-endian
PAGE = 4096
DATA_START = 3 * PAGE  # FileHeader page + two commit slots; the arena starts here


def _child_env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}


# -- kind, foreign files, versions -----------------------------------------------------------------------------


def test_list_file_opened_as_dict_raises_wrong_kind_naming_the_path(tmp_path):
    path = tmp_path / "l.mms"
    with mmstore.List(path) as l:
        l.append(1)
    before = path.read_bytes()
    for opener in (lambda: mmstore.Dict(path), lambda: mmstore.Dict(path, readonly=True),
                   lambda: mmstore.Dict(path, create=False)):
        with pytest.raises(mmstore.WrongKindError) as info:
            opener()
        assert isinstance(info.value, mmstore.CorruptFileError)
        assert str(path) in str(info.value) and info.value.path == str(path)
        assert "List" in str(info.value)
    assert path.read_bytes() == before
    with mmstore.List(path) as l:  # still usable as what it is
        assert l.copy() == [1]


def test_dict_file_opened_as_list_raises_wrong_kind(tmp_path):
    path = tmp_path / "d.mms"
    mmstore.Dict(path).close()
    with pytest.raises(mmstore.WrongKindError, match="Dict"):
        mmstore.List(path)


def _foreign_files(tmp_path):
    rng = random.Random(5)
    files = {
        "text": b"hello, this is a text file\n" * 2000,
        "short": b"MMSTORE",
        "random": rng.randbytes(64 * 1024),
        "zeros": bytes(5 * PAGE),
        "almost magic": b"MMSTORF\x00" + rng.randbytes(5 * PAGE),
        "elf": open(sys.executable, "rb").read(64 * 1024),
    }
    out = {}
    for name, data in files.items():
        p = tmp_path / (name.replace(" ", "_") + ".bin")
        p.write_bytes(data)
        out[name] = p
    return out


@pytest.mark.parametrize("readonly", [False, True], ids=["write", "readonly"])
@pytest.mark.parametrize("cls", [mmstore.Dict, mmstore.List], ids=["Dict", "List"])
def test_foreign_file_raises_foreign_file_error_and_is_left_untouched(tmp_path, cls, readonly):
    for name, path in _foreign_files(tmp_path).items():
        before = path.read_bytes()
        with pytest.raises(mmstore.ForeignFileError) as info:
            cls(path, readonly=readonly)
        assert str(path) in str(info.value), name
        assert path.read_bytes() == before, f"{name} was modified by a failed open"


def test_zero_length_file_opened_readonly_is_foreign(tmp_path):
    path = tmp_path / "empty"
    path.write_bytes(b"")
    with pytest.raises(mmstore.ForeignFileError):
        mmstore.Dict(path, readonly=True)
    with pytest.raises(mmstore.ForeignFileError):
        mmstore.List(path, readonly=True)
    assert path.stat().st_size == 0


def _xxh3_64():
    name = ctypes.util.find_library("xxhash")
    if name:
        try:
            lib = ctypes.CDLL(name)
            fn = lib.XXH3_64bits
            fn.restype = ctypes.c_uint64
            fn.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
            return lambda b: fn(bytes(b), len(b))
        except (OSError, AttributeError):
            pass
    xxhash = pytest.importorskip("xxhash")
    return lambda b: xxhash.xxh3_64_intdigest(bytes(b))


def _patched(tmp_path, src, offset, fmt, value, fix_checksum):
    data = bytearray(src.read_bytes())
    struct.pack_into(fmt, data, offset, value)
    if fix_checksum:
        struct.pack_into("<Q", data, HEADER_CHECKSUM_OFFSET, _xxh3_64()(data[:HEADER_CHECKSUM_OFFSET]))
    out = tmp_path / f"patched_{offset}_{value}_{fix_checksum}.mms"
    out.write_bytes(data)
    return out


@pytest.fixture
def sample_dict_file(tmp_path):
    path = tmp_path / "src.mms"
    with mmstore.Dict(path) as d:
        d.update({"a": 1, "b": "two"})
    return path


def test_header_checksum_is_xxh3_of_the_first_56_bytes(sample_dict_file):
    data = sample_dict_file.read_bytes()
    assert data[:8] == b"MMSTORE\x00"
    assert struct.unpack_from("<Q", data, HEADER_CHECKSUM_OFFSET)[0] == _xxh3_64()(data[:56])


def test_newer_format_version_raises_unsupported_version(tmp_path, sample_dict_file):
    path = _patched(tmp_path, sample_dict_file, 8, "<I", 99, fix_checksum=True)
    for readonly in (False, True):
        with pytest.raises(mmstore.UnsupportedVersionError) as info:
            mmstore.Dict(path, readonly=readonly)
        assert isinstance(info.value, mmstore.CorruptFileError)
        assert str(path) in str(info.value) and "99" in str(info.value)
    assert mmstore.FORMAT_VERSION < 99


def test_header_change_without_checksum_update_raises_corrupt_file_error(tmp_path, sample_dict_file):
    path = _patched(tmp_path, sample_dict_file, 8, "<I", 99, fix_checksum=False)
    with pytest.raises(mmstore.CorruptFileError) as info:
        mmstore.Dict(path)
    assert str(path) in str(info.value)
    path = _patched(tmp_path, sample_dict_file, 40, "<Q", 12345, fix_checksum=False)  # created_unix_ns
    with pytest.raises(mmstore.CorruptFileError):
        mmstore.Dict(path)


@pytest.mark.parametrize(
    "offset, value, error",
    [
        (16, 0x04030201, mmstore.UnsupportedVersionError),  # byte order of a big-endian writer
        (20, 4, mmstore.UnsupportedVersionError),  # word size
        (24, 8192, mmstore.UnsupportedVersionError),  # page size
        (12, 2, mmstore.WrongKindError),  # kind = List
        (12, 99, mmstore.CorruptFileError),  # unknown kind
    ],
    ids=["byte order", "word size", "page size", "kind list", "kind unknown"],
)
def test_incompatible_layout_fields_are_refused(tmp_path, sample_dict_file, offset, value, error):
    path = _patched(tmp_path, sample_dict_file, offset, "<I", value, fix_checksum=True)
    with pytest.raises(error) as info:
        mmstore.Dict(path)
    assert str(path) in str(info.value)


# -- the child process that opens damaged files ----------------------------------------------------------------

WORKER = r"""
import json, os, shutil, sys
import mmstore

job = json.load(open(sys.argv[1]))
cls = {"Dict": mmstore.Dict, "List": mmstore.List}[job["kind"]]
scratch = job["scratch"]

def outcome(fn):
    try:
        fn()
        return "ok"
    except mmstore.Error as e:
        return "mmstore:" + type(e).__name__
    except Exception as e:
        return "OTHER:" + type(e).__name__ + ":" + str(e)[:200]

def read_all(h):
    if job["kind"] == "Dict":
        for k, v in h.items():
            pass
        for k in list(h.keys())[:200]:
            h[k]
    else:
        for i in range(len(h)):
            h[i]
        list(reversed(h))

for case in job["cases"]:
    print("BEGIN", case["id"], flush=True)
    shutil.copyfile(job["source"], scratch)
    if "truncate" in case:
        os.truncate(scratch, case["truncate"])
    if "flips" in case:
        with open(scratch, "r+b") as f:
            for pos, bit in case["flips"]:
                f.seek(pos)
                b = f.read(1)[0]
                f.seek(pos)
                f.write(bytes([b ^ (1 << bit)]))
    result = {"id": case["id"]}
    h = None
    def do_open():
        global h
        h = cls(scratch, readonly=case["readonly"], create=False)
    result["open"] = outcome(do_open)
    if h is not None:
        result["read"] = outcome(lambda: read_all(h))   # what a user does, without verify first
        result["verify"] = outcome(h.verify)
        result["read_after"] = outcome(lambda: read_all(h))
        result["close"] = outcome(h.close)
    print("RESULT", json.dumps(result), flush=True)
print("DONE", flush=True)
"""


def _run_batches(tmp_path, kind, source, cases, batches=4, timeout=120):
    """Runs WORKER over `cases` in `batches` parallel children; returns the list of result dicts."""
    procs = []
    for b in range(batches):
        chunk = cases[b::batches]
        if not chunk:
            continue
        job = {"kind": kind, "source": str(source), "scratch": str(tmp_path / f"scratch{b}.mms"), "cases": chunk}
        job_file = tmp_path / f"job{b}.json"
        job_file.write_text(json.dumps(job))
        procs.append(subprocess.Popen([sys.executable, "-c", WORKER, str(job_file)], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, env=_child_env()))
    results = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            begun = [ln for ln in out.splitlines() if ln.startswith("BEGIN")]
            pytest.fail(f"worker hung; last input: {begun[-1] if begun else None}")
        lines = out.splitlines()
        begun = [ln.split()[1] for ln in lines if ln.startswith("BEGIN")]
        assert p.returncode == 0 and lines and lines[-1] == "DONE", (
            f"worker died with return code {p.returncode} (negative = killed by signal) on input "
            f"{begun[-1] if begun else None}\n{err[-3000:]}"
        )
        results += [json.loads(ln[len("RESULT "):]) for ln in lines if ln.startswith("RESULT ")]
    assert len(results) == len(cases)
    return results


# -- sample stores ------------------------------------------------------------------------------------------------


def _sample_value(rng, i):
    # Every native type but Decimal and pickles, whose payload decoding is covered on its own by
    # test_corrupt_payload_raises_corrupt_file_error below.
    k = i % 11
    if k == 0:
        return i
    if k == 1:
        return "s" * rng.randrange(0, 8)  # inline
    if k == 2:
        return "long string " * rng.randrange(1, 40)
    if k == 3:
        return rng.randbytes(rng.randrange(0, 300))
    if k == 4:
        return (i, str(i), [None, True, 2.5])
    if k == 5:
        return {"a": i, "b": [1, 2, {3}], "c": frozenset({i})}
    if k == 6:
        return rng.randrange(-(2**100), 2**100)
    if k == 7:
        return dt.datetime(2020, 1, 1 + i % 28, tzinfo=dt.timezone.utc)
    if k == 8:
        return np.arange(rng.randrange(1, 50), dtype=np.float64)
    if k == 9:
        return dt.date(2000, 1 + i % 12, 1)
    return rng.random()


@pytest.fixture(scope="module")
def sample_stores(tmp_path_factory):
    d_path = tmp_path_factory.mktemp("samples") / "dict.mms"
    l_path = d_path.with_name("list.mms")
    rng = random.Random(1234)
    with mmstore.Dict(d_path) as d:
        for i in range(3000):
            key = i if i % 3 == 0 else (f"k{i}" if i % 3 == 1 else f"a longer key for entry {i}")
            d[key] = _sample_value(rng, i)
        for i in range(0, 3000, 7):  # tombstones and free space
            d.pop(i if i % 3 == 0 else (f"k{i}" if i % 3 == 1 else f"a longer key for entry {i}"))
        d["after deletes"] = "x" * 1000
    with mmstore.List(l_path) as l:
        l.extend(_sample_value(rng, i) for i in range(3000))
        del l[::5]
        l.insert(100, "inserted")
        l[7] = "replaced " * 10
    return {"Dict": d_path, "List": l_path}


def _assert_only_mmstore_errors(results):
    bad = [r for r in results if any(v.startswith("OTHER:") for k, v in r.items() if k != "id")]
    assert not bad, f"{len(bad)} inputs raised a non-mmstore exception, e.g. {bad[:3]}"


# -- truncation -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["Dict", "List"])
def test_truncation_at_every_page_boundary_is_rejected(tmp_path, sample_stores, kind):
    source = sample_stores[kind]
    size = source.stat().st_size
    assert size > 64 * PAGE
    cases = []
    for off in range(0, size, PAGE):
        # A zero-length file is "no store yet": opened for writing it would be initialized, so only the
        # read-only open is a rejection case there.
        for readonly in ((True,) if off == 0 else (False, True)):
            cases.append({"id": f"{off}{'ro' if readonly else 'rw'}", "truncate": off, "readonly": readonly})
    # A few cuts that are not page-aligned, inside the header page and the data.
    for off in (1, 8, 63, 64, 300, PAGE + 1, DATA_START + 17, size - 1):
        cases.append({"id": f"{off}odd", "truncate": off, "readonly": True})
    results = _run_batches(tmp_path, kind, source, cases)
    _assert_only_mmstore_errors(results)
    accepted = [r for r in results if all(v == "ok" for k, v in r.items() if k != "id")]
    assert not accepted, f"truncated copies were accepted: {[r['id'] for r in accepted][:10]}"
    opened = [r for r in results if r["open"] == "ok"]
    assert not opened, f"a truncated file opened without error: {opened[:3]}"
    by_id = {r["id"]: r for r in results}
    assert by_id["0ro"]["open"] == "mmstore:ForeignFileError"
    assert by_id[f"{PAGE}rw"]["open"] in ("mmstore:TruncatedFileError", "mmstore:ForeignFileError")
    assert by_id[f"{size - PAGE}rw"]["open"] == "mmstore:TruncatedFileError"
    errors = {r["open"] for r in results}
    assert errors <= {"mmstore:TruncatedFileError", "mmstore:ForeignFileError", "mmstore:CorruptFileError"}


# -- random corruption ----------------------------------------------------------------------------------------------


def _flip_cases(source, seed, copies):
    rng = random.Random(seed)
    with mmstore.Dict(source, readonly=True) if "dict" in source.name else mmstore.List(source, readonly=True) as h:
        top = h.stats()["arena_top"]
    cases = []
    total = 0
    for c in range(copies):
        flips = []
        for _ in range(rng.choice([1, 1, 2, 3])):
            r = rng.random()
            if r < 0.15:
                pos = rng.randrange(0, 1024)  # FileHeader, LockSlot, LiveHeader
            elif r < 0.30:
                pos = rng.randrange(PAGE, DATA_START)  # commit slots
            else:
                pos = rng.randrange(DATA_START, top)  # the arena: index, records, payloads
            flips.append([pos, rng.randrange(8)])
        total += len(flips)
        cases.append({"id": f"c{c}", "flips": flips, "readonly": c % 3 == 0})
    return cases, total


@pytest.mark.parametrize("kind, copies", [("Dict", 80), ("List", 50)])
def test_random_byte_flips_raise_mmstore_errors_or_read_fine_never_crash(tmp_path, sample_stores, kind, copies):
    cases, total_flips = _flip_cases(sample_stores[kind], seed=99 if kind == "Dict" else 98, copies=copies)
    assert total_flips >= copies
    results = _run_batches(tmp_path, kind, sample_stores[kind], cases)
    _assert_only_mmstore_errors(results)
    # The sweep must exercise both outcomes, or it tests nothing.
    assert any(r["open"] != "ok" or r.get("verify", "ok") != "ok" for r in results)
    assert any(r["open"] == "ok" for r in results)


# -- the value decoder on bad bytes ---------------------------------------------------------------------------------

DECODE_FUZZ = r"""
import json, random, sys
import mmstore
seeds = json.load(open(sys.argv[1]))
counts, examples = {}, {}
for seed in seeds:
    rng = random.Random(seed)
    base = mmstore.encode([seed, "text " * (seed % 5), b"\x00\x01", (1.5, None, True), {"k": [2**70]},
                           {1, 2}, frozenset({"a"})][seed % 7])
    data = bytearray(base)
    for _ in range(rng.randrange(1, 4)):
        r = rng.random()
        if r < 0.5 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif r < 0.75 and data:
            del data[rng.randrange(len(data)):]
        else:
            data.insert(rng.randrange(len(data) + 1), rng.randrange(256))
    print("BEGIN", seed, data.hex(), flush=True)
    try:
        mmstore.decode(bytes(data), False)
        key = "ok"
    except mmstore.Error as e:
        key = "mmstore"
    except RecursionError:
        key = "mmstore"
    except Exception as e:
        key = "OTHER:" + type(e).__name__
        examples.setdefault(key, bytes(data).hex()[:80])
    counts[key] = counts.get(key, 0) + 1
print("EXAMPLES", json.dumps(examples), flush=True)
print("COUNTS", json.dumps(counts), flush=True)
"""


def _decode_fuzz(tmp_path):
    procs = []
    for b in range(2):
        seeds_file = tmp_path / f"seeds{b}.json"
        seeds_file.write_text(json.dumps(list(range(b, 6000, 2))))
        procs.append(subprocess.Popen([sys.executable, "-c", DECODE_FUZZ, str(seeds_file)], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, env=_child_env()))
    counts: dict = {}
    examples: dict = {}
    for p in procs:
        out, err = p.communicate(timeout=120)
        lines = out.splitlines()
        begun = [ln for ln in lines if ln.startswith("BEGIN")]
        assert p.returncode == 0, f"decode crashed (rc {p.returncode}) on {begun[-1] if begun else None}\n{err}"
        for k, v in json.loads(lines[-1][len("COUNTS "):]).items():
            counts[k] = counts.get(k, 0) + v
        examples.update(json.loads(lines[-2][len("EXAMPLES "):]))
    assert counts.get("ok", 0) > 0 and counts.get("mmstore", 0) > 0
    return counts, examples


def test_decoding_mutated_encodings_never_crashes(tmp_path):
    _decode_fuzz(tmp_path)


def test_decoding_mutated_encodings_raises_only_mmstore_errors(tmp_path):
    # Regression: a str payload that was not valid UTF-8 raised UnicodeDecodeError (~5% of these inputs).
    counts, examples = _decode_fuzz(tmp_path)
    other = {k: (v, examples[k]) for k, v in counts.items() if k.startswith("OTHER")}
    assert not other, f"(count, example input hex) per exception type: {other}"


# Corrupt payloads that once escaped as plain Python errors (named in each comment) instead of CorruptFileError.
CORRUPT_PAYLOADS = {
    # tag 0x22: 2-byte short str whose bytes are not UTF-8 (was UnicodeDecodeError)
    "short str, invalid UTF-8": b"\x22\xff\xfe",
    "long str, invalid UTF-8": b"\x10\x02\x00\x00\x00\xff\xfe",
    # set (0x15) of one element that is an empty list (0x13): unhashable (was TypeError)
    "set holding a list": b"\x15\x01\x00\x00\x00\x13\x00\x00\x00\x00",
    "dict keyed by a list": b"\x14\x01\x00\x00\x00\x13\x00\x00\x00\x00\x00",
    # Decimal (0x19) whose text is not a number (was decimal.InvalidOperation)
    "decimal, bad text": b"\x19\x03\x00\x00\x00abc",
    # pickle (0x1b) payload that is not a pickle (was pickle.UnpicklingError)
    "pickle, bad payload": b"\x1b\x02\x00\x00\x00ab",
}


@pytest.mark.parametrize("name", sorted(CORRUPT_PAYLOADS))
def test_corrupt_payload_raises_corrupt_file_error(name):
    with pytest.raises(mmstore.CorruptFileError):
        mmstore.decode(CORRUPT_PAYLOADS[name], True)


@pytest.mark.parametrize(
    "data",
    [b"", b"\xff", b"\x06", b"\x10\xff\xff\xff\xff", b"\x12\x02\x00\x00\x00\x06\x01", b"\x05\x05",
     b"\x13\xff\xff\xff\x7f", b"\x17\x00\x00\x00\x00\x01\x01", b"\x1a\x03zzz\x00" + bytes(16),
     b"\x18" + bytes(20), b"\x04\xff\xff\xff\x00"],
    ids=repr,
)
def test_malformed_encodings_raise_corrupt_file_error(data):
    with pytest.raises(mmstore.CorruptFileError):
        mmstore.decode(data)


def test_deeply_nested_encoding_is_refused_not_recursed(tmp_path):
    data = b"\x13\x01\x00\x00\x00" * 100_000 + b"\x00"
    code = "import sys, mmstore\ntry:\n    mmstore.decode(sys.stdin.buffer.read())\nexcept mmstore.Error:\n    print('refused')\n"
    out = subprocess.run([sys.executable, "-c", code], input=data, capture_output=True, env=_child_env(), timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == b"refused"
