// python/bindings/snapshot.cpp -- mmstore._core._Snapshot, the native side of `with d.snapshot() as s:`
// (python/mmstore/_snapshot.py): a mmstore::Dict::Snapshot of a Dict or SharedDict handle's main table.
// Opening and reads take no lock (containers/snapshot.hpp); values are decoded as the handle decodes them,
// except a nested dict (SharedDict), which comes back as a snapshot of that dict at the same instant: an
// object of the same type whose `s` is a nested view of the snapshot (Dict::Snapshot::nested), open while
// the snapshot it came from is. docs/design.md, "Transactions and snapshots".
#include <algorithm>
#include <cstring>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <unordered_set>
#include <vector>

#include "handles.hpp"
#include "mmstore/containers/snapshot.hpp"
#include "dict_walk.hpp"
#include "recycle.hpp"

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

// ---- iteration ---------------------------------------------------------------------------------------
//
// iter(s), s._iter(kind): the instant's keys, values or items, one at a time.
// * Fast walk, while no write was recorded since the snapshot opened (containers::has_versions false, as
//   for snap_read's fast path): the live table is the instant, so the walk is the plain Dict iterator's
//   (TableWalk, dict.cpp), each entry trusted once has_versions is still false after it was read and decoded.
//   It notes each key it hands out (8 bytes for an inline key, its encoding and 4 for a record: KeyLog,
//   in process memory).
// * Otherwise, from the start or from the first entry that saw a recorded write: the instant's items as the
//   snapshot collects them (Dict::Snapshot::items(), O(len) once), skipping the keys the fast walk handed out.
// Nested dicts' snapshots (cell != 0) take the second way throughout. Keys and values that are inline ints
// or short strs come out of recycled objects (recycle.hpp).

// The keys a fast walk handed out, in chunks (one growing buffer would be copied at each doubling and, past
// malloc's mmap threshold, faulted in afresh by every walk): inline keys as their words (which are their
// encodings, packed), record keys as their encodings, each after its u32 length.
class KeyLog {
public:
    void add_word(std::uint64_t w) {
        if (words_.empty() || wused_ == kWords) {
            words_.emplace_back(new std::uint64_t[kWords]);
            wused_ = 0;
        }
        words_.back()[wused_++] = w;
    }
    void add(std::string_view k) {
        const auto n = static_cast<std::uint32_t>(k.size());
        if (bytes_.empty() || bused_ + sizeof n + n > bcap_) {
            bcap_ = std::max<std::size_t>(kBytes, sizeof n + n);
            bytes_.emplace_back(new char[bcap_], 0);
            bused_ = 0;
        }
        char* at = bytes_.back().first.get() + bused_;
        std::memcpy(at, &n, sizeof n);
        std::memcpy(at + sizeof n, k.data(), n);
        bused_ += sizeof n + n;
        bytes_.back().second = bused_;
    }
    // f(encoding) for every key noted.
    template <class F>
    void for_each(const containers::Store& store, F&& f) const {
        for (std::size_t c = 0; c < words_.size(); ++c) {
            const std::size_t n = c + 1 == words_.size() ? wused_ : kWords;
            for (std::size_t i = 0; i < n; ++i) {
                std::uint64_t w = words_[c][i];
                containers::WordBuf b;
                f(store.view(&w, b));
            }
        }
        for (const auto& [c, size] : bytes_) {
            for (std::size_t at = 0; at < size;) {
                std::uint32_t n;
                std::memcpy(&n, c.get() + at, sizeof n);
                f(std::string_view(c.get() + at + sizeof n, n));
                at += sizeof n + n;
            }
        }
    }
    std::size_t size_hint() const { return words_.size() * kWords + bytes_.size() * (kBytes / 16); }

private:
    static constexpr std::size_t kWords = 8192;      // 64 KiB a chunk
    static constexpr std::size_t kBytes = 64 * 1024;
    std::vector<std::unique_ptr<std::uint64_t[]>> words_;
    std::size_t wused_ = 0;                                                  // in the last word chunk
    std::vector<std::pair<std::unique_ptr<char[]>, std::size_t>> bytes_;    // each chunk and the bytes used
    std::size_t bused_ = 0, bcap_ = 0;                                       // of the last one
};

struct SnapIter {
    PyObject_HEAD
    PyObject* owner;  // the _Snapshot (strong); cleared at the end
    PySnap* p;        // owner's state and its Dict's handle: both live as long as owner
    DictHandle* h;
    int kind;
    bool fast;
    TableWalk* walk;
    KeyLog* took;                            // fast walk: the keys handed out
    std::unordered_set<std::string>* skip;   // items(): the keys the fast walk handed out
    std::size_t at;                          // items(): the next one
    Recycler keys, values;
};

PyTypeObject* g_snap_iter_type = nullptr;

void snap_iter_dealloc(PyObject* self) {
    auto* it = reinterpret_cast<SnapIter*>(self);
    it->keys.clear();
    it->values.clear();
    delete it->walk;
    delete it->took;
    delete it->skip;
    iter_dealloc<SnapIter>(self);
}

// Leaves the fast walk: what it handed out becomes the set the items() pass skips.
void snap_iter_fall_back(SnapIter* it, const containers::Store& store) {
    it->fast = false;
    it->at = 0;
    auto* skip = new std::unordered_set<std::string>();
    skip->reserve(it->took->size_hint());
    it->took->for_each(store, [&](std::string_view k) { skip->emplace(k); });
    delete it->took;
    it->took = nullptr;
    it->skip = skip;
}

// A new reference to the object of a key or value encoding from items(), through `r` when it is a native
// inline one; values through snap_decode (a nested dict becomes a snapshot of it).
PyObject* snap_iter_decode(PyObject* owner, PySnap& p, DictHandle* h, const std::string& enc, Recycler& r, bool key) {
    const std::uint64_t w = containers::inline_word(enc);
    if (w != 0 && native_inline(w)) return r.decode(w);
    return key ? decode(enc.data(), enc.size(), h->flags) : snap_decode(owner, p, h, enc);
}

PyObject* snap_iter_next(PyObject* self) {
    auto* it = reinterpret_cast<SnapIter*>(self);
    if (it->owner == nullptr) return nullptr;
    const auto kind = static_cast<IterKind>(it->kind);
    try {
        PySnap* p = it->p;
        // Open: its state (close() and the `with` block's end set it), and its Dict's handle, which closing the
        // Dict closes with every snapshot of it; active() and handle() raise the precise error otherwise.
        DictHandle* h = it->h;
        if (p->state != PySnap::kOpen || !it->fast || !h->obj || !h->obj->is_open()) [[unlikely]] {
            active(*p);
            h = handle(*p);
        }
        auto& store = h->obj->store();
        while (it->fast) {
            WalkEntry e;
            const WalkStep step = walk_entry(h, *it->walk, e);
            if (step == WalkStep::kRetry) continue;
            if (step != WalkStep::kEntry) {
                if (containers::has_versions(store)) {  // the live table moved on: the items decide
                    PyErr_Clear();
                    snap_iter_fall_back(it, store);
                    break;
                }
                if (step == WalkStep::kError) return nullptr;
                Py_CLEAR(it->owner);
                return nullptr;
            }
            PyObject *k = nullptr, *v = nullptr;
            Got g;
            if (kind != IterKind::kKeys && containers::is_table_ref(e.vw)) {
                // A nested dict: a snapshot of it at the instant, from its encoding (the word itself); the key
                // only for items().
                g = kind == IterKind::kItems ? walk_decode(h, it->owner, e, IterKind::kKeys, it->keys, it->values, &k, &v)
                                             : Got::kOk;
                if (g == Got::kOk) {
                    std::uint64_t copy = e.vw;
                    containers::WordBuf b;
                    v = snap_decode(it->owner, *p, h, store.view(&copy, b));
                    if (v == nullptr) {
                        Py_CLEAR(k);
                        g = Got::kError;
                    }
                }
            } else {
                g = walk_decode(h, it->owner, e, kind, it->keys, it->values, &k, &v);
            }
            if (containers::has_versions(store)) {  // what was read may be newer than the instant
                Py_XDECREF(k);
                Py_XDECREF(v);
                PyErr_Clear();
                snap_iter_fall_back(it, store);
                break;
            }
            if (g == Got::kRetry) continue;
            if (g == Got::kError) return nullptr;
            walk_took(store, *it->walk, e);
            if (containers::is_inline(e.kw)) it->took->add_word(e.kw);
            else it->took->add(it->walk->last_key);
            return walk_result(kind, k, v);
        }
        const auto& items = active(*p).items();  // the instant's, collected once by the snapshot
        while (it->at < items.size()) {
            // Copies: decoding may run Python code, which may close the snapshot and free its items.
            const std::string k_enc = items[it->at].first;
            const std::string v_enc = kind != IterKind::kKeys ? items[it->at].second : std::string();
            ++it->at;
            if (it->skip != nullptr && it->skip->count(k_enc) != 0) continue;
            PyObject *k = nullptr, *v = nullptr;
            if (kind != IterKind::kValues && (k = snap_iter_decode(it->owner, *p, h, k_enc, it->keys, true)) == nullptr)
                return nullptr;
            if (kind != IterKind::kKeys && (v = snap_iter_decode(it->owner, *p, h, v_enc, it->values, false)) == nullptr) {
                Py_XDECREF(k);
                return nullptr;
            }
            return walk_result(kind, k, v);
        }
        Py_CLEAR(it->owner);
        return nullptr;
    } catch (nb::python_error& e) {
        e.restore();
        return nullptr;
    } catch (...) {
        set_error_from_exception();
        return nullptr;
    }
}

PyType_Slot snap_iter_slots[] = {
    {Py_tp_dealloc, reinterpret_cast<void*>(snap_iter_dealloc)},
    {Py_tp_iter, reinterpret_cast<void*>(PyObject_SelfIter)},
    {Py_tp_iternext, reinterpret_cast<void*>(snap_iter_next)},
    {0, nullptr},
};
PyType_Spec snap_iter_spec = {"mmstore._core.SnapshotIterator", sizeof(SnapIter), 0, Py_TPFLAGS_DEFAULT, snap_iter_slots};

PyObject* make_snap_iter(PyObject* self, IterKind kind) {
    PySnap* p = snap_of(self);
    if (!p) return nullptr;
    DictHandle* h = nullptr;
    try {
        active(*p);  // iter(s) of a closed snapshot fails at once
        h = handle(*p);
    } catch (nb::python_error& e) {
        e.restore();
        return nullptr;
    } catch (...) {
        set_error_from_exception();
        return nullptr;
    }
    auto* it = PyObject_New(SnapIter, g_snap_iter_type);
    if (!it) return nullptr;
    it->owner = nullptr;
    it->p = p;
    it->h = h;
    it->kind = static_cast<int>(kind);
    it->fast = p->cell == 0;
    it->walk = nullptr;
    it->took = nullptr;
    it->skip = nullptr;
    it->at = 0;
    it->keys.init();
    it->values.init();
    it->walk = new (std::nothrow) TableWalk{0, h->obj->table().root()};
    it->took = new (std::nothrow) KeyLog();
    if (!it->walk || !it->took) {
        Py_DECREF(it);
        return PyErr_NoMemory();
    }
    Py_INCREF(self);
    it->owner = self;
    return reinterpret_cast<PyObject*>(it);
}

PyObject* snap_iter(PyObject* self) { return make_snap_iter(self, IterKind::kKeys); }

PyObject* snap_iter_kind(PyObject* self, PyObject* arg) {
    const long k = PyLong_AsLong(arg);
    if (k == -1 && PyErr_Occurred()) return nullptr;
    if (k < 0 || k > 2) {
        PyErr_SetString(PyExc_ValueError, "_iter: kind must be 0 (keys), 1 (values) or 2 (items)");
        return nullptr;
    }
    return make_snap_iter(self, static_cast<IterKind>(k));
}

PyMethodDef snap_methods[] = {
    {"_iter", reinterpret_cast<PyCFunction>(reinterpret_cast<void*>(snap_iter_kind)), METH_O,
     "_iter($self, kind, /)\n--\n\nAn iterator over the instant's keys (0), values (1) or items (2)."},
    {"get", reinterpret_cast<PyCFunction>(reinterpret_cast<void*>(snap_get)), METH_FASTCALL,
     "get($self, key, default=None, /)\n--\n\nReturn the value of key at the snapshot's instant, else default."},
    {nullptr, nullptr, 0, nullptr},
};

PyType_Slot snap_slots[] = {
    {Py_mp_subscript, reinterpret_cast<void*>(snap_subscript)},
    {Py_mp_length, reinterpret_cast<void*>(snap_length)},
    {Py_sq_contains, reinterpret_cast<void*>(snap_contains)},
    {Py_tp_iter, reinterpret_cast<void*>(snap_iter)},
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
    g_snap_iter_type = reinterpret_cast<PyTypeObject*>(PyType_FromSpec(&snap_iter_spec));
    if (g_snap_iter_type == nullptr) throw nb::python_error();
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
