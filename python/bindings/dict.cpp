// python/bindings/dict.cpp -- mmstore._core._Dict: the native base of mmstore.Dict and mmstore.SharedDict.
//
// Reads are lock-free (decode_snapshot: read, copy, validate, retry); writes hold the store's process-
// shared lock for their duration (PyWriteLock). Values are encoded before the lock is taken, so no Python
// code runs under it except where a value must be decoded atomically with a write (pop, setdefault,
// increment, compare_and_set).
#include <nanobind/stl/string.h>

#include <vector>

#include "handles.hpp"
#include "mmstore/storage/checksum.hpp"

namespace mmstore::py {

namespace {

using containers::kNotFound;
using containers::kTombWord;

inline DictHandle* open_handle(PyObject* self) { return mmstore::py::open_handle<DictHandle>(self, "Dict"); }

void set_key_error(PyObject* key) {
    PyObject* t = PyTuple_Pack(1, key);
    if (t) {
        PyErr_SetObject(PyExc_KeyError, t);
        Py_DECREF(t);
    }
}

std::uint64_t load_word(const std::uint64_t* p) noexcept { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }

// Looks up the encoded key and decodes its value without taking the lock. kOk with *out == nullptr: the key
// is absent.
Got read_value(DictHandle* h, std::string_view key, std::uint64_t hv, PyObject** out) {
    auto& store = h->obj->store();
    auto& table = h->obj->table();
    for (;;) {
        std::uint64_t snap = 0;
        bool started = false;
        std::uint64_t pos;
        try {
            store.check_open();
            if (store.batch_active()) [[unlikely]] store.wait_batch();
            snap = store.read_begin();
            started = true;
            pos = table.find(key, hv);
        } catch (const FormatError&) {
            // Damage seen by a read that raced a writer (or growth not mapped yet) is read again.
            if (started && (!store.read_valid(snap) || store.grown_since(snap))) continue;
            return got_error();
        } catch (...) {
            return got_error();
        }
        if (pos == kNotFound) {
            if (!store.read_valid(snap)) continue;
            *out = nullptr;
            return Got::kOk;
        }
        const Got g = decode_snapshot(store, load_word(table.value_word_ptr(pos)), h->flags, snap, out);
        if (g != Got::kRetry) return g;
    }
}

PyObject* dict_subscript(PyObject* self, PyObject* key) {
    DictHandle* h = open_handle(self);
    if (!h) return nullptr;
    EncBuf kb;
    if (!encode_into(key, kb, h->flags, true)) return nullptr;
    PyObject* v;
    if (read_value(h, kb.sv, hash64(kb.sv.data(), kb.sv.size()), &v) == Got::kError) return nullptr;
    if (v == nullptr) set_key_error(key);
    return v;
}

// Stores the encoded value under the encoded key, holding the lock. 0, or -1 with an error set.
int store_encoded(DictHandle* h, std::string_view key, std::uint64_t hash, std::string_view value) {
    PyWriteLock lock(h->obj->store());
    if (!lock.ok()) return -1;
    try {
        h->obj->table().set(key, hash, value);
        h->obj->store().after_mutation();
        return 0;
    } catch (...) {
        set_error_from_exception();
        return -1;
    }
}

int store_value(DictHandle* h, const EncBuf& kb, std::uint64_t hash, PyObject* value) {
    EncBuf vb;
    if (!encode_into(value, vb, h->flags, false)) return -1;
    return store_encoded(h, kb.sv, hash, vb.sv);
}

int dict_ass_subscript(PyObject* self, PyObject* key, PyObject* value) {
    DictHandle* h = open_handle(self);
    if (!h) return -1;
    EncBuf kb;
    if (!encode_into(key, kb, h->flags, true)) return -1;
    const std::uint64_t hv = hash64(kb.sv.data(), kb.sv.size());
    if (value != nullptr) return store_value(h, kb, hv, value);
    PyWriteLock lock(h->obj->store());
    if (!lock.ok()) return -1;
    try {
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
    if (!encode_into(key, kb, h->flags, true)) return -1;  // as dict: an unhashable key raises TypeError
    const std::uint64_t hv = hash64(kb.sv.data(), kb.sv.size());
    try {
        return h->obj->store().read([&] { return h->obj->table().find(kb.sv, hv) != kNotFound; }) ? 1 : 0;
    } catch (...) {
        set_error_from_exception();
        return -1;
    }
}

Py_ssize_t dict_length(PyObject* self) {
    DictHandle* h = open_handle(self);
    if (!h) return -1;
    try {
        return static_cast<Py_ssize_t>(h->obj->store().read([&] { return h->obj->table().size(); }));
    } catch (...) {
        set_error_from_exception();
        return -1;
    }
}

// Under the lock: the value at `pos` decoded (nullptr with an error set on failure). Nothing else can
// change the entry while the lock is held, so no validation is needed.
PyObject* decode_locked(DictHandle* h, const std::uint64_t* slot) {
    try {
        containers::WordBuf buf;
        const std::string enc(h->obj->store().view(slot, buf));  // a copy: decoding may run Python code
        return decode(enc.data(), enc.size(), h->flags);
    } catch (...) {
        set_error_from_exception();
        return nullptr;
    }
}

// ---- iteration ---------------------------------------------------------------------------------------
//
// Iterators walk entry positions in insertion order without a lock. A change made through this handle to
// the key set raises RuntimeError (as dict does); other processes' changes are ridden out: when the table
// was rebuilt (root moved), the walk resumes after the last key it returned, found in the new table. Keys
// present throughout are returned exactly once; keys added or removed meanwhile may or may not be.

enum class IterKind : int { kKeys = 0, kValues = 1, kItems = 2 };

struct DictIter {
    PyObject_HEAD
    PyObject* owner;
    std::uint64_t pos;
    std::uint64_t mutations;  // the handle's local_mutations() at creation
    std::uint64_t root;       // table block being walked
    std::string* last_key;    // encoding of the last key returned (to resume after a rebuild)
    int kind;
};

PyTypeObject* g_dict_iter_type = nullptr;

void dict_iter_dealloc(PyObject* self) {
    delete reinterpret_cast<DictIter*>(self)->last_key;
    iter_dealloc<DictIter>(self);
}

PyObject* dict_iter_next(PyObject* self) {
    auto* it = reinterpret_cast<DictIter*>(self);
    if (it->owner == nullptr) return nullptr;
    DictHandle* h = open_handle(it->owner);
    if (!h) return nullptr;
    auto& store = h->obj->store();
    auto& table = h->obj->table();
    for (;;) {
        if (!still_open(h)) return nullptr;
        if (store.local_mutations() != it->mutations) {
            PyErr_SetString(PyExc_RuntimeError, "mmstore.Dict changed size during iteration");
            return nullptr;
        }
        std::uint64_t snap = 0, kw, vw, pos;
        bool started = false;
        try {
            store.check_open();
            if (store.batch_active()) [[unlikely]] store.wait_batch();
            snap = store.read_begin();
            started = true;
            const std::uint64_t root = table.root();
            if (root != it->root) {
                if (it->pos > 0) {
                    const std::uint64_t p = table.find(*it->last_key);
                    if (p == kNotFound) {
                        if (!store.read_valid(snap)) continue;
                        PyErr_SetString(PyExc_RuntimeError,
                                        "mmstore.Dict changed during iteration: another process deleted the key the "
                                        "iterator stood on while rebuilding the table");
                        return nullptr;
                    }
                    if (!store.read_valid(snap)) continue;
                    it->pos = p + 1;
                }
                it->root = root;
            }
            const std::uint64_t end = table.end();
            pos = it->pos;
            while (pos < end && load_word(table.key_word_ptr(pos)) == kTombWord) ++pos;
            if (pos >= end) {
                if (!store.read_valid(snap)) continue;
                Py_CLEAR(it->owner);
                return nullptr;
            }
            kw = load_word(table.key_word_ptr(pos));
            vw = load_word(table.value_word_ptr(pos));
            containers::WordBuf kb;
            std::uint64_t kcopy = kw;
            it->last_key->assign(store.view(&kcopy, kb));
        } catch (const FormatError&) {
            if (started && (!store.read_valid(snap) || store.grown_since(snap))) continue;
            set_error_from_exception();
            return nullptr;
        } catch (...) {
            set_error_from_exception();
            return nullptr;
        }
        PyObject* k = nullptr;
        PyObject* v = nullptr;
        const auto kind = static_cast<IterKind>(it->kind);
        Got g = Got::kOk;
        if (kind != IterKind::kValues) g = decode_snapshot(store, kw, h->flags, snap, &k);
        if (g == Got::kOk && kind != IterKind::kKeys) {
            g = decode_snapshot(store, vw, h->flags, snap, &v);
            if (g != Got::kOk) Py_CLEAR(k);
        }
        if (g == Got::kRetry) continue;
        if (g == Got::kError) return nullptr;
        it->pos = pos + 1;
        switch (kind) {
            case IterKind::kKeys: return k;
            case IterKind::kValues: return v;
            case IterKind::kItems: return steal_pair(k, v);
        }
        return nullptr;
    }
}

PyObject* make_iter(PyObject* self, IterKind kind) {
    DictHandle* h = open_handle(self);
    if (!h) return nullptr;
    auto* it = PyObject_New(DictIter, g_dict_iter_type);
    if (!it) return nullptr;
    Py_INCREF(self);
    it->owner = self;
    it->pos = 0;
    it->mutations = h->obj->store().local_mutations();
    it->root = h->obj->table().root();
    it->last_key = new std::string();
    it->kind = static_cast<int>(kind);
    return reinterpret_cast<PyObject*>(it);
}

PyObject* dict_iter(PyObject* self) { return make_iter(self, IterKind::kKeys); }

PyType_Slot dict_iter_slots[] = {
    {Py_tp_dealloc, reinterpret_cast<void*>(dict_iter_dealloc)},
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

PyObject* dict_get(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    if (!one_or_two_args("get", nargs)) return nullptr;
    DictHandle* h = open_handle(self);
    if (!h) return nullptr;
    EncBuf kb;
    if (!encode_into(args[0], kb, h->flags, true)) return nullptr;
    PyObject* v;
    if (read_value(h, kb.sv, hash64(kb.sv.data(), kb.sv.size()), &v) == Got::kError) return nullptr;
    if (v == nullptr) {
        v = nargs == 2 ? args[1] : Py_None;
        Py_INCREF(v);
    }
    return v;
}

// setdefault is atomic: the lookup and the insert happen under one hold of the lock.
PyObject* dict_setdefault(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    if (!one_or_two_args("setdefault", nargs)) return nullptr;
    DictHandle* h = open_handle(self);
    if (!h) return nullptr;
    EncBuf kb, vb;
    PyObject* d = nargs == 2 ? args[1] : Py_None;
    if (!encode_into(args[0], kb, h->flags, true) || !encode_into(d, vb, h->flags, false)) return nullptr;
    const std::uint64_t hv = hash64(kb.sv.data(), kb.sv.size());
    PyWriteLock lock(h->obj->store());
    if (!lock.ok()) return nullptr;
    try {
        const std::uint64_t pos = h->obj->table().find(kb.sv, hv);
        if (pos != kNotFound) return decode_locked(h, h->obj->table().value_word_ptr(pos));
        h->obj->table().set(kb.sv, hv, vb.sv);
        h->obj->store().after_mutation();
    } catch (...) {
        set_error_from_exception();
        return nullptr;
    }
    Py_INCREF(d);
    return d;
}

// Erases the entry at `pos` (lock held); false with an error set on failure.
bool erase_entry(DictHandle* h, std::uint64_t pos) {
    try {
        h->obj->table().erase_at(pos);
        h->obj->store().after_mutation();
        return true;
    } catch (...) {
        set_error_from_exception();
        return false;
    }
}

PyObject* dict_pop(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    if (!one_or_two_args("pop", nargs)) return nullptr;
    DictHandle* h = open_handle(self);
    if (!h) return nullptr;
    EncBuf kb;
    if (!encode_into(args[0], kb, h->flags, true)) return nullptr;
    PyWriteLock lock(h->obj->store());
    if (!lock.ok()) return nullptr;
    std::uint64_t pos;
    try {
        pos = h->obj->table().find(kb.sv, hash64(kb.sv.data(), kb.sv.size()));
    } catch (...) {
        set_error_from_exception();
        return nullptr;
    }
    if (pos == kNotFound) {
        if (nargs == 2) {
            Py_INCREF(args[1]);
            return args[1];
        }
        set_key_error(args[0]);
        return nullptr;
    }
    PyObject* v = decode_locked(h, h->obj->table().value_word_ptr(pos));  // first: a value that cannot be
    if (!v) return nullptr;                                              // decoded is not removed
    if (!erase_entry(h, pos)) {
        Py_DECREF(v);
        return nullptr;
    }
    return v;
}

PyObject* dict_popitem(PyObject* self, PyObject*) {
    DictHandle* h = open_handle(self);
    if (!h) return nullptr;
    PyWriteLock lock(h->obj->store());
    if (!lock.ok()) return nullptr;
    const std::uint64_t pos = h->obj->table().last();
    if (pos == kNotFound) {
        PyErr_SetString(PyExc_KeyError, "popitem(): dictionary is empty");
        return nullptr;
    }
    PyObject* k = decode_locked(h, h->obj->table().key_word_ptr(pos));
    if (!k) return nullptr;
    PyObject* v = decode_locked(h, h->obj->table().value_word_ptr(pos));
    if (!v) {
        Py_DECREF(k);
        return nullptr;
    }
    if (!erase_entry(h, pos)) {
        Py_DECREF(k);
        Py_DECREF(v);
        return nullptr;
    }
    return steal_pair(k, v);
}

// Encodes (key, value) pairs from a dict or an iterable of pairs into `out` (keys and values alternate).
bool encode_pairs(DictHandle* h, PyObject* src, std::vector<std::string>& out) {
    auto add = [&](PyObject* k, PyObject* v) {
        EncBuf kb, vb;
        if (!encode_into(k, kb, h->flags, true) || !encode_into(v, vb, h->flags, false)) return false;
        out.emplace_back(kb.sv);
        out.emplace_back(vb.sv);
        return true;
    };
    if (PyDict_Check(src)) {
        Py_ssize_t p = 0;
        PyObject *k, *v;
        while (PyDict_Next(src, &p, &k, &v))
            if (!add(k, v)) return false;
        return true;
    }
    PyObject* it = PyObject_GetIter(src);
    if (!it) return false;
    Py_ssize_t index = 0;
    while (PyObject* item = PyIter_Next(it)) {
        PyObject* fast = PySequence_Fast(item, "");
        Py_DECREF(item);
        if (!fast || PySequence_Fast_GET_SIZE(fast) != 2) {
            Py_XDECREF(fast);
            Py_DECREF(it);
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "dictionary update sequence element #%zd has length other than 2", index);
            return false;
        }
        const bool ok = add(PySequence_Fast_GET_ITEM(fast, 0), PySequence_Fast_GET_ITEM(fast, 1));
        Py_DECREF(fast);
        if (!ok) {
            Py_DECREF(it);
            return false;
        }
        ++index;
    }
    Py_DECREF(it);
    return !PyErr_Occurred();
}

// _update_from(iterable_of_pairs_or_dict): update()'s loop in C; each pair is its own atomic write.
PyObject* dict_update_from(PyObject* self, PyObject* src) {
    DictHandle* h = open_handle(self);
    if (!h) return nullptr;
    if (PyDict_CheckExact(src)) {
        {
            PyWriteLock lock(h->obj->store());
            if (!lock.ok()) return nullptr;
            try {
                h->obj->table().reserve(h->obj->table().size() + static_cast<std::uint64_t>(PyDict_GET_SIZE(src)));
            } catch (...) {
                set_error_from_exception();
                return nullptr;
            }
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

// update_many(pairs): every pair lands in one hold of the lock, inside a batch that lock-free readers wait
// out, so no reader sees some of the pairs without the others. Space is reserved first, so a full disk
// fails before anything changed.
PyObject* dict_update_many(PyObject* self, PyObject* src) {
    DictHandle* h = open_handle(self);
    if (!h) return nullptr;
    std::vector<std::string> enc;
    if (!encode_pairs(h, src, enc)) return nullptr;
    PyWriteLock lock(h->obj->store());
    if (!lock.ok()) return nullptr;
    auto& store = h->obj->store();
    auto& table = h->obj->table();
    try {
        std::uint64_t bytes = 0;
        for (const auto& e : enc) bytes += alloc::block_size(sizeof(containers::RecordHeader) + e.size());
        table.reserve(table.size() + enc.size() / 2);
        store.region().grow(store.arena().top() + bytes + alloc::kChunkSize);
        store.begin_batch();
        try {
            for (std::size_t i = 0; i < enc.size(); i += 2) table.set(enc[i], enc[i + 1]);
        } catch (...) {
            store.end_batch();
            throw;
        }
        store.end_batch();
        store.after_mutation();
    } catch (...) {
        set_error_from_exception();
        return nullptr;
    }
    Py_RETURN_NONE;
}

// increment(key, delta=1, default=0): the read, the addition and the write under one hold of the lock.
// Inline ints add in C; anything else goes through the number protocol (so floats, Decimals, ... work).
PyObject* dict_increment(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "increment(key, delta=1, default=0)");
        return nullptr;
    }
    DictHandle* h = open_handle(self);
    if (!h) return nullptr;
    PyObject* delta = nargs >= 2 ? args[1] : nullptr;
    PyObject* dflt = nargs >= 3 ? args[2] : nullptr;
    long long d_fast = 1;
    bool fast_delta = delta == nullptr;
    if (delta != nullptr && PyLong_CheckExact(delta)) {
        int overflow = 0;
        d_fast = PyLong_AsLongLongAndOverflow(delta, &overflow);
        fast_delta = !overflow && d_fast > -(1LL << 40) && d_fast < (1LL << 40);
        if (d_fast == -1 && PyErr_Occurred()) return nullptr;
    }
    EncBuf kb;
    if (!encode_into(args[0], kb, h->flags, true)) return nullptr;
    const std::uint64_t hv = hash64(kb.sv.data(), kb.sv.size());
    PyWriteLock lock(h->obj->store());
    if (!lock.ok()) return nullptr;
    auto& table = h->obj->table();
    try {
        const std::uint64_t pos = table.find(kb.sv, hv);
        if (pos != kNotFound && fast_delta) {
            const std::uint64_t w = *table.value_word_ptr(pos);
            if (containers::is_inline(w) && containers::inline_kind(w) == containers::InlineKind::kInt &&
                containers::inline_len(w) <= 6) {
                const std::size_t n = containers::inline_len(w);
                const int shift = 64 - 8 * static_cast<int>(n);
                const long long old = n == 0 ? 0 : static_cast<std::int64_t>(w << shift) >> shift;
                const long long now = old + d_fast;  // |old| < 2^47, |delta| < 2^40: no overflow
                PyObject* r = PyLong_FromLongLong(now);
                if (!r) return nullptr;
                EncBuf vb;
                fast_encode(r, vb);
                table.assign_at(pos, vb.sv);
                h->obj->store().after_mutation();
                return r;
            }
        }
        PyObject* old;
        if (pos != kNotFound) {
            old = decode_locked(h, table.value_word_ptr(pos));
            if (!old) return nullptr;
        } else {
            old = dflt ? dflt : PyLong_FromLong(0);
            if (dflt) Py_INCREF(old);
            if (!old) return nullptr;
        }
        PyObject* one = nullptr;
        if (delta == nullptr) one = PyLong_FromLong(1);
        PyObject* r = PyNumber_Add(old, delta ? delta : one);
        Py_XDECREF(one);
        Py_DECREF(old);
        if (!r) return nullptr;
        EncBuf vb;
        if (!encode_into(r, vb, h->flags, false)) {
            Py_DECREF(r);
            return nullptr;
        }
        if (pos != kNotFound) table.assign_at(pos, vb.sv);
        else table.set(kb.sv, hv, vb.sv);
        h->obj->store().after_mutation();
        return r;
    } catch (...) {
        set_error_from_exception();
        return nullptr;
    }
}

// compare_and_set(key, expected, new): stores `new` only when the key is present and its value == expected
// (Python equality), all under one hold of the lock. Returns whether it stored.
PyObject* dict_compare_and_set(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "compare_and_set(key, expected, new)");
        return nullptr;
    }
    DictHandle* h = open_handle(self);
    if (!h) return nullptr;
    EncBuf kb, vb;
    if (!encode_into(args[0], kb, h->flags, true) || !encode_into(args[2], vb, h->flags, false)) return nullptr;
    PyWriteLock lock(h->obj->store());
    if (!lock.ok()) return nullptr;
    auto& table = h->obj->table();
    try {
        const std::uint64_t pos = table.find(kb.sv, hash64(kb.sv.data(), kb.sv.size()));
        if (pos == kNotFound) Py_RETURN_FALSE;
        PyObject* cur = decode_locked(h, table.value_word_ptr(pos));
        if (!cur) return nullptr;
        const int eq = PyObject_RichCompareBool(cur, args[1], Py_EQ);
        Py_DECREF(cur);
        if (eq < 0) return nullptr;
        if (eq == 0) Py_RETURN_FALSE;
        if (!h->obj->store().usable()) return nullptr;  // closed from Python code run by __eq__
        table.assign_at(pos, vb.sv);
        h->obj->store().after_mutation();
        Py_RETURN_TRUE;
    } catch (...) {
        set_error_from_exception();
        return nullptr;
    }
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
     "setdefault(key, default=None, /)\n--\n\nReturn d[key], inserting default first if key is absent (atomic)."},
    {"pop", reinterpret_cast<PyCFunction>(reinterpret_cast<void*>(dict_pop)), METH_FASTCALL,
     "pop(key, default=<unset>, /)\n--\n\nRemove key and return its value (or default; KeyError without one)."},
    {"popitem", dict_popitem, METH_NOARGS, "Remove and return the last inserted (key, value) pair (LIFO)."},
    {"increment", reinterpret_cast<PyCFunction>(reinterpret_cast<void*>(dict_increment)), METH_FASTCALL,
     "increment(key, delta=1, default=0, /)\n--\n\nAtomically set d[key] = d.get(key, default) + delta; return it."},
    {"compare_and_set", reinterpret_cast<PyCFunction>(reinterpret_cast<void*>(dict_compare_and_set)), METH_FASTCALL,
     "compare_and_set(key, expected, new, /)\n--\n\nAtomically store new if d[key] == expected; return whether it did."},
    {"_update_from", dict_update_from, METH_O, "Insert from a dict or an iterable of pairs (update()'s loop)."},
    {"_update_many", dict_update_many, METH_O, "Insert every pair as one atomic step."},
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
    cls.def(
        "reserve",
        [](DictHandle& h, std::uint64_t n) {
            auto& store = checked(h).obj->store();
            containers::Store::WriteGuard g(store);
            h.obj->table().reserve(n);
        },
        nb::arg("n"), "Make room for n keys without further table rebuilds.");
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
