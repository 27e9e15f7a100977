// python/bindings/snapshot.cpp -- mmstore._core._Snapshot, the native side of `with d.snapshot() as s:`
// (python/mmstore/_snapshot.py): a mmstore::Dict::Snapshot of a Dict or SharedDict handle's main table.
// Opening and reads take no lock (containers/snapshot.hpp); values are decoded as the handle decodes them,
// except a nested dict (SharedDict), which comes back as a snapshot of that dict at the same instant: an
// object of the same type whose `s` is a nested view of the snapshot (Dict::Snapshot::nested), open while
// the snapshot it came from is. docs/design.md, "Transactions and snapshots".
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>

#include "handles.hpp"
#include "mmstore/containers/snapshot.hpp"

namespace mmstore::py {

namespace {

struct PySnap {
    nb::object owner;
    std::optional<mmstore::Dict::Snapshot> s;
    enum State { kNew, kOpen, kClosed } state = kNew;
    // A nested dict's snapshot: its table's cell and id (for the fast path's live read), and the snapshot
    // object it was read from (kept alive: the reader slot is that one's).
    std::uint64_t cell = 0;
    std::uint64_t id = 0;
    nb::object parent;
    std::optional<mmstore::Dict::Snapshot> root;  // NestedDict.snapshot(): the snapshot `s` is a view of
};

DictHandle* handle(const PySnap& p) {
    DictHandle* h = open_handle<DictHandle>(p.owner.ptr(), "Dict");
    if (!h) throw nb::python_error();
    return h;
}

mmstore::Dict::Snapshot& active(PySnap& p) { return snap_active(p); }

// Opens the snapshot: of the handle's main table, or (cell != 0: NestedDict.snapshot()) of the nested dict
// at `cell`, which must still carry `id` once the snapshot is open (a nested dict deleted before the instant
// is gone; one deleted after it is kept for the snapshot, id and all).
void snap_open(PySnap& p) {
    DictHandle* h = handle(p);
    mmstore::Dict::Snapshot rs = h->obj->snapshot();
    if (p.cell == 0) {
        p.s.emplace(std::move(rs));
        return;
    }
    if (containers::HashTable::cell_id(h->obj->store(), p.cell) != p.id) {
        PyErr_SetString(PyExc_KeyError, "this nested dict no longer exists: its entry was replaced or deleted");
        throw nb::python_error();
    }
    std::string ref(7, '\0');
    ref[0] = static_cast<char>(codec::tag::kTableRef);
    std::memcpy(ref.data() + 1, &p.cell, 6);
    p.s.emplace(rs.nested(ref));
    p.root.emplace(std::move(rs));
}

void snap_close(PySnap& p) {
    if (p.s) p.s->close();
    if (p.root) p.root->close();
    p.state = PySnap::kClosed;
}

nb::object steal_or_throw(PyObject* o) {
    if (!o) throw nb::python_error();
    return nb::steal(o);
}

// Decodes a value encoding read at the snapshot's instant: a nested dict becomes a snapshot of it (an object
// of self's type), anything else is decoded as the handle decodes it.
PyObject* snap_decode(PyObject* self, PySnap& p, DictHandle* h, std::string_view enc) {
    const std::uint64_t w = containers::inline_word(enc);
    if (w == 0 || !containers::is_table_ref(w)) return dict_decode_encoding(h, p.owner.ptr(), enc);
    mmstore::Dict::Snapshot view = p.s->nested(enc);
    PyObject* child = PyObject_CallOneArg(reinterpret_cast<PyObject*>(Py_TYPE(self)), p.owner.ptr());
    if (child == nullptr) return nullptr;
    PySnap& c = *nb::inst_ptr<PySnap>(child);
    c.s.emplace(std::move(view));
    c.state = PySnap::kOpen;
    c.cell = containers::table_ref_cell(w);
    c.id = containers::HashTable::cell_id(h->obj->store(), c.cell);
    c.parent = p.parent.is_valid() ? p.parent : nb::borrow(self);
    return child;
}

// The value of the encoded key at the snapshot's instant into *out (nullptr: absent); false with a Python
// error set. Fast path (no write recorded since the snapshot opened): the handle's own lock-free read,
// which decodes in place -- valid at the instant because the version table was still absent after it
// (containers::has_versions). Otherwise, and for nested dict values, the chain decides (read_at, a copy of
// the encoding).
bool snap_read(PyObject* self, PySnap& p, PyObject* key, PyObject** out) {
    *out = nullptr;
    try {
        auto& s = active(p);
        DictHandle* h = handle(p);
        EncBuf kb;
        if (!encode_into(key, kb, h->flags, true)) return false;
        const std::uint64_t hv = hash64(kb.sv.data(), kb.sv.size());
        auto& store = h->obj->store();
        if (!containers::has_versions(store)) {
            PyObject* v = nullptr;
            if (dict_read_value(h, p.owner.ptr(), p.cell, p.id, kb.sv, hv, &v) == Got::kError) {
                // A nested dict replaced meanwhile reads as gone live; that write was recorded.
                if (!containers::has_versions(store)) return false;
                PyErr_Clear();
                v = nullptr;
            } else if (!containers::has_versions(store) && (v == nullptr || !dict_is_nested_view(v))) {
                *out = v;
                return true;
            }
            Py_XDECREF(v);  // a write recorded meanwhile (the live value may be newer), or a nested dict
        }
        const std::optional<std::string> v = s.get_encoded(kb.sv);
        if (!v) return true;
        *out = snap_decode(self, p, h, *v);
        return *out != nullptr;
    } catch (nb::python_error& e) {
        e.restore();
        return false;
    } catch (...) {
        set_error_from_exception();
        return false;
    }
}

PySnap* snap_of(PyObject* self) { return snap_inst<PySnap>(self); }

// ---- CPython slots and fast methods: s[k], k in s, s.get(k[, default]) cost one C call, as on Dict --------

PyObject* snap_subscript(PyObject* self, PyObject* key) {
    PySnap* p = snap_of(self);
    if (!p) return nullptr;
    PyObject* v;
    if (!snap_read(self, *p, key, &v)) return nullptr;
    if (v == nullptr) {
        PyObject* t = PyTuple_Pack(1, key);  // a tuple key must not be unpacked into KeyError's args
        if (t) {
            PyErr_SetObject(PyExc_KeyError, t);
            Py_DECREF(t);
        }
    }
    return v;
}

int snap_contains(PyObject* self, PyObject* key) {
    PySnap* p = snap_of(self);
    if (!p) return -1;
    PyObject* v;
    if (!snap_read(self, *p, key, &v)) return -1;
    if (v == nullptr) return 0;
    Py_DECREF(v);
    return 1;
}

Py_ssize_t snap_length(PyObject* self) {
    PySnap* p = snap_of(self);
    if (!p) return -1;
    try {
        return static_cast<Py_ssize_t>(active(*p).size());
    } catch (...) {
        set_error_from_exception();
        return -1;
    }
}

PyObject* snap_get(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 2) {
        PyErr_Format(PyExc_TypeError, "get expected 1 or 2 arguments, got %zd", nargs);
        return nullptr;
    }
    PySnap* p = snap_of(self);
    if (!p) return nullptr;
    PyObject* v;
    if (!snap_read(self, *p, args[0], &v)) return nullptr;
    if (v == nullptr) {
        v = nargs == 2 ? args[1] : Py_None;
        Py_INCREF(v);
    }
    return v;
}

PyMethodDef snap_methods[] = {
    {"get", reinterpret_cast<PyCFunction>(reinterpret_cast<void*>(snap_get)), METH_FASTCALL,
     "get($self, key, default=None, /)\n--\n\nReturn the value of key at the snapshot's instant, else default."},
    {nullptr, nullptr, 0, nullptr},
};

PyType_Slot snap_slots[] = {
    {Py_mp_subscript, reinterpret_cast<void*>(snap_subscript)},
    {Py_mp_length, reinterpret_cast<void*>(snap_length)},
    {Py_sq_contains, reinterpret_cast<void*>(snap_contains)},
    {Py_tp_methods, reinterpret_cast<void*>(snap_methods)},
    {0, nullptr},
};

nb::list snap_items(nb::handle self) {
    PySnap& p = *nb::inst_ptr<PySnap>(self);
    auto& s = active(p);
    DictHandle* h = handle(p);
    std::vector<std::pair<std::string, std::string>> pairs;  // copied first: decoding may run Python code
    s.for_each([&](std::string_view k, std::string_view v) { pairs.emplace_back(k, v); });
    nb::list out;
    for (const auto& [k, v] : pairs) {
        nb::object ko = steal_or_throw(decode(k.data(), k.size(), h->flags));
        nb::object vo = steal_or_throw(snap_decode(self.ptr(), p, h, v));
        out.append(nb::make_tuple(ko, vo));
    }
    return out;
}

}  // namespace

void bind_snapshot(nb::module_& m) {
    nb::class_<PySnap>(m, "_Snapshot", nb::type_slots(snap_slots))
        .def(
            "__init__",
            [](PySnap* self, nb::handle owner, std::uint64_t cell, std::uint64_t id) {
                new (self) PySnap{nb::borrow(owner)};
                self->cell = cell;
                self->id = id;
            },
            nb::arg("owner"), nb::arg("cell") = 0, nb::arg("id") = 0)
        .def("__enter__",
             [](nb::handle self) {
                 PySnap& p = *nb::inst_ptr<PySnap>(self);
                 if (p.state != PySnap::kNew) throw std::runtime_error("this snapshot was already entered; call snapshot() again");
                 snap_open(p);
                 p.state = PySnap::kOpen;
                 return nb::borrow(self);
             })
        .def("__exit__",
             [](PySnap& p, nb::handle, nb::handle, nb::handle) {
                 snap_close(p);
                 return false;
             },
             nb::arg("exc_type").none(), nb::arg("exc").none(), nb::arg("tb").none())
        .def("close", &snap_close)
        .def("items", &snap_items)
        .def_prop_ro("version", [](PySnap& p) { return active(p).version(); })
        .def_prop_ro("_owner", [](PySnap& p) { return p.owner; })
        .def_prop_ro("active", [](PySnap& p) { return p.state == PySnap::kOpen && p.s && p.s->is_open(); });
    m.def("_snapshot_version_keys", [](nb::handle owner) {
        DictHandle* h = open_handle<DictHandle>(owner.ptr(), "Dict");
        if (!h) throw nb::python_error();
        return containers::version_keys(h->obj->store());
    });
}

}  // namespace mmstore::py
