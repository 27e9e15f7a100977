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

// The handles live inside their Python objects and never move, so flags.path may point at `path`.
struct DictHandle {
    std::unique_ptr<mmstore::Dict> d;
    CodecFlags flags;
    std::string path;
};

struct ListHandle {
    std::unique_ptr<mmstore::List> l;
    CodecFlags flags;
    std::string path;
};

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
                    return PyUnicode_DecodeUTF8(reinterpret_cast<const char*>(slot), static_cast<Py_ssize_t>(n), "strict");
                }
                break;
            case containers::InlineKind::kBytes:
                if (n <= 7) return PyBytes_FromStringAndSize(reinterpret_cast<const char*>(slot), static_cast<Py_ssize_t>(n));
                break;
            default: break;
        }
    }
    try {
        containers::WordBuf buf;
        const std::string_view v = store.view(slot, buf);
        return decode(v.data(), v.size(), flags);
    } catch (...) {
        set_error_from_exception();  // store errors already name the path
        return nullptr;
    }
}

mmstore::OpenOptions make_options(nb::handle create, unsigned mode, bool durable, bool readonly);

void bind_dict(nb::module_& m);
void bind_list(nb::module_& m);

}  // namespace mmstore::py
