// python/bindings/txn.cpp -- mmstore._core._Transaction, the native side of `with d.transaction() as t:`
// (python/mmstore/_txn.py), and _read_at_once, the lock-free consistent read behind Dict.get_many.
//
// A _Transaction is a mmstore::Dict::Transaction on one table of a Dict or SharedDict handle (cell 0: the
// handle's own table; otherwise a nested table addressed by (cell, id) as in dict.cpp). It holds the store's
// write lock from construction to commit() or rollback(); waiting for it releases the GIL (module.cpp).
// Values are decoded as the handle decodes them; nested tables come back as NestedDict views. docs/design.md,
// "Transactions and snapshots".
#include <nanobind/stl/optional.h>

#include <algorithm>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "handles.hpp"
#include "mmstore/storage/checksum.hpp"
#include "txn_block.hpp"

namespace mmstore::py {

namespace {

using containers::kNotFound;

// The table (cell, id) of the handle; KeyError when that nested table is gone.
containers::HashTable target(DictHandle* h, std::uint64_t cell, std::uint64_t id) {
    auto& store = h->obj->store();
    if (cell == 0) return h->obj->table();
    if (containers::HashTable::cell_id(store, cell) != id) {
        PyErr_SetString(PyExc_KeyError, "this nested dict no longer exists: its entry was replaced or deleted");
        throw nb::python_error();
    }
    return containers::HashTable(&store, cell);
}

// One `with d.transaction() as t:` block on the table (cell, id) of a handle (txn_block.hpp). Blocks of
// the same handle, cell and thread nest as savepoints.
struct PyTxn : TxnBlock<PyTxn, mmstore::Dict::Transaction, DictHandle> {
    static constexpr const char* kKind = "Dict";
    static constexpr bool kCheckOpenOnUse = false;

    std::uint64_t cell = 0;
    std::uint64_t id = 0;

    bool same_target(const PyTxn& o) const { return o.cell == cell; }
    void begin(DictHandle* h) {
        auto& store = h->obj->store();
        if (cell == 0) {  // the handle's own table: nothing to check under the lock first
            t.emplace(store, h->obj->table());
            return;
        }
        store.check_writable();
        // Lock first, so a nested table cannot be replaced between its check and the transaction.
        store.lock_write();
        try {
            t.emplace(store, target(h, cell, id));  // takes the (recursive) lock once more
        } catch (...) {
            store.unlock_write();
            throw;
        }
        store.unlock_write();
    }
    static void release_savepoint(mmstore::Dict::Transaction&, std::size_t) {}  // a Dict mark needs no release
};

struct Key {
    EncBuf kb;
    std::uint64_t hash;
    Key(DictHandle* h, nb::handle key) {
        if (!encode_into(key.ptr(), kb, h->flags, true)) throw nb::python_error();
        hash = hash64(kb.sv.data(), kb.sv.size());
    }
};

// KeyError(key), with a tuple key kept whole (PyErr_SetObject would unpack it into the exception's args).
[[noreturn]] void throw_key_error(nb::handle key) {
    PyObject* t = PyTuple_Pack(1, key.ptr());
    if (t) {
        PyErr_SetObject(PyExc_KeyError, t);
        Py_DECREF(t);
    }
    throw nb::python_error();
}

nb::object steal_or_throw(PyObject* o) {
    if (!o) throw nb::python_error();
    return nb::steal(o);
}

// The value of `key` as the transaction sees it, or `dflt` when it is absent there.
nb::object txn_get(PyTxn& p, nb::handle key, nb::handle dflt) {
    auto& t = p.active();
    DictHandle* h = p.handle();
    const Key k(h, key);
    std::string v;
    switch (t.txn().own(k.kb.sv, &v)) {
        case containers::TableTxn::Own::kSet:
            return steal_or_throw(dict_decode_encoding(h, p.owner.ptr(), v));
        case containers::TableTxn::Own::kErased:
            return dflt.is_valid() ? nb::borrow(dflt) : nb::object();
        case containers::TableTxn::Own::kNone:
            break;
    }
    PyObject* out = nullptr;
    if (dict_read_value(h, p.owner.ptr(), p.cell, p.id, k.kb.sv, k.hash, &out, true) == Got::kError) throw nb::python_error();
    if (out == nullptr) return dflt.is_valid() ? nb::borrow(dflt) : nb::object();
    return nb::steal(out);
}

void txn_set(PyTxn& p, nb::handle key, nb::handle value) {
    auto& t = p.active();
    DictHandle* h = p.handle();
    const Key k(h, key);
    if (dict_is_nested_source(h, value.ptr())) {
        std::string ref;
        if (!dict_build_nested(h, t.txn().table(), value.ptr(), ref)) throw nb::python_error();
        t.txn().adopt_child(ref);  // destroyed by the transaction unless it ends up stored
        t.txn().put(k.kb.sv, k.hash, ref);
        return;
    }
    EncBuf vb;
    if (!encode_into(value.ptr(), vb, h->flags, false)) throw nb::python_error();
    t.txn().put(k.kb.sv, k.hash, vb.sv);
}

bool txn_delete(PyTxn& p, nb::handle key) {
    auto& t = p.active();
    const Key k(p.handle(), key);
    return t.txn().erase(k.kb.sv);
}

bool txn_contains(PyTxn& p, nb::handle key) {
    auto& t = p.active();
    const Key k(p.handle(), key);
    return t.txn().contains(k.kb.sv);
}

// Every (key, value) the transaction sees: the table's entries in order with the transaction's changes
// applied, then its new keys in the order they were first written.
nb::list txn_items(PyTxn& p) {
    auto& t = p.active();
    DictHandle* h = p.handle();
    containers::HashTable& table = t.txn().table();
    std::vector<std::pair<std::string, std::string>> pairs;  // copied first: decoding may run Python code
    for (std::uint64_t i = 0; i < table.end(); ++i) {
        if (!table.occupied(i)) continue;
        containers::WordBuf kb, vb;
        std::string key(table.key_at(i, kb));
        std::string own;
        switch (t.txn().own(key, &own)) {
            case containers::TableTxn::Own::kErased: continue;
            case containers::TableTxn::Own::kSet: pairs.emplace_back(std::move(key), std::move(own)); break;
            case containers::TableTxn::Own::kNone: pairs.emplace_back(std::move(key), std::string(table.value_at(i, vb))); break;
        }
    }
    for (auto& [key, value] : t.txn().writes())
        if (value && table.find(key) == kNotFound) pairs.emplace_back(key, std::move(*value));
    nb::list out;
    for (const auto& [k, v] : pairs) {
        nb::object ko = steal_or_throw(decode(k.data(), k.size(), h->flags));
        nb::object vo = steal_or_throw(dict_decode_encoding(h, p.owner.ptr(), v));
        out.append(nb::make_tuple(ko, vo));
    }
    return out;
}

// Values of `keys` as of one instant, without the lock: the reads are retried while a write or a commit
// lands between them (the change counter and the table's published commit log both unchanged across all
// of them prove that none did).
nb::list read_at_once(nb::handle owner, std::uint64_t cell, std::uint64_t id, nb::handle keys, nb::handle dflt) {
    DictHandle* h = open_handle<DictHandle>(owner.ptr(), "Dict");
    if (!h) throw nb::python_error();
    std::vector<std::string> enc;
    std::vector<std::uint64_t> hashes;
    for (nb::handle key : keys) {
        EncBuf kb;
        if (!encode_into(key.ptr(), kb, h->flags, true)) throw nb::python_error();
        enc.emplace_back(kb.sv);
        hashes.push_back(hash64(enc.back().data(), enc.back().size()));
    }
    auto& store = h->obj->store();
    for (;;) {
        const containers::HashTable table = target(h, cell, id);
        const std::uint32_t c1 = store.change_count();
        const std::uint64_t log1 = store.read([&] { return table.pending_log(); });
        nb::list out;
        for (std::size_t i = 0; i < enc.size(); ++i) {
            PyObject* v = nullptr;
            if (dict_read_value(h, owner.ptr(), cell, id, enc[i], hashes[i], &v) == Got::kError) throw nb::python_error();
            if (v == nullptr) out.append(dflt);
            else out.append(nb::steal(v));
        }
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        const std::uint64_t log2 = store.read([&] { return table.pending_log(); });
        if (log1 == log2 && store.change_count() == c1) return out;
    }
}


// ---- CPython slots and fast methods ----------------------------------------------------------------------
// t[k], t[k] = v, del t[k], k in t, len(t), t.get, __enter__, __exit__ and d.transaction() itself each
// cost one C call instead of nanobind's dispatch (docs/design.md, "What the plan gave").

PyTypeObject* g_txn_type = nullptr;  // _core._Transaction

PyTxn* txn_of(PyObject* self) {
    if (!nb::inst_ready(self)) [[unlikely]] {
        PyErr_SetString(PyExc_RuntimeError, "the transaction is not initialized; use d.transaction()");
        return nullptr;
    }
    return nb::inst_ptr<PyTxn>(self);
}

// Runs f() with C++ exceptions turned into the Python error they stand for; `err` on failure.
template <class R, class F>
R guarded(R err, F&& f) noexcept {
    try {
        return f();
    } catch (nb::python_error& e) {
        e.restore();
    } catch (...) {
        set_error_from_exception();
    }
    return err;
}

PyObject* txn_subscript(PyObject* self, PyObject* key) {
    PyTxn* p = txn_of(self);
    if (!p) return nullptr;
    return guarded<PyObject*>(nullptr, [&]() -> PyObject* {
        nb::object v = txn_get(*p, key, nb::handle());
        if (!v.is_valid()) throw_key_error(key);
        return v.release().ptr();
    });
}

int txn_ass_subscript(PyObject* self, PyObject* key, PyObject* value) {
    PyTxn* p = txn_of(self);
    if (!p) return -1;
    return guarded<int>(-1, [&]() -> int {
        if (value != nullptr) txn_set(*p, key, value);
        else if (!txn_delete(*p, key)) throw_key_error(key);
        return 0;
    });
}

int txn_contains_slot(PyObject* self, PyObject* key) {
    PyTxn* p = txn_of(self);
    if (!p) return -1;
    return guarded<int>(-1, [&] { return txn_contains(*p, key) ? 1 : 0; });
}

Py_ssize_t txn_length(PyObject* self) {
    PyTxn* p = txn_of(self);
    if (!p) return -1;
    return guarded<Py_ssize_t>(-1, [&] { return static_cast<Py_ssize_t>(p->active().size()); });
}

PyObject* txn_get_method(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 2) {
        PyErr_Format(PyExc_TypeError, "get expected 1 or 2 arguments, got %zd", nargs);
        return nullptr;
    }
    PyTxn* p = txn_of(self);
    if (!p) return nullptr;
    return guarded<PyObject*>(nullptr, [&] { return txn_get(*p, args[0], nargs == 2 ? args[1] : Py_None).release().ptr(); });
}

PyObject* txn_enter(PyObject* self, PyObject*) {
    if (!txn_of(self)) return nullptr;
    return guarded<PyObject*>(nullptr, [&] { return PyTxn::enter(self).release().ptr(); });
}

PyObject* txn_exit(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "__exit__ expected 3 arguments, got %zd", nargs);
        return nullptr;
    }
    PyTxn* p = txn_of(self);
    if (!p) return nullptr;
    return guarded<PyObject*>(nullptr, [&] {
        PyObject* r = p->exit(args[0]) ? Py_True : Py_False;
        Py_INCREF(r);  // not Py_NewRef: CPython 3.10+, and 3.9 is supported
        return r;
    });
}

// _core._new_transaction(cls, owner, cell, id): cls(owner, cell, id) for a subclass of _Transaction without
// nanobind's __init__ dispatch (what d.transaction() calls).
PyObject* new_transaction(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "_new_transaction expected 4 arguments, got %zd", nargs);
        return nullptr;
    }
    if (!PyType_Check(args[0]) || !PyType_IsSubtype(reinterpret_cast<PyTypeObject*>(args[0]), g_txn_type)) {
        PyErr_SetString(PyExc_TypeError, "_new_transaction: cls must be a subclass of _Transaction");
        return nullptr;
    }
    const std::uint64_t cell = PyLong_AsUnsignedLongLong(args[2]);
    if (cell == static_cast<std::uint64_t>(-1) && PyErr_Occurred()) return nullptr;
    const std::uint64_t id = PyLong_AsUnsignedLongLong(args[3]);
    if (id == static_cast<std::uint64_t>(-1) && PyErr_Occurred()) return nullptr;
    return guarded<PyObject*>(nullptr, [&] {
        nb::object o = nb::inst_alloc(nb::handle(args[0]));
        new (nb::inst_ptr<PyTxn>(o)) PyTxn{{nb::borrow(args[1])}, cell, id};
        nb::inst_mark_ready(o);
        return o.release().ptr();
    });
}

PyMethodDef txn_methods[] = {
    {"get", reinterpret_cast<PyCFunction>(reinterpret_cast<void*>(txn_get_method)), METH_FASTCALL,
     "get($self, key, default=None, /)\n--\n\nReturn the value of key as the transaction sees it, else default."},
    {"__enter__", txn_enter, METH_NOARGS, "__enter__($self, /)\n--\n\nTake the write lock (or a savepoint)."},
    {"__exit__", reinterpret_cast<PyCFunction>(reinterpret_cast<void*>(txn_exit)), METH_FASTCALL,
     "__exit__($self, exc_type, exc, tb, /)\n--\n\nCommit, or roll back on an exception (which propagates)."},
    {nullptr, nullptr, 0, nullptr},
};

PyType_Slot txn_slots[] = {
    {Py_mp_subscript, reinterpret_cast<void*>(txn_subscript)},
    {Py_mp_ass_subscript, reinterpret_cast<void*>(txn_ass_subscript)},
    {Py_mp_length, reinterpret_cast<void*>(txn_length)},
    {Py_sq_contains, reinterpret_cast<void*>(txn_contains_slot)},
    {Py_tp_methods, reinterpret_cast<void*>(txn_methods)},
    {0, nullptr},
};

PyMethodDef txn_module_methods[] = {
    {"_new_transaction", reinterpret_cast<PyCFunction>(reinterpret_cast<void*>(new_transaction)), METH_FASTCALL,
     "_new_transaction(cls, owner, cell, id, /)\n--\n\ncls(owner, cell, id) for a subclass cls of _Transaction."},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

void bind_txn(nb::module_& m) {
    nb::class_<PyTxn> cls(m, "_Transaction", nb::type_slots(txn_slots));
    g_txn_type = reinterpret_cast<PyTypeObject*>(cls.ptr());
    cls.def(
           "__init__",
           [](PyTxn* self, nb::handle owner, std::uint64_t cell, std::uint64_t id) {
               new (self) PyTxn{{nb::borrow(owner)}, cell, id};
           },
           nb::arg("owner"), nb::arg("cell") = 0, nb::arg("id") = 0)
        .def("items", &txn_items)
        .def("clear", [](PyTxn& p) { p.active().txn().clear(); })
        .def_prop_ro("_owner", [](PyTxn& p) { return p.owner; })
        .def_prop_ro("_cell", [](PyTxn& p) { return p.cell; })
        .def_prop_ro("_id", [](PyTxn& p) { return p.id; })
        .def_prop_ro("active", [](PyTxn& p) { return p.is_active(); });
    m.def("_read_at_once", &read_at_once, nb::arg("owner"), nb::arg("cell"), nb::arg("id"), nb::arg("keys"),
          nb::arg("default").none());
    if (PyModule_AddFunctions(m.ptr(), txn_module_methods) != 0) throw nb::python_error();
}

}  // namespace mmstore::py
