// python/bindings/list.cpp -- mmstore._core._List: the native base of mmstore.List.
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "handles.hpp"
#include "recycle.hpp"

namespace mmstore::py {

namespace {

inline ListHandle* open_handle(PyObject* self) { return mmstore::py::open_handle<ListHandle>(self, "List"); }

// The length, read lock-free from a validated snapshot; -1 with an error set on failure.
Py_ssize_t list_size(ListHandle* h) {
    try {
        return static_cast<Py_ssize_t>(h->obj->size());
    } catch (...) {
        set_error_from_exception();
        return -1;
    }
}

// Element `i`, read without a lock (decode_snapshot): *out, or nullptr with `*end` set when i is past the
// end (no error set), or nullptr with an error. Decoding can run Python code (and switch threads), and other
// processes may shorten the list: the open and bounds checks are part of every read.
PyObject* read_item(ListHandle* h, std::uint64_t i, bool* end) {
    auto& store = h->obj->store();
    *end = false;
    for (;;) {
        std::uint64_t snap = 0, w;
        const std::uint64_t* slot = nullptr;
        bool started = false;
        try {
            store.check_open();
            snap = store.read_begin();
            started = true;
            slot = h->obj->sequence().word_ptr_checked(i);
            if (slot == nullptr) [[unlikely]] {
                if (!store.read_valid(snap)) continue;
                *end = true;
                return nullptr;
            }
            w = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
        } catch (const FormatError&) {
            if (started && store.raced(snap)) continue;
            set_error_from_exception();
            return nullptr;
        } catch (...) {
            set_error_from_exception();
            return nullptr;
        }
        PyObject* out;
        const Got g = decode_snapshot(store, w, h->flags, snap, &out, slot);
        if (g == Got::kOk) return out;
        if (g == Got::kError) return nullptr;
    }
}

PyObject* item_at(ListHandle* h, std::uint64_t i) {
    bool end;
    PyObject* x = read_item(h, i, &end);
    if (end) PyErr_SetString(PyExc_IndexError, "list index out of range (the list changed during the operation)");
    return x;
}

Py_ssize_t list_length(PyObject* self) {
    ListHandle* h = open_handle(self);
    if (!h) return -1;
    return list_size(h);
}

// Normalizes a Python index (negative allowed); -1 with IndexError set when out of range.
Py_ssize_t norm_index(ListHandle* h, Py_ssize_t i, const char* what) {
    const auto n = list_size(h);
    if (n < 0) return -1;
    if (i < 0) i += n;
    if (i < 0 || i >= n) {
        PyErr_Format(PyExc_IndexError, "%s index out of range", what);
        return -1;
    }
    return i;
}

PyObject* list_item(PyObject* self, Py_ssize_t i) {
    ListHandle* h = open_handle(self);
    if (!h) return nullptr;
    const Py_ssize_t n = list_size(h);
    if (n < 0) return nullptr;
    if (i < 0 || i >= n) {
        PyErr_SetString(PyExc_IndexError, "list index out of range");
        return nullptr;
    }
    return item_at(h, static_cast<std::uint64_t>(i));
}

PyObject* list_subscript(PyObject* self, PyObject* key) {
    ListHandle* h = open_handle(self);
    if (!h) return nullptr;
    if (PyLong_CheckExact(key)) {
        Py_ssize_t i = PyLong_AsSsize_t(key);
        if (i == -1 && PyErr_Occurred()) {
            PyErr_SetString(PyExc_IndexError, "cannot fit 'int' into an index-sized integer");
            return nullptr;
        }
        i = norm_index(h, i, "list");
        if (i < 0) return nullptr;
        return item_at(h, static_cast<std::uint64_t>(i));
    }
    if (PySlice_Check(key)) {
        // A slice is the list as of one instant: read again while a write (or a transaction's commit) lands
        // between its reads. Every write moves the change counter once done, and a commit that overwrites
        // elements also moves `reclaims` when it publishes its log, so equal values of both around the reads
        // prove that none landed in between (docs/design.md, "List transactions").
        Py_ssize_t start0, stop0, step;
        if (PySlice_Unpack(key, &start0, &stop0, &step) < 0) return nullptr;
        auto& store = h->obj->store();
        for (;;) {
            const std::uint32_t change = store.change_count();
            const std::uint64_t snap = store.read_begin();
            Py_ssize_t start = start0, stop = stop0;
            const Py_ssize_t len = list_size(h);
            if (len < 0) return nullptr;
            const Py_ssize_t n = PySlice_AdjustIndices(len, &start, &stop, step);
            PyObject* out = PyList_New(n);
            if (!out) return nullptr;
            bool failed = false;
            for (Py_ssize_t k = 0, i = start; k < n; ++k, i += step) {
                PyObject* x = item_at(h, static_cast<std::uint64_t>(i));
                if (!x) {
                    failed = true;
                    break;
                }
                PyList_SET_ITEM(out, k, x);
            }
            const bool same = store.usable() && store.read_valid(snap) && store.change_count() == change;
            if (same && !failed) return out;
            Py_DECREF(out);
            if (failed && (same || !PyErr_ExceptionMatches(PyExc_IndexError))) return nullptr;
            PyErr_Clear();  // the list changed under the read (or it raised because it did): again
            if (!still_open(h)) return nullptr;
        }
    }
    if (PyIndex_Check(key)) {
        // Not PyNumber_Index + recursion: before 3.10 it returns an int subclass (True) as it is.
        Py_ssize_t i = PyNumber_AsSsize_t(key, PyExc_IndexError);  // as list: IndexError for huge indices
        if (i == -1 && PyErr_Occurred()) return nullptr;
        i = norm_index(h, i, "list");
        if (i < 0) return nullptr;
        return item_at(h, static_cast<std::uint64_t>(i));
    }
    PyErr_Format(PyExc_TypeError, "list indices must be integers or slices, not %s", Py_TYPE(key)->tp_name);
    return nullptr;
}

int set_at(ListHandle* h, std::uint64_t i, PyObject* value) {
    EncBuf vb;
    if (!encode_into(value, vb, h->flags, false)) return -1;
    try {
        h->obj->set_encoded(i, vb.sv);
        return 0;
    } catch (...) {
        set_error_from_exception();
        return -1;
    }
}

int list_ass_subscript(PyObject* self, PyObject* key, PyObject* value) {
    ListHandle* h = open_handle(self);
    if (!h) return -1;
    if (PyLong_CheckExact(key) || (!PySlice_Check(key) && PyIndex_Check(key))) {
        Py_ssize_t i = PyNumber_AsSsize_t(key, PyExc_IndexError);  // as list: IndexError for huge indices
        if (i == -1 && PyErr_Occurred()) return -1;
        i = norm_index(h, i, "list assignment");
        if (i < 0) return -1;
        if (value != nullptr) return set_at(h, static_cast<std::uint64_t>(i), value);
        try {
            h->obj->erase(static_cast<std::uint64_t>(i));
            return 0;
        } catch (...) {
            set_error_from_exception();
            return -1;
        }
    }
    if (PySlice_Check(key)) {
        // Slice assignment and deletion: the pure-Python layer computes the new order (mmstore/_list.py).
        PyObject* r = value == nullptr ? PyObject_CallMethod(self, "_delslice", "O", key)
                                       : PyObject_CallMethod(self, "_setslice", "OO", key, value);
        if (!r) return -1;
        Py_DECREF(r);
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "list indices must be integers or slices, not %s", Py_TYPE(key)->tp_name);
    return -1;
}

int list_contains(PyObject* self, PyObject* needle) {
    ListHandle* h = open_handle(self);
    if (!h) return -1;
    for (std::uint64_t i = 0;; ++i) {
        const Py_ssize_t n = list_size(h);
        if (n < 0) return -1;
        if (static_cast<Py_ssize_t>(i) >= n) break;
        PyObject* x = item_at(h, i);
        if (!x) return -1;
        const int eq = PyObject_RichCompareBool(x, needle, Py_EQ);
        Py_DECREF(x);
        if (eq != 0) return eq;
    }
    return 0;
}

// ---- iteration ---------------------------------------------------------------------------------------
//
// A forward iterator reads ahead. A refill copies up to `batch` words from one validated snapshot of the
// sequence and decodes them into `buf`; next() hands them out one by one while the store's change counter
// (LockSlot::change: bumped by every write of every handle and process once it is done) still shows the
// value it had before the refill. Any write that returned before next() was called has moved it, and then
// the read-ahead is dropped and read again at the same position: each element is the one at its position
// when next() asked for it, as with list (writes under way in another process may or may not be seen).
// Batches start small (iter(l) for one element decodes little) and double up to kBatchMax.
//
// Lists of records: a refill that copies many records (kReleaseRecords or more in the previous batch)
// copies their payloads out without the GIL (ReleasedCall) and decodes the private copies afterwards.
// Lists of inline words (ints, short strs) never release it: their copy takes less than a GIL handover.
// The reverse iterator reads one element per step.

constexpr std::uint32_t kBatchFirst = 8;
constexpr std::uint32_t kBatchMax = 256;
constexpr std::uint32_t kReleaseRecords = 64;

struct ListIter {
    PyObject_HEAD
    PyObject* owner;  // keeps the handle alive: `h` stays valid while owner is set
    ListHandle* h;
    std::uint64_t pos;  // forward: position of buf[head]; reverse: elements left to yield
    int reverse;
    PyObject** buf;       // decoded elements [head, fill), owned (PyMem, kBatchMax slots); nullptr: words[i]
    std::uint64_t* words;  // an intact native inline word (native_inline), decoded when handed out (in buf's block)
    Recycler recycler;     // the objects handed out last, reused when only the iterator still holds them
    std::uint32_t head;
    std::uint32_t fill;
    std::uint32_t batch;      // size of the next refill
    std::uint32_t change;     // store.change_count() read before the refill
    std::uint32_t epoch;      // h->epoch at the refill (close() and compact() bump it)
    std::uint32_t records;    // record words in the last refill
    // The store's change counter (LockSlot::change), mapped while h->epoch == epoch.
    const std::uint32_t* change_word;
};

PyTypeObject* g_list_iter_type = nullptr;

void drop_batch(ListIter* it) {
    for (std::uint32_t i = it->head; i < it->fill; ++i) Py_XDECREF(it->buf[i]);
    it->head = it->fill = 0;
}

void list_iter_dealloc(PyObject* self) {
    auto* it = reinterpret_cast<ListIter*>(self);
    if (it->buf != nullptr) {
        drop_batch(it);
        PyMem_Free(it->buf);
    }
    it->recycler.clear();
    iter_dealloc<ListIter>(self);
}

// What a refill copies from one validated snapshot: words, and (released refills only) record payloads.
struct Batch {
    std::uint64_t words[kBatchMax];
    std::uint32_t n = 0;  // 0: pos is at or past the end
    std::uint32_t change = 0;
    std::uint64_t snap = 0;
    bool with_records = false;                // payloads copied into recs (offsets in rec_at)
    std::string recs;
    std::uint64_t rec_at[kBatchMax + 1];
};

// Copies elements [pos, pos + want) (fewer at the end) from one snapshot. Pure C++: may run without the
// GIL. Throws mmstore errors (damage that is not a race, closed store).
void copy_batch(const mmstore::List& list, std::uint64_t pos, std::uint32_t want, Batch& b) {
    const auto& store = list.store();
    for (;;) {
        store.check_open();
        b.change = store.change_count();  // before the words: a write done after this moves it
        b.snap = store.read_begin();
        try {
            const auto v = list.sequence().checked();
            if (pos >= v.count) {
                if (!store.read_valid(b.snap)) continue;
                b.n = 0;
                return;
            }
            const auto n = static_cast<std::uint32_t>(std::min<std::uint64_t>(want, v.count - pos));
            const auto* src = v.words() + pos;
            if (v.log == nullptr) [[likely]] {
                for (std::uint32_t i = 0; i < n; ++i) b.words[i] = __atomic_load_n(src + i, __ATOMIC_ACQUIRE);
            } else {  // another process is applying a transaction: its positions come from the commit log
                for (std::uint32_t i = 0; i < n; ++i) b.words[i] = __atomic_load_n(v.slot(pos + i), __ATOMIC_ACQUIRE);
            }
            bool raced = false;
            if (b.with_records) {
                b.recs.clear();
                for (std::uint32_t i = 0; i < n; ++i) {
                    b.rec_at[i] = b.recs.size();
                    if (containers::is_inline(b.words[i])) continue;  // checked by decode_snapshot
                    store.check_word(b.words[i], src + i);                 // FormatError: retried if raced
                    const std::string_view r = store.view_record(b.words[i]);
                    if (!store.read_valid(b.snap)) {  // don't copy a length read from reused memory
                        raced = true;
                        break;
                    }
                    b.recs.append(r);
                }
                b.rec_at[n] = b.recs.size();
            }
            if (raced || !store.read_valid(b.snap)) continue;
            b.n = n;
            return;
        } catch (const FormatError&) {
            if (store.raced(b.snap)) continue;
            throw;
        }
    }
}

// True while `h` may be read through the store object (and mapping) the iterator's batch came from: the
// handle bumps `epoch` when it closes or compacts.
inline bool same_store(const ListHandle* h, std::uint32_t epoch) { return h->epoch == epoch; }

// Inline ints, strs and bytes decode without running Python code; anything else may run some (pickles,
// Decimal, dates), which may close or compact the store.
inline bool decodes_natively(std::uint64_t w) {
    return containers::is_inline(w) && containers::inline_kind(w) != containers::InlineKind::kRaw;
}

// Hands out element i of the batch: a new reference (nullptr with MemoryError set).
[[gnu::always_inline]] inline PyObject* take_element(ListIter* it, std::uint32_t i) {
    PyObject* x = it->buf[i];
    return x != nullptr ? x : it->recycler.decode(it->words[i]);
}

// Refills it->buf from it->pos and returns its first element (stolen from the batch), or nullptr: at the
// end (owner cleared, no error) or with an error set.
PyObject* list_iter_refill(ListIter* it) {
    ListHandle* h = it->h;
    if (it->buf == nullptr) {
        it->buf = static_cast<PyObject**>(PyMem_Malloc(kBatchMax * (sizeof(PyObject*) + sizeof(std::uint64_t))));
        if (it->buf == nullptr) return PyErr_NoMemory();
        it->words = reinterpret_cast<std::uint64_t*>(it->buf + kBatchMax);
    }
    Batch b;
    for (;;) {
        if (!still_open(h)) return nullptr;
        const std::uint32_t epoch = h->epoch;
        b.with_records = it->records >= kReleaseRecords;
        try {
            if (b.with_records) {
                ReleasedCall<ListHandle> unlocked(*h);
                copy_batch(*h->obj, it->pos, it->batch, b);
            } else {
                copy_batch(*h->obj, it->pos, it->batch, b);
            }
        } catch (...) {
            set_error_from_exception();
            return nullptr;
        }
        if (b.n == 0) {
            Py_CLEAR(it->owner);
            return nullptr;
        }
        if (it->batch < kBatchMax) it->batch *= 2;
        std::uint32_t records = 0, got = 0;
        bool error = false;
        const bool verifying = h->obj->store().verifying();
        for (std::uint32_t i = 0; i < b.n; ++i) {
            // Decoding can run Python code (pickles), which may close or compact the store meanwhile.
            if (i > 0 && !decodes_natively(b.words[i - 1]) && (!same_store(h, epoch) || !h->obj->store().usable())) break;
            const std::uint64_t w = b.words[i];
            PyObject* x = nullptr;
            Got g;
            if (recyclable(w, verifying)) [[likely]] {
                // copy_batch validated the batch's words as a whole after copying them: an intact inline word
                // of a native kind is kept as it is and decoded when next() hands it out, with no further
                // read_valid (into a recycled object, when it can: recycle.hpp).
                it->words[got] = w;
                it->buf[got++] = nullptr;
                continue;
            }
            if (containers::is_inline(w)) {
                g = decode_snapshot(h->obj->store(), w, h->flags, b.snap, &x);
            } else {
                ++records;
                if (b.with_records) {
                    x = decode(b.recs.data() + b.rec_at[i], b.rec_at[i + 1] - b.rec_at[i], h->flags);
                    g = x != nullptr ? Got::kOk : Got::kError;
                } else {
                    g = decode_snapshot(h->obj->store(), w, h->flags, b.snap, &x);
                }
            }
            if (g == Got::kRetry) break;
            if (g == Got::kError) {
                // Elements before a bad one are yielded first; the next refill starts at it and raises.
                if (got > 0) PyErr_Clear();
                error = true;
                break;
            }
            it->buf[got++] = x;
        }
        it->records = records;
        if (got == 0) {
            if (error) return nullptr;
            continue;  // raced a writer at the first element: read again
        }
        it->change = b.change;
        it->epoch = epoch;
        it->change_word = &h->obj->store().region().lock_slot()->change;
        it->head = 1;
        it->fill = got;
        ++it->pos;
        return take_element(it, 0);
    }
}

PyObject* list_iter_next(PyObject* self) {
    auto* it = reinterpret_cast<ListIter*>(self);
    if (!it->owner) return nullptr;
    ListHandle* h = it->h;
    if (it->reverse) {
        // pos counts elements left to yield from the end, like list_reverseiterator.
        const Py_ssize_t n = list_size(h);
        if (n < 0) return nullptr;
        if (it->pos == 0 || it->pos > static_cast<std::uint64_t>(n)) {
            Py_CLEAR(it->owner);
            return nullptr;
        }
        return item_at(h, --it->pos);
    }
    if (it->head < it->fill) [[likely]] {
        if (same_store(h, it->epoch) && __atomic_load_n(it->change_word, __ATOMIC_ACQUIRE) == it->change) [[likely]] {
            ++it->pos;
            return take_element(it, it->head++);
        }
        drop_batch(it);  // a write since the refill, or the store closed or replaced: read again (or raise)
        it->batch = kBatchFirst;
    }
    return list_iter_refill(it);
}

PyObject* make_list_iter(PyObject* self, bool reverse) {
    ListHandle* h = open_handle(self);
    if (!h) return nullptr;
    const Py_ssize_t n = reverse ? list_size(h) : 0;
    if (n < 0) return nullptr;
    auto* it = PyObject_New(ListIter, g_list_iter_type);
    if (!it) return nullptr;
    Py_INCREF(self);
    it->owner = self;
    it->h = h;
    it->pos = static_cast<std::uint64_t>(n);
    it->reverse = reverse;
    it->buf = nullptr;
    it->words = nullptr;
    it->recycler.init();
    it->head = it->fill = 0;
    it->batch = kBatchFirst;
    it->change = 0;
    it->epoch = h->epoch;
    it->records = 0;
    it->change_word = nullptr;
    return reinterpret_cast<PyObject*>(it);
}

PyObject* list_iter(PyObject* self) { return make_list_iter(self, false); }
PyObject* list_reversed(PyObject* self, PyObject*) { return make_list_iter(self, true); }

PyType_Slot list_iter_slots[] = {
    {Py_tp_dealloc, reinterpret_cast<void*>(list_iter_dealloc)},
    {Py_tp_iter, reinterpret_cast<void*>(PyObject_SelfIter)},
    {Py_tp_iternext, reinterpret_cast<void*>(list_iter_next)},
    {0, nullptr},
};
PyType_Spec list_iter_spec = {"mmstore._core.ListIterator", sizeof(ListIter), 0, Py_TPFLAGS_DEFAULT, list_iter_slots};

PyObject* list_append(PyObject* self, PyObject* value) {
    ListHandle* h = open_handle(self);
    if (!h) return nullptr;
    EncBuf vb;
    if (!encode_into(value, vb, h->flags, false)) return nullptr;
    try {
        h->obj->push_back_encoded(vb.sv);
    } catch (...) {
        set_error_from_exception();
        return nullptr;
    }
    Py_RETURN_NONE;
}

// extend() encodes the elements in chunks (kExtendChunk elements or kExtendBytes bytes of encodings, so
// memory stays bounded for any iterable) and appends each chunk under one hold of the lock
// (List::push_back_encoded_many). Encoding runs Python code (pickles, __index__ of nothing: only the
// codec), always before the lock is taken.
constexpr Py_ssize_t kExtendChunk = 4096;
constexpr std::size_t kExtendBytes = std::size_t{1} << 20;

bool flush_chunk(ListHandle* h, const std::string& buf, std::vector<std::size_t>& ends,
                 std::vector<std::string_view>& views) {
    views.clear();
    for (std::size_t i = 0, start = 0; i < ends.size(); start = ends[i], ++i)
        views.emplace_back(buf.data() + start, ends[i] - start);
    ends.clear();
    if (views.empty()) return true;
    if (!still_open(h)) return false;  // encoding ran Python code: the store may have been closed meanwhile
    try {
        h->obj->push_back_encoded_many(views);
        return true;
    } catch (...) {
        set_error_from_exception();
        return false;
    }
}

PyObject* list_extend(PyObject* self, PyObject* iterable) {
    ListHandle* h = open_handle(self);
    if (!h) return nullptr;
    if (iterable == self) {
        // l.extend(l): snapshot first, as list does.
        PyObject* snap = PySequence_List(self);
        if (!snap) return nullptr;
        PyObject* r = list_extend(self, snap);
        Py_DECREF(snap);
        return r;
    }
    PyObject* it = PyObject_GetIter(iterable);
    if (!it) return nullptr;
    // Room for a sized source at once (one block of the final size instead of a chain of doublings).
    const Py_ssize_t hint = PyObject_LengthHint(iterable, 0);
    if (hint < 0) {
        Py_DECREF(it);
        return nullptr;
    }
    if (hint > kExtendChunk) {
        try {
            h->obj->reserve_more(static_cast<std::uint64_t>(hint));
        } catch (...) {
            Py_DECREF(it);
            set_error_from_exception();
            return nullptr;
        }
    }
    std::string buf;
    std::vector<std::size_t> ends;
    std::vector<std::string_view> views;
    ends.reserve(kExtendChunk);
    views.reserve(kExtendChunk);
    bool ok = true;
    while (PyObject* x = PyIter_Next(it)) {
        EncBuf e;
        const bool encoded = encode_into(x, e, h->flags, false);
        Py_DECREF(x);
        if (!encoded) {
            ok = false;
            break;
        }
        buf.append(e.sv);
        ends.push_back(buf.size());
        if (static_cast<Py_ssize_t>(ends.size()) >= kExtendChunk || buf.size() >= kExtendBytes) {
            if (!flush_chunk(h, buf, ends, views)) {
                ok = false;
                break;
            }
            buf.clear();
        }
    }
    Py_DECREF(it);
    if (!ok) {
        // Elements before the one that failed are appended, as list.extend leaves them.
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        if (!ends.empty() && !flush_chunk(h, buf, ends, views)) PyErr_Clear();
        PyErr_Restore(type, value, tb);
        return nullptr;
    }
    if (PyErr_Occurred()) {  // the iterator raised: what it produced before is appended
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        if (!ends.empty() && !flush_chunk(h, buf, ends, views)) PyErr_Clear();
        PyErr_Restore(type, value, tb);
        return nullptr;
    }
    if (!flush_chunk(h, buf, ends, views)) return nullptr;
    Py_RETURN_NONE;
}

PyObject* list_pop(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    ListHandle* h = open_handle(self);
    if (!h) return nullptr;
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "pop expected at most 1 argument");
        return nullptr;
    }
    Py_ssize_t index = -1;
    if (nargs == 1) {
        index = PyNumber_AsSsize_t(args[0], PyExc_OverflowError);  // as list.pop
        if (index == -1 && PyErr_Occurred()) return nullptr;
    }
    // The read and the removal under one hold of the lock: no other process can move the element between.
    PyWriteLock lock(h->obj->store());
    if (!lock.ok()) return nullptr;
    if (h->obj->sequence().size() == 0) {
        PyErr_SetString(PyExc_IndexError, "pop from empty list");
        return nullptr;
    }
    const Py_ssize_t i = norm_index(h, index, "pop");
    if (i < 0) return nullptr;
    PyObject* x = item_at(h, static_cast<std::uint64_t>(i));
    if (!x) return nullptr;
    try {
        h->obj->erase(static_cast<std::uint64_t>(i));
    } catch (...) {
        Py_DECREF(x);
        set_error_from_exception();
        return nullptr;
    }
    return x;
}

PyObject* list_insert(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    ListHandle* h = open_handle(self);
    if (!h) return nullptr;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "insert expected 2 arguments");
        return nullptr;
    }
    Py_ssize_t i = PyNumber_AsSsize_t(args[0], PyExc_OverflowError);
    if (i == -1 && PyErr_Occurred()) return nullptr;
    const auto n = list_size(h);
    if (n < 0) return nullptr;
    if (i < 0) i = std::max<Py_ssize_t>(0, i + n);
    if (i > n) i = n;
    EncBuf vb;
    if (!encode_into(args[1], vb, h->flags, false)) return nullptr;
    try {
        h->obj->insert_encoded(static_cast<std::uint64_t>(i), vb.sv);
    } catch (...) {
        set_error_from_exception();
        return nullptr;
    }
    Py_RETURN_NONE;
}

PyMethodDef list_methods[] = {
    {"append", list_append, METH_O, "append($self, object, /)\n--\n\nAppend object to the end of the list."},
    {"extend", list_extend, METH_O, "extend($self, iterable, /)\n--\n\nAppend every element of iterable, in chunks of "
     "4096 under one hold of the lock each: not atomic as a whole. Other processes may see a part of it, and a "
     "process killed during extend leaves a prefix of the elements appended (like Dict.update). If the "
     "iterable or an encoding raises, the elements before it are appended."},
    {"pop", reinterpret_cast<PyCFunction>(reinterpret_cast<void*>(list_pop)), METH_FASTCALL,
     "pop($self, index=-1, /)\n--\n\nRemove and return the item at index (default last)."},
    {"insert", reinterpret_cast<PyCFunction>(reinterpret_cast<void*>(list_insert)), METH_FASTCALL,
     "insert($self, index, object, /)\n--\n\nInsert object before index."},
    {"__reversed__", list_reversed, METH_NOARGS, "Return a reverse iterator."},
    {nullptr, nullptr, 0, nullptr},
};

PyType_Slot list_slots[] = {
    {Py_tp_getset, reinterpret_cast<void*>(handle_getset<ListHandle>)},
    {Py_mp_subscript, reinterpret_cast<void*>(list_subscript)},
    {Py_mp_ass_subscript, reinterpret_cast<void*>(list_ass_subscript)},
    {Py_mp_length, reinterpret_cast<void*>(list_length)},
    {Py_sq_length, reinterpret_cast<void*>(list_length)},
    {Py_sq_item, reinterpret_cast<void*>(list_item)},
    {Py_sq_contains, reinterpret_cast<void*>(list_contains)},
    {Py_tp_iter, reinterpret_cast<void*>(list_iter)},
    {Py_tp_methods, reinterpret_cast<void*>(list_methods)},
    {0, nullptr},
};

}  // namespace

PyObject* list_read_live(ListHandle* h, std::uint64_t i, bool* end) { return read_item(h, i, end); }

void bind_list(nb::module_& m) {
    g_list_iter_type = reinterpret_cast<PyTypeObject*>(PyType_FromSpec(&list_iter_spec));
    if (!g_list_iter_type) throw nb::python_error();
    m.attr("ListIterator") = nb::handle(reinterpret_cast<PyObject*>(g_list_iter_type));

    nb::class_<ListHandle> cls(m, "_List", nb::type_slots(list_slots), nb::is_weak_referenceable());
    bind_handle_common(cls);
    cls.def("_reorder", [](ListHandle& h, const std::vector<std::uint64_t>& order) { checked(h).obj->reorder(order); },
             "Rebuild as [old[i] for i in order]; positions not listed are removed.")
        .def(
            "_splice",
            [](ListHandle& h, std::uint64_t start, std::uint64_t stop, nb::handle values) {
                checked(h);
                std::vector<std::string> encs;
                for (nb::handle v : values) {
                    std::string e;
                    if (!encode(v.ptr(), e, h.flags, false)) throw nb::python_error();
                    encs.push_back(std::move(e));
                }
                h.obj->splice(start, stop, encs);
            },
            "Replace elements [start, stop) with values.");
}

}  // namespace mmstore::py
