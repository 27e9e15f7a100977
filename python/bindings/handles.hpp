// python/bindings/handles.hpp
//
// The C++ state behind the Python handle types mmstore._core._Dict and _List, and helpers shared by
// their slot functions. The hot paths (item get/set/delete, contains, len, iteration, append) are raw
// CPython slot functions installed with nb::type_slots, so a lookup costs one C call, not a nanobind
// dispatch. Everything runs under the GIL except the long bulk reads (verify, get_many, large iterator
// refills), which let go of it around their C++ part (ReleasedCall below): meanwhile other threads may use
// the handle, except to close it (close() raises while such a call runs). compact() keeps the GIL: it
// replaces the handle's store object, and another thread of this handle may be inside a write that runs
// Python code (a pickle's __reduce__) past its open check; only the GIL keeps such a write from running
// against the store being replaced.
#pragma once

#include <nanobind/nanobind.h>

#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>

#include "codec.hpp"
#include "mmstore/dict.hpp"
#include "mmstore/list.hpp"

namespace mmstore::py {

namespace nb = nanobind;

// The state of a Python handle of a store `Obj` (mmstore::Dict or mmstore::List). Handles live inside their
// Python objects and never move, so flags.path may point at `path`.
template <class Obj>
struct Handle {
    std::unique_ptr<Obj> obj;
    CodecFlags flags;
    std::string path;
    bool recurse = false;  // SharedDict(recurse=True): dict values become nested tables (dict.cpp)
    nb::object serializer;  // pickler=/unpickler= (mmstore._codec.Serializer) that flags.serializer borrows
    // Calls of this handle running without the GIL (ReleasedCall). Read and written only under the GIL.
    int busy = 0;
    // Bumped by close() and compact() (which replaces the store behind `obj`): iterators drop what they
    // read ahead and let go of pointers into the mapping.
    std::uint32_t epoch = 0;
};
using DictHandle = Handle<mmstore::Dict>;
using ListHandle = Handle<mmstore::List>;

// An encoding built on the stack for the common small cases (exact int fitting 64 bits, exact ASCII str of
// up to 31 characters), or in its own string for everything else. Each call owns its buffers: encoding a
// value can run Python code (pickle) that re-enters mmstore, so shared scratch space would be unsafe.
struct EncBuf {
    char small[40];
    std::string_view sv;
    std::string big;
};

// 1: encoded into e.small; 0: not a fast case (no error); -1: error set.
inline int fast_encode(PyObject* o, EncBuf& e) {
    if (PyLong_CheckExact(o)) {
        int overflow = 0;
        const long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
        if (overflow) return 0;
        if (v == -1 && PyErr_Occurred()) return -1;
        const auto x = static_cast<unsigned long long>(v ^ (v >> 63));
        const int n = v == 0 ? 0 : (x == 0 ? 0 : 64 - __builtin_clzll(x)) / 8 + 1;
        // Whole-word stores only: the hash then reads the bytes back through store forwarding.
        const std::uint64_t lo = (static_cast<std::uint64_t>(v) << 8) | static_cast<std::uint64_t>(0x05 + n);
        const std::uint64_t hi = static_cast<std::uint64_t>(v) >> 56;
        std::memcpy(e.small, &lo, 8);
        std::memcpy(e.small + 8, &hi, 8);
        e.sv = std::string_view(e.small, static_cast<std::size_t>(1 + n));
        return 1;
    }
    if (PyUnicode_CheckExact(o) && PyUnicode_IS_COMPACT_ASCII(o)) {
        const Py_ssize_t n = PyUnicode_GET_LENGTH(o);
        if (n > 31) return 0;
        const auto* data = static_cast<const unsigned char*>(PyUnicode_DATA(o));
        if (n <= 7) {
            const std::uint64_t lo = (containers::pack7(data, static_cast<std::size_t>(n)) << 8) | (0x20u + n);
            std::memcpy(e.small, &lo, 8);
        } else {
            e.small[0] = static_cast<char>(0x20 + n);
            std::memcpy(e.small + 1, data, static_cast<std::size_t>(n));
        }
        e.sv = std::string_view(e.small, static_cast<std::size_t>(1 + n));
        return 1;
    }
    return 0;
}

inline bool encode_into(PyObject* o, EncBuf& e, CodecFlags flags, bool key) {
    const int r = fast_encode(o, e);
    if (r != 0) return r > 0;
    if (!encode(o, e.big, flags, key)) return false;
    e.sv = e.big;
    return true;
}

// Returns the handle of `self`, or nullptr with ClosedError set when uninitialized or closed.
template <class H>
H* handle_of(PyObject* self) {
    if (!nb::inst_ready(self)) [[unlikely]] {
        raise_error(static_cast<int>(ErrorCode::kClosed), "", "handle is not initialized");
        return nullptr;
    }
    return nb::inst_ptr<H>(self);
}

// Outcome of decoding a word read during a lock-free read (containers::Store::read_begin).
enum class Got { kOk, kRetry, kError };

// Decodes an inline word of the kinds that need no Python code and no copy (ints, ASCII strs, bytes) into
// *out (nullptr with MemoryError set if allocation failed) and returns true; false for any other word (the
// caller decodes it generically). The word's check byte must have been verified by the caller.
[[gnu::always_inline]] inline bool decode_inline_native(std::uint64_t w, PyObject** out) {
    const std::size_t n = containers::inline_len(w);
    PyObject* v = nullptr;
    bool fast = false;
    switch (containers::inline_kind(w)) {
        case containers::InlineKind::kInt:
            if (n <= containers::kInlineMax) {
                const int shift = 64 - 8 * static_cast<int>(n);
                v = PyLong_FromLongLong(n == 0 ? 0 : static_cast<std::int64_t>(w << shift) >> shift);
                fast = true;
            }
            break;
        case containers::InlineKind::kStr:
            // ASCII (the high bits of the payload bytes clear; the check byte is not payload): build the
            // str directly.
            if (n <= containers::kInlineMax && (w & 0x0000808080808080ull) == 0) {
                v = PyUnicode_New(static_cast<Py_ssize_t>(n), 127);
                if (v != nullptr) std::memcpy(PyUnicode_DATA(v), &w, n);
                fast = true;
            }
            break;  // non-ASCII: the generic decoder validates the UTF-8 and reports damage as corruption
        case containers::InlineKind::kAscii7:
            if (n == 7) {
                const std::uint64_t chars = containers::ascii7_chars(w);
                v = PyUnicode_New(7, 127);
                if (v != nullptr) std::memcpy(PyUnicode_DATA(v), &chars, 7);
                fast = true;
            }
            break;
        case containers::InlineKind::kBytes:
            if (n <= containers::kInlineMax) {
                v = PyBytes_FromStringAndSize(reinterpret_cast<const char*>(&w), static_cast<Py_ssize_t>(n));
                fast = true;
            }
            break;
        default: break;
    }
    *out = v;
    return fast;
}

// Decodes the value held by the word `w`, loaded from `slot` in the mapping after read_begin() returned
// `snap`, into a new reference in *out. The word's check byte is verified first (unless the handle opted
// out: OpenOptions::verify), so a damaged word raises CorruptFileError naming its offset. Inline words
// decode from the loaded word itself; a record is copied out of the mapping first. Either is trusted only when read_valid(snap) shows no writer freed or rewrote
// what was read meanwhile (then kRetry: the caller reads again). The decoder runs on the private copy:
// decoding dates, Decimals, arrays and pickles runs Python code, which may switch threads or re-enter.
inline Got decode_snapshot(const containers::Store& store, std::uint64_t w, CodecFlags flags, std::uint64_t snap,
                           PyObject** out, const void* slot = nullptr) {
    *out = nullptr;
    if (store.verifying() && !containers::word_intact(w)) [[unlikely]] {
        if (!store.read_valid(snap)) return Got::kRetry;  // the slot was reused under us: read again
        try {
            store.throw_bad_word(w, slot);
        } catch (...) {
            set_error_from_exception();
        }
        return Got::kError;
    }
    if (containers::is_inline(w)) {
        PyObject* v = nullptr;
        const bool fast = decode_inline_native(w, &v);
        if (!fast) {
            std::uint64_t copy = w;
            containers::WordBuf buf;
            try {
                const std::string_view enc = store.view(&copy, buf);
                v = decode(enc.data(), enc.size(), flags);
            } catch (const FormatError&) {
                if (!store.read_valid(snap)) return Got::kRetry;
                set_error_from_exception();
                return Got::kError;
            } catch (...) {
                set_error_from_exception();
                return Got::kError;
            }
        }
        if (!store.read_valid(snap)) {  // the word came from memory a writer reused: read again
            Py_XDECREF(v);
            PyErr_Clear();
            return Got::kRetry;
        }
        if (v == nullptr) return Got::kError;
        *out = v;
        return Got::kOk;
    }
    std::string_view rec;
    try {
        rec = store.view_record(w);
    } catch (const FormatError&) {
        if (store.raced(snap)) return Got::kRetry;
        set_error_from_exception();
        return Got::kError;
    }
    char small[256];
    std::string big;
    const char* data = small;
    if (rec.size() <= sizeof small) {
        std::memcpy(small, rec.data(), rec.size());
    } else {
        if (!store.read_valid(snap)) return Got::kRetry;  // don't copy a length read from reused memory
        big.assign(rec);
        data = big.data();
    }
    if (!store.read_valid(snap)) return Got::kRetry;
    PyObject* v = decode(data, rec.size(), flags);
    if (v == nullptr) return Got::kError;
    *out = v;
    return Got::kOk;
}

// Sets the Python error for a C++ exception raised outside a lock-free read; always Got::kError.
inline Got got_error() {
    set_error_from_exception();
    return Got::kError;
}

// Holds the store's write lock for the duration of a binding call (blocking waits release the GIL: see
// the hooks installed in module.cpp). On failure ok() is false and the Python error is set.
class PyWriteLock {
public:
    explicit PyWriteLock(containers::Store& s) {
        try {
            s.check_writable();
            s.lock_write();
            s_ = &s;
        } catch (...) {
            set_error_from_exception();
        }
    }
    ~PyWriteLock() {
        if (s_) s_->unlock_write();
    }
    PyWriteLock(const PyWriteLock&) = delete;
    PyWriteLock& operator=(const PyWriteLock&) = delete;
    bool ok() const noexcept { return s_ != nullptr; }

private:
    containers::Store* s_ = nullptr;
};

mmstore::OpenOptions make_options(nb::handle create, unsigned mode, bool durable, bool readonly);

// The name of the Python class of `self` without its module ("SharedDict" for a SharedDict, whose native
// base is _Dict), so that errors name the class the user holds; `fallback` when self is null.
inline std::string class_name_of(PyObject* self, const char* fallback) {
    if (self == nullptr) return fallback;
    const char* n = Py_TYPE(self)->tp_name;
    const char* dot = std::strrchr(n, '.');
    return dot != nullptr ? std::string(dot + 1) : std::string(n);
}

// Runs the C++ part of a long read without the GIL, marking the handle busy meanwhile (close() and
// compact() refuse). Construct and destroy it holding the GIL; touch no Python object while it lives.
template <class H>
class ReleasedCall {
public:
    explicit ReleasedCall(H& h) : h_(h) {
        ++h_.busy;
        state_ = PyEval_SaveThread();
    }
    ~ReleasedCall() {
        PyEval_RestoreThread(state_);
        --h_.busy;
    }
    ReleasedCall(const ReleasedCall&) = delete;
    ReleasedCall& operator=(const ReleasedCall&) = delete;

private:
    H& h_;
    PyThreadState* state_;
};

// The handle of `self` if it is initialized and open; otherwise nullptr with ClosedError set. The message
// names the class of `self` ("closed SharedDict"); `kind` is used when it cannot be found.
template <class H>
H* open_handle(PyObject* self, const char* kind) {
    H* h = handle_of<H>(self);
    if (h == nullptr) return nullptr;
    if (!h->obj || !h->obj->is_open()) [[unlikely]] {
        raise_error(static_cast<int>(ErrorCode::kClosed), h->path, "operation on a closed " + class_name_of(self, kind));
        return nullptr;
    }
    return h;
}

// Decoding can run Python code (and switch threads), so table accesses that follow a decode re-check that
// the store is still usable: another thread may have closed it meanwhile. False with the error set.
template <class H>
bool still_open(H* h) {
    if (h->obj->store().usable()) [[likely]] return true;
    try {
        h->obj->store().check_open();  // throws the precise error: closed, or used across fork
    } catch (...) {
        set_error_from_exception();
    }
    return false;
}

// A (k, v) tuple that steals both references; nullptr (both released) when allocation fails.
inline PyObject* steal_pair(PyObject* k, PyObject* v) {
    PyObject* t = PyTuple_New(2);
    if (t == nullptr) {
        Py_DECREF(k);
        Py_DECREF(v);
        return nullptr;
    }
    PyTuple_SET_ITEM(t, 0, k);
    PyTuple_SET_ITEM(t, 1, v);
    return t;
}

// tp_dealloc of the iterator types, which hold a strong reference to their handle in `owner`.
template <class Iter>
void iter_dealloc(PyObject* self) {
    PyTypeObject* tp = Py_TYPE(self);
    Py_XDECREF(reinterpret_cast<Iter*>(self)->owner);
    tp->tp_free(self);
    Py_DECREF(tp);
}

// `closed` and `path` as plain getters that also work on an instance whose __init__ failed (the repr of a
// half-built handle in a traceback must not warn or raise).
template <class H>
PyObject* get_closed(PyObject* self, void*) {
    if (!nb::inst_ready(self)) Py_RETURN_TRUE;
    const H* h = nb::inst_ptr<H>(self);
    return PyBool_FromLong(!h->obj || !h->obj->is_open());
}

template <class H>
PyObject* get_path(PyObject* self, void*) {
    if (!nb::inst_ready(self)) return PyUnicode_FromString("");
    const H* h = nb::inst_ptr<H>(self);
    return PyUnicode_FromStringAndSize(h->path.data(), static_cast<Py_ssize_t>(h->path.size()));
}

// `handle.lock` (lock.cpp): a new StoreLock bound to the handle.
template <class H>
PyObject* make_lock(PyObject* owner);

template <class H>
PyObject* get_lock(PyObject* self, void*) {
    return make_lock<H>(self);
}

template <class H>
inline PyGetSetDef handle_getset[] = {
    {"closed", get_closed<H>, nullptr, "True once close() was called (or the handle never opened).", nullptr},
    {"lock", get_lock<H>, nullptr, "The store's process-shared, robust, recursive write lock.", nullptr},
    {"path", get_path<H>, nullptr, "The store's file path.", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

nb::dict stats_dict(const mmstore::Stats& s);

// The handle's store, or Error(kClosed).
template <class H>
H& checked(H& h) {
    if (!h.obj || !h.obj->is_open()) [[unlikely]]
        throw mmstore::Error(ErrorCode::kClosed, h.path, "operation on a closed " + class_name_of(nb::find(&h).ptr(), "store"));
    return h;
}

// `h`, or Error(kInvalidArgument) when a call of it runs without the GIL in another thread: `what` (close,
// compact) would pull the store from under it.
template <class H>
H& refuse_while_busy(H& h, const char* what) {
    if (h.busy != 0) [[unlikely]]
        throw mmstore::Error(ErrorCode::kInvalidArgument, h.path,
                             std::string(what) + "() while another thread of this process is inside a call of this " +
                                 class_name_of(nb::find(&h).ptr(), "store") +
                                 " that runs without the GIL (verify, get_many, iteration); call it after that returns");
    return h;
}

// Binds what Dict and List handles share: construction and the store-level methods.
template <class H>
void bind_handle_common(nb::class_<H>& cls) {
    using Obj = typename decltype(H::obj)::element_type;
    cls.def(
           "__init__",
           [](H* self, const std::string& path, nb::handle create, unsigned mode, bool allow_pickle, bool durable,
              bool readonly, bool verify, bool segment) {
               mmstore::OpenOptions o = make_options(create, mode, durable, readonly);
               o.verify = verify;
               if (segment) {  // SharedDict: memory, not a file; a child after fork reopens it by name
                   o.volatile_memory = true;
                   o.reattach_after_fork = true;
               }
               auto obj = std::make_unique<Obj>(path, o);
               auto* h = new (self) H{std::move(obj), CodecFlags{allow_pickle}, path};
               h->flags.path = &h->path;
           },
           nb::arg("path"), nb::kw_only(), nb::arg("create").none() = nb::none(), nb::arg("mode") = 0600,
           nb::arg("allow_pickle") = true, nb::arg("durable") = false, nb::arg("readonly") = false,
           nb::arg("verify") = true, nb::arg("_segment") = false)
        .def_prop_ro("verify_reads", [](H& h) { return checked(h).obj->store().verifying(); },
                     "Whether reads are checked (the verify= option).")
        .def_prop_ro("allow_pickle", [](H& h) { return h.flags.allow_pickle; })
        .def("_set_serializer",
             [](H& h, nb::object s) {
                 h.serializer = s;
                 h.flags.serializer = s.is_none() ? nullptr : s.ptr();
             },
             "Use s (mmstore._codec.Serializer) instead of pickle for values without a native encoding.")
        .def("_serializer", [](H& h) -> nb::object { return h.serializer.is_valid() ? h.serializer : nb::none(); })
        .def("close",
             [](H& h) {
                 if (!h.obj) return;
                 refuse_while_busy(h, "close");
                 ++h.epoch;  // first: a close that fails half way must not leave iterators pointing into it
                 h.obj->close();
             },
             "Sync and close; further use raises ClosedError.")
        .def("sync", [](H& h) { checked(h).obj->sync(); }, "Make every change so far durable (msync + fsync).")
        .def("verify",
             [](H& h) {
                 checked(h);
                 ReleasedCall<H> unlocked(h);  // reads and checks only C++ memory; may wait for the lock
                 h.obj->verify();
             },
             "Check every invariant of the file; raises CorruptFileError naming the first problem.\n\n"
             "Runs without the GIL: other threads go on meanwhile (close() from one of them raises).")
        .def("compact",
             [](H& h) {
                 refuse_while_busy(checked(h), "compact");
                 ++h.epoch;  // the store object is replaced (or left closed if reopening fails)
                 h.obj->compact();  // with the GIL: see the top of this file
             },
             "Rewrite the store at its minimal size and replace the file atomically.")
        .def("_stats", [](H& h) { return stats_dict(checked(h).obj->stats()); })
        .def_prop_ro("_created", [](H& h) { return checked(h).obj->store().region().created(); })
        .def("_request_unlink_on_last_close",
             [](H& h) {
                 auto& store = checked(h).obj->store();
                 store.check_writable();
                 // One 8-byte store: no lock needed (a close must never wait for a lock holder).
                 __atomic_store_n(&store.region().live().unlink_on_last_close, 1, __ATOMIC_RELEASE);
             })
        .def("_abandon",
             [](H& h) {
                 if (!h.obj) return;
                 refuse_while_busy(h, "_abandon");
                 ++h.epoch;
                 h.obj->abandon();
             }, "Drop the mapping without a clean close (tests).")
        .def("clear", [](H& h) { checked(h).obj->clear(); }, "Remove everything.")
        .def("_change_count", [](H& h) { return checked(h).obj->store().change_count(); })
        .def(
            "wait_for_change",
            [](H& h, nb::handle timeout) {
                auto& store = checked(h).obj->store();
                const std::uint32_t seen = store.change_count();
                double left = timeout.is_none() ? -1.0 : nb::cast<double>(timeout);
                // Sleep in slices so that Ctrl-C (a pending signal) is handled promptly.
                for (;;) {
                    const double slice = left < 0 ? 0.1 : std::min(left, 0.1);
                    bool changed;
                    {
                        nb::gil_scoped_release unlocked;
                        changed = store.wait_for_change(seen, static_cast<std::int64_t>(slice * 1e9));
                    }
                    if (changed) return true;
                    if (PyErr_CheckSignals() != 0) throw nb::python_error();
                    if (left >= 0) {
                        left -= slice;
                        if (left <= 0) return false;
                    }
                    checked(h).obj->store().check_open();
                }
            },
            nb::arg("timeout").none() = nb::none(),
            "Block until another handle writes to the store (True), or until timeout seconds pass (False).");
}

void bind_dict(nb::module_& m);
void bind_list(nb::module_& m);
void bind_shared(nb::module_& m);
void bind_lock(nb::module_& m);
void bind_txn(nb::module_& m);
void bind_list_txn(nb::module_& m);
void bind_snapshot(nb::module_& m);
void bind_list_snapshot(nb::module_& m);

// dict.cpp's nested-table helpers, for txn.cpp. dict_read_value: `for_write` (a transaction's read, which
// a write of the same key usually follows) also starts fetching the value's cache line for writing.
Got dict_read_value(DictHandle* h, PyObject* owner, std::uint64_t cell, std::uint64_t id, std::string_view key,
                    std::uint64_t hv, PyObject** out, bool for_write = false);
bool dict_is_nested_source(DictHandle* h, PyObject* value);
bool dict_build_nested(DictHandle* h, containers::HashTable& parent, PyObject* src, std::string& ref);
PyObject* dict_decode_encoding(DictHandle* h, PyObject* owner, std::string_view enc);
// Whether `o` is a NestedDict view (the type dict.cpp makes for nested-table values).
bool dict_is_nested_view(PyObject* o);
// The native snapshot objects of `with x.snapshot() as s:` (snapshot.cpp, list_snapshot.cpp): a struct P with
// `state` (P::kNew, kOpen, kClosed) and the C++ snapshot `s` (a std::optional) while open.
// The open C++ snapshot of `p`, else the error a read outside the block or after close raises.
template <class P>
auto& snap_active(P& p) {
    if (p.state == P::kNew) throw std::runtime_error("use the snapshot inside its `with` block");
    if (p.state == P::kClosed || !p.s || !p.s->is_open()) throw mmstore::Error(ErrorCode::kClosed, "", "the snapshot is closed");
    return *p.s;
}
// The P behind a CPython slot's `self`, or nullptr with an error set (an object whose __init__ never ran).
template <class P>
P* snap_inst(PyObject* self) {
    if (!nb::inst_ready(self)) [[unlikely]] {
        PyErr_SetString(PyExc_RuntimeError, "the snapshot is not initialized; use x.snapshot()");
        return nullptr;
    }
    return nb::inst_ptr<P>(self);
}

// Element i of a List handle read live, lock-free, decoded in place (list.cpp): the object, or nullptr with
// *end set when i is past the end (no error set), or nullptr with an error set.
PyObject* list_read_live(ListHandle* h, std::uint64_t i, bool* end);
void bind_pool(nb::module_& m);  // pool.cpp
void bind_records(nb::module_& m);
void bind_hash(nb::module_& m);  // hash.cpp

}  // namespace mmstore::py
