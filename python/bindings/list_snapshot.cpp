// python/bindings/list_snapshot.cpp -- mmstore._core._ListSnapshot, the native side of `with l.snapshot() as
// s:` on a List (python/mmstore/_snapshot.py, ListSnapshot): a mmstore::List::Snapshot of the handle's list.
// Opening and reads take no lock (containers/snapshot.hpp); elements are copied out at the instant, then
// decoded as the handle decodes them (decoding may run Python code: it never touches the mapping).
// docs/design.md, "Snapshots of a List".
#include <algorithm>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "handles.hpp"
#include "mmstore/containers/snapshot.hpp"
#include "recycle.hpp"

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

// ---- iteration ---------------------------------------------------------------------------------------
//
// iter(s): reads the instant's words in batches of kIterBatch (List::Snapshot::range_words, one read of the
// page chains per batch) and decodes each word when it is handed out, an int or short ASCII str into a
// recycled object when only the iterator still holds the last one (recycle.hpp), as the List's own iterator
// does. An inline word of a native kind needs nothing but itself; any other word is decoded from the
// mapping (its record stays put while the snapshot is open), so the snapshot must still be open then:
// closing it while iterating raises at the next such element (or the next batch), never reads freed space.

constexpr std::uint64_t kIterBatch = 256;

struct LSnapIter {
    PyObject_HEAD
    PyObject* owner;                      // the _ListSnapshot (strong); cleared at the end
    std::uint64_t pos, end;               // next position; the instant's length when iteration began
    std::vector<std::uint64_t>* words;    // the current batch
    std::size_t head;
    bool verifying;                       // the handle checks words (OpenOptions::verify)
    Recycler recycler;
};

PyTypeObject* g_lsnap_iter_type = nullptr;

void lsnap_iter_dealloc(PyObject* self) {
    auto* it = reinterpret_cast<LSnapIter*>(self);
    delete it->words;
    it->recycler.clear();
    iter_dealloc<LSnapIter>(self);
}

PyObject* lsnap_iter_next(PyObject* self) {
    auto* it = reinterpret_cast<LSnapIter*>(self);
    if (it->owner == nullptr) return nullptr;
    try {
        if (it->head == it->words->size()) {
            if (it->pos >= it->end) {
                Py_CLEAR(it->owner);
                return nullptr;
            }
            PyListSnap* p = snap_of(it->owner);
            if (!p) return nullptr;
            auto& s = active(*p);
            it->verifying = handle(*p)->obj->store().verifying();
            *it->words = s.range_words(it->pos, std::min(it->pos + kIterBatch, it->end));
            it->head = 0;
            if (it->words->empty()) {  // the instant is shorter than its size said: cannot happen; end cleanly
                Py_CLEAR(it->owner);
                return nullptr;
            }
        }
        std::uint64_t w = (*it->words)[it->head++];
        ++it->pos;
        if (recyclable(w, it->verifying)) [[likely]] return it->recycler.decode(w);
        PyListSnap* p = snap_of(it->owner);
        if (!p) return nullptr;
        active(*p);  // decoding an earlier element ran Python code, which may have closed the snapshot
        ListHandle* h = handle(*p);
        containers::WordBuf b;
        const std::string_view e = h->obj->store().view(&w, b);
        return decode(e.data(), e.size(), h->flags);
    } catch (nb::python_error& e) {
        e.restore();
        return nullptr;
    } catch (...) {
        set_error_from_exception();
        return nullptr;
    }
}

PyType_Slot lsnap_iter_slots[] = {
    {Py_tp_dealloc, reinterpret_cast<void*>(lsnap_iter_dealloc)},
    {Py_tp_iter, reinterpret_cast<void*>(PyObject_SelfIter)},
    {Py_tp_iternext, reinterpret_cast<void*>(lsnap_iter_next)},
    {0, nullptr},
};
PyType_Spec lsnap_iter_spec = {"mmstore._core.ListSnapshotIterator", sizeof(LSnapIter), 0, Py_TPFLAGS_DEFAULT,
                               lsnap_iter_slots};

// iter(s): checks the snapshot is open (and reads its length) now, as iter(list) would fail at once.
PyObject* lsnap_iter(PyObject* self) {
    PyListSnap* p = snap_of(self);
    if (!p) return nullptr;
    std::uint64_t n = 0;
    try {
        n = active(*p).size();
    } catch (...) {
        set_error_from_exception();
        return nullptr;
    }
    auto* it = PyObject_New(LSnapIter, g_lsnap_iter_type);
    if (!it) return nullptr;
    it->owner = nullptr;
    it->recycler.init();
    it->pos = 0;
    it->end = n;
    it->head = 0;
    it->verifying = true;
    it->words = new (std::nothrow) std::vector<std::uint64_t>();
    if (it->words == nullptr) {
        Py_DECREF(it);
        return PyErr_NoMemory();
    }
    Py_INCREF(self);
    it->owner = self;
    return reinterpret_cast<PyObject*>(it);
}

PyType_Slot lsnap_slots[] = {
    {Py_tp_iter, reinterpret_cast<void*>(lsnap_iter)},
    {Py_mp_subscript, reinterpret_cast<void*>(lsnap_subscript)},
    {Py_mp_length, reinterpret_cast<void*>(lsnap_length)},
    {Py_sq_length, reinterpret_cast<void*>(lsnap_length)},
    {0, nullptr},
};

}  // namespace

void bind_list_snapshot(nb::module_& m) {
    g_lsnap_iter_type = reinterpret_cast<PyTypeObject*>(PyType_FromSpec(&lsnap_iter_spec));
    if (g_lsnap_iter_type == nullptr) throw nb::python_error();
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
