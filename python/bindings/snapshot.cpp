// python/bindings/snapshot.cpp -- mmstore._core._Snapshot, the native side of `with d.snapshot() as s:`
// (python/mmstore/_snapshot.py): a mmstore::Dict::Snapshot of a Dict or SharedDict handle's main table.
// Opening and reads take no lock (containers/snapshot.hpp); values are decoded as the handle decodes them.
// docs/design.md, "Transactions and snapshots".
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
};

DictHandle* handle(const PySnap& p) {
    DictHandle* h = open_handle<DictHandle>(p.owner.ptr(), "Dict");
    if (!h) throw nb::python_error();
    return h;
}

mmstore::Dict::Snapshot& active(PySnap& p) {
    if (p.state == PySnap::kNew) throw std::runtime_error("use the snapshot inside its `with` block");
    if (p.state == PySnap::kClosed || !p.s || !p.s->is_open())
        throw mmstore::Error(ErrorCode::kClosed, "", "the snapshot is closed");
    return *p.s;
}

nb::object steal_or_throw(PyObject* o) {
    if (!o) throw nb::python_error();
    return nb::steal(o);
}

// The value of the encoded key at the snapshot's instant into *out (nullptr: absent); false with a Python
// error set. Fast path (no write recorded since the snapshot opened): the handle's own lock-free read,
// which decodes in place -- valid at the instant because the version table was still absent after it
// (containers::has_versions). Otherwise the chain decides (read_at, a copy of the encoding).
bool snap_read(PySnap& p, PyObject* key, PyObject** out) {
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
            if (dict_read_value(h, p.owner.ptr(), 0, 0, kb.sv, hv, &v) == Got::kError) return false;
            if (!containers::has_versions(store)) {
                *out = v;
                return true;
            }
            Py_XDECREF(v);  // a write recorded meanwhile: the live value may be newer than the instant
        }
        const std::optional<std::string> v = s.get_encoded(kb.sv);
        if (!v) return true;
        *out = dict_decode_encoding(h, p.owner.ptr(), *v);
        return *out != nullptr;
    } catch (nb::python_error& e) {
        e.restore();
        return false;
    } catch (...) {
        set_error_from_exception();
        return false;
    }
}

PySnap* snap_of(PyObject* self) {
    if (!nb::inst_ready(self)) [[unlikely]] {
        PyErr_SetString(PyExc_RuntimeError, "the snapshot is not initialized; use d.snapshot()");
        return nullptr;
    }
    return nb::inst_ptr<PySnap>(self);
}

// ---- CPython slots and fast methods: s[k], k in s, s.get(k[, default]) cost one C call, as on Dict --------

PyObject* snap_subscript(PyObject* self, PyObject* key) {
    PySnap* p = snap_of(self);
    if (!p) return nullptr;
    PyObject* v;
    if (!snap_read(*p, key, &v)) return nullptr;
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
    if (!snap_read(*p, key, &v)) return -1;
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
    if (!snap_read(*p, args[0], &v)) return nullptr;
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

nb::list snap_items(PySnap& p) {
    auto& s = active(p);
    DictHandle* h = handle(p);
    std::vector<std::pair<std::string, std::string>> pairs;  // copied first: decoding may run Python code
    s.for_each([&](std::string_view k, std::string_view v) { pairs.emplace_back(k, v); });
    nb::list out;
    for (const auto& [k, v] : pairs) {
        nb::object ko = steal_or_throw(decode(k.data(), k.size(), h->flags));
        nb::object vo = steal_or_throw(dict_decode_encoding(h, p.owner.ptr(), v));
        out.append(nb::make_tuple(ko, vo));
    }
    return out;
}

}  // namespace

void bind_snapshot(nb::module_& m) {
    nb::class_<PySnap>(m, "_Snapshot", nb::type_slots(snap_slots))
        .def("__init__", [](PySnap* self, nb::handle owner) { new (self) PySnap{nb::borrow(owner)}; }, nb::arg("owner"))
        .def("__enter__",
             [](nb::handle self) {
                 PySnap& p = *nb::inst_ptr<PySnap>(self);
                 if (p.state != PySnap::kNew) throw std::runtime_error("this snapshot was already entered; call snapshot() again");
                 p.s.emplace(handle(p)->obj->snapshot());
                 p.state = PySnap::kOpen;
                 return nb::borrow(self);
             })
        .def("__exit__",
             [](PySnap& p, nb::handle, nb::handle, nb::handle) {
                 if (p.s) p.s->close();
                 p.state = PySnap::kClosed;
                 return false;
             },
             nb::arg("exc_type").none(), nb::arg("exc").none(), nb::arg("tb").none())
        .def("close", [](PySnap& p) {
            if (p.s) p.s->close();
            p.state = PySnap::kClosed;
        })
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
