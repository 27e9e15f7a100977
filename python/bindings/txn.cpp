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
    if (dict_read_value(h, p.owner.ptr(), p.cell, p.id, k.kb.sv, k.hash, &out) == Got::kError) throw nb::python_error();
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
        t.txn().set(k.kb.sv, ref);
        return;
    }
    EncBuf vb;
    if (!encode_into(value.ptr(), vb, h->flags, false)) throw nb::python_error();
    t.txn().set(k.kb.sv, vb.sv);
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

}  // namespace

void bind_txn(nb::module_& m) {
    nb::class_<PyTxn>(m, "_Transaction")
        .def(
            "__init__",
            [](PyTxn* self, nb::handle owner, std::uint64_t cell, std::uint64_t id) {
                new (self) PyTxn{{nb::borrow(owner)}, cell, id};
            },
            nb::arg("owner"), nb::arg("cell") = 0, nb::arg("id") = 0)
        .def("__enter__", &PyTxn::enter)
        .def("__exit__", [](PyTxn& p, nb::handle t, nb::handle, nb::handle) { return p.exit(t); },
             nb::arg("exc_type").none(), nb::arg("exc").none(), nb::arg("tb").none())
        .def("__getitem__",
             [](PyTxn& p, nb::handle key) {
                 nb::object v = txn_get(p, key, nb::handle());
                 if (!v.is_valid()) throw_key_error(key);
                 return v;
             },
             nb::arg("key").none())
        .def("get", &txn_get, nb::arg("key").none(), nb::arg("default").none() = nb::none())
        .def("__setitem__", &txn_set, nb::arg("key").none(), nb::arg("value").none())
        .def("__delitem__",
             [](PyTxn& p, nb::handle key) {
                 if (!txn_delete(p, key)) throw_key_error(key);
             },
             nb::arg("key").none())
        .def("__contains__", &txn_contains, nb::arg("key").none())
        .def("__len__", [](PyTxn& p) { return p.active().size(); })
        .def("items", &txn_items)
        .def("clear", [](PyTxn& p) { p.active().txn().clear(); })
        .def_prop_ro("_owner", [](PyTxn& p) { return p.owner; })
        .def_prop_ro("_cell", [](PyTxn& p) { return p.cell; })
        .def_prop_ro("_id", [](PyTxn& p) { return p.id; })
        .def_prop_ro("active", [](PyTxn& p) { return p.is_active(); });
    m.def("_read_at_once", &read_at_once, nb::arg("owner"), nb::arg("cell"), nb::arg("id"), nb::arg("keys"),
          nb::arg("default").none());
}

}  // namespace mmstore::py
