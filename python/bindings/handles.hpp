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

struct DictHandle {
    std::unique_ptr<mmstore::Dict> d;
    CodecFlags flags;
};

struct ListHandle {
    std::unique_ptr<mmstore::List> l;
    CodecFlags flags;
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

mmstore::OpenOptions make_options(nb::handle create, unsigned mode, bool durable, bool readonly);

void bind_dict(nb::module_& m);
void bind_list(nb::module_& m);

}  // namespace mmstore::py
