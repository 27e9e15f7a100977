// python/bindings/pool.cpp -- the native half of mmstore.Pool (python/mmstore/_pool.py): spill files and
// pool directories from containers/spill_store.hpp.
//
//   _spill_write(path, meta, buffers, sync=False, hash_data=False) -> int   writes a spill file (GIL released)
//   _SpillMapping(path, verify=False)   a mapped, validated spill file; exports the whole mapping read-only
//                                       through the buffer protocol, so memoryview slices of it (and numpy
//                                       arrays over those) keep the mapping alive however long they live
//   _SpillDir(parent)                   a pool's private locked directory; _remove_orphans(parent)
//   _trim_heap()                        returns freed heap memory to the OS (os::trim_heap)
//   _inject_write_failures(errno, n)    test hook: the next n file writes fail with errno
#include <nanobind/stl/string.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/vector.h>

#include <memory>
#include <utility>
#include <vector>

#include "handles.hpp"
#include "mmstore/containers/spill_store.hpp"

namespace mmstore::py {

namespace {

using containers::SpillDir;
using containers::SpillFile;

struct SpillMapping {
    std::shared_ptr<const SpillFile> file;
};

int mapping_getbuffer(PyObject* self, Py_buffer* view, int flags) {
    auto* m = nb::inst_ptr<SpillMapping>(self);
    if ((flags & PyBUF_WRITABLE) == PyBUF_WRITABLE) {
        PyErr_SetString(PyExc_BufferError, "spill file mappings are read-only");
        view->obj = nullptr;
        return -1;
    }
    const auto whole = m->file->mapping();
    return PyBuffer_FillInfo(view, self, const_cast<std::byte*>(whole.data()), static_cast<Py_ssize_t>(whole.size()), 1,
                             flags);
}

void mapping_releasebuffer(PyObject*, Py_buffer*) {}

PyType_Slot mapping_slots[] = {
    {Py_bf_getbuffer, reinterpret_cast<void*>(mapping_getbuffer)},
    {Py_bf_releasebuffer, reinterpret_cast<void*>(mapping_releasebuffer)},
    {0, nullptr},
};

// Py_buffers of the objects to write, released (with the GIL held) when it goes out of scope.
struct Buffers {
    std::vector<Py_buffer> views;
    ~Buffers() {
        for (auto& v : views) PyBuffer_Release(&v);
    }
};

std::uint64_t spill_write(const std::string& path, nb::bytes meta, nb::list buffers, bool sync, bool hash_data) {
    Buffers held;
    held.views.reserve(buffers.size());
    std::vector<std::span<const std::byte>> spans;
    spans.reserve(buffers.size());
    for (nb::handle b : buffers) {
        Py_buffer v;
        if (PyObject_GetBuffer(b.ptr(), &v, PyBUF_C_CONTIGUOUS) != 0) throw nb::python_error();
        held.views.push_back(v);
        spans.emplace_back(static_cast<const std::byte*>(v.buf), static_cast<std::size_t>(v.len));
    }
    const std::string_view m(meta.c_str(), meta.size());
    nb::gil_scoped_release unlocked;
    return containers::write_spill_file(path, m, spans, containers::SpillWriteOptions{sync, hash_data, 0600});
}

}  // namespace

void bind_pool(nb::module_& m) {
    m.def("_spill_write", &spill_write, nb::arg("path"), nb::arg("meta"), nb::arg("buffers"), nb::arg("sync") = false,
          nb::arg("hash_data") = false);

    nb::class_<SpillMapping>(m, "_SpillMapping", nb::type_slots(mapping_slots))
        .def("__init__",
             [](SpillMapping* self, const std::string& path, bool verify) {
                 std::shared_ptr<const SpillFile> f;
                 {
                     nb::gil_scoped_release unlocked;
                     f = SpillFile::open(path, verify);
                 }
                 new (self) SpillMapping{std::move(f)};
             },
             nb::arg("path"), nb::arg("verify") = false)
        .def_prop_ro("path", [](const SpillMapping& s) { return s.file->path(); })
        .def_prop_ro("size", [](const SpillMapping& s) { return s.file->size(); })
        .def_prop_ro("meta", [](const SpillMapping& s) {
            const auto meta = s.file->meta();
            return nb::bytes(meta.data(), meta.size());
        })
        .def_prop_ro("ranges", [](const SpillMapping& s) {
            // (offset, length) of every buffer inside the mapping.
            std::vector<std::pair<std::uint64_t, std::uint64_t>> r;
            const std::byte* base = s.file->mapping().data();
            for (std::size_t i = 0; i < s.file->buffer_count(); ++i)
                r.emplace_back(static_cast<std::uint64_t>(s.file->buffer(i).data() - base), s.file->buffer(i).size());
            return r;
        });

    nb::class_<SpillDir>(m, "_SpillDir")
        .def("__init__", [](SpillDir* self, const std::string& parent) { new (self) SpillDir(SpillDir::create(parent)); },
             nb::arg("parent"))
        .def_prop_ro("path", [](const SpillDir& d) { return d.path(); })
        .def_prop_ro("closed", [](const SpillDir& d) { return !d.is_open(); })
        .def("close", &SpillDir::close);
    m.def("_remove_orphans", &SpillDir::remove_orphans, nb::arg("parent"));
    m.def("_trim_heap", [] {
        nb::gil_scoped_release unlocked;
        os::trim_heap();
    });
    m.def("_inject_write_failures", &os::inject_write_failures, nb::arg("errno"), nb::arg("count") = 1);
}

}  // namespace mmstore::py
