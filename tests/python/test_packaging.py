"""The package as a user installs it: version and format version, a clean interpreter exit with handles left
in globals, and the friendly edges of the API (schema arguments, wrong argument types)."""

from __future__ import annotations

import re
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import mmstore

REPO = Path(__file__).resolve().parents[2]
DIRTY_OFFSET = 256  # docs/format.md 1.3: the live header's dirty flag, 0 after a clean close


# -- versions -----------------------------------------------------------------------------------------------


def test_version_is_the_installed_distribution_version():
    from importlib.metadata import version

    assert re.fullmatch(r"\d+\.\d+\.\d+([ab]\d+|rc\d+)?", mmstore.__version__)
    assert version("mmstore") == mmstore.__version__


def test_changelog_has_an_entry_for_this_version():
    changelog = REPO / "CHANGELOG.md"
    if not changelog.exists():
        pytest.skip("not run from a source tree")
    assert f"## {mmstore.__version__}" in changelog.read_text()


def test_format_version_is_the_one_new_files_carry(tmp_path):
    path = tmp_path / "d.mms"
    with mmstore.Dict(path) as d:
        d["k"] = 1
    assert isinstance(mmstore.FORMAT_VERSION, int) and mmstore.FORMAT_VERSION >= 1
    assert struct.unpack_from("<I", path.read_bytes(), 8)[0] == mmstore.FORMAT_VERSION
    # a file of format FORMAT_VERSION + 1 is refused: tests/python/test_bad_input.py
    # (test_newer_format_version_raises_unsupported_version)


# -- clean exit ---------------------------------------------------------------------------------------------

EXIT_SCRIPT = """
import sys, mmstore

@mmstore.struct
class Item:
    x: mmstore.int32
    name: str

d = mmstore.Dict("d.mms"); d["a"] = 1
l = mmstore.List("l.mms"); l.append(1)
sd = mmstore.SharedDict(); sd["x"] = 1
pool = mmstore.Pool(max_memory=1 << 20); ref = pool.put(b"x" * 100)
arr = mmstore.RecordArray.build([Item(1, "a"), Item(2, "b")], "a.mms", schema=Item)
m = mmstore.Mapping.build({"k": Item(3, "c")}, "m.mms", key=str, schema=Item)
proxy = arr[0]
it = iter(arr); next(it)
print(sd.name)
"""


@pytest.mark.parametrize("with_struct", [True, False])
def test_handles_left_in_globals_exit_silently_and_close_cleanly(tmp_path, with_struct):
    script = EXIT_SCRIPT
    if not with_struct:  # the same handles, no @mmstore.struct class in the script's globals
        script = script.replace("schema=Item", "schema=mmstore.Schema.from_fields({'x': mmstore.int32, 'name': str})")
        script = re.sub(r"@mmstore.struct\nclass Item:\n.*\n.*\n", "", script)
        script = script.replace("Item(1, \"a\"), Item(2, \"b\")", "{'x': 1, 'name': 'a'}, {'x': 2, 'name': 'b'}")
        script = script.replace("Item(3, \"c\")", "{'x': 3, 'name': 'c'}")
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    name = out.stdout.strip()
    for f in ("d.mms", "l.mms"):
        assert struct.unpack_from("<Q", (tmp_path / f).read_bytes(), DIRTY_OFFSET)[0] == 0, f"{f} left dirty"
    with mmstore.Dict(tmp_path / "d.mms") as d:
        assert dict(d) == {"a": 1}
    with mmstore.List(tmp_path / "l.mms") as lst:
        assert list(lst) == [1]
    assert name not in {i.name for i in mmstore.shared_dicts()}  # the creator's segment went with it


# -- schema arguments ---------------------------------------------------------------------------------------


@mmstore.struct
class Item:
    x: mmstore.int32
    name: str


def test_every_schema_argument_takes_the_struct_class(tmp_path):
    arr = mmstore.RecordArray.build([Item(1, "a")], tmp_path / "a.mms", schema=Item)
    assert arr.schema == Item.__schema__ and arr[0].name == "a"
    for opened in (
        mmstore.RecordArray(tmp_path / "a.mms", schema=Item),
        mmstore.RecordArray.open(tmp_path / "a.mms", schema=Item),
        mmstore.RecordArray.from_buffer((tmp_path / "a.mms").read_bytes(), schema=Item),
    ):
        assert opened[0].x == 1
    m = mmstore.Mapping.build({"k": Item(2, "b")}, tmp_path / "m.mms", key=str, schema=Item)
    assert m["k"].x == 2
    assert mmstore.Mapping.open(tmp_path / "m.mms", schema=Item)["k"].name == "b"


@pytest.mark.parametrize("bad", [42, "Item", int, Item(1, "a").__class__.__mro__[-1]])
def test_a_wrong_schema_argument_is_a_type_error_naming_it(tmp_path, bad):
    with pytest.raises(TypeError, match="schema must be a Schema or an @mmstore.struct class"):
        mmstore.RecordArray.build([Item(1, "a")], tmp_path / "a.mms", schema=bad)
    with pytest.raises(TypeError, match="schema"):
        mmstore.Mapping.build({"k": Item(1, "a")}, tmp_path / "m.mms", key=str, schema=bad)


@pytest.mark.parametrize("cls", [mmstore.Dict, mmstore.List])
def test_a_wrong_path_type_is_a_type_error_naming_it(cls):
    with pytest.raises(TypeError, match=r"path must be a str or os.PathLike(\[str\])?, not int"):
        cls(42)


def test_the_written_out_export_lists_are_complete():
    from mmstore import _errors, _records
    from mmstore.compat import sharedbuffers
    from mmstore.compat.sharedbuffers import mapped_struct

    assert set(_records.__all__) | set(_errors.__all__) <= set(mmstore.__all__)
    assert set(mapped_struct.__all__) <= set(sharedbuffers.__all__)
    for name in mmstore.__all__:
        assert hasattr(mmstore, name), name


def test_the_installed_package_ships_its_types():
    here = Path(mmstore.__file__).parent
    assert (here / "py.typed").is_file()
    assert (here / "_core.pyi").is_file()
