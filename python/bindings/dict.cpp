// python/bindings/dict.cpp -- mmstore._core._Dict: the native base of mmstore.Dict and mmstore.SharedDict.
//
// Reads are lock-free (decode_snapshot: read, copy, validate, retry); writes hold the store's process-
// shared lock for their duration (PyWriteLock). Values are encoded before the lock is taken, so no Python
// code runs under it except where a value must be decoded atomically with a write (pop, setdefault,
// increment, compare_and_set).
#include <nanobind/stl/string.h>

#include <optional>
#include <vector>

#include "handles.hpp"
#include "dict_walk.hpp"
#include "recycle.hpp"
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

// ---- nested tables (SharedDict recurse=True; containers/hash_table.hpp, "nested tables") --------------
//
// A nested table is addressed by (cell, id): cell 0 is the handle's own table; otherwise the child whose
// cell still carries `id`. Python sees a child as mmstore.NestedDict(owner, cell, id), a live view.

PyObject* g_nested_type = nullptr;  // mmstore._shared.NestedDict, registered by _set_nested_type

using containers::HashTable;
std::uint64_t cell_id(const containers::Store& store, std::uint64_t cell) { return HashTable::cell_id(store, cell); }

PyObject* make_nested(PyObject* owner, std::uint64_t cell, std::uint64_t id) {
    if (g_nested_type == nullptr) {
        PyErr_SetString(PyExc_RuntimeError, "mmstore.NestedDict is not registered");
        return nullptr;
    }
    return PyObject_CallFunction(g_nested_type, "OKK", owner, static_cast<unsigned long long>(cell),
                                 static_cast<unsigned long long>(id));
}

// Decodes a value word read after `snap`: a nested-table reference as a NestedDict view of `owner`, anything
// else through decode_snapshot.
Got decode_value(DictHandle* h, PyObject* owner, std::uint64_t w, std::uint64_t snap, PyObject** out,
                 const std::uint64_t* slot) {
    auto& store = h->obj->store();
    if (!containers::is_table_ref(w)) [[likely]] return decode_snapshot(store, w, h->flags, snap, out, slot);
    if (store.verifying() && !containers::word_intact(w)) {
        if (!store.read_valid(snap)) return Got::kRetry;
        try {
            store.throw_bad_word(w, slot);
        } catch (...) {
            set_error_from_exception();
        }
        return Got::kError;
    }
    const std::uint64_t child = containers::table_ref_cell(w);
    const std::uint64_t child_id = cell_id(store, child);
    if (!store.read_valid(snap)) return Got::kRetry;
    *out = make_nested(owner, child, child_id);
    return *out ? Got::kOk : Got::kError;
}

void set_gone_error() {
    PyErr_SetString(PyExc_KeyError, "this nested dict no longer exists: its entry was replaced or deleted");
}

// Looks up the encoded key in the table (cell, id) and decodes its value without taking the lock. kOk with
// *out == nullptr: the key is absent. A nested table value comes back as a NestedDict view.
Got read_value(DictHandle* h, PyObject* owner, std::uint64_t cell, std::uint64_t id, std::string_view key,
               std::uint64_t hv, PyObject** out, bool for_write = false) {
    auto& store = h->obj->store();
    for (;;) {
        std::uint64_t snap = 0;
        bool started = false;
        std::uint64_t pos, w = 0;
        const std::uint64_t* slot = nullptr;
        containers::HashTable table = cell == 0 ? h->obj->table() : containers::HashTable(&store, cell);
        try {
            store.check_open();
            snap = store.read_begin();
            started = true;
            if (cell != 0 && cell_id(store, cell) != id) {
                if (!store.read_valid(snap)) continue;
                set_gone_error();
                return Got::kError;
            }
            // One validated snapshot for the lookup and the value: another process may switch tables.
            const containers::HashTable::Snapshot t = table.checked();
            pos = table.find_in(t, key, hv);
            if (pos != kNotFound) {
                slot = &containers::HashTable::entries_of(t)[pos].value;
                w = load_word(slot);
                if (for_write) os::prefetch_for_write(slot);
            }
        } catch (const FormatError&) {
            // Damage seen by a read that raced a writer (or growth not mapped yet) is read again.
            if (started && store.raced(snap)) continue;
            return got_error();
        } catch (...) {
            return got_error();
        }
        if (pos == kNotFound) {
            if (!store.read_valid(snap)) continue;
            *out = nullptr;
            return Got::kOk;
        }
        const Got g = decode_value(h, owner, w, snap, out, slot);
        if (g != Got::kRetry) return g;
    }
}

PyObject* dict_subscript(PyObject* self, PyObject* key) {
    DictHandle* h = open_handle(self);
    if (!h) return nullptr;
    EncBuf kb;
    if (!encode_into(key, kb, h->flags, true)) return nullptr;
    PyObject* v;
    if (read_value(h, self, 0, 0, kb.sv, hash64(kb.sv.data(), kb.sv.size()), &v) == Got::kError) return nullptr;
    if (v == nullptr) set_key_error(key);
    return v;
}

bool is_nested_source(DictHandle* h, PyObject* value) {
    return h->recurse && (PyDict_Check(value) || (g_nested_type && PyObject_TypeCheck(value, reinterpret_cast<PyTypeObject*>(g_nested_type))));
}

// Lock held: builds a child table holding the items of `src` (a dict or a NestedDict; dict values nest
// further) and returns the encoding of a reference to it. On failure nothing stays allocated.
bool build_nested(DictHandle* h, containers::HashTable& parent, PyObject* src, std::string& ref, int depth) {
    if (depth > containers::kMaxNesting) {
        PyErr_SetString(PyExc_RecursionError, "nested dicts deeper than 64 levels");
        return false;
    }
    PyObject* items = PyDict_Check(src) ? PyDict_Items(src) : PyMapping_Items(src);
    if (!items) return false;
    std::string enc;
    try {
        enc = parent.create_child();
    } catch (...) {
        Py_DECREF(items);
        set_error_from_exception();
        return false;
    }
    containers::HashTable child = parent.child(containers::inline_word(enc));
    bool ok = true;
    for (Py_ssize_t i = 0; ok && i < PyList_GET_SIZE(items); ++i) {
        PyObject* k = PyTuple_GET_ITEM(PyList_GET_ITEM(items, i), 0);
        PyObject* v = PyTuple_GET_ITEM(PyList_GET_ITEM(items, i), 1);
        EncBuf kb, vb;
        std::string sub;
        if (!encode_into(k, kb, h->flags, true)) {
            ok = false;
        } else if (is_nested_source(h, v)) {
            ok = build_nested(h, child, v, sub, depth + 1);
            if (ok) {
                try {
                    child.set(kb.sv, sub);
                } catch (...) {
                    set_error_from_exception();
                    ok = false;
                }
            }
        } else if (!encode_into(v, vb, h->flags, false)) {
            ok = false;
        } else {
            try {
                child.set(kb.sv, vb.sv);
            } catch (...) {
                set_error_from_exception();
                ok = false;
            }
        }
    }
    Py_DECREF(items);
    if (!ok) {
        child.destroy();
        h->obj->store().arena().free(child.cell(), sizeof(containers::CellRecord));
        return false;
    }
    ref = std::move(enc);
    return true;
}

// Lock held: a value as a plain Python object; a nested table is copied out as a dict (used when the
// entry is about to go away, as in pop()).
// Lock held: a word that is not a table reference, decoded from a private copy (decoding may run Python
// code). Nothing else can change it while the lock is held, so no validation is needed.
PyObject* decode_plain_locked(DictHandle* h, std::uint64_t w) {
    try {
        containers::WordBuf buf;
        const std::string enc(h->obj->store().view(&w, buf));
        return decode(enc.data(), enc.size(), h->flags);
    } catch (...) {
        set_error_from_exception();
        return nullptr;
    }
}

PyObject* materialize(DictHandle* h, const containers::HashTable& table, std::uint64_t w, int depth) {
    if (!containers::is_table_ref(w)) return decode_plain_locked(h, w);
    if (depth > containers::kMaxNesting) {
        PyErr_SetString(PyExc_RecursionError, "nested dicts deeper than 64 levels");
        return nullptr;
    }
    PyObject* d = PyDict_New();
    if (!d) return nullptr;
    try {
        const containers::HashTable c = table.child(w);
        c.check_root();
        const auto t = c.checked();  // counters checked: a damaged `used` must not hide entries
        const containers::EntrySlot* ent = containers::HashTable::entries_of(t);
        for (std::uint64_t i = 0; i < t.used; ++i) {
            if (ent[i].key == kTombWord) continue;
            PyObject* k = materialize(h, c, ent[i].key, depth + 1);
            PyObject* v = k ? materialize(h, c, ent[i].value, depth + 1) : nullptr;
            const int rc = v ? PyDict_SetItem(d, k, v) : -1;
            Py_XDECREF(k);
            Py_XDECREF(v);
            if (rc != 0) {
                Py_DECREF(d);
                return nullptr;
            }
        }
    } catch (...) {
        Py_DECREF(d);
        set_error_from_exception();
        return nullptr;
    }
    return d;
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

// Stores `value` under the encoded key in the table (cell, id), nesting dict values when the handle
// recurses. 0, or -1 with an error set.
int store_in(DictHandle* h, std::uint64_t cell, std::uint64_t id, std::string_view key, std::uint64_t hash, PyObject* value) {
    const bool nested = is_nested_source(h, value);
    EncBuf vb;
    if (!nested && !encode_into(value, vb, h->flags, false)) return -1;
    if (!nested && cell == 0) return store_encoded(h, key, hash, vb.sv);
    PyWriteLock lock(h->obj->store());
    if (!lock.ok()) return -1;
    auto& store = h->obj->store();
    containers::HashTable table = cell == 0 ? h->obj->table() : containers::HashTable(&store, cell);
    if (cell != 0 && cell_id(store, cell) != id) {
        set_gone_error();
        return -1;
    }
    std::string ref;
    if (nested && !build_nested(h, table, value, ref, 0)) return -1;
    try {
        table.set(key, hash, nested ? std::string_view(ref) : vb.sv);
        store.after_mutation();
        return 0;
    } catch (...) {
        if (nested) {  // the child was never published: free it
            containers::HashTable c = table.child(containers::inline_word(ref));
            c.destroy();
            store.arena().free(c.cell(), sizeof(containers::CellRecord));
        }
        set_error_from_exception();
        return -1;
    }
}

int store_value(DictHandle* h, const EncBuf& kb, std::uint64_t hash, PyObject* value) {
    return store_in(h, 0, 0, kb.sv, hash, value);
}

int dict_ass_subscript(PyObject* self, PyObject* key, PyObject* value) {
    DictHandle* h = open_handle(self);
    if (!h) return -1;
    EncBuf kb;
    if (!encode_into(key, kb, h->flags, true)) return -1;
    const std::uint64_t hv = hash64(kb.sv.data(), kb.sv.size());
    // The probe's first cache miss overlaps encoding the value and taking the lock (HashTable::prefetch_probe).
    h->obj->table().prefetch_probe(hv);
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
        return static_cast<Py_ssize_t>(h->obj->store().read([&] { return h->obj->table().size_checked(); }));
    } catch (...) {
        set_error_from_exception();
        return -1;
    }
}

// Under the lock: the value in `slot` decoded (nullptr with an error set on failure); a nested table as a
// live NestedDict view of `owner`.
PyObject* decode_locked(DictHandle* h, PyObject* owner, const std::uint64_t* slot) {
    if (!containers::is_table_ref(*slot)) return decode_plain_locked(h, *slot);
    try {
        h->obj->store().check_word(*slot, slot);
    } catch (...) {
        set_error_from_exception();
        return nullptr;
    }
    const std::uint64_t cell = containers::table_ref_cell(*slot);
    return make_nested(owner, cell, cell_id(h->obj->store(), cell));
}

// ---- iteration ---------------------------------------------------------------------------------------
//
// Iterators walk entry positions in insertion order without a lock. A change made through this handle to
// the key set raises RuntimeError (as dict does); other processes' changes are ridden out: when the table
// was rebuilt (root moved), the walk resumes after the last key it returned, found in the new table. Keys
// present throughout are returned exactly once; keys added or removed meanwhile may or may not be.

}  // namespace

WalkStep walk_entry(DictHandle* h, TableWalk& w, WalkEntry& e) {
    auto& store = h->obj->store();
    auto& table = h->obj->table();
    bool started = false;
    try {
        store.check_open();
        e.snap = store.read_begin();
        started = true;
        const std::uint64_t root = table.root();
        if (root != w.root) {
            if (w.pos > 0) {
                std::uint64_t lw = w.last_word;
                containers::WordBuf lb;
                const std::uint64_t p = table.find(lw != 0 ? store.view(&lw, lb) : std::string_view(w.last_key));
                if (!store.read_valid(e.snap)) return WalkStep::kRetry;
                if (p == kNotFound) {
                    PyErr_SetString(PyExc_RuntimeError,
                                    "mmstore.Dict changed during iteration: another process deleted the key the "
                                    "iterator stood on while rebuilding the table");
                    return WalkStep::kError;
                }
                w.pos = p + 1;
            }
            w.root = root;
        }
        const containers::HashTable::Snapshot t = table.checked();  // one table, validated
        const containers::EntrySlot* ent = containers::HashTable::entries_of(t);
        std::uint64_t pos = w.pos;
        while (pos < t.used && load_word(&ent[pos].key) == kTombWord) ++pos;
        if (pos >= t.used) return store.read_valid(e.snap) ? WalkStep::kEnd : WalkStep::kRetry;
        e.pos = pos;
        e.entry = &ent[pos];
        e.kw = load_word(&e.entry->key);
        e.vw = load_word(&e.entry->value);
        return WalkStep::kEntry;
    } catch (const FormatError&) {
        if (started && store.raced(e.snap)) return WalkStep::kRetry;
        set_error_from_exception();
        return WalkStep::kError;
    } catch (...) {
        set_error_from_exception();
        return WalkStep::kError;
    }
}

void walk_took(const containers::Store& store, TableWalk& w, const WalkEntry& e) {
    w.pos = e.pos + 1;
    if (containers::is_inline(e.kw)) {  // the word is the encoding: keep it, build the string only to resume
        w.last_word = e.kw;
    } else {
        containers::WordBuf kb;
        std::uint64_t kcopy = e.kw;
        w.last_key.assign(store.view(&kcopy, kb));
        w.last_word = 0;
    }
}

Got walk_decode(DictHandle* h, PyObject* owner, const WalkEntry& e, IterKind kind, Recycler& keys, Recycler& values,
                PyObject** k, PyObject** v) {
    auto& store = h->obj->store();
    *k = *v = nullptr;
    Got g = Got::kOk;
    const bool verifying = store.verifying();
    if (kind != IterKind::kValues) {
        g = recyclable(e.kw, verifying) ? decode_recycled(keys, store, e.kw, e.snap, k)
                                        : decode_snapshot(store, e.kw, h->flags, e.snap, k, &e.entry->key);
    }
    if (g == Got::kOk && kind != IterKind::kKeys) {
        g = recyclable(e.vw, verifying) ? decode_recycled(values, store, e.vw, e.snap, v)
                                        : decode_value(h, owner, e.vw, e.snap, v, &e.entry->value);
        if (g != Got::kOk) Py_CLEAR(*k);
    }
    return g;
}

PyObject* walk_result(IterKind kind, PyObject* k, PyObject* v) {
    switch (kind) {
        case IterKind::kKeys: return k;
        case IterKind::kValues: return v;
        case IterKind::kItems: return steal_pair(k, v);
    }
    return nullptr;
}

namespace {

// ---- iteration ---------------------------------------------------------------------------------------
//
// Iterators walk entry positions in insertion order without a lock (TableWalk). A change made through this
// handle to the key set raises RuntimeError (as dict does); other processes' changes are ridden out: when the
// table was rebuilt (root moved), the walk resumes after the last key it returned, found in the new table.
// Keys present throughout are returned exactly once; keys added or removed meanwhile may or may not be.

struct DictIter {
    PyObject_HEAD
    PyObject* owner;
    std::uint64_t mutations;  // the handle's local_mutations() at creation
    TableWalk* walk;
    int kind;
    Recycler keys, values;    // recycle.hpp: int and str objects handed out again once only we hold them
};

PyTypeObject* g_dict_iter_type = nullptr;

void dict_iter_dealloc(PyObject* self) {
    auto* it = reinterpret_cast<DictIter*>(self);
    it->keys.clear();
    it->values.clear();
    delete it->walk;
    iter_dealloc<DictIter>(self);
}

PyObject* dict_iter_next(PyObject* self) {
    auto* it = reinterpret_cast<DictIter*>(self);
    if (it->owner == nullptr) return nullptr;
    DictHandle* h = open_handle(it->owner);
    if (!h) return nullptr;
    auto& store = h->obj->store();
    for (;;) {
        if (!still_open(h)) return nullptr;
        if (store.local_mutations() != it->mutations) {
            PyErr_SetString(PyExc_RuntimeError, "mmstore.Dict changed size during iteration");
            return nullptr;
        }
        WalkEntry e;
        switch (walk_entry(h, *it->walk, e)) {
            case WalkStep::kEntry: break;
            case WalkStep::kRetry: continue;
            case WalkStep::kEnd: Py_CLEAR(it->owner); return nullptr;
            case WalkStep::kError: return nullptr;
        }
        const auto kind = static_cast<IterKind>(it->kind);
        PyObject *k, *v;
        const Got g = walk_decode(h, it->owner, e, kind, it->keys, it->values, &k, &v);
        if (g == Got::kRetry) continue;
        if (g == Got::kError) return nullptr;
        walk_took(store, *it->walk, e);  // only now: a retried read must resume before this entry
        return walk_result(kind, k, v);
    }
}

PyObject* make_iter(PyObject* self, IterKind kind) {
    DictHandle* h = open_handle(self);
    if (!h) return nullptr;
    auto* it = PyObject_New(DictIter, g_dict_iter_type);
    if (!it) return nullptr;
    Py_INCREF(self);
    it->owner = self;
    it->mutations = h->obj->store().local_mutations();
    it->kind = static_cast<int>(kind);
    it->keys.init();
    it->values.init();
    it->walk = new (std::nothrow) TableWalk{0, h->obj->table().root()};
    if (it->walk == nullptr) {
        Py_CLEAR(it->owner);
        Py_DECREF(it);
        return PyErr_NoMemory();
    }
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
    if (read_value(h, self, 0, 0, kb.sv, hash64(kb.sv.data(), kb.sv.size()), &v) == Got::kError) return nullptr;
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
        if (pos != kNotFound) return decode_locked(h, self, h->obj->table().value_word_ptr(pos));
        h->obj->table().set(kb.sv, hv, vb.sv);
        h->obj->store().after_mutation();
    } catch (...) {
        set_error_from_exception();
        return nullptr;
    }
    Py_INCREF(d);
    return d;
}

// Lock held, after Python code ran between a lookup and the write that uses its position (__eq__, __add__,
// unpickling): true when that code left the store as it was. Otherwise the position may belong to another
// key or to a freed table, so the operation stops with RuntimeError (as a dict changed during iteration),
// having written nothing; a store that code closed reports ClosedError.
bool unchanged_by_callback(DictHandle* h, std::uint32_t seen, const char* op) {
    if (!still_open(h)) return false;  // closed (or used across fork) by that code: the error is set
    if (h->obj->store().change_count() == seen) return true;
    PyErr_Format(PyExc_RuntimeError,
                 "%s(): Python code it called (__eq__, __add__ or unpickling) changed the store through the same "
                 "handle; nothing was written", op);
    return false;
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
    // Decoded first: a value that cannot be decoded is not removed. A nested table is copied out.
    const std::uint32_t seen = h->obj->store().change_count();
    PyObject* v = materialize(h, h->obj->table(), *h->obj->table().value_word_ptr(pos), 0);
    if (!v) return nullptr;
    if (!unchanged_by_callback(h, seen, "pop") || !erase_entry(h, pos)) {
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
    const std::uint32_t seen = h->obj->store().change_count();
    PyObject* k = materialize(h, h->obj->table(), *h->obj->table().key_word_ptr(pos), 0);
    if (!k) return nullptr;
    PyObject* v = materialize(h, h->obj->table(), *h->obj->table().value_word_ptr(pos), 0);
    if (!v) {
        Py_DECREF(k);
        return nullptr;
    }
    if (!unchanged_by_callback(h, seen, "popitem") || !erase_entry(h, pos)) {
        Py_DECREF(k);
        Py_DECREF(v);
        return nullptr;
    }
    return steal_pair(k, v);
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

// update_many(pairs): all pairs or none, for every reader too, and no reader ever waits: the pairs go into
// a private copy of the table (HashTable::begin_copy) that is switched in with one store. Costs O(len(d)).
// Values are encoded first; with recurse, dict values are built as nested tables inside the copy.
PyObject* dict_update_many(PyObject* self, PyObject* src) {
    DictHandle* h = open_handle(self);
    if (!h) return nullptr;
    std::vector<std::string> enc;                  // key, value, key, value, ... ("" value: nested below)
    std::vector<PyObject*> nested;                 // new references (or nullptr), parallel to the pairs
    auto release_nested = [&] {
        for (PyObject* o : nested) Py_XDECREF(o);
    };
    PyObject* items = PyDict_Check(src) ? PyDict_Items(src) : PySequence_List(src);
    if (!items) return nullptr;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items); ++i) {
        PyObject* pair = PySequence_Fast(PyList_GET_ITEM(items, i), "");
        if (!pair || PySequence_Fast_GET_SIZE(pair) != 2) {
            Py_XDECREF(pair);
            Py_DECREF(items);
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "update_many sequence element #%zd has length other than 2", i);
            return nullptr;
        }
        PyObject* k = PySequence_Fast_GET_ITEM(pair, 0);
        PyObject* v = PySequence_Fast_GET_ITEM(pair, 1);
        EncBuf kb, vb;
        const bool nest = is_nested_source(h, v);
        const bool ok = encode_into(k, kb, h->flags, true) && (nest || encode_into(v, vb, h->flags, false));
        if (ok) {
            enc.emplace_back(kb.sv);
            enc.emplace_back(nest ? std::string_view() : vb.sv);
            Py_XINCREF(nest ? v : nullptr);
            nested.push_back(nest ? v : nullptr);
        }
        Py_DECREF(pair);
        if (!ok) {
            release_nested();
            Py_DECREF(items);
            return nullptr;
        }
    }
    PyObject* result = nullptr;
    {
        PyWriteLock lock(h->obj->store());
        if (lock.ok()) {
            auto& table = h->obj->table();
            std::vector<std::uint64_t> deferred;
            try {
                containers::HashTable copy = table.begin_copy(enc.size() / 2, &deferred);
                bool ok = true;
                try {
                    for (std::size_t i = 0; ok && i < enc.size(); i += 2) {
                        std::string ref;
                        if (nested[i / 2] != nullptr) {
                            ok = build_nested(h, copy, nested[i / 2], ref, 0);
                            if (ok) copy.set(enc[i], ref);
                        } else {
                            copy.set(enc[i], enc[i + 1]);
                        }
                    }
                } catch (...) {
                    table.abandon_copy(copy);  // the published table was never touched
                    throw;
                }
                if (ok) {
                    table.commit_copy(copy);
                    h->obj->store().after_mutation();
                    result = Py_None;
                    Py_INCREF(result);
                } else {
                    table.abandon_copy(copy);
                }
            } catch (...) {
                set_error_from_exception();
            }
        }
    }
    Py_DECREF(items);
    release_nested();
    return result;
}

// Lock held: table[key] = table.get(key, default) + delta, returning the new value. delta and default may be
// nullptr (1 and 0). An inline int plus a small int delta adds in C; anything else goes through the number
// protocol, so floats, Decimals and big ints work too.
PyObject* increment_locked(DictHandle* h, PyObject* self, containers::HashTable& table, PyObject* key, PyObject* delta,
                           PyObject* dflt) {
    long long d_fast = 1;
    bool fast_delta = delta == nullptr;
    if (delta != nullptr && PyLong_CheckExact(delta)) {
        int overflow = 0;
        d_fast = PyLong_AsLongLongAndOverflow(delta, &overflow);
        if (d_fast == -1 && PyErr_Occurred()) return nullptr;
        fast_delta = !overflow && d_fast > -(1LL << 40) && d_fast < (1LL << 40);
    }
    EncBuf kb;
    if (!encode_into(key, kb, h->flags, true)) return nullptr;
    const std::uint64_t hv = hash64(kb.sv.data(), kb.sv.size());
    const std::uint32_t seen = h->obj->store().change_count();
    const std::uint64_t pos = table.find(kb.sv, hv);
    PyObject* r = nullptr;
    const std::uint64_t w = pos != kNotFound ? *table.value_word_ptr(pos) : 0;
    if (pos != kNotFound) h->obj->store().check_word(w, table.value_word_ptr(pos));
    if (pos != kNotFound && fast_delta && containers::is_inline(w) &&
        containers::inline_kind(w) == containers::InlineKind::kInt && containers::inline_len(w) <= containers::kInlineMax) {
        const std::size_t n = containers::inline_len(w);
        const int shift = 64 - 8 * static_cast<int>(n);
        const long long old = n == 0 ? 0 : static_cast<std::int64_t>(w << shift) >> shift;
        r = PyLong_FromLongLong(old + d_fast);  // |old| < 2^47, |delta| < 2^40: no overflow
    } else {
        PyObject* old = pos != kNotFound ? decode_locked(h, self, table.value_word_ptr(pos))
                                         : (dflt ? (Py_INCREF(dflt), dflt) : PyLong_FromLong(0));
        if (!old) return nullptr;
        PyObject* one = delta == nullptr ? PyLong_FromLong(1) : nullptr;
        r = PyNumber_Add(old, delta ? delta : one);
        Py_XDECREF(one);
        Py_DECREF(old);
    }
    if (!r) return nullptr;
    EncBuf vb;
    if (!encode_into(r, vb, h->flags, false) || !unchanged_by_callback(h, seen, "increment")) {
        Py_DECREF(r);
        return nullptr;
    }
    try {
        if (pos != kNotFound) table.assign_at(pos, vb.sv);
        else table.set(kb.sv, hv, vb.sv);
    } catch (...) {
        Py_DECREF(r);
        throw;
    }
    h->obj->store().after_mutation();
    return r;
}

// increment(key, delta=1, default=0): the read, the addition and the write under one hold of the lock.
PyObject* dict_increment(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "increment(key, delta=1, default=0)");
        return nullptr;
    }
    DictHandle* h = open_handle(self);
    if (!h) return nullptr;
    PyWriteLock lock(h->obj->store());
    if (!lock.ok()) return nullptr;
    try {
        return increment_locked(h, self, h->obj->table(), args[0], nargs >= 2 ? args[1] : nullptr,
                                nargs >= 3 ? args[2] : nullptr);
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
        const std::uint32_t seen = h->obj->store().change_count();
        const std::uint64_t pos = table.find(kb.sv, hash64(kb.sv.data(), kb.sv.size()));
        if (pos == kNotFound) Py_RETURN_FALSE;
        PyObject* cur = materialize(h, table, *table.value_word_ptr(pos), 0);
        if (!cur) return nullptr;
        const int eq = PyObject_RichCompareBool(cur, args[1], Py_EQ);
        Py_DECREF(cur);
        if (eq < 0) return nullptr;
        if (eq == 0) Py_RETURN_FALSE;
        if (!unchanged_by_callback(h, seen, "compare_and_set")) return nullptr;
        table.assign_at(pos, vb.sv);
        h->obj->store().after_mutation();
        Py_RETURN_TRUE;
    } catch (...) {
        set_error_from_exception();
        return nullptr;
    }
}

// ---- nested-table methods: _n_*(cell, id, ...) back mmstore.NestedDict -------------------------------

bool parse_target(PyObject* const* args, Py_ssize_t nargs, Py_ssize_t want_min, Py_ssize_t want_max, const char* sig,
                  std::uint64_t& cell, std::uint64_t& id) {
    if (nargs < want_min || nargs > want_max) {
        PyErr_Format(PyExc_TypeError, "%s", sig);
        return false;
    }
    cell = PyLong_AsUnsignedLongLong(args[0]);
    id = PyLong_AsUnsignedLongLong(args[1]);
    return !PyErr_Occurred();
}

// Lock held: the table (cell, id), or nullopt with KeyError set when that child is gone.
std::optional<containers::HashTable> locked_target(DictHandle* h, std::uint64_t cell, std::uint64_t id) {
    auto& store = h->obj->store();
    if (cell == 0) return h->obj->table();
    if (cell_id(store, cell) != id) {
        set_gone_error();
        return std::nullopt;
    }
    containers::HashTable t(&store, cell);
    try {
        t.check_root();
    } catch (...) {
        set_error_from_exception();
        return std::nullopt;
    }
    return t;
}

// The common frame of the writing _n_* methods: parses (cell, id), holds the lock, resolves the table and
// runs f(h, table) -> new reference (nullptr with an error set). C++ exceptions become Python errors.
template <class F>
PyObject* on_locked_target(PyObject* self, PyObject* const* args, Py_ssize_t nargs, Py_ssize_t n, const char* sig, F&& f) {
    std::uint64_t cell, id;
    if (!parse_target(args, nargs, n, n, sig, cell, id)) return nullptr;
    DictHandle* h = open_handle(self);
    if (!h) return nullptr;
    PyWriteLock lock(h->obj->store());
    if (!lock.ok()) return nullptr;
    auto t = locked_target(h, cell, id);
    if (!t) return nullptr;
    try {
        return f(h, *t);
    } catch (...) {
        set_error_from_exception();
        return nullptr;
    }
}

PyObject* n_get(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    std::uint64_t cell, id;
    if (!parse_target(args, nargs, 3, 4, "_n_get(cell, id, key, default=<unset>)", cell, id)) return nullptr;
    DictHandle* h = open_handle(self);
    if (!h) return nullptr;
    EncBuf kb;
    if (!encode_into(args[2], kb, h->flags, true)) return nullptr;
    PyObject* v;
    if (read_value(h, self, cell, id, kb.sv, hash64(kb.sv.data(), kb.sv.size()), &v) == Got::kError) return nullptr;
    if (v == nullptr) {
        if (nargs == 4) {
            Py_INCREF(args[3]);
            return args[3];
        }
        set_key_error(args[2]);
    }
    return v;
}

PyObject* n_set(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    std::uint64_t cell, id;
    if (!parse_target(args, nargs, 4, 4, "_n_set(cell, id, key, value)", cell, id)) return nullptr;
    DictHandle* h = open_handle(self);
    if (!h) return nullptr;
    EncBuf kb;
    if (!encode_into(args[2], kb, h->flags, true)) return nullptr;
    if (store_in(h, cell, id, kb.sv, hash64(kb.sv.data(), kb.sv.size()), args[3]) != 0) return nullptr;
    Py_RETURN_NONE;
}

PyObject* n_del(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    return on_locked_target(self, args, nargs, 3, "_n_del(cell, id, key)", [&](DictHandle* h, containers::HashTable& t) -> PyObject* {
        EncBuf kb;
        if (!encode_into(args[2], kb, h->flags, true)) return nullptr;
        if (!t.erase(kb.sv, hash64(kb.sv.data(), kb.sv.size()))) {
            set_key_error(args[2]);
            return nullptr;
        }
        h->obj->store().after_mutation();
        Py_RETURN_NONE;
    });
}

PyObject* n_len(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    std::uint64_t cell, id;
    if (!parse_target(args, nargs, 2, 2, "_n_len(cell, id)", cell, id)) return nullptr;
    DictHandle* h = open_handle(self);
    if (!h) return nullptr;
    auto& store = h->obj->store();
    try {
        const auto n = store.read([&]() -> std::optional<std::uint64_t> {
            if (cell == 0) return h->obj->table().size_checked();
            if (cell_id(store, cell) != id) return std::nullopt;
            return containers::HashTable(&store, cell).size_checked();
        });
        if (!n) {
            set_gone_error();
            return nullptr;
        }
        return PyLong_FromUnsignedLongLong(*n);
    } catch (...) {
        set_error_from_exception();
        return nullptr;
    }
}

// (key, value) pairs of the table (cell, id) in insertion order, taken under the lock (a consistent copy).
PyObject* n_items(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    return on_locked_target(self, args, nargs, 2, "_n_items(cell, id)", [&](DictHandle* h, containers::HashTable& t) -> PyObject* {
        PyObject* out = PyList_New(0);
        if (!out) return nullptr;
        const auto snap = t.checked();  // counters checked: a damaged `used` must not hide entries
        const containers::EntrySlot* ent = containers::HashTable::entries_of(snap);
        for (std::uint64_t i = 0; i < snap.used; ++i) {
            if (ent[i].key == kTombWord) continue;
            PyObject* k = materialize(h, t, ent[i].key, 0);
            PyObject* v = k ? decode_locked(h, self, &ent[i].value) : nullptr;
            PyObject* pair = v ? steal_pair(k, v) : nullptr;
            if (!v) Py_XDECREF(k);
            if (!pair || PyList_Append(out, pair) != 0) {
                Py_XDECREF(pair);
                Py_DECREF(out);
                return nullptr;
            }
            Py_DECREF(pair);
        }
        return out;
    });
}

PyObject* n_clear(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    return on_locked_target(self, args, nargs, 2, "_n_clear(cell, id)", [&](DictHandle* h, containers::HashTable& t) -> PyObject* {
        t.clear();
        h->obj->store().after_mutation();
        Py_RETURN_NONE;
    });
}

// _n_increment(cell, id, key, delta, default): as increment() on a nested table.
PyObject* n_increment(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    return on_locked_target(self, args, nargs, 5, "_n_increment(cell, id, key, delta, default)",
                            [&](DictHandle* h, containers::HashTable& t) { return increment_locked(h, self, t, args[2], args[3], args[4]); });
}

PyObject* set_recurse(PyObject* self, PyObject* arg) {
    DictHandle* h = open_handle(self);
    if (!h) return nullptr;
    const int on = PyObject_IsTrue(arg);
    if (on < 0) return nullptr;
    h->recurse = on != 0;
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

// ---- get_many ------------------------------------------------------------------------------------------
//
// Looks up many keys in one call: the keys are encoded (with the GIL), then each chunk of kManyChunk keys is
// probed and its values copied out of the mapping from one validated table snapshot without the GIL
// (ReleasedCall: HashTable::find_many, then the value words, the payloads of record values and the ids of
// nested tables), and finally decoded from those private copies with the GIL. Each chunk is one consistent
// picture of the table; chunks are read one after another. Small calls keep the GIL (its handover would
// cost more than the probe).

constexpr std::size_t kManyChunk = 4096;
constexpr std::size_t kManyReleaseMin = 64;

struct ManyChunk {
    std::vector<std::string_view> keys;  // encodings of the chunk's keys
    std::vector<std::uint64_t> pos;      // find_many's answer
    std::vector<std::uint64_t> words;    // value word per key (kTombWord: absent)
    std::vector<std::uint64_t> aux;      // record words: offset into recs; table refs: the child's id
    std::vector<std::uint64_t> lens;     // record words: payload length
    std::string recs;                    // payloads of record values, back to back
};

// Probes the chunk and copies what the values need. Pure C++ (runs without the GIL); throws mmstore errors.
void copy_many(const mmstore::Dict& d, ManyChunk& c) {
    const auto& store = d.store();
    const auto& table = d.table();
    const std::size_t n = c.keys.size();
    c.pos.resize(n);
    c.words.resize(n);
    c.aux.resize(n);
    c.lens.resize(n);
    for (;;) {
        store.check_open();
        const std::uint64_t snap = store.read_begin();
        try {
            const containers::HashTable::Snapshot t = table.checked();
            // One instant for the whole chunk: no write completed and no transaction's commit log was
            // published or retired while it was read (a commit publishes its log, then bumps the counter).
            const std::uint32_t changes = store.change_count();
            const std::uint64_t log = __atomic_load_n(&t.h->pending_log, __ATOMIC_ACQUIRE);
            table.find_many(t, c.keys, c.pos);
            const containers::EntrySlot* ent = containers::HashTable::entries_of(t);
            c.recs.clear();
            bool raced = false;
            for (std::size_t i = 0; i < n && !raced; ++i) {
                const std::uint64_t w = c.pos[i] == kNotFound ? kTombWord : load_word(&ent[c.pos[i]].value);
                if (w != kTombWord) store.check_word(w, &ent[c.pos[i]].value);  // FormatError: retried if raced
                c.words[i] = w;
                c.aux[i] = c.recs.size();
                if (containers::is_table_ref(w)) {  // (an inline word: test it first)
                    c.aux[i] = cell_id(store, containers::table_ref_cell(w));
                    continue;
                }
                if (w == kTombWord || containers::is_inline(w)) continue;
                const std::string_view r = store.view_record(w);
                if (!store.read_valid(snap)) raced = true;  // don't copy a length read from reused memory
                else c.recs.append(r);
                c.lens[i] = r.size();
            }
            if (raced || !store.read_valid(snap) || store.change_count() != changes ||
                __atomic_load_n(&t.h->pending_log, __ATOMIC_ACQUIRE) != log)
                continue;
            return;
        } catch (const FormatError&) {
            if (store.raced(snap)) continue;
            throw;
        }
    }
}

PyObject* dict_get_many(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    if (!one_or_two_args("get_many", nargs)) return nullptr;
    PyObject* dflt = nargs == 2 ? args[1] : Py_None;
    DictHandle* h = open_handle(self);
    if (!h) return nullptr;
    PyObject* seq = PySequence_Fast(args[0], "get_many() expects an iterable of keys");
    if (!seq) return nullptr;
    const Py_ssize_t total = PySequence_Fast_GET_SIZE(seq);
    PyObject* out = PyList_New(total);
    if (!out) {
        Py_DECREF(seq);
        return nullptr;
    }
    ManyChunk c;
    std::string keybuf;
    std::vector<std::size_t> ends;
    for (Py_ssize_t base = 0; base < total; base += static_cast<Py_ssize_t>(kManyChunk)) {
        const Py_ssize_t m = std::min<Py_ssize_t>(total - base, static_cast<Py_ssize_t>(kManyChunk));
        keybuf.clear();
        ends.clear();
        for (Py_ssize_t i = 0; i < m; ++i) {
            EncBuf kb;
            if (!encode_into(PySequence_Fast_ITEMS(seq)[base + i], kb, h->flags, true)) goto fail;
            keybuf.append(kb.sv);
            ends.push_back(keybuf.size());
        }
        c.keys.clear();
        for (std::size_t i = 0, start = 0; i < ends.size(); start = ends[i], ++i)
            c.keys.emplace_back(keybuf.data() + start, ends[i] - start);
        // Encoding can run Python code (pickled keys) that closes or compacts the store.
        h = open_handle(self);
        if (!h) goto fail;
        try {
            if (static_cast<std::size_t>(m) >= kManyReleaseMin) {
                ReleasedCall<DictHandle> unlocked(*h);
                copy_many(*h->obj, c);
            } else {
                copy_many(*h->obj, c);
            }
        } catch (...) {
            set_error_from_exception();
            goto fail;
        }
        for (Py_ssize_t i = 0; i < m; ++i) {
            const std::uint64_t w = c.words[static_cast<std::size_t>(i)];
            PyObject* x;
            if (w == kTombWord) {
                Py_INCREF(dflt);
                x = dflt;
            } else if (containers::is_table_ref(w)) {
                x = make_nested(self, containers::table_ref_cell(w), c.aux[static_cast<std::size_t>(i)]);
            } else if (containers::is_inline(w)) {
                // The word is a private copy: its decode reads no mapped memory.
                std::uint64_t copy = w;
                containers::WordBuf wb;
                std::string_view enc;
                try {
                    enc = h->obj->store().view(&copy, wb);
                } catch (...) {
                    set_error_from_exception();
                    goto fail;
                }
                x = decode(enc.data(), enc.size(), h->flags);
            } else {
                const std::size_t at = c.aux[static_cast<std::size_t>(i)];
                x = decode(c.recs.data() + at, c.lens[static_cast<std::size_t>(i)], h->flags);
            }
            if (!x) goto fail;
            PyList_SET_ITEM(out, base + i, x);
        }
    }
    Py_DECREF(seq);
    return out;
fail:
    Py_DECREF(seq);
    Py_DECREF(out);
    return nullptr;
}

PyMethodDef dict_methods[] = {
    {"get", reinterpret_cast<PyCFunction>(reinterpret_cast<void*>(dict_get)), METH_FASTCALL,
     "get($self, key, default=None, /)\n--\n\nReturn the value for key if present, else default."},
    {"get_many", reinterpret_cast<PyCFunction>(reinterpret_cast<void*>(dict_get_many)), METH_FASTCALL,
     "get_many($self, keys, default=None, /)\n--\n\nReturn [self.get(k, default) for k in keys], read in chunks of 4096 "
     "keys from one consistent snapshot each, without the GIL while probing."},
    {"setdefault", reinterpret_cast<PyCFunction>(reinterpret_cast<void*>(dict_setdefault)), METH_FASTCALL,
     "setdefault($self, key, default=None, /)\n--\n\nReturn d[key], inserting default first if key is absent (atomic)."},
    {"pop", reinterpret_cast<PyCFunction>(reinterpret_cast<void*>(dict_pop)), METH_FASTCALL,
     "pop($self, key, default=<unset>, /)\n--\n\nRemove key and return its value (or default; KeyError without one)."},
    {"popitem", dict_popitem, METH_NOARGS, "Remove and return the last inserted (key, value) pair (LIFO)."},
    {"increment", reinterpret_cast<PyCFunction>(reinterpret_cast<void*>(dict_increment)), METH_FASTCALL,
     "increment($self, key, delta=1, default=0, /)\n--\n\nAtomically set d[key] = d.get(key, default) + delta; return it."},
    {"compare_and_set", reinterpret_cast<PyCFunction>(reinterpret_cast<void*>(dict_compare_and_set)), METH_FASTCALL,
     "compare_and_set($self, key, expected, new, /)\n--\n\nAtomically store new if d[key] == expected; return whether it did."},
    {"_update_from", dict_update_from, METH_O, "Insert from a dict or an iterable of pairs (update()'s loop)."},
    {"_update_many", dict_update_many, METH_O, "Insert every pair as one atomic step."},
    {"_iter", dict_iter_kind, METH_O, "Iterator over keys (0), values (1) or items (2) in insertion order."},
    {"_set_recurse", set_recurse, METH_O, "Store dict values as nested tables (SharedDict recurse=True)."},
#define MMSTORE_FASTCALL(name, fn, doc) {name, reinterpret_cast<PyCFunction>(reinterpret_cast<void*>(fn)), METH_FASTCALL, doc}
    MMSTORE_FASTCALL("_n_get", n_get, "Nested table: get."),
    MMSTORE_FASTCALL("_n_set", n_set, "Nested table: set."),
    MMSTORE_FASTCALL("_n_del", n_del, "Nested table: delete."),
    MMSTORE_FASTCALL("_n_len", n_len, "Nested table: length."),
    MMSTORE_FASTCALL("_n_items", n_items, "Nested table: list of items."),
    MMSTORE_FASTCALL("_n_clear", n_clear, "Nested table: clear."),
    MMSTORE_FASTCALL("_n_increment", n_increment, "Nested table: increment."),
#undef MMSTORE_FASTCALL
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
    m.def(
        "_set_nested_type", [](nb::handle cls) {
            Py_XDECREF(g_nested_type);
            g_nested_type = cls.inc_ref().ptr();
        },
        "Register mmstore.NestedDict, the view type of nested tables.");
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

// ---- for python/bindings/txn.cpp (transactions): the nested-table helpers above -----------------------
namespace mmstore::py {

Got dict_read_value(DictHandle* h, PyObject* owner, std::uint64_t cell, std::uint64_t id, std::string_view key,
                    std::uint64_t hv, PyObject** out, bool for_write) {
    return read_value(h, owner, cell, id, key, hv, out, for_write);
}

bool dict_is_nested_source(DictHandle* h, PyObject* value) { return is_nested_source(h, value); }

bool dict_is_nested_view(PyObject* o) {
    return g_nested_type != nullptr && PyObject_TypeCheck(o, reinterpret_cast<PyTypeObject*>(g_nested_type));
}

bool dict_build_nested(DictHandle* h, containers::HashTable& parent, PyObject* src, std::string& ref) {
    return build_nested(h, parent, src, ref, 0);
}

// A value encoding held outside the table (a transaction's own write): a table reference becomes a
// NestedDict view of `owner`, anything else is decoded.
PyObject* dict_decode_encoding(DictHandle* h, PyObject* owner, std::string_view enc) {
    const std::uint64_t w = containers::inline_word(enc);
    if (w != 0 && containers::is_table_ref(w)) {
        const std::uint64_t cell = containers::table_ref_cell(w);
        return make_nested(owner, cell, cell_id(h->obj->store(), cell));
    }
    return decode(enc.data(), enc.size(), h->flags);
}

}  // namespace mmstore::py
