// src/api/compact.hpp (internal)
//
// The protocol shared by Dict::compact and List::compact: write a fresh store next to the original
// ("<path>.compact.<pid>", removed by the next writer's open if a kill interrupts us), copy the live
// content with `copy(fresh)`, cut the file to its minimal size, sync it, then rename it over the original
// (atomic) and sync the directory. The caller then reopens `path`.
#pragma once

#include <unistd.h>

#include <string>

#include "mmstore/containers/store.hpp"
#include "mmstore/os/file.hpp"
#include "mmstore/storage/region.hpp"

namespace mmstore::detail {

template <class Container, class Copy>
void rewrite_compacted(const std::string& path, storage::OpenOptions options, Copy&& copy) {
    const std::string tmp = path + ".compact." + std::to_string(::getpid());
    os::remove_file(tmp);
    {
        options.create = storage::OpenOptions::Create::kAlways;
        options.durable = false;
        Container out(tmp, options);
        copy(out);
        out.store().region().shrink(out.store().arena().trim());
        out.close();  // synced
    }
    os::rename_file(tmp, path);
    os::fsync_parent_dir(path);
}

}  // namespace mmstore::detail
