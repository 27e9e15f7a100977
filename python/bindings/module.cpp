// python/bindings/module.cpp -- the private extension mmstore._core, re-exported by mmstore/__init__.py.
#include <nanobind/nanobind.h>

#include "codec.hpp"
#include "handles.hpp"
#include "mmstore/error.hpp"
#include "mmstore/storage/header.hpp"
#include "mmstore/upgrade.hpp"
#include <nanobind/stl/string.h>

#include <stdexcept>

namespace nb = nanobind;

namespace {

PyObject* py_encode(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "encode(value, key=False)");
        return nullptr;
    }
    const bool key = nargs == 2 && PyObject_IsTrue(args[1]) == 1;
    std::string out;
    if (!mmstore::py::encode(args[0], out, mmstore::py::CodecFlags{true}, key)) return nullptr;
    return PyBytes_FromStringAndSize(out.data(), static_cast<Py_ssize_t>(out.size()));
}

PyObject* py_decode(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "decode(data, allow_pickle=True)");
        return nullptr;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) != 0) return nullptr;
    const bool allow = nargs < 2 || PyObject_IsTrue(args[1]) == 1;
    PyObject* r = mmstore::py::decode(static_cast<const char*>(view.buf), static_cast<std::size_t>(view.len),
                                      mmstore::py::CodecFlags{allow});
    PyBuffer_Release(&view);
    return r;
}

PyMethodDef module_methods[] = {
    {"encode", reinterpret_cast<PyCFunction>(reinterpret_cast<void*>(py_encode)), METH_FASTCALL,
     "encode(value, key=False, /)\n--\n\nCanonical mmstore encoding of value (docs/format.md)."},
    {"decode", reinterpret_cast<PyCFunction>(reinterpret_cast<void*>(py_decode)), METH_FASTCALL,
     "decode(data, allow_pickle=True, /)\n--\n\nDecode one encoded value."},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

NB_MODULE(_core, m) {
    m.doc() = "mmstore native core (private; use the mmstore package).";
    if (!mmstore::py::init_codec()) throw nb::python_error();
    nb::register_exception_translator([](const std::exception_ptr& p, void*) {
        // Only mmstore's own errors and index errors are translated here; everything else (including
        // nb::python_error) falls through to nanobind's default handling.
        try {
            std::rethrow_exception(p);
        } catch (const mmstore::Error&) {
            mmstore::py::set_error_from_exception();
        } catch (const std::out_of_range&) {
            mmstore::py::set_error_from_exception();
        }
    });
    if (PyModule_AddFunctions(m.ptr(), module_methods) != 0) throw nb::python_error();
    // A thread that must wait for a store's lock lets go of the GIL meanwhile: the holder may be another
    // thread of this process that needs the GIL to finish (a `with d.lock:` block, a pickle decode).
    mmstore::containers::Store::set_blocking_hooks(
        {[]() -> void* { return PyGILState_Check() ? static_cast<void*>(PyEval_SaveThread()) : nullptr; },
         [](void* t) {
             if (t != nullptr) PyEval_RestoreThread(static_cast<PyThreadState*>(t));
         }});
    m.attr("FORMAT_VERSION") = mmstore::storage::kFormatVersion;
    m.def(
        "upgrade",
        [](const std::string& path) {
            const mmstore::UpgradeResult r = mmstore::upgrade(path);
            nb::dict d;
            d["from_version"] = r.from_version;
            d["to_version"] = r.to_version;
            d["entries"] = r.entries;
            return d;
        },
        nb::arg("path"),
        "Convert a Dict or List file written by mmstore 0.2 (format 2) to the current format, in place "
        "(mmstore::upgrade). Returns {'from_version', 'to_version', 'entries'}.");
    mmstore::py::bind_dict(m);
    mmstore::py::bind_list(m);
    mmstore::py::bind_shared(m);
    mmstore::py::bind_lock(m);
    mmstore::py::bind_txn(m);
    mmstore::py::bind_list_txn(m);
    mmstore::py::bind_snapshot(m);
    mmstore::py::bind_list_snapshot(m);
    mmstore::py::bind_pool(m);
    mmstore::py::bind_records(m);
    mmstore::py::bind_hash(m);
}
