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
#include <string_view>
#include <vector>

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

    enum class Kind { kFifo, kDirectory, kOther };
    // Opens `path` read-write (or read-only). With create, creates it with `mode` (O_EXCL when exclusive).
    // Only regular files are accepted: a FIFO, directory, device or socket throws FormatError kForeign at
    // once (the open uses O_NONBLOCK, so a FIFO without a writer cannot block it; the flag is cleared
    // after the check). A path containing a NUL byte throws kInvalidArgument (see check_path).
    static File open(const std::string& path, bool writable, bool create, bool exclusive, unsigned mode);
    // Creates a new, nameless file in the directory of `path` (O_TMPFILE; where the filesystem lacks it, a
    // temporary "<path>.create.<pid>-<n>"), read-write, with `mode`. Nothing appears at `path` until
    // link_into_place(); closing the File first leaves nothing behind. path() is `path`. When `path` is a
    // (dangling) symbolic link, the file is created where the link points, as open(O_CREAT) would.
    static File create_unlinked(const std::string& path, unsigned mode);
    // Gives a file from create_unlinked() its name, atomically: true when it is now at path(), false (and
    // nothing changed) when something already exists there. Record locks held on it stay held.
    bool link_into_place();

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
    // Writes all of [buf, buf+len) at `offset` (retrying short writes and EINTR); kDiskFull on ENOSPC.
    void pwrite_all(const void* buf, std::size_t len, std::uint64_t offset);
    // One pwrite of [buf, buf+len) at `offset`; false unless all of it was written. For optional fast paths
    // that fall back to another way of writing (no fault injection, no exception).
    bool try_pwrite(const void* buf, std::size_t len, std::uint64_t offset) noexcept;

    // Open-file-description record locks (fcntl F_OFD_SETLK[W]) on the single byte at `at`, which may lie
    // past the end of the file. Independent per open file description (so two handles in one process
    // conflict like two processes), released on close. Without `wait`, false when a conflicting lock is
    // held elsewhere. Converting a held lock to the other mode replaces it in one call.
    bool range_lock(std::uint64_t at, LockMode mode, bool wait);
    void range_unlock(std::uint64_t at) noexcept;
    // True when another open file description holds any record lock on the byte at `at` (F_OFD_GETLK).
    bool range_locked_elsewhere(std::uint64_t at) const;
    void close() noexcept;

private:
    int fd_ = -1;
    bool writable_ = false;
    std::string path_;
    std::string temp_name_;  // the named temporary of create_unlinked() until linked ("" when none)
};

// Throws Error kInvalidArgument (a ValueError in Python) when `path` contains a NUL byte: the kernel would
// read the path only up to it and act on another file. Every function of this layer that takes a path
// calls it first (those that only clean up do nothing instead), so such a path never reaches the
// filesystem.
void check_path(std::string_view path);

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

// Maps [0, len) of `file` shared and read-only anywhere; the mapping outlives the descriptor. len > 0.
const void* map_file_readonly(const File& file, std::size_t len);
void unmap(const void* addr, std::size_t len) noexcept;

// Returns free heap memory to the OS (glibc malloc_trim(0); a no-op elsewhere). The pools call it after
// releasing spilled objects: glibc keeps freed multi-megabyte blocks below its (adaptive) mmap threshold in
// the heap, so without it a process's RSS stays at its high-water mark after spilling.
void trim_heap() noexcept;

bool path_exists(const std::string& path);
// mkdir(2) with `mode`; false (no error) when it already exists.
bool make_dir(const std::string& path, unsigned mode);
// Names in `path` (without "." and ".."); empty when it cannot be read.
std::vector<std::string> list_dir(const std::string& path);
// Removes a directory and the files directly inside it (one level: mmstore never nests deeper there).
// Errors are ignored: a concurrent remover may have taken some entries already.
void remove_flat_dir(const std::string& path) noexcept;
// Test hook for fault injection: the next `count` calls of File::pwrite_all fail with `sys_errno`
// before writing anything (0 disarms). Thread-safe.
void inject_write_failures(int sys_errno, int count) noexcept;
// Test hook: File::create_unlinked uses its named-temporary fallback (as on a filesystem without
// O_TMPFILE) while on. Thread-safe.
void use_named_temporaries(bool on) noexcept;
void rename_file(const std::string& from, const std::string& to);
void remove_file(const std::string& path) noexcept;
// The file a chain of symbolic links at `path` ends at (`path` itself when it is no link). Relative
// targets are taken relative to the link's directory; more than 40 links throw kIo (ELOOP).
std::string resolve_symlinks(const std::string& path);
// Removes every file whose path starts with `prefix` (same directory); errors are ignored.
void remove_with_prefix(const std::string& prefix) noexcept;
void fsync_parent_dir(const std::string& path) noexcept;

int current_pid() noexcept;
int current_tid() noexcept;
// False only when no process `pid` exists (kill(pid, 0) fails with ESRCH).
bool process_alive(int pid) noexcept;
// The start time of process `pid` (field 22 of /proc/<pid>/stat, clock ticks since boot), 0 when unknown.
// With the pid it names one process: a recycled pid has a later start time.
std::uint64_t process_start_time(int pid) noexcept;
// A 64-bit hash of this boot's /proc/sys/kernel/random/boot_id (0 where unavailable).
std::uint64_t boot_id() noexcept;

// Process-shared futex on a 32-bit word in a shared mapping. futex_wait returns false on timeout and true
// when woken or when *word != expected already (spurious wake-ups are the caller's loop to handle);
// timeout_ns < 0 waits forever.
bool futex_wait(std::uint32_t* word, std::uint32_t expected, std::int64_t timeout_ns) noexcept;
void futex_wake_all(std::uint32_t* word) noexcept;
// Monotonic clock in nanoseconds (deadlines of timed waits).
std::int64_t monotonic_ns() noexcept;
// membarrier(2): asymmetric fences between processes (containers/snapshot.cpp uses them to close the
// snapshot opening race without a locked instruction per write). A thread of a process for which
// global_barrier_registered() returned true may order its store before its later load with a compiler barrier
// only, provided the thread on the other side calls global_barrier() between its own store and load: the
// kernel then makes every running thread of every registered process execute a full memory barrier within
// that call (MEMBARRIER_CMD_GLOBAL_EXPEDITED, about a microsecond), so either the first thread's load sees
// the other's store or the other's load sees the first's store.
// global_barrier_registered(): registers this process (MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) once per
// fork generation and reports whether it is registered. One relaxed load after the first call.
bool global_barrier_registered() noexcept;
// The barrier: MEMBARRIER_CMD_GLOBAL_EXPEDITED, else MEMBARRIER_CMD_GLOBAL (every thread of every process,
// registered or not; milliseconds). False when neither is available (an old kernel, a seccomp filter).
bool global_barrier() noexcept;
// Incremented in every child after fork() (pthread_atfork, registered in file.cpp); handles compare it to
// refuse use across fork. Inline: it is read on every operation.
extern std::atomic<std::uint64_t> g_fork_generation;
inline std::uint64_t fork_generation() noexcept { return g_fork_generation.load(std::memory_order_relaxed); }

}  // namespace mmstore::os
