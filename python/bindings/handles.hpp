// python/bindings/handles.hpp
//
// The C++ state behind the Python handle types mmstore._core._Dict and _List, and helpers shared by
// their slot functions. The hot paths (item get/set/delete, contains, len, iteration, append) are raw
// CPython slot functions installed with nb::type_slots, so a lookup costs one C call, not a nanobind
// dispatch. Everything runs under the GIL; a handle is not shared across threads without it.
#pragma once

#include <nanobind/nanobind.h>

#include <cstring>
#include <memory>
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

// Decodes the value held by the word at `*slot` (fast paths for inline ints, strs and bytes, which need
// no tag reconstruction), or nullptr with a Python error set.
inline PyObject* decode_word(const containers::Store& store, const std::uint64_t* slot, CodecFlags flags) {
    const std::uint64_t w = *slot;
    if (containers::is_inline(w)) {
        const std::size_t n = containers::inline_len(w);
        switch (containers::inline_kind(w)) {
            case containers::InlineKind::kInt:
                if (n <= 7) {
                    const int shift = 64 - 8 * static_cast<int>(n);
                    const auto v = n == 0 ? 0 : static_cast<std::int64_t>(w << shift) >> shift;
                    return PyLong_FromLongLong(v);
                }
                break;
            case containers::InlineKind::kStr:
                if (n <= 7) {
                    if ((w & 0x0080808080808080ull) == 0) {  // ASCII: build the str directly, no UTF-8 decoder
                        PyObject* s = PyUnicode_New(static_cast<Py_ssize_t>(n), 127);
                        if (s != nullptr) std::memcpy(PyUnicode_DATA(s), slot, n);
                        return s;
                    }
                }
                break;  // non-ASCII: the generic decoder validates the UTF-8 and reports damage as corruption
            case containers::InlineKind::kBytes:
                if (n <= 7) return PyBytes_FromStringAndSize(reinterpret_cast<const char*>(slot), static_cast<Py_ssize_t>(n));
                break;
            default: break;
        }
    }
    try {
        containers::WordBuf buf;
        const std::string_view v = store.view(slot, buf);
        // Decode from a private copy: decoding dates, Decimals, arrays and pickles runs Python code, which
        // can release the GIL; another thread could then overwrite the record or close (unmap) the store
        // under a decoder still reading the mapping.
        if (v.data() == buf.bytes) return decode(v.data(), v.size(), flags);
        char small[256];
        if (v.size() <= sizeof small) {
            std::memcpy(small, v.data(), v.size());
            return decode(small, v.size(), flags);
        }
        const std::string copy(v);
        return decode(copy.data(), copy.size(), flags);
    } catch (...) {
        set_error_from_exception();  // store errors already name the path
        return nullptr;
    }
}

mmstore::OpenOptions make_options(nb::handle create, unsigned mode, bool durable, bool readonly);

// The handle of `self` if it is initialized and open; otherwise nullptr with ClosedError set. `kind` names
// the type in the message ("Dict", "List").
template <class H>
H* open_handle(PyObject* self, const char* kind) {
    H* h = handle_of<H>(self);
    if (h == nullptr) return nullptr;
    if (!h->obj || !h->obj->is_open()) [[unlikely]] {
        raise_error(static_cast<int>(ErrorCode::kClosed), h->path, std::string("operation on a closed ") + kind);
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

template <class H>
inline PyGetSetDef handle_getset[] = {
    {"closed", get_closed<H>, nullptr, "True once close() was called (or the handle never opened).", nullptr},
    {"path", get_path<H>, nullptr, "The store's file path.", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

nb::dict stats_dict(const mmstore::Stats& s);

// The handle's store, or Error(kClosed).
template <class H>
H& checked(H& h) {
    if (!h.obj || !h.obj->is_open()) throw mmstore::Error(ErrorCode::kClosed, h.path, "operation on a closed store");
    return h;
}

// Binds what Dict and List handles share: construction and the store-level methods.
template <class H>
void bind_handle_common(nb::class_<H>& cls) {
    using Obj = typename decltype(H::obj)::element_type;
    cls.def(
           "__init__",
           [](H* self, const std::string& path, nb::handle create, unsigned mode, bool allow_pickle, bool durable,
              bool readonly) {
               auto obj = std::make_unique<Obj>(path, make_options(create, mode, durable, readonly));
               auto* h = new (self) H{std::move(obj), CodecFlags{allow_pickle}, path};
               h->flags.path = &h->path;
           },
           nb::arg("path"), nb::kw_only(), nb::arg("create").none() = nb::none(), nb::arg("mode") = 0600,
           nb::arg("allow_pickle") = true, nb::arg("durable") = false, nb::arg("readonly") = false)
        .def_prop_ro("allow_pickle", [](H& h) { return h.flags.allow_pickle; })
        .def("close", [](H& h) { if (h.obj) h.obj->close(); }, "Sync and close; further use raises ClosedError.")
        .def("sync", [](H& h) { checked(h).obj->sync(); }, "Make every change so far durable (msync + fsync).")
        .def("verify", [](H& h) { checked(h).obj->verify(); },
             "Check every invariant of the file; raises CorruptFileError naming the first problem.")
        .def("compact", [](H& h) { checked(h).obj->compact(); },
             "Rewrite the store at its minimal size and replace the file atomically.")
        .def("_stats", [](H& h) { return stats_dict(checked(h).obj->stats()); })
        .def("_abandon", [](H& h) { if (h.obj) h.obj->abandon(); }, "Drop the mapping without a clean close (tests).")
        .def("clear", [](H& h) { checked(h).obj->clear(); }, "Remove everything.");
}

void bind_dict(nb::module_& m);
void bind_list(nb::module_& m);
void bind_records(nb::module_& m);

}  // namespace mmstore::py
