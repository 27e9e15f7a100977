#include <cstdlib>
#include "mmstore/os/file.hpp"

#include <dirent.h>
#include <fcntl.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include "mmstore/error.hpp"

namespace mmstore::os {

std::atomic<std::uint64_t> g_fork_generation{0};

namespace {
// getpid() is a system call (glibc stopped caching it), and every lock acquisition records the holder's pid:
// cache it, refreshed in the child after fork.
std::atomic<int> g_pid{static_cast<int>(::getpid())};
void on_fork_child() {
    g_pid.store(static_cast<int>(::getpid()), std::memory_order_relaxed);
    g_fork_generation.fetch_add(1, std::memory_order_relaxed);
}
const bool g_atfork_registered = [] {
    pthread_atfork(nullptr, nullptr, on_fork_child);
    return true;
}();
}  // namespace

// Keeps the registration above from being discarded.
[[maybe_unused]] static const bool* const g_keep_atfork = &g_atfork_registered;

int current_pid() noexcept { return g_pid.load(std::memory_order_relaxed); }
// gettid() is a system call too (~250 ns on the benchmark VM), and releasing `with d.lock:` asks whether this
// thread holds the lock: cache it per thread, re-read in a child after fork (its one thread has a new tid).
namespace {
// initial-exec: one %fs-relative load instead of a __tls_get_addr call. With the default (global-dynamic)
// model, plain SharedDict reads measured ~10% slower although they never call current_tid() (code placement,
// no hardware counters on the VM to tell more). The 16 bytes come from glibc's static TLS surplus, which it
// reserves for dlopen'ed libraries like this one.
struct TidCache {
    int tid;
    std::uint64_t generation;
};
__attribute__((tls_model("initial-exec"))) thread_local TidCache t_tid{0, 0};
}  // namespace

int current_tid() noexcept {
    TidCache& c = t_tid;
    const std::uint64_t g = fork_generation();
    if (c.tid == 0 || c.generation != g) [[unlikely]] c = TidCache{static_cast<int>(::gettid()), g};
    return c.tid;
}

namespace {
long membarrier(int cmd) noexcept { return ::syscall(__NR_membarrier, cmd, 0u, 0); }
// (fork generation + 1) << 1 | registered; 0: never asked.
std::atomic<std::uint64_t> g_barrier_state{0};
}  // namespace

bool global_barrier_registered() noexcept {
    const std::uint64_t gen = fork_generation() + 1;
    std::uint64_t st = g_barrier_state.load(std::memory_order_relaxed);
    if ((st >> 1) != gen) [[unlikely]] {
        // Idempotent: threads racing here both register. A child of fork() registers again (the kernel keeps
        // the registration across fork, but asking costs one syscall per process).
        const bool ok = membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) == 0;
        st = gen << 1 | (ok ? 1 : 0);
        g_barrier_state.store(st, std::memory_order_relaxed);
    }
    return (st & 1) != 0;
}

bool global_barrier() noexcept {
    return membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) == 0 || membarrier(MEMBARRIER_CMD_GLOBAL) == 0;
}

bool process_alive(int pid) noexcept { return pid > 0 && (::kill(pid, 0) == 0 || errno != ESRCH); }

std::uint64_t process_start_time(int pid) noexcept {
    char path[64];
    std::snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE* f = std::fopen(path, "r");
    if (f == nullptr) return 0;
    char buf[1024];
    const std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
    std::fclose(f);
    buf[n] = '\0';
    // The command name (field 2) may hold spaces and parentheses: count fields after its last ')'.
    const char* p = std::strrchr(buf, ')');
    if (p == nullptr) return 0;
    for (int field = 2; field < 22; ++field) {
        p = std::strchr(p + 1, ' ');
        if (p == nullptr) return 0;
    }
    return std::strtoull(p + 1, nullptr, 10);
}

std::uint64_t boot_id() noexcept {
    // MMSTORE_SIMULATE_REBOOT (tests only: the power-loss harness) stands for a different boot, as a machine
    // that lost power and restarted has: the value is hashed in place of the kernel's boot id.
    if (const char* fake = std::getenv("MMSTORE_SIMULATE_REBOOT"); fake != nullptr && *fake != '\0') {
        std::uint64_t h = 0xCBF29CE484222325ull;
        for (const char* p = fake; *p != '\0'; ++p) h = (h ^ static_cast<unsigned char>(*p)) * 0x100000001B3ull;
        return h;
    }
    static const std::uint64_t id = [] {
        std::uint64_t h = 0;
        if (FILE* f = std::fopen("/proc/sys/kernel/random/boot_id", "r")) {
            int c;
            while ((c = std::fgetc(f)) != EOF) h = (h ^ static_cast<std::uint64_t>(c)) * 0x100000001B3ull;  // FNV-1a
            std::fclose(f);
        }
        return h;
    }();
    return id;
}

std::int64_t monotonic_ns() noexcept {
    timespec ts;
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

bool futex_wait(std::uint32_t* word, std::uint32_t expected, std::int64_t timeout_ns) noexcept {
    timespec ts{};
    timespec* tp = nullptr;
    if (timeout_ns >= 0) {
        ts.tv_sec = static_cast<time_t>(timeout_ns / 1000000000);
        ts.tv_nsec = static_cast<long>(timeout_ns % 1000000000);
        tp = &ts;
    }
    // Not FUTEX_PRIVATE_FLAG: the word is in a shared mapping and the waker is another process.
    const long rc = ::syscall(SYS_futex, word, FUTEX_WAIT, expected, tp, nullptr, 0);
    return !(rc != 0 && errno == ETIMEDOUT);
}

void futex_wake_all(std::uint32_t* word) noexcept { ::syscall(SYS_futex, word, FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0); }

std::size_t os_page_size() noexcept {
    static const std::size_t size = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    return size;
}

File::~File() { close(); }

File::File(File&& other) noexcept
    : fd_(other.fd_), writable_(other.writable_), path_(std::move(other.path_)), temp_name_(std::move(other.temp_name_)) {
    other.fd_ = -1;
    other.temp_name_.clear();
}

File& File::operator=(File&& other) noexcept {
    if (this != &other) {
        close();
        fd_ = other.fd_;
        writable_ = other.writable_;
        path_ = std::move(other.path_);
        temp_name_ = std::move(other.temp_name_);
        other.fd_ = -1;
        other.temp_name_.clear();
    }
    return *this;
}

void check_path(std::string_view path) {
    const auto nul = path.find('\0');
    if (nul == std::string_view::npos) return;
    // The kernel would stop at the NUL and act on another file ("a\0.secret" is "a"): refuse, as os.open does.
    std::string shown(path.substr(0, nul));
    shown += "\\0";
    shown += path.substr(nul + 1);
    for (std::size_t i = shown.find('\0'); i != std::string::npos; i = shown.find('\0', i))
        shown.replace(i, 1, "\\0");
    throw_error(ErrorCode::kInvalidArgument, "",
                "path '" + shown + "' contains a NUL byte at position " + std::to_string(nul));
}

namespace {
File::Kind kind_of(mode_t m) {
    return S_ISFIFO(m) ? File::Kind::kFifo : S_ISDIR(m) ? File::Kind::kDirectory : File::Kind::kOther;
}

const char* kind_text(File::Kind k) {
    switch (k) {
        case File::Kind::kFifo: return "a FIFO";
        case File::Kind::kDirectory: return "a directory";
        default: return "a device, socket or other special file";
    }
}

// Refuses anything but a regular file, then makes the descriptor blocking again (it was opened with
// O_NONBLOCK so that a FIFO with no writer cannot hang open(2)).
void require_regular(int fd, const std::string& path) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        const int e = errno;
        ::close(fd);
        throw_errno(path, "fstat failed", e);
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        throw_format(ErrorCode::kForeign, path,
                     std::string("not an mmstore file: ") + kind_text(kind_of(st.st_mode)) + ", not a regular file");
    }
    const int fl = ::fcntl(fd, F_GETFL);
    if (fl < 0 || ::fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
        const int e = errno;
        ::close(fd);
        throw_errno(path, "cannot clear O_NONBLOCK", e);
    }
}

std::string dir_of(const std::string& path) {
    const auto slash = path.rfind('/');
    return slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
}
}  // namespace

File File::open(const std::string& path, bool writable, bool create, bool exclusive, unsigned mode) {
    check_path(path);
    int flags = (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NONBLOCK;
    if (create) flags |= O_CREAT;
    if (create && exclusive) flags |= O_EXCL;
    int fd;
    do {
        fd = ::open(path.c_str(), flags, mode);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        const int e = errno;
        if (e == ENOENT)
            throw_error(ErrorCode::kNotFound, path, create ? "cannot create: the directory does not exist" : "no such store", e);
        if (e == EEXIST) throw_error(ErrorCode::kExists, path, "store already exists", e);
        if (e == EISDIR) throw_format(ErrorCode::kForeign, path, "not an mmstore file: a directory, not a regular file");
        if (e == ENXIO) throw_format(ErrorCode::kForeign, path, "not an mmstore file: a socket or special file, not a regular file");
        throw_errno(path, "cannot open", e);
    }
    require_regular(fd, path);
    File f;
    f.fd_ = fd;
    f.writable_ = writable;
    f.path_ = path;
    return f;
}

namespace {
std::atomic<bool> g_named_temporaries{false};
}  // namespace

void use_named_temporaries(bool on) noexcept { g_named_temporaries.store(on, std::memory_order_relaxed); }

File File::create_unlinked(const std::string& path, unsigned mode) {
    check_path(path);
    // At a dangling symbolic link, the store is created where the link points (as O_CREAT would).
    const std::string where = resolve_symlinks(path);
    const std::string dir = dir_of(where);
    File f;
    f.writable_ = true;
    f.path_ = path;
    int fd = -1;
    // link_into_place() names an O_TMPFILE file through /proc/self/fd (linkat with AT_EMPTY_PATH needs a
    // capability), so without /proc the named temporary is used.
    if (!g_named_temporaries.load(std::memory_order_relaxed) && ::access("/proc/self/fd", X_OK) == 0) {
        do {
            fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, mode);
        } while (fd < 0 && errno == EINTR);
        if (fd >= 0) {
            f.fd_ = fd;
            return f;
        }
        const int e = errno;
        if (e == ENOENT) throw_error(ErrorCode::kNotFound, path, "cannot create: the directory does not exist", e);
        if (e != EOPNOTSUPP && e != EISDIR && e != EINVAL) throw_errno(path, "cannot create", e);
    }
    // No O_TMPFILE on this filesystem: a named temporary, linked into place by link_into_place() and
    // removed by the opener's stale-file sweep if we are killed first (Region::remove_stale_compactions).
    static std::atomic<std::uint64_t> counter{0};  // threads of one process may create side by side
    f.temp_name_ = where + ".create." + std::to_string(current_pid()) + "-" + std::to_string(counter.fetch_add(1));
    (void)::unlink(f.temp_name_.c_str());
    do {
        fd = ::open(f.temp_name_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) throw_errno(path, "cannot create " + f.temp_name_, errno);
    f.fd_ = fd;
    return f;
}

bool File::link_into_place() {
    const std::string where = resolve_symlinks(path_);
    int rc;
    if (temp_name_.empty()) {
        const std::string self = "/proc/self/fd/" + std::to_string(fd_);
        rc = ::linkat(AT_FDCWD, self.c_str(), AT_FDCWD, where.c_str(), AT_SYMLINK_FOLLOW);
    } else {
        rc = ::link(temp_name_.c_str(), where.c_str());
    }
    const int e = errno;
    if (!temp_name_.empty()) {
        (void)::unlink(temp_name_.c_str());
        temp_name_.clear();
    }
    if (rc == 0) return true;
    if (e == EEXIST) return false;
    if (e == ENOENT) throw_error(ErrorCode::kNotFound, path_, "cannot create: the directory does not exist", e);
    throw_errno(path_, "cannot link the new store into place", e);
}

std::uint64_t File::size() const {
    struct stat st {};
    if (::fstat(fd_, &st) != 0) throw_errno(path_, "fstat failed", errno);
    return static_cast<std::uint64_t>(st.st_size);
}

std::uint64_t File::allocated_bytes() const {
    struct stat st {};
    if (::fstat(fd_, &st) != 0) throw_errno(path_, "fstat failed", errno);
    return static_cast<std::uint64_t>(st.st_blocks) * 512u;
}

void File::reserve(std::uint64_t offset, std::uint64_t len) {
    if (len == 0) return;
    int rc = ::fallocate(fd_, FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset), static_cast<off_t>(len));
    if (rc != 0 && (errno == EOPNOTSUPP || errno == ENOSYS)) {
        rc = ::posix_fallocate(fd_, static_cast<off_t>(offset), static_cast<off_t>(len));
        if (rc != 0) errno = rc;
        rc = rc == 0 ? 0 : -1;
        if (rc != 0 && errno == EINVAL) return;  // filesystem without allocation support (e.g. some FUSE)
    }
    if (rc != 0) throw_errno(path_, "cannot reserve " + std::to_string(len) + " bytes", errno);
}

void File::resize(std::uint64_t new_size) {
    const std::uint64_t old = size();
    if (new_size > old) reserve(old, new_size - old);
    if (::ftruncate(fd_, static_cast<off_t>(new_size)) != 0)
        throw_errno(path_, "cannot resize to " + std::to_string(new_size) + " bytes", errno);
}

void File::punch_hole(std::uint64_t offset, std::uint64_t len) noexcept {
    if (len == 0) return;
    (void)::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                      static_cast<off_t>(len));
}

void File::fsync() {
    if (::fsync(fd_) != 0) throw_errno(path_, "fsync failed", errno);
}

std::size_t File::pread(void* buf, std::size_t len, std::uint64_t offset) const {
    std::size_t done = 0;
    while (done < len) {
        const ssize_t n = ::pread(fd_, static_cast<char*>(buf) + done, len - done, static_cast<off_t>(offset + done));
        if (n < 0) {
            if (errno == EINTR) continue;
            throw_errno(path_, "read failed", errno);
        }
        if (n == 0) break;
        done += static_cast<std::size_t>(n);
    }
    return done;
}

namespace {
std::atomic<int> g_fail_errno{0};
std::atomic<int> g_fail_count{0};
}  // namespace

void inject_write_failures(int sys_errno, int count) noexcept {
    g_fail_errno.store(sys_errno, std::memory_order_relaxed);
    g_fail_count.store(sys_errno == 0 ? 0 : count, std::memory_order_release);
}

void File::pwrite_all(const void* buf, std::size_t len, std::uint64_t offset) {
    if (g_fail_count.load(std::memory_order_acquire) > 0 && g_fail_count.fetch_sub(1) > 0)
        throw_errno(path_, "write failed (injected)", g_fail_errno.load(std::memory_order_relaxed));
    // Linux transfers at most 0x7ffff000 bytes per call; larger buffers take several.
    constexpr std::size_t kMaxChunk = std::size_t{1} << 30;
    std::size_t done = 0;
    while (done < len) {
        const std::size_t n = std::min(len - done, kMaxChunk);
        const ssize_t w = ::pwrite(fd_, static_cast<const char*>(buf) + done, n, static_cast<off_t>(offset + done));
        if (w < 0) {
            if (errno == EINTR) continue;
            throw_errno(path_, "cannot write " + std::to_string(len) + " bytes", errno);
        }
        if (w == 0) throw_errno(path_, "cannot write " + std::to_string(len) + " bytes", ENOSPC);
        done += static_cast<std::size_t>(w);
    }
}

bool File::try_pwrite(const void* buf, std::size_t len, std::uint64_t offset) noexcept {
    ssize_t w;
    do {
        w = ::pwrite(fd_, buf, len, static_cast<off_t>(offset));
    } while (w < 0 && errno == EINTR);
    return w == static_cast<ssize_t>(len);
}

bool File::range_lock(std::uint64_t at, LockMode mode, bool wait) {
    struct flock fl{};
    fl.l_type = static_cast<short>(mode == LockMode::kExclusive ? F_WRLCK : F_RDLCK);
    fl.l_whence = SEEK_SET;
    fl.l_start = static_cast<off_t>(at);
    fl.l_len = 1;
    for (;;) {
        if (::fcntl(fd_, wait ? F_OFD_SETLKW : F_OFD_SETLK, &fl) == 0) return true;
        if (errno == EINTR) continue;
        if (!wait && (errno == EAGAIN || errno == EACCES)) return false;
        throw_errno(path_, "cannot lock the store's open gate", errno);
    }
}

bool File::range_locked_elsewhere(std::uint64_t at) const {
    struct flock fl{};
    fl.l_type = F_WRLCK;  // conflicts with any lock
    fl.l_whence = SEEK_SET;
    fl.l_start = static_cast<off_t>(at);
    fl.l_len = 1;
    if (::fcntl(fd_, F_OFD_GETLK, &fl) != 0) throw_errno(path_, "cannot query the store's record locks", errno);
    return fl.l_type != F_UNLCK;
}

void File::range_unlock(std::uint64_t at) noexcept {
    struct flock fl{};
    fl.l_type = F_UNLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = static_cast<off_t>(at);
    fl.l_len = 1;
    ::fcntl(fd_, F_OFD_SETLK, &fl);
}

void File::close() noexcept {
    if (!temp_name_.empty()) {  // created aside and never linked into place
        (void)::unlink(temp_name_.c_str());
        temp_name_.clear();
    }
    if (fd_ >= 0) {
        ::close(fd_);
        fd_ = -1;
    }
}

void* reserve_address_space(std::size_t len) {
    // Aligned to 2 MiB so that file offsets and addresses agree modulo the huge-page size: the kernel can
    // then map ext4's large page-cache folios with PMD entries (one TLB entry per 2 MiB). Measured in
    // bench/bench_dict.py A/B runs: random gets ~10% faster. (Adding MADV_HUGEPAGE made inserts 2x slower:
    // every first touch then faults a whole 2 MiB folio.)
    constexpr std::size_t kAlign = std::size_t{2} << 20;
    void* p = ::mmap(nullptr, len + kAlign, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) throw_errno("", "cannot reserve " + std::to_string(len) + " bytes of address space", errno);
    const auto start = reinterpret_cast<std::uintptr_t>(p);
    const std::uintptr_t aligned = (start + kAlign - 1) & ~(kAlign - 1);
    if (aligned > start) ::munmap(p, aligned - start);
    const std::uintptr_t end = start + len + kAlign;
    if (end > aligned + len) ::munmap(reinterpret_cast<void*>(aligned + len), end - (aligned + len));
    return reinterpret_cast<void*>(aligned);
}

void map_file_fixed(void* addr, std::size_t len, const File& file, std::uint64_t offset, bool writable) {
    const int prot = PROT_READ | (writable ? PROT_WRITE : 0);
    void* p = ::mmap(addr, len, prot, MAP_SHARED | MAP_FIXED, file.fd(), static_cast<off_t>(offset));
    if (p == MAP_FAILED) throw_errno(file.path(), "cannot map " + std::to_string(len) + " bytes", errno);
}

const void* map_readonly(const File& file, std::uint64_t offset, std::size_t len) {
    const std::uint64_t page = os_page_size();
    const std::uint64_t start = offset / page * page;
    const std::size_t span = len + static_cast<std::size_t>(offset - start);
    if (span == 0) return nullptr;
    void* p = ::mmap(nullptr, span, PROT_READ, MAP_SHARED, file.fd(), static_cast<off_t>(start));
    if (p == MAP_FAILED) throw_errno(file.path(), "cannot map " + std::to_string(len) + " bytes", errno);
    return static_cast<const char*>(p) + (offset - start);
}

void unmap_readonly(const void* addr, std::uint64_t offset, std::size_t len) noexcept {
    if (addr == nullptr) return;
    const std::uint64_t page = os_page_size();
    const std::uint64_t delta = offset - offset / page * page;
    (void)::munmap(const_cast<char*>(static_cast<const char*>(addr)) - delta, len + delta);
}

void unmap_to_reservation(void* addr, std::size_t len) noexcept {
    (void)::mmap(addr, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
}

void release_address_space(void* addr, std::size_t len) noexcept { (void)::munmap(addr, len); }

void sync_range(const std::string& path, void* addr, std::size_t len) {
    if (len == 0) return;
    if (::msync(addr, len, MS_SYNC) != 0) throw_errno(path, "msync failed", errno);
}

const void* map_file_readonly(const File& file, std::size_t len) {
    void* p = ::mmap(nullptr, len, PROT_READ, MAP_SHARED, file.fd(), 0);
    if (p == MAP_FAILED) throw_errno(file.path(), "cannot map " + std::to_string(len) + " bytes", errno);
    return p;
}

void unmap(const void* addr, std::size_t len) noexcept {
    if (addr != nullptr && len != 0) (void)::munmap(const_cast<void*>(addr), len);
}

void trim_heap() noexcept {
#if defined(__GLIBC__)
    (void)::malloc_trim(0);
#endif
}

bool make_dir(const std::string& path, unsigned mode) {
    check_path(path);
    if (::mkdir(path.c_str(), static_cast<mode_t>(mode)) == 0) return true;
    const int e = errno;
    if (e == EEXIST) return false;
    if (e == ENOENT) throw_error(ErrorCode::kNotFound, path, "cannot create directory: its parent does not exist", e);
    throw_errno(path, "cannot create directory", e);
}

std::vector<std::string> list_dir(const std::string& path) {
    std::vector<std::string> names;
    if (path.find('\0') != std::string::npos) return names;
    DIR* d = ::opendir(path.c_str());
    if (d == nullptr) return names;
    while (const dirent* e = ::readdir(d)) {
        const std::string_view n(e->d_name);
        if (n != "." && n != "..") names.emplace_back(n);
    }
    ::closedir(d);
    return names;
}

void remove_flat_dir(const std::string& path) noexcept {
    if (path.find('\0') != std::string::npos) return;  // never created: mmstore refuses such paths
    for (const std::string& n : list_dir(path)) (void)::unlink((path + "/" + n).c_str());
    (void)::rmdir(path.c_str());
}

bool path_exists(const std::string& path) {
    check_path(path);
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0;
}

void rename_file(const std::string& from, const std::string& to) {
    check_path(from);
    check_path(to);
    if (::rename(from.c_str(), to.c_str()) != 0) throw_errno(to, "cannot rename " + from, errno);
}

void remove_file(const std::string& path) noexcept {
    if (path.find('\0') == std::string::npos) (void)::unlink(path.c_str());
}

std::string resolve_symlinks(const std::string& path) {
    check_path(path);
    std::string cur = path;
    for (int hops = 0; hops < 40; ++hops) {  // 40: the kernel's own limit (MAXSYMLINKS)
        struct stat st {};
        if (::lstat(cur.c_str(), &st) != 0 || !S_ISLNK(st.st_mode)) return cur;
        std::string target(static_cast<std::size_t>(st.st_size > 0 ? st.st_size : 4096) + 1, '\0');
        const ssize_t n = ::readlink(cur.c_str(), target.data(), target.size());
        if (n < 0) throw_errno(cur, "cannot read the symbolic link", errno);
        target.resize(static_cast<std::size_t>(n));
        // A relative target is relative to the link's directory.
        cur = (target.empty() || target[0] == '/') ? target : dir_of(cur) + "/" + target;
    }
    throw_errno(path, "cannot resolve the symbolic link", ELOOP);
}

void remove_with_prefix(const std::string& prefix) noexcept {
    if (prefix.find('\0') != std::string::npos) return;
    const auto slash = prefix.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : prefix.substr(0, slash));
    const std::string stem = slash == std::string::npos ? prefix : prefix.substr(slash + 1);
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) return;
    while (const dirent* e = ::readdir(d)) {
        if (std::string_view(e->d_name).starts_with(stem)) (void)::unlinkat(::dirfd(d), e->d_name, 0);
    }
    ::closedir(d);
}

void fsync_parent_dir(const std::string& path) noexcept {
    if (path.find('\0') != std::string::npos) return;
    const std::string dir = dir_of(path);
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)::fsync(fd);
        ::close(fd);
    }
}

}  // namespace mmstore::os
