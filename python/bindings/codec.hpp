// python/bindings/codec.hpp
//
// The Python side of the value codec (docs/format.md, "Value encoding"): PyObject <-> canonical encoding,
// byte-for-byte the same as mmstore::codec for every non-pickle value. Hot types (None, bool, int, float,
// str, bytes, tuple, list, dict, set, frozenset) are handled here in C++; date, datetime, Decimal, numpy
// arrays and the pickle fallback call the pure-Python helpers in mmstore/_codec.py.
//
// All functions need the GIL. On failure they return false/nullptr with a Python exception set.
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <cstddef>
#include <string>

namespace mmstore::py {

struct CodecFlags {
    bool allow_pickle = true;
    // The store, named in errors raised while encoding or decoding its values (nullptr: none). Points at
    // a string owned by the handle, which outlives every call.
    const std::string* path = nullptr;
    // The store's pickler=/unpickler= pair (mmstore._codec.Serializer), borrowed from the handle that owns
    // it (Handle::serializer); nullptr: plain pickle. Passed to encode_ext/decode_ext in place of
    // allow_pickle, which a store with a serializer always has.
    PyObject* serializer = nullptr;
};

// Appends the encoding of `o`. `key` refuses unhashable values with TypeError, as dict does.
bool encode(PyObject* o, std::string& out, CodecFlags flags, bool key);
// Decodes the value occupying exactly [p, p+n).
PyObject* decode(const char* p, std::size_t n, CodecFlags flags);

// Imports mmstore._codec and mmstore._errors; called once at module init.
bool init_codec();

// Translates the C++ exception in flight (mmstore::Error and std exceptions) into a Python exception.
void set_error_from_exception() noexcept;
// Raises the Python class for an mmstore error code with `message` and `path`.
void raise_error(int code, const std::string& path, const std::string& message, int pid = 0, int sys_errno = 0);

}  // namespace mmstore::py
