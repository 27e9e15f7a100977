"""The committed type stub of the extension declares every name the extension defines."""

import ast
from pathlib import Path

import mmstore
from mmstore import _core

STUB = Path(mmstore.__file__).with_name("_core.pyi")


def _stub_names():
    tree = ast.parse(STUB.read_text())
    top, members = set(), {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            top.add(node.name)
        elif isinstance(node, ast.AnnAssign):
            top.add(node.target.id)
        if isinstance(node, ast.ClassDef):
            members[node.name] = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
    return top, members


def test_stub_declares_every_module_attribute():
    top, _ = _stub_names()
    runtime = {n for n in dir(_core) if not n.startswith("__")}
    assert runtime - top == set()


def test_stub_declares_every_handle_method():
    _, members = _stub_names()
    for cls_name in ("_Dict", "_List"):
        cls = getattr(_core, cls_name)
        runtime = {n for n, v in vars(cls).items() if not n.startswith("__") or n in ("__getitem__", "__len__")}
        assert runtime - members[cls_name] == set(), cls_name


def test_package_ships_py_typed_marker():
    assert STUB.with_name("py.typed").exists()
