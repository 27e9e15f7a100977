// python/bindings/shared_dict.cpp -- the segment-level helpers behind mmstore.SharedDict: name validation
// and paths, listing, unlinking (mmstore::SharedDict's static functions). The dict itself is _Dict opened
// with _segment=True (dict.cpp): one engine, one binding.
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include "handles.hpp"
#include "mmstore/shared_dict.hpp"

namespace mmstore::py {

void bind_shared(nb::module_& m) {
    m.def("shared_segment_path", [](const std::string& name) { return mmstore::SharedDict::segment_path(name); },
          nb::arg("name"), "The /dev/shm path of SharedDict `name`; ValueError for an invalid name.");
    m.def("unlink_shared", [](const std::string& name) { mmstore::SharedDict::unlink_by_name(name); }, nb::arg("name"));
    m.def(
        "shared_segments",
        [] {
            std::vector<std::tuple<std::string, std::uint64_t, std::uint32_t, bool>> out;
            for (const auto& i : mmstore::SharedDict::list()) out.emplace_back(i.name, i.size, i.creator_pid, i.in_use);
            return out;
        },
        "(name, size, creator_pid, in_use) of every SharedDict segment on this machine.");
}

}  // namespace mmstore::py
