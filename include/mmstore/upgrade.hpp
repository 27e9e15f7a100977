// mmstore/upgrade.hpp
//
// mmstore::upgrade -- converts a Dict or List file written by mmstore 0.2 (store format 2) to the current
// format (3: checked words, docs/format.md §3), in place. Format 3 builds refuse format 2 files with
// UnsupportedVersionError naming this function (and the `mmstore upgrade PATH` command), rather than
// misreading them: the word layout changed, so a version-2 word read as a version-3 word would be wrong.
//
// The conversion reads the old file read-only, checks everything it copies (the headers' checksums, every
// record's checksum, every encoding's shape) and writes the entries or elements, in order, into a fresh
// file next to the original, which then replaces it with one rename (as compact() does); on any failure
// the original is left untouched. Cost: one pass over the file, O(file) time, O(1) anonymous memory.
// Errors: FormatError(kVersion) for a format it cannot convert (other than 2; Vector files: rebuild them),
// FormatError(kCorrupt) for a damaged file or one not closed cleanly (open it once with mmstore 0.2, which
// repairs it, then upgrade), Error(kIo/kNotFound) from the filesystem.
// Process safety: no other process may have the file open while it is converted.
#pragma once

#include <cstdint>
#include <string>

namespace mmstore {

struct UpgradeResult {
    std::uint32_t from_version = 0;  // the file's format before (== to_version: it was already current)
    std::uint32_t to_version = 0;
    std::uint32_t kind = 0;          // storage::StoreKind: 1 Dict, 2 List
    std::uint64_t entries = 0;       // keys or elements copied
};

UpgradeResult upgrade(const std::string& path);

}  // namespace mmstore
