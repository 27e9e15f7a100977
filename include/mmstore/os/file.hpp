// mmstore/os/file.hpp
//
// The only code in mmstore that calls the operating system (DESIGN.md layer 1): file descriptors, size
// changes, space reservation, hole punching, advisory locks and address-space mappings. Everything above
// this header is portable C++. Every failure throws mmstore::Error with the path and errno.
//
// Thread safety: a File may be used from one thread at a time; the free functions are thread-safe.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>

namespace mmstore::os {

// Size of an OS page; mmstore's on-disk layout uses a fixed 4096-byte unit (kPageSize) independent of it.
std::size_t os_page_size() noexcept;

enum class LockMode { kShared, kExclusive };

class File {
public:
    File() = default;
    ~File();
    File(File&& other) noexcept;
    File& operator=(File&& other) noexcept;
    File(const File&) = delete;
    File& operator=(const File&) = delete;

    // Opens `path` read-write (or read-only). With create, creates it with `mode` (O_EXCL when exclusive).
    static File open(const std::string& path, bool writable, bool create, bool exclusive, unsigned mode);

    bool is_open() const noexcept { return fd_ >= 0; }
    int fd() const noexcept { return fd_; }
    const std::string& path() const noexcept { return path_; }
    bool writable() const noexcept { return writable_; }

    std::uint64_t size() const;
    // Sets the size (ftruncate). Growth also reserves blocks (fallocate) so that a full disk is reported
    // here as ErrorCode::kDiskFull instead of as SIGBUS when a mapped page is first written.
    void resize(std::uint64_t new_size);
    // Reserves blocks for [offset, offset+len) without changing the size; kDiskFull when out of space.
    void reserve(std::uint64_t offset, std::uint64_t len);
    // Returns [offset, offset+len) to the filesystem (PUNCH_HOLE); a no-op where unsupported.
    void punch_hole(std::uint64_t offset, std::uint64_t len) noexcept;
    void fsync();
    // Bytes actually allocated on disk (st_blocks * 512).
    std::uint64_t allocated_bytes() const;
    std::size_t pread(void* buf, std::size_t len, std::uint64_t offset) const;
    // Writes all of [buf, buf+len) at `offset` (retrying short writes); kDiskFull when out of space.
    void pwrite(const void* buf, std::size_t len, std::uint64_t offset);

    // flock(2) without blocking; false when another open file description holds a conflicting lock.
    bool try_lock(LockMode mode) noexcept;
    void close() noexcept;

private:
    int fd_ = -1;
    bool writable_ = false;
    std::string path_;
};

// Reserves `len` bytes of address space (PROT_NONE, MAP_NORESERVE): costs no memory and no commit charge.
void* reserve_address_space(std::size_t len);
// Maps [offset, offset+len) of `file` shared at exactly `addr` (inside a reservation), replacing what was there.
void map_file_fixed(void* addr, std::size_t len, const File& file, std::uint64_t offset, bool writable);
// Maps [offset, offset+len) of `file` read-only and shared at an address chosen by the kernel; `offset`
// need not be page-aligned (the mapping starts at the page below it). Release with unmap_readonly.
const void* map_readonly(const File& file, std::uint64_t offset, std::size_t len);
void unmap_readonly(const void* addr, std::uint64_t offset, std::size_t len) noexcept;
// Returns [addr, addr+len) to PROT_NONE reservation state.
void unmap_to_reservation(void* addr, std::size_t len) noexcept;
void release_address_space(void* addr, std::size_t len) noexcept;
// msync(MS_SYNC) of a mapped range; throws on failure.
void sync_range(const std::string& path, void* addr, std::size_t len);
// Hints: pre-fault pages for writing (MADV_POPULATE_WRITE where supported), drop cached pages.
void advise_populate_write(void* addr, std::size_t len) noexcept;
void advise_random(void* addr, std::size_t len) noexcept;

bool path_exists(const std::string& path) noexcept;
void rename_file(const std::string& from, const std::string& to);
void remove_file(const std::string& path) noexcept;
// Removes every file whose path starts with `prefix` (same directory); errors are ignored.
void remove_with_prefix(const std::string& prefix) noexcept;
void fsync_parent_dir(const std::string& path) noexcept;

int current_pid() noexcept;
// Incremented in every child after fork() (pthread_atfork, registered in file.cpp); handles compare it to
// refuse use across fork. Inline: it is read on every operation.
extern std::atomic<std::uint64_t> g_fork_generation;
inline std::uint64_t fork_generation() noexcept { return g_fork_generation.load(std::memory_order_relaxed); }

}  // namespace mmstore::os
