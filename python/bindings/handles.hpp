// python/bindings/handles.hpp
//
// The C++ state behind the Python handle types mmstore._core._Dict and _List, and helpers shared by
// their slot functions. The hot paths (item get/set/delete, contains, len, iteration, append) are raw
// CPython slot functions installed with nb::type_slots, so a lookup costs one C call, not a nanobind
// dispatch. Everything runs under the GIL; a handle is not shared across threads without it.
#pragma once

#include <nanobind/nanobind.h>

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

// Scratch buffers reused by every call (the GIL serializes them).
inline std::string& scratch_key() {
    static std::string s;
    return s;
}
inline std::string& scratch_value() {
    static std::string s;
    return s;
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
                if (n <= 7) return PyUnicode_DecodeUTF8(reinterpret_cast<const char*>(slot), static_cast<Py_ssize_t>(n), "strict");
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
