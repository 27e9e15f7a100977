// mmstore/containers/spill_store.hpp
//
// SpillStore (DESIGN.md layer 6): the file format and directory discipline under mmstore::Pool and the
// Python mmstore.Pool. A spilled object is one write-once *spill file*: a small header, a buffer table,
// codec-encoded metadata, then raw buffers each starting on a 4096-byte boundary (docs/format.md, section
// "Spill files"). Readers map the whole file read-only and hand out views of the buffers, so restoring an
// object costs one mmap whatever its size; page alignment keeps every array aligned for any dtype.
//
// Why not the store Header of storage/header.hpp: stores are mutable and need its double-buffered commit
// slots; a spill file is written once and published by rename, so one checksummed 64-byte header suffices.
//
// Crash safety. write_spill_file() writes to a temporary name next to the target and renames it into place
// only after the last byte is written, so a file under a final name is always complete. The header carries
// the file's exact length and an XXH3 checksum of header, table and metadata, so a file damaged or cut
// short later is refused (FormatError), never trusted. Buffers can also carry their own XXH3 (`hash_data`),
// which readers verify when asked: Pool::save uses it for standalone files; spill files skip it because
// they live only as long as their pool (durable power-loss safety is not needed for them).
//
// SpillDir gives each pool a private directory `<parent>/mmstore-pool-<pid>-<random>` holding a `lock` file
// with an open-file-description record lock on byte 0 (os::File::range_lock; released by the kernel when
// the owner dies). Creating one first removes every sibling whose lock is not held -- the directories of pools
// whose process died -- so a crash leaves no orphan after the next pool starts in the same parent.
//
// Thread and process safety: write_spill_file and SpillFile are safe to use from any thread; a SpillFile
// is immutable after open. A SpillDir is owned by one pool (one thread at a time).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mmstore/os/file.hpp"

namespace mmstore::containers {

inline constexpr char kSpillMagic[8] = {'M', 'M', 'S', 'P', 'I', 'L', 'L', '\0'};
inline constexpr std::uint32_t kSpillVersion = 1;
inline constexpr std::uint64_t kSpillAlign = 4096;  // buffer alignment: the page size, so views map pages
inline constexpr std::uint32_t kSpillMaxBuffers = 1u << 20;
inline constexpr std::uint32_t kSpillMaxMeta = 16u << 20;  // metadata is small by design (the pickle
                                                           // stream of Python objects is buffer 0)
inline constexpr std::uint32_t kSpillFlagDataHashed = 1;  // every SpillBufferRecord.hash is set

// Offset 0 of a spill file. Written once, before the rename that publishes the file.
struct SpillHeader {
    char magic[8];             // kSpillMagic
    std::uint32_t version;     // kSpillVersion; readers refuse newer versions
    std::uint32_t flags;       // kSpillFlag*
    std::uint64_t file_size;   // exact length of the complete file in bytes
    std::uint32_t nbuffers;    // records in the buffer table (<= kSpillMaxBuffers)
    std::uint32_t meta_len;    // bytes of codec-encoded metadata after the table (<= kSpillMaxMeta)
    std::uint64_t data_offset; // first byte after header, table and metadata, rounded up to kSpillAlign
    std::uint64_t reserved[2]; // 0
    std::uint64_t checksum;    // XXH3-64 of [0, 56) ++ table ++ metadata
};
static_assert(sizeof(SpillHeader) == 64);
static_assert(offsetof(SpillHeader, file_size) == 16 && offsetof(SpillHeader, data_offset) == 32);
static_assert(offsetof(SpillHeader, checksum) == 56);

// The buffer table follows the header: one record per raw buffer.
struct SpillBufferRecord {
    std::uint64_t offset;  // from the start of the file; a multiple of kSpillAlign, >= data_offset
    std::uint64_t length;  // bytes
    std::uint64_t hash;    // XXH3-64 of the bytes when kSpillFlagDataHashed, else 0
};
static_assert(sizeof(SpillBufferRecord) == 24);

struct SpillWriteOptions {
    bool sync = false;       // fsync the file and its directory before returning (standalone files)
    bool hash_data = false;  // store an XXH3 of every buffer (kSpillFlagDataHashed)
    unsigned mode = 0600;
};

// Writes a complete spill file at `path` (temp name + rename; see above) and returns its size in bytes.
// Throws mmstore::Error: kDiskFull on ENOSPC/EDQUOT (nothing is left behind), kIo otherwise.
std::uint64_t write_spill_file(const std::string& path, std::string_view meta,
                               std::span<const std::span<const std::byte>> buffers, const SpillWriteOptions& opt = {});

// A spill file mapped read-only and validated. Views returned by meta() and buffer() stay valid as long as
// this object lives (share it through std::shared_ptr), even after the file is deleted: the mapping keeps
// the inode. Opening costs one mmap plus a checksum of header+metadata; buffers are not read unless
// verify_data is set and the file carries data hashes.
class SpillFile {
public:
    // Throws FormatError: kTruncated (shorter than its header says), kForeign (no magic), kVersion (newer),
    // kCorrupt (checksum, bounds or a data hash); Error kNotFound when missing.
    static std::shared_ptr<const SpillFile> open(const std::string& path, bool verify_data = false);
    ~SpillFile();
    SpillFile(const SpillFile&) = delete;
    SpillFile& operator=(const SpillFile&) = delete;

    const std::string& path() const noexcept { return path_; }
    std::uint64_t size() const noexcept { return size_; }
    // The whole mapped file; buffer(i) lies inside it.
    std::span<const std::byte> mapping() const noexcept { return {static_cast<const std::byte*>(base_), size_}; }
    std::string_view meta() const noexcept { return meta_; }
    std::size_t buffer_count() const noexcept { return buffers_.size(); }
    std::span<const std::byte> buffer(std::size_t i) const noexcept { return buffers_[i]; }
    bool data_hashed() const noexcept { return data_hashed_; }

private:
    SpillFile() = default;
    std::string path_;
    const void* base_ = nullptr;
    std::uint64_t size_ = 0;
    std::string_view meta_;
    std::vector<std::span<const std::byte>> buffers_;
    bool data_hashed_ = false;
};

// A pool's private directory (see above). Movable; close() or the destructor removes the directory and
// everything in it -- in the creating process only: a forked child that inherited it just drops its copy
// of the lock descriptor, so a child exiting never deletes its parent's spill files.
class SpillDir {
public:
    SpillDir() = default;
    // Creates `parent` if missing (one level), removes orphans there, then creates and locks a new directory.
    static SpillDir create(const std::string& parent);
    ~SpillDir() { close(); }
    SpillDir(SpillDir&&) noexcept = default;
    SpillDir& operator=(SpillDir&& other) noexcept {
        if (this != &other) {
            close();
            path_ = std::move(other.path_);
            lock_ = std::move(other.lock_);
            owner_pid_ = other.owner_pid_;
        }
        return *this;
    }

    const std::string& path() const noexcept { return path_; }
    std::string file(std::string_view name) const { return path_ + "/" + std::string(name); }
    bool is_open() const noexcept { return lock_.is_open(); }
    void close() noexcept;

    // Removes every pool directory in `parent` whose lock no live process holds; returns how many.
    static std::size_t remove_orphans(const std::string& parent) noexcept;

private:
    std::string path_;
    os::File lock_;
    int owner_pid_ = 0;
};

}  // namespace mmstore::containers
