// python/bindings/recycle.hpp
//
// Handing out an element object again instead of allocating a new one, for iterators over inline ints and
// ASCII strs (docs/design.md, "Where the nanoseconds go": creating and freeing one object per element was
// 42% of `for x in l: pass`).
//
// An iterator keeps a reference to each of the last two objects it built. When `for x in it:` asks for
// element k, the object it was handed at step k-2 has been replaced in `x` (at step k-1) and, unless the
// caller kept it somewhere, its only reference is the iterator's: Py_REFCNT == 1. No other code can reach an
// object whose only reference we hold, so writing the new value into it is invisible, exactly like
// CPython's own zip(), enumerate() and dict.items() iterators reusing their result tuple. Any other
// reference (a list that collected it, a variable, a dict key, sys.intern) makes the count higher and the
// object is left alone: a new one is allocated as before.
//
// Writing the value needs the object layouts of CPython 3.9-3.13 (an int's digits and size, a compact
// ASCII str's characters, length and cached hash), which are not part of the limited API. On any other
// version, and on free-threaded builds (where Py_REFCNT == 1 does not prove ownership), the iterator
// allocates every object, as before.
#pragma once

#include <Python.h>
#if PY_VERSION_HEX < 0x030B0000
#include <longintrepr.h>  // 3.11 and later include it from Python.h
#endif

#include <cstdint>
#include <cstring>

#include "handles.hpp"
#include "mmstore/containers/word.hpp"

#if PY_VERSION_HEX >= 0x03090000 && PY_VERSION_HEX < 0x030E0000 && !defined(Py_GIL_DISABLED) && PyLong_SHIFT == 30
#define MMSTORE_RECYCLE_OBJECTS 1
#else
#define MMSTORE_RECYCLE_OBJECTS 0
#endif

namespace mmstore::py {

// True for the inline words decode_inline_native() decodes (ints, ASCII strs, bytes): those an iterator may
// keep as words and decode when they are handed out.
inline bool native_inline(std::uint64_t w) noexcept {
    const std::size_t n = containers::inline_len(w);
    switch (containers::inline_kind(w)) {
        case containers::InlineKind::kInt:
        case containers::InlineKind::kBytes: return n <= containers::kInlineMax;
        case containers::InlineKind::kStr: return n <= containers::kInlineMax && (w & 0x0000808080808080ull) == 0;
        case containers::InlineKind::kAscii7: return n == 7;
        default: return false;
    }
}

#if MMSTORE_RECYCLE_OBJECTS
namespace recycle_detail {

// Number of 30-bit digits of |v| for |v| < 2^60 (inline ints are below 2^47).
inline unsigned digits_of(std::uint64_t magnitude) noexcept { return magnitude < (std::uint64_t{1} << 30) ? 1u : 2u; }

// Writes v into the exact int `o` when it has the same number of digits; false otherwise (o unchanged).
// v is outside CPython's small-int cache [-5, 256] and o was built by PyLong_FromLongLong for such a value.
inline bool overwrite_long(PyObject* o, std::int64_t v) noexcept {
    if (!PyLong_CheckExact(o)) return false;
    const std::uint64_t mag = v < 0 ? 0 - static_cast<std::uint64_t>(v) : static_cast<std::uint64_t>(v);
    const unsigned nd = digits_of(mag);
    auto* l = reinterpret_cast<PyLongObject*>(o);
#if PY_VERSION_HEX >= 0x030C0000
    // 3.12, 3.13: lv_tag = ndigits << 3 | sign (0 positive, 2 negative).
    if ((l->long_value.lv_tag >> 3) != nd) return false;
    l->long_value.lv_tag = (static_cast<std::uintptr_t>(nd) << 3) | (v < 0 ? 2u : 0u);
    digit* d = l->long_value.ob_digit;
#else
    const Py_ssize_t size = Py_SIZE(o);
    if (static_cast<unsigned>(size < 0 ? -size : size) != nd) return false;
    Py_SET_SIZE(o, v < 0 ? -static_cast<Py_ssize_t>(nd) : static_cast<Py_ssize_t>(nd));
    digit* d = l->ob_digit;
#endif
    d[0] = static_cast<digit>(mag & PyLong_MASK);
    if (nd == 2) d[1] = static_cast<digit>(mag >> PyLong_SHIFT);
    return true;
}

// Stores the low n bytes of `chars` (2 <= n <= 7) at dst with two overlapping stores: a variable-length
// memcpy is a library call, which costs as much as the rest of a reuse.
inline void store_chars(void* dst, std::uint64_t chars, std::size_t n) noexcept {
    auto* d = static_cast<char*>(dst);
    if (n >= 4) {
        const auto lo = static_cast<std::uint32_t>(chars), hi = static_cast<std::uint32_t>(chars >> (8 * (n - 4)));
        std::memcpy(d, &lo, 4);
        std::memcpy(d + n - 4, &hi, 4);
    } else {
        const auto lo = static_cast<std::uint16_t>(chars), hi = static_cast<std::uint16_t>(chars >> (8 * (n - 2)));
        std::memcpy(d, &lo, 2);
        std::memcpy(d + n - 2, &hi, 2);
    }
}

// Writes n ASCII characters into the exact str `o` when it is a compact ASCII str of that length that is
// not interned; resets its cached hash. false otherwise (o unchanged).
inline bool overwrite_ascii(PyObject* o, std::uint64_t chars, Py_ssize_t n) noexcept {
    if (!PyUnicode_CheckExact(o) || !PyUnicode_IS_COMPACT_ASCII(o) || PyUnicode_GET_LENGTH(o) != n ||
        PyUnicode_CHECK_INTERNED(o))
        return false;
    auto* a = reinterpret_cast<PyASCIIObject*>(o);
#if PY_VERSION_HEX < 0x030C0000
    if (a->wstr != nullptr) return false;  // a wchar_t copy made by a legacy API would go stale
#endif
    store_chars(PyUnicode_DATA(o), chars, static_cast<std::size_t>(n));
    a->hash = -1;
    return true;
}

}  // namespace recycle_detail
#endif

// The last two objects an iterator built (see the top of this file). Not thread-safe: used under the GIL.
struct Recycler {
    PyObject* spare[2];
    unsigned at;

    void init() noexcept {
        spare[0] = spare[1] = nullptr;
        at = 0;
    }
    void clear() noexcept {
        Py_CLEAR(spare[0]);
        Py_CLEAR(spare[1]);
    }

    // A new reference to the value of `w`, an intact word for which native_inline(w) holds; nullptr with
    // MemoryError set if allocation failed.
    PyObject* decode(std::uint64_t w) noexcept {
#if MMSTORE_RECYCLE_OBJECTS
        at ^= 1u;
        PyObject*& s = spare[at];
        const std::size_t n = containers::inline_len(w);
        switch (containers::inline_kind(w)) {
            case containers::InlineKind::kInt: {
                const int shift = 64 - 8 * static_cast<int>(n);
                const std::int64_t v = n == 0 ? 0 : static_cast<std::int64_t>(w << shift) >> shift;
                if (v >= -5 && v <= 256) return PyLong_FromLongLong(v);  // CPython's shared small ints
                if (s != nullptr && Py_REFCNT(s) == 1 && recycle_detail::overwrite_long(s, v)) return take(s);
                return keep(s, PyLong_FromLongLong(v));
            }
            case containers::InlineKind::kStr:
            case containers::InlineKind::kAscii7: {
                if (n < 2) break;  // the empty str and 1-character strs may be CPython's shared ones
                const std::uint64_t chars = n == 7 ? containers::ascii7_chars(w) : w;
                if (s != nullptr && Py_REFCNT(s) == 1 &&
                    recycle_detail::overwrite_ascii(s, chars, static_cast<Py_ssize_t>(n)))
                    return take(s);
                PyObject* x = PyUnicode_New(static_cast<Py_ssize_t>(n), 127);
                if (x != nullptr) recycle_detail::store_chars(PyUnicode_DATA(x), chars, n);
                return keep(s, x);
            }
            default: break;
        }
#endif
        PyObject* x = nullptr;
        decode_inline_native(w, &x);
        return x;
    }

private:
    static PyObject* take(PyObject* s) noexcept {
        Py_INCREF(s);
        return s;
    }
    // Makes `x` (a new object, or nullptr) the spare in `s`, dropping the previous one, and returns x.
    static PyObject* keep(PyObject*& s, PyObject* x) noexcept {
        if (x == nullptr) return nullptr;
        Py_INCREF(x);
        Py_XSETREF(s, x);
        return x;
    }
};

// True for a word an iterator may decode through a Recycler: inline, of a native kind, and intact (when the
// handle verifies words; otherwise decode_snapshot's checks are skipped alike).
inline bool recyclable(std::uint64_t w, bool verifying) noexcept {
    return containers::is_inline(w) && (!verifying || containers::word_intact(w)) && native_inline(w);
}

// decode_snapshot() for a recyclable word loaded from the mapping after read_begin() returned `snap`:
// decoded through `r`, trusted only if no writer reused the memory it came from meanwhile (kRetry).
inline Got decode_recycled(Recycler& r, const containers::Store& store, std::uint64_t w, std::uint64_t snap,
                           PyObject** out) {
    *out = r.decode(w);
    if (*out == nullptr) return Got::kError;
    if (!store.read_valid(snap)) {
        Py_CLEAR(*out);
        return Got::kRetry;
    }
    return Got::kOk;
}

}  // namespace mmstore::py
