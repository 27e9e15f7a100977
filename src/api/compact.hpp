// src/api/compact.hpp (internal)
//
// The protocol shared by Dict::compact and List::compact: write a fresh store next to the original
// ("<path>.compact.<pid>", removed by the next writer's open if a kill interrupts us), copy the live
// content with `copy(fresh)`, cut the file to its minimal size, sync it, then rename it over the original
// (atomic) and sync the directory. The caller then reopens `path`. When `path` is a symbolic link, all of
// this happens next to the file it resolves to. On failure the copy is removed and the original is intact.
#pragma once

#include <unistd.h>

#include <string>

#include "mmstore/containers/store.hpp"
#include "mmstore/os/file.hpp"
#include "mmstore/storage/region.hpp"

namespace mmstore::detail {

template <class Container, class Copy>
void rewrite_compacted(const std::string& path, storage::OpenOptions options, Copy&& copy) {
    // Through a symbolic link, the file the link points at is rewritten and the link stays a link.
    const std::string target = os::resolve_symlinks(path);
    const std::string tmp = target + ".compact." + std::to_string(::getpid());
    os::remove_file(tmp);
    try {
        options.create = storage::OpenOptions::Create::kAlways;
        options.durable = false;
        Container out(tmp, options);
        copy(out);
        out.store().region().shrink(out.store().arena().trim());
        out.close();  // synced
        os::rename_file(tmp, target);
    } catch (...) {
        os::remove_file(tmp);  // a failed compaction (a full disk, say) leaves no copy behind
        throw;
    }
    os::fsync_parent_dir(target);
}

}  // namespace mmstore::detail
