// python/bindings/list_snapshot.cpp -- mmstore._core._ListSnapshot, the native side of `with l.snapshot() as
// s:` on a List (python/mmstore/_snapshot.py, ListSnapshot): a mmstore::List::Snapshot of the handle's list.
// Opening and reads take no lock (containers/snapshot.hpp); elements are copied out at the instant, then
// decoded as the handle decodes them (decoding may run Python code: it never touches the mapping).
// docs/design.md, "Snapshots of a List".
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "handles.hpp"
#include "mmstore/containers/snapshot.hpp"

namespace mmstore::py {

namespace {

struct PyListSnap {
    nb::object owner;
    std::optional<mmstore::List::Snapshot> s;
    enum State { kNew, kOpen, kClosed } state = kNew;
};

ListHandle* handle(const PyListSnap& p) {
    ListHandle* h = open_handle<ListHandle>(p.owner.ptr(), "List");
    if (!h) throw nb::python_error();
    return h;
}

mmstore::List::Snapshot& active(PyListSnap& p) { return snap_active(p); }
PyListSnap* snap_of(PyObject* self) { return snap_inst<PyListSnap>(self); }

// A new list of the decoded encodings, or nullptr with an error set.
PyObject* decode_all(ListHandle* h, const std::vector<std::string>& encs, std::size_t step = 1) {
    const std::size_t n = encs.empty() ? 0 : (encs.size() - 1) / step + 1;
    PyObject* out = PyList_New(static_cast<Py_ssize_t>(n));
    if (out == nullptr) return nullptr;
    for (std::size_t i = 0; i < n; ++i) {
        const std::string& e = encs[i * step];
        PyObject* v = decode(e.data(), e.size(), h->flags);
        if (v == nullptr) {
            Py_DECREF(out);
            return nullptr;
        }
        PyList_SET_ITEM(out, static_cast<Py_ssize_t>(i), v);
    }
    return out;
}

// s[i] (negative i counts from the end of the instant) and s[a:b:c] (a list).
PyObject* lsnap_subscript(PyObject* self, PyObject* key) {
    PyListSnap* p = snap_of(self);
    if (!p) return nullptr;
    try {
        auto& s = active(*p);
        ListHandle* h = handle(*p);
        const auto n = static_cast<Py_ssize_t>(s.size());
        if (PySlice_Check(key)) {
            Py_ssize_t start, stop, step;
            if (PySlice_Unpack(key, &start, &stop, &step) < 0) return nullptr;
            const Py_ssize_t len = PySlice_AdjustIndices(n, &start, &stop, step);
            if (len == 0) return PyList_New(0);
            if (step < 0) {  // read the covered range once, then pick from its end
                const Py_ssize_t lo = start + (len - 1) * step;
                std::vector<std::string> encs = s.range_encoded(static_cast<std::uint64_t>(lo), static_cast<std::uint64_t>(start) + 1);
                std::vector<std::string> picked;
                picked.reserve(static_cast<std::size_t>(len));
                for (Py_ssize_t i = 0; i < len; ++i) picked.push_back(std::move(encs[static_cast<std::size_t>(start - lo + i * step)]));
                return decode_all(h, picked);
            }
            const std::vector<std::string> encs = s.range_encoded(static_cast<std::uint64_t>(start),
                                                                  static_cast<std::uint64_t>(start + (len - 1) * step + 1));
            return decode_all(h, encs, static_cast<std::size_t>(step));
        }
        Py_ssize_t i = PyNumber_AsSsize_t(key, PyExc_IndexError);
        if (i == -1 && PyErr_Occurred()) {
            if (!PyIndex_Check(key)) {
                PyErr_Clear();
                PyErr_Format(PyExc_TypeError, "list indices must be integers or slices, not %.200s", Py_TYPE(key)->tp_name);
            }
            return nullptr;
        }
        if (i < 0) i += n;
        if (i < 0 || i >= n) {
            PyErr_SetString(PyExc_IndexError, "list index out of range");
            return nullptr;
        }
        // Fast path (no write recorded since the snapshot opened): the handle's own lock-free read, decoded in
        // place. Valid at the instant when the version table was still absent after it, as for a Dict's
        // snapshot (containers::has_versions): every write that changes a position below the snapshot's
        // length records first. (Past the live end, or after an error, with a write recorded meanwhile: the
        // chains decide.)
        auto& store = h->obj->store();
        if (!containers::has_versions(store)) {
            bool end = false;
            PyObject* v = list_read_live(h, static_cast<std::uint64_t>(i), &end);
            if (!containers::has_versions(store)) {
                if (v != nullptr || !end) return v;
            } else if (v == nullptr && !end) {
                PyErr_Clear();
            }
            Py_XDECREF(v);
        }
        const std::string e = s.get_encoded(static_cast<std::uint64_t>(i));
        return decode(e.data(), e.size(), h->flags);
    } catch (nb::python_error& e) {
        e.restore();
        return nullptr;
    } catch (...) {
        set_error_from_exception();
        return nullptr;
    }
}

Py_ssize_t lsnap_length(PyObject* self) {
    PyListSnap* p = snap_of(self);
    if (!p) return -1;
    try {
        return static_cast<Py_ssize_t>(active(*p).size());
    } catch (...) {
        set_error_from_exception();
        return -1;
    }
}

PyType_Slot lsnap_slots[] = {
    {Py_mp_subscript, reinterpret_cast<void*>(lsnap_subscript)},
    {Py_mp_length, reinterpret_cast<void*>(lsnap_length)},
    {Py_sq_length, reinterpret_cast<void*>(lsnap_length)},
    {0, nullptr},
};

}  // namespace

void bind_list_snapshot(nb::module_& m) {
    nb::class_<PyListSnap>(m, "_ListSnapshot", nb::type_slots(lsnap_slots))
        .def("__init__", [](PyListSnap* self, nb::handle owner) { new (self) PyListSnap{nb::borrow(owner)}; },
             nb::arg("owner"))
        .def("__enter__",
             [](nb::handle self) {
                 PyListSnap& p = *nb::inst_ptr<PyListSnap>(self);
                 if (p.state != PyListSnap::kNew) throw std::runtime_error("this snapshot was already entered; call snapshot() again");
                 p.s.emplace(handle(p)->obj->snapshot());
                 p.state = PyListSnap::kOpen;
                 return nb::borrow(self);
             })
        .def("__exit__",
             [](PyListSnap& p, nb::handle, nb::handle, nb::handle) {
                 if (p.s) p.s->close();
                 p.state = PyListSnap::kClosed;
                 return false;
             },
             nb::arg("exc_type").none(), nb::arg("exc").none(), nb::arg("tb").none())
        .def("close",
             [](PyListSnap& p) {
                 if (p.s) p.s->close();
                 p.state = PyListSnap::kClosed;
             })
        // Elements [start, stop) of the instant (clamped to its length), decoded: the batches of iteration.
        .def("_range",
             [](PyListSnap& p, std::uint64_t start, std::uint64_t stop) {
                 auto& s = active(p);
                 ListHandle* h = handle(p);
                 const std::vector<std::uint64_t> words = s.range_words(start, stop);
                 auto& store = h->obj->store();
                 nb::object out = nb::steal(PyList_New(static_cast<Py_ssize_t>(words.size())));
                 if (!out.is_valid()) throw nb::python_error();
                 for (std::size_t i = 0; i < words.size(); ++i) {
                     // Decoded in place: the record stays put while the snapshot is open (List::Snapshot::
                     // range_words). Decoding may run Python code, which may close the snapshot or its List:
                     // both are checked again before each element.
                     active(p);
                     containers::WordBuf b;
                     const std::string_view e = store.view(&words[i], b);
                     PyObject* v = decode(e.data(), e.size(), h->flags);
                     if (v == nullptr) throw nb::python_error();
                     PyList_SET_ITEM(out.ptr(), static_cast<Py_ssize_t>(i), v);
                 }
                 return out;
             },
             nb::arg("start"), nb::arg("stop"))
        .def_prop_ro("version", [](PyListSnap& p) { return active(p).version(); })
        .def_prop_ro("_owner", [](PyListSnap& p) { return p.owner; })
        .def_prop_ro("active", [](PyListSnap& p) { return p.state == PyListSnap::kOpen && p.s && p.s->is_open(); });
    m.def("_list_snapshot_version_keys", [](nb::handle owner) {
        ListHandle* h = open_handle<ListHandle>(owner.ptr(), "List");
        if (!h) throw nb::python_error();
        return containers::version_keys(h->obj->store());
    });
}

}  // namespace mmstore::py
