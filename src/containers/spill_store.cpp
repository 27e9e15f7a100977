#include "mmstore/containers/spill_store.hpp"

#include <atomic>
#include <cstring>
#include <random>

#include "mmstore/error.hpp"
#include "mmstore/storage/checksum.hpp"

namespace mmstore::containers {

namespace {

constexpr std::uint64_t align_up(std::uint64_t v) { return (v + kSpillAlign - 1) & ~(kSpillAlign - 1); }

constexpr std::string_view kDirPrefix = "mmstore-pool-";
constexpr std::string_view kNewPrefix = ".mmstore-pool-";  // being created; renamed once locked
constexpr std::string_view kLockName = "lock";

std::uint64_t prefix_checksum(const char* prefix, std::size_t len) {
    Hasher st;
    st.update(prefix, offsetof(SpillHeader, checksum));
    st.update(prefix + sizeof(SpillHeader), len - sizeof(SpillHeader));
    return st.digest();
}

std::string temp_name(const std::string& path) {
    static std::atomic<std::uint64_t> counter{0};
    return path + ".tmp-" + std::to_string(os::current_pid()) + "-" + std::to_string(counter.fetch_add(1));
}

std::string random_hex() {
    std::random_device rd;
    const std::uint64_t v = (std::uint64_t{rd()} << 32) ^ rd();
    static const char* d = "0123456789abcdef";
    std::string s(16, '0');
    for (int i = 0; i < 16; ++i) s[i] = d[(v >> (4 * i)) & 15];
    return s;
}

}  // namespace

std::uint64_t write_spill_file(const std::string& path, std::string_view meta,
                               std::span<const std::span<const std::byte>> buffers, const SpillWriteOptions& opt) {
    os::check_path(path);
    if (buffers.size() > kSpillMaxBuffers)
        throw_error(ErrorCode::kCapacity, path, "too many buffers for one spill file: " + std::to_string(buffers.size()));
    if (meta.size() > kSpillMaxMeta)
        throw_error(ErrorCode::kCapacity, path, "spill metadata too large: " + std::to_string(meta.size()) + " bytes");

    // Header, table and metadata are assembled in memory and written with one call.
    const std::size_t prefix_len = sizeof(SpillHeader) + buffers.size() * sizeof(SpillBufferRecord) + meta.size();
    std::string prefix(prefix_len, '\0');
    SpillHeader h{};
    std::memcpy(h.magic, kSpillMagic, sizeof h.magic);
    h.version = kSpillVersion;
    h.flags = opt.hash_data ? kSpillFlagDataHashed : 0;
    h.nbuffers = static_cast<std::uint32_t>(buffers.size());
    h.meta_len = static_cast<std::uint32_t>(meta.size());
    h.data_offset = align_up(prefix_len);
    std::uint64_t end = prefix_len;
    std::uint64_t off = h.data_offset;
    for (std::size_t i = 0; i < buffers.size(); ++i) {
        SpillBufferRecord r{off, buffers[i].size(),
                            opt.hash_data ? hash64(buffers[i].data(), buffers[i].size()) : 0};
        std::memcpy(prefix.data() + sizeof(SpillHeader) + i * sizeof r, &r, sizeof r);
        end = off + r.length;
        off = align_up(end);
    }
    h.file_size = end;
    std::memcpy(prefix.data(), &h, sizeof h);
    std::memcpy(prefix.data() + sizeof(SpillHeader) + buffers.size() * sizeof(SpillBufferRecord), meta.data(), meta.size());
    h.checksum = prefix_checksum(prefix.data(), prefix.size());
    std::memcpy(prefix.data() + offsetof(SpillHeader, checksum), &h.checksum, sizeof h.checksum);

    const std::string tmp = temp_name(path);
    os::File f = os::File::open(tmp, true, true, true, opt.mode);
    try {
        f.pwrite_all(prefix.data(), prefix.size(), 0);
        // One large pwrite per buffer: the page cache absorbs it at memcpy speed and the kernel writes back
        // sequentially (measured in bench/bench_pool.py against dd of the same size).
        off = h.data_offset;
        std::uint64_t written = prefix.size();
        for (const auto& b : buffers) {
            if (!b.empty()) {
                f.pwrite_all(b.data(), b.size(), off);
                written = off + b.size();
            }
            off = align_up(off + b.size());
        }
        if (written < h.file_size) f.resize(h.file_size);  // trailing empty buffers
        if (opt.sync) f.fsync();
        f.close();
        os::rename_file(tmp, path);
    } catch (...) {
        f.close();
        os::remove_file(tmp);
        throw;
    }
    if (opt.sync) os::fsync_parent_dir(path);
    return h.file_size;
}

std::shared_ptr<const SpillFile> SpillFile::open(const std::string& path, bool verify_data) {
    os::File f = os::File::open(path, false, false, false, 0);
    const std::uint64_t size = f.size();
    if (size < sizeof(SpillHeader)) throw_format(ErrorCode::kTruncated, path, "spill file shorter than its header");
    std::shared_ptr<SpillFile> sf(new SpillFile());
    sf->path_ = path;
    sf->base_ = os::map_file_readonly(f, size);
    sf->size_ = size;
    f.close();
    const char* base = static_cast<const char*>(sf->base_);
    SpillHeader h;
    std::memcpy(&h, base, sizeof h);
    if (std::memcmp(h.magic, kSpillMagic, sizeof h.magic) != 0)
        throw_format(ErrorCode::kForeign, path, "not an mmstore spill file (bad magic)");
    if (h.version > kSpillVersion)
        throw_format(ErrorCode::kVersion, path, "spill file version " + std::to_string(h.version) +
                                                    " is newer than this mmstore (" + std::to_string(kSpillVersion) + ")");
    if (h.nbuffers > kSpillMaxBuffers || h.meta_len > kSpillMaxMeta)
        throw_format(ErrorCode::kCorrupt, path, "spill header has impossible counts");
    const std::uint64_t prefix_len = sizeof(SpillHeader) + std::uint64_t{h.nbuffers} * sizeof(SpillBufferRecord) + h.meta_len;
    if (prefix_len > size) throw_format(ErrorCode::kTruncated, path, "spill file shorter than its buffer table");
    if (prefix_checksum(base, prefix_len) != h.checksum)
        throw_format(ErrorCode::kCorrupt, path, "spill header checksum mismatch");
    if (h.file_size > size)
        throw_format(ErrorCode::kTruncated, path, "spill file has " + std::to_string(size) + " bytes, its header says " +
                                                      std::to_string(h.file_size));
    if (h.file_size != size || h.data_offset != align_up(prefix_len))
        throw_format(ErrorCode::kCorrupt, path, "spill file length does not match its header");
    sf->meta_ = std::string_view(base + prefix_len - h.meta_len, h.meta_len);
    sf->data_hashed_ = (h.flags & kSpillFlagDataHashed) != 0;
    sf->buffers_.reserve(h.nbuffers);
    std::uint64_t min_off = h.data_offset;
    for (std::uint32_t i = 0; i < h.nbuffers; ++i) {
        SpillBufferRecord r;
        std::memcpy(&r, base + sizeof(SpillHeader) + i * sizeof r, sizeof r);
        if (r.offset % kSpillAlign != 0 || r.offset < min_off || r.length > size || r.offset > size - r.length)
            throw_format(ErrorCode::kCorrupt, path, "spill buffer " + std::to_string(i) + " out of bounds");
        min_off = r.offset + r.length;
        const auto* p = reinterpret_cast<const std::byte*>(base + r.offset);
        if (verify_data && sf->data_hashed_ && hash64(p, r.length) != r.hash)
            throw_format(ErrorCode::kCorrupt, path, "spill buffer " + std::to_string(i) + " checksum mismatch");
        sf->buffers_.emplace_back(p, r.length);
    }
    return sf;
}

SpillFile::~SpillFile() { os::unmap(base_, size_); }

SpillDir SpillDir::create(const std::string& parent) {
    os::make_dir(parent, 0700);
    remove_orphans(parent);
    // Built under a hidden name, locked, then renamed: a concurrent remove_orphans never sees a final name
    // without a held lock. If it removes our half-built directory first, the open or rename fails and we
    // retry with a fresh name.
    for (int attempt = 0;; ++attempt) {
        const std::string name = std::string(kDirPrefix) + std::to_string(os::current_pid()) + "-" + random_hex();
        const std::string tmp = parent + "/" + std::string(kNewPrefix) + name.substr(kDirPrefix.size());
        const std::string final_path = parent + "/" + name;
        try {
            os::make_dir(tmp, 0700);
            os::File lock = os::File::open(tmp + "/" + std::string(kLockName), true, true, true, 0600);
            if (!lock.range_lock(0, os::LockMode::kExclusive, false)) throw_error(ErrorCode::kLocked, tmp, "lost a race");
            const std::string pid = std::to_string(os::current_pid()) + "\n";
            lock.pwrite_all(pid.data(), pid.size(), 0);
            os::rename_file(tmp, final_path);
            SpillDir d;
            d.path_ = final_path;
            d.lock_ = std::move(lock);
            d.owner_pid_ = os::current_pid();
            return d;
        } catch (const Error& e) {
            if (attempt >= 20 || (e.code() != ErrorCode::kNotFound && e.code() != ErrorCode::kLocked &&
                                  e.code() != ErrorCode::kExists && e.sys_errno() != ENOENT))
                throw;
        }
    }
}

void SpillDir::close() noexcept {
    if (!lock_.is_open()) return;
    if (os::current_pid() == owner_pid_) os::remove_flat_dir(path_);
    lock_.close();
}

std::size_t SpillDir::remove_orphans(const std::string& parent) noexcept {
    std::size_t removed = 0;
    for (const std::string& name : os::list_dir(parent)) {
        const bool final_name = name.starts_with(kDirPrefix);
        if (!final_name && !name.starts_with(kNewPrefix)) continue;
        const std::string dir = parent + "/" + name;
        os::File lock;  // held until the directory is gone
        try {
            lock = os::File::open(dir + "/" + std::string(kLockName), true, false, false, 0);
            if (!lock.range_lock(0, os::LockMode::kExclusive, false)) continue;  // a live pool
        } catch (const Error&) {
            // No lock file: a final-named directory whose removal was interrupted, or a hidden one whose
            // creator died before locking (a live creator retries if we take it away).
        }
        os::remove_flat_dir(dir);
        ++removed;
    }
    return removed;
}

}  // namespace mmstore::containers
