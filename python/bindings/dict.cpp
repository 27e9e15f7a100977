// python/bindings/dict.cpp -- mmstore._core._Dict: the native base of mmstore.Dict.
#include <nanobind/stl/string.h>

#include "handles.hpp"
#include "mmstore/storage/checksum.hpp"

namespace mmstore::py {

namespace {

using containers::kNotFound;

// Looks `key` up; returns the entry position or kNotFound; -2 (as uint64) with an error set on failure.
constexpr std::uint64_t kFailed = ~std::uint64_t{0} - 1;

inline DictHandle* open_handle(PyObject* self) { return mmstore::py::open_handle<DictHandle>(self, "Dict"); }

std::uint64_t lookup(DictHandle* h, PyObject* key, EncBuf& kb, std::uint64_t* hash_out = nullptr) {
    if (!encode_into(key, kb, h->flags, true)) return kFailed;
    const std::uint64_t hv = hash64(kb.sv.data(), kb.sv.size());
    if (hash_out) *hash_out = hv;
    try {
        h->obj->store().check_open();
        return h->obj->table().find(kb.sv, hv);
    } catch (...) {
        set_error_from_exception();
        return kFailed;
    }
}

PyObject* value_at(DictHandle* h, std::uint64_t pos) {
    if (!still_open(h)) return nullptr;
    return decode_word(h->obj->store(), h->obj->table().value_word_ptr(pos), h->flags);
}

PyObject* key_at(DictHandle* h, std::uint64_t pos) {
    if (!still_open(h)) return nullptr;
    return decode_word(h->obj->store(), h->obj->table().key_word_ptr(pos), h->flags);
}

void set_key_error(PyObject* key) {
    PyObject* t = PyTuple_Pack(1, key);
    if (t) {
        PyErr_SetObject(PyExc_KeyError, t);
        Py_DECREF(t);
    }
}

PyObject* dict_subscript(PyObject* self, PyObject* key) {
    DictHandle* h = open_handle(self);
    if (!h) return nullptr;
    EncBuf kb;
    const std::uint64_t pos = lookup(h, key, kb);
    if (pos == kFailed) return nullptr;
    if (pos == kNotFound) {
        set_key_error(key);
        return nullptr;
    }
    return value_at(h, pos);
}

// Stores `value` under the already-encoded key `kb`.
int store_value(DictHandle* h, const EncBuf& kb, std::uint64_t hash, PyObject* value) {
    EncBuf vb;
    if (!encode_into(value, vb, h->flags, false)) return -1;
    try {
        h->obj->store().check_writable();
        h->obj->table().set(kb.sv, hash, vb.sv);
        h->obj->store().after_mutation();
        return 0;
    } catch (...) {
        set_error_from_exception();
        return -1;
    }
}

int dict_ass_subscript(PyObject* self, PyObject* key, PyObject* value) {
    DictHandle* h = open_handle(self);
    if (!h) return -1;
    EncBuf kb;
    if (!encode_into(key, kb, h->flags, true)) return -1;
    const std::uint64_t hv = hash64(kb.sv.data(), kb.sv.size());
    if (value != nullptr) return store_value(h, kb, hv, value);
    try {
        h->obj->store().check_writable();
        if (!h->obj->table().erase(kb.sv, hv)) {
            set_key_error(key);
            return -1;
        }
        h->obj->store().after_mutation();
        return 0;
    } catch (...) {
        set_error_from_exception();
        return -1;
    }
}

int dict_contains(PyObject* self, PyObject* key) {
    DictHandle* h = open_handle(self);
    if (!h) return -1;
    EncBuf kb;
    const std::uint64_t pos = lookup(h, key, kb);
    if (pos == kFailed) return -1;  // as dict: an unhashable key raises TypeError
    return pos != kNotFound;
}

Py_ssize_t dict_length(PyObject* self) {
    DictHandle* h = open_handle(self);
    if (!h) return -1;
    return static_cast<Py_ssize_t>(h->obj->table().size());
}

// ---- iteration ---------------------------------------------------------------------------------------

enum class IterKind : int { kKeys = 0, kValues = 1, kItems = 2 };

struct DictIter {
    PyObject_HEAD
    PyObject* owner;
    std::uint64_t pos;
    std::uint64_t mutations;
    int kind;
};

PyTypeObject* g_dict_iter_type = nullptr;

PyObject* dict_iter_next(PyObject* self) {
    auto* it = reinterpret_cast<DictIter*>(self);
    if (it->owner == nullptr) return nullptr;
    DictHandle* h = open_handle(it->owner);
    if (!h) return nullptr;
    auto& table = h->obj->table();
    if (h->obj->store().mutations() != it->mutations) {
        PyErr_SetString(PyExc_RuntimeError, "mmstore.Dict changed size during iteration");
        return nullptr;
    }
    const std::uint64_t end = table.end();
    while (it->pos < end && !table.occupied(it->pos)) ++it->pos;
    if (it->pos >= end) {
        Py_CLEAR(it->owner);
        return nullptr;
    }
    const std::uint64_t p = it->pos++;
    switch (static_cast<IterKind>(it->kind)) {
        case IterKind::kKeys: return key_at(h, p);
        case IterKind::kValues: return value_at(h, p);
        case IterKind::kItems: {
            PyObject* k = key_at(h, p);
            if (!k) return nullptr;
            if (!still_open(h) || h->obj->store().mutations() != it->mutations) {  // changed while k decoded
                Py_DECREF(k);
                if (!PyErr_Occurred()) PyErr_SetString(PyExc_RuntimeError, "mmstore.Dict changed size during iteration");
                return nullptr;
            }
            PyObject* v = value_at(h, p);
            if (!v) {
                Py_DECREF(k);
                return nullptr;
            }
            return steal_pair(k, v);
        }
    }
    return nullptr;
}

PyObject* make_iter(PyObject* self, IterKind kind) {
    DictHandle* h = open_handle(self);
    if (!h) return nullptr;
    auto* it = PyObject_New(DictIter, g_dict_iter_type);
    if (!it) return nullptr;
    Py_INCREF(self);
    it->owner = self;
    it->pos = 0;
    it->mutations = h->obj->store().mutations();
    it->kind = static_cast<int>(kind);
    return reinterpret_cast<PyObject*>(it);
}

PyObject* dict_iter(PyObject* self) { return make_iter(self, IterKind::kKeys); }

PyType_Slot dict_iter_slots[] = {
    {Py_tp_dealloc, reinterpret_cast<void*>(iter_dealloc<DictIter>)},
    {Py_tp_iter, reinterpret_cast<void*>(PyObject_SelfIter)},
    {Py_tp_iternext, reinterpret_cast<void*>(dict_iter_next)},
    {0, nullptr},
};
PyType_Spec dict_iter_spec = {"mmstore._core.DictIterator", sizeof(DictIter), 0, Py_TPFLAGS_DEFAULT, dict_iter_slots};

// ---- methods with raw calling conventions (hot) --------------------------------------------------------

bool one_or_two_args(const char* name, Py_ssize_t nargs) {
    if (nargs >= 1 && nargs <= 2) return true;
    PyErr_Format(PyExc_TypeError, "%s expected 1 or 2 arguments, got %zd", name, nargs);
    return false;
}

// Erases the entry at `pos`; false with an error set on failure.
bool erase_entry(DictHandle* h, std::uint64_t pos) {
    try {
        h->obj->store().check_writable();
        h->obj->table().erase_at(pos);
        h->obj->store().after_mutation();
        return true;
    } catch (...) {
        set_error_from_exception();
        return false;
    }
}

PyObject* dict_get(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    if (!one_or_two_args("get", nargs)) return nullptr;
    DictHandle* h = open_handle(self);
    if (!h) return nullptr;
    EncBuf kb;
    const std::uint64_t pos = lookup(h, args[0], kb);
    if (pos == kFailed) return nullptr;
    if (pos == kNotFound) {
        PyObject* d = nargs == 2 ? args[1] : Py_None;
        Py_INCREF(d);
        return d;
    }
    return value_at(h, pos);
}

PyObject* dict_setdefault(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    if (!one_or_two_args("setdefault", nargs)) return nullptr;
    DictHandle* h = open_handle(self);
    if (!h) return nullptr;
    std::uint64_t hv = 0;
    EncBuf kb;
    const std::uint64_t pos = lookup(h, args[0], kb, &hv);
    if (pos == kFailed) return nullptr;
    if (pos != kNotFound) return value_at(h, pos);
    PyObject* d = nargs == 2 ? args[1] : Py_None;
    if (store_value(h, kb, hv, d) != 0) return nullptr;
    Py_INCREF(d);
    return d;
}

PyObject* dict_pop(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    if (!one_or_two_args("pop", nargs)) return nullptr;
    DictHandle* h = open_handle(self);
    if (!h) return nullptr;
    for (;;) {
        EncBuf kb;
        const std::uint64_t pos = lookup(h, args[0], kb);
        if (pos == kFailed) return nullptr;
        if (pos == kNotFound) {
            if (nargs == 2) {
                Py_INCREF(args[1]);
                return args[1];
            }
            set_key_error(args[0]);
            return nullptr;
        }
        const std::uint64_t mutations = h->obj->store().mutations();
        PyObject* v = value_at(h, pos);
        if (!v) return nullptr;
        if (!still_open(h)) {
            Py_DECREF(v);
            return nullptr;
        }
        if (h->obj->store().mutations() != mutations) {  // another thread changed the keys mid-decode
            Py_DECREF(v);
            continue;
        }
        if (!erase_entry(h, pos)) {
            Py_DECREF(v);
            return nullptr;
        }
        return v;
    }
}

PyObject* dict_popitem(PyObject* self, PyObject*) {
    DictHandle* h = open_handle(self);
    if (!h) return nullptr;
    for (;;) {
        if (!still_open(h)) return nullptr;
        const std::uint64_t pos = h->obj->table().last();
        if (pos == kNotFound) {
            PyErr_SetString(PyExc_KeyError, "popitem(): dictionary is empty");
            return nullptr;
        }
        const std::uint64_t mutations = h->obj->store().mutations();
        PyObject* k = key_at(h, pos);
        if (!k) return nullptr;
        PyObject* v = value_at(h, pos);
        if (!v) {
            Py_DECREF(k);
            return nullptr;
        }
        if (!still_open(h) || h->obj->store().mutations() != mutations) {
            Py_DECREF(k);
            Py_DECREF(v);
            if (PyErr_Occurred()) return nullptr;
            continue;  // another thread changed the keys mid-decode: pick the last item again
        }
        if (!erase_entry(h, pos)) {
            Py_DECREF(k);
            Py_DECREF(v);
            return nullptr;
        }
        return steal_pair(k, v);
    }
}

// _update_from(iterable_of_pairs_or_dict): the loop of update() in C.
PyObject* dict_update_from(PyObject* self, PyObject* src) {
    DictHandle* h = open_handle(self);
    if (!h) return nullptr;
    if (PyDict_CheckExact(src)) {
        try {
            h->obj->store().check_writable();
            h->obj->table().reserve(h->obj->table().size() + static_cast<std::uint64_t>(PyDict_GET_SIZE(src)));
        } catch (...) {
            set_error_from_exception();
            return nullptr;
        }
        Py_ssize_t p = 0;
        PyObject *k, *v;
        while (PyDict_Next(src, &p, &k, &v)) {
            EncBuf kb;
            if (!encode_into(k, kb, h->flags, true)) return nullptr;
            if (store_value(h, kb, hash64(kb.sv.data(), kb.sv.size()), v) != 0) return nullptr;
        }
        Py_RETURN_NONE;
    }
    PyObject* it = PyObject_GetIter(src);
    if (!it) return nullptr;
    Py_ssize_t index = 0;
    while (PyObject* item = PyIter_Next(it)) {
        PyObject* fast = PySequence_Fast(item, "");
        Py_DECREF(item);
        if (!fast || PySequence_Fast_GET_SIZE(fast) != 2) {
            Py_XDECREF(fast);
            Py_DECREF(it);
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "dictionary update sequence element #%zd has length other than 2", index);
            return nullptr;
        }
        PyObject* k = PySequence_Fast_GET_ITEM(fast, 0);
        PyObject* v = PySequence_Fast_GET_ITEM(fast, 1);
        EncBuf kb;
        const bool ok = encode_into(k, kb, h->flags, true) &&
                        store_value(h, kb, hash64(kb.sv.data(), kb.sv.size()), v) == 0;
        Py_DECREF(fast);
        if (!ok) {
            Py_DECREF(it);
            return nullptr;
        }
        ++index;
    }
    Py_DECREF(it);
    if (PyErr_Occurred()) return nullptr;
    Py_RETURN_NONE;
}

PyObject* dict_iter_kind(PyObject* self, PyObject* arg) {
    const long k = PyLong_AsLong(arg);
    if (k < 0 || k > 2) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "kind must be 0, 1 or 2");
        return nullptr;
    }
    return make_iter(self, static_cast<IterKind>(k));
}

PyMethodDef dict_methods[] = {
    {"get", reinterpret_cast<PyCFunction>(reinterpret_cast<void*>(dict_get)), METH_FASTCALL,
     "get(key, default=None, /)\n--\n\nReturn the value for key if present, else default."},
    {"setdefault", reinterpret_cast<PyCFunction>(reinterpret_cast<void*>(dict_setdefault)), METH_FASTCALL,
     "setdefault(key, default=None, /)\n--\n\nReturn d[key], inserting default first if key is absent."},
    {"pop", reinterpret_cast<PyCFunction>(reinterpret_cast<void*>(dict_pop)), METH_FASTCALL,
     "pop(key, default=<unset>, /)\n--\n\nRemove key and return its value (or default; KeyError without one)."},
    {"popitem", dict_popitem, METH_NOARGS, "Remove and return the last inserted (key, value) pair (LIFO)."},
    {"_update_from", dict_update_from, METH_O, "Insert from a dict or an iterable of pairs (update()'s loop)."},
    {"_iter", dict_iter_kind, METH_O, "Iterator over keys (0), values (1) or items (2) in insertion order."},
    {nullptr, nullptr, 0, nullptr},
};

PyType_Slot dict_slots[] = {
    {Py_tp_getset, reinterpret_cast<void*>(handle_getset<DictHandle>)},
    {Py_mp_subscript, reinterpret_cast<void*>(dict_subscript)},
    {Py_mp_ass_subscript, reinterpret_cast<void*>(dict_ass_subscript)},
    {Py_mp_length, reinterpret_cast<void*>(dict_length)},
    {Py_sq_contains, reinterpret_cast<void*>(dict_contains)},
    {Py_tp_iter, reinterpret_cast<void*>(dict_iter)},
    {Py_tp_methods, reinterpret_cast<void*>(dict_methods)},
    {0, nullptr},
};

}  // namespace

mmstore::OpenOptions make_options(nb::handle create, unsigned mode, bool durable, bool readonly) {
    mmstore::OpenOptions o;
    if (create.is_none()) o.create = mmstore::OpenOptions::Create::kIfMissing;
    else o.create = nb::cast<bool>(create) ? mmstore::OpenOptions::Create::kAlways : mmstore::OpenOptions::Create::kNever;
    if (mode > 0777) throw mmstore::Error(ErrorCode::kInvalidArgument, "", "mode must be a permission mask like 0o600");
    o.mode = mode;
    o.durable = durable;
    o.readonly = readonly;
    return o;
}

void bind_dict(nb::module_& m) {
    g_dict_iter_type = reinterpret_cast<PyTypeObject*>(PyType_FromSpec(&dict_iter_spec));
    if (!g_dict_iter_type) throw nb::python_error();
    m.attr("DictIterator") = nb::handle(reinterpret_cast<PyObject*>(g_dict_iter_type));

    nb::class_<DictHandle> cls(m, "_Dict", nb::type_slots(dict_slots), nb::is_weak_referenceable());
    bind_handle_common(cls);
    cls.def("_mutations", [](DictHandle& h) { return checked(h).obj->store().mutations(); });
}

nb::dict stats_dict(const mmstore::Stats& s) {
    nb::dict d;
    d["entries"] = s.entries;
    d["file_bytes"] = s.file_bytes;
    d["allocated_bytes"] = s.allocated_bytes;
    d["arena_top"] = s.arena_top;
    d["free_bytes"] = s.free_bytes;
    d["capacity"] = s.capacity;
    return d;
}

}  // namespace mmstore::py
