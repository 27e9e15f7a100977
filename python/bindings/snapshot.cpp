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

// The value of `key` at the snapshot's instant; an invalid object when absent.
nb::object snap_get(PySnap& p, nb::handle key, nb::handle dflt) {
    auto& s = active(p);
    DictHandle* h = handle(p);
    EncBuf kb;
    if (!encode_into(key.ptr(), kb, h->flags, true)) throw nb::python_error();
    const std::optional<std::string> v = s.get_encoded(kb.sv);
    if (!v) return dflt.is_valid() ? nb::borrow(dflt) : nb::object();
    return steal_or_throw(dict_decode_encoding(h, p.owner.ptr(), *v));
}

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
    nb::class_<PySnap>(m, "_Snapshot")
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
        .def("__getitem__",
             [](PySnap& p, nb::handle key) {
                 nb::object v = snap_get(p, key, nb::handle());
                 if (!v.is_valid()) {
                     PyErr_SetObject(PyExc_KeyError, key.ptr());
                     throw nb::python_error();
                 }
                 return v;
             },
             nb::arg("key").none())
        .def("get", &snap_get, nb::arg("key").none(), nb::arg("default").none() = nb::none())
        .def("__contains__", [](PySnap& p, nb::handle key) { return snap_get(p, key, nb::handle()).is_valid(); },
             nb::arg("key").none())
        .def("__len__", [](PySnap& p) { return active(p).size(); })
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
