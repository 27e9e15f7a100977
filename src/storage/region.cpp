#include "mmstore/storage/region.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>

#include "mmstore/error.hpp"
#include "mmstore/storage/checksum.hpp"

namespace mmstore::storage {

namespace {

constexpr std::uint64_t kInitialSize = 16 * kPageSize;  // header pages + 52 KiB of arena
constexpr std::uint64_t kGrowQuantum = 64 * 1024;
constexpr std::uint64_t kMaxGrowStep = std::uint64_t{1} << 30;

std::uint64_t round_up(std::uint64_t v, std::uint64_t to) { return (v + to - 1) / to * to; }

std::uint64_t header_checksum(const FileHeader& h) { return hash64(&h, offsetof(FileHeader, checksum)); }
std::uint64_t slot_checksum(const CommitSlot& s) { return hash64(&s, offsetof(CommitSlot, checksum)); }

std::uint64_t now_ns() {
    return static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count());
}

}  // namespace

const char* kind_name(StoreKind kind) noexcept {
    switch (kind) {
        case StoreKind::kDict: return "Dict";
        case StoreKind::kList: return "List";
        case StoreKind::kVector: return "Vector";
        case StoreKind::kRecordArray: return "RecordArray";
        case StoreKind::kMapping: return "Mapping";
    }
    return "unknown kind";
}

Region::~Region() {
    if (base_ != nullptr) {
        try {
            close();
        } catch (...) {
            abandon();
        }
    }
}

void Region::open(const std::string& path, StoreKind kind, const OpenOptions& options) {
    using Create = OpenOptions::Create;
    if (path.empty()) throw_error(ErrorCode::kInvalidArgument, path, "empty path");
    const bool writable = !options.readonly;
    bool fresh = false;
    if (options.create == Create::kAlways) {
        if (!writable) throw_error(ErrorCode::kInvalidArgument, path, "cannot create a store read-only");
        file_ = os::File::open(path, true, true, true, options.mode);
        fresh = true;
    } else if (options.create == Create::kNever || !writable) {
        file_ = os::File::open(path, writable, false, false, 0);
    } else {
        try {
            file_ = os::File::open(path, true, false, false, 0);
        } catch (const Error& e) {
            if (e.code() != ErrorCode::kNotFound) throw;
            try {
                file_ = os::File::open(path, true, true, true, options.mode);
                fresh = true;
            } catch (const Error& e2) {
                if (e2.code() != ErrorCode::kExists) throw;
                file_ = os::File::open(path, true, false, false, 0);  // lost a creation race
            }
        }
    }
    if (!file_.try_lock(writable ? os::LockMode::kExclusive : os::LockMode::kShared)) {
        LockSlot slot{};
        const bool got = file_.pread(&slot, sizeof slot, sizeof(FileHeader)) == sizeof slot;
        const int pid = got ? static_cast<int>(slot.writer_pid) : 0;
        std::string msg = writable ? "store is already open in another process or handle"
                                   : "store is open for writing in another process or handle";
        if (pid != 0) msg += " (writer pid " + std::to_string(pid) + ")";
        if (fresh) os::remove_file(path);
        file_.close();
        throw LockedError(path, msg + "; close it first (multi-process writers come with SharedDict)", pid);
    }
    std::uint64_t file_size = file_.size();
    if (file_size == 0 && writable && options.create != Create::kNever) fresh = true;
    if (!fresh && file_size > 0 && creation_unfinished(file_size)) {
        // Killed inside create_layout (the magic is written last): nothing was ever stored here.
        if (!writable || options.create == Create::kNever)
            throw_format(ErrorCode::kCorrupt, path, "store creation did not complete (header pages are empty)");
        fresh = true;
    }
    if (writable) remove_stale_compactions();
    if (fresh) {
        create_layout(kind, options);
        file_size = file_.size();
    }
    validate_header(kind, options, file_size);
    created_ = fresh;
}

bool Region::creation_unfinished(std::uint64_t file_size) const {
    // create_layout first sizes the file to exactly kInitialSize; any other size of zeros is foreign data.
    if (file_size != kInitialSize) return false;
    char page[kDataStart];
    const std::size_t n = file_.pread(page, std::min<std::uint64_t>(file_size, kDataStart), 0);
    for (std::size_t i = 0; i < n; ++i)
        if (page[i] != 0) return false;
    return true;
}

void Region::remove_stale_compactions() const {
    // compact() writes "<path>.compact.<pid>" and renames it over the store while holding the write lock;
    // holding the lock now means any such file is left over from a compaction that was killed.
    os::remove_with_prefix(file_.path() + ".compact.");
}

void Region::create_layout(StoreKind kind, const OpenOptions& options) {
    // Sizes the file, then writes the header pages through a temporary mapping with the magic last: a kill
    // before the magic lands leaves an all-zero file of kInitialSize, which the next writer re-creates
    // (creation_unfinished) and a reader refuses; it is never trusted as a store.
    file_.resize(kInitialSize);
    std::string page(kDataStart, '\0');
    FileHeader h{};
    std::memcpy(h.magic, kMagic, sizeof kMagic);
    h.format_version = kFormatVersion;
    h.kind = static_cast<std::uint32_t>(kind);
    h.byte_order = kByteOrderMark;
    h.word_size = 8;
    h.page_size = static_cast<std::uint32_t>(kPageSize);
    h.elem_size = options.elem_size;
    h.elem_tag = options.elem_tag;
    h.created_unix_ns = now_ns();
    h.checksum = header_checksum(h);
    LiveHeader live{};
    live.file_size = kInitialSize;
    CommitSlot slot{};
    slot.generation = 1;
    slot.state = live;
    slot.checksum = slot_checksum(slot);
    std::memcpy(page.data() + kCommitSlotOffset[0], &slot, sizeof slot);
    std::memcpy(page.data() + kLiveHeaderOffset, &live, sizeof live);
    // The magic goes last so that a torn creation never looks like a valid store.
    std::memcpy(page.data(), &h, sizeof h);
    // The region is not mapped yet: write through a temporary mapping of the header pages, then sync it.
    void* tmp = os::reserve_address_space(kDataStart);
    try {
        os::map_file_fixed(tmp, kDataStart, file_, 0, true);
        std::memcpy(static_cast<char*>(tmp) + kPageSize, page.data() + kPageSize, kDataStart - kPageSize);
        std::memcpy(static_cast<char*>(tmp) + kLiveHeaderOffset, page.data() + kLiveHeaderOffset,
                    kPageSize - kLiveHeaderOffset);
        std::memcpy(tmp, page.data(), kLiveHeaderOffset);
        os::sync_range(file_.path(), tmp, kDataStart);
    } catch (...) {
        os::release_address_space(tmp, kDataStart);
        throw;
    }
    os::release_address_space(tmp, kDataStart);
    os::fsync_parent_dir(file_.path());
}

void Region::validate_header(StoreKind kind, const OpenOptions& options, std::uint64_t file_size) {
    const std::string& path = file_.path();
    FileHeader h{};
    if (file_size < sizeof(FileHeader) || file_.pread(&h, sizeof h, 0) != sizeof h) {
        if (file_size >= sizeof kMagic) {
            char magic[8];
            if (file_.pread(magic, 8, 0) == 8 && std::memcmp(magic, kMagic, 8) == 0)
                throw_format(ErrorCode::kTruncated, path,
                             "truncated: " + std::to_string(file_size) + " bytes, shorter than the header");
        }
        throw_format(ErrorCode::kForeign, path, "not an mmstore file (too short for a header)");
    }
    if (std::memcmp(h.magic, kMagic, sizeof kMagic) != 0)
        throw_format(ErrorCode::kForeign, path, "not an mmstore file (bad magic)");
    if (h.checksum != header_checksum(h))
        throw_format(ErrorCode::kCorrupt, path, "corrupt file header (checksum mismatch at offset 0)");
    if (h.format_version > kFormatVersion || h.format_version == 0)
        throw_format(ErrorCode::kVersion, path,
                     "format version " + std::to_string(h.format_version) + " is not supported (this build reads up to " +
                         std::to_string(kFormatVersion) + ")");
    if (h.byte_order != kByteOrderMark || h.word_size != 8 || h.page_size != kPageSize)
        throw_format(ErrorCode::kVersion, path, "incompatible layout (byte order, word size or page size)");
    if (h.kind != static_cast<std::uint32_t>(kind)) {
        const auto found = static_cast<StoreKind>(h.kind);
        const bool known = h.kind >= 1 && h.kind <= 5;
        throw_format(ErrorCode::kWrongKind, path,
                     known ? std::string("is a ") + kind_name(found) + " store, not a " + kind_name(kind)
                           : "is an mmstore store of unknown kind " + std::to_string(h.kind) + ", not a " + kind_name(kind));
    }
    if (h.elem_size != options.elem_size || h.elem_tag != options.elem_tag)
        throw_format(ErrorCode::kWrongKind, path,
                     "element type differs: file has size " + std::to_string(h.elem_size) + " tag " +
                         std::to_string(h.elem_tag) + ", caller expects size " + std::to_string(options.elem_size) +
                         " tag " + std::to_string(options.elem_tag));
    if (file_size < kDataStart)
        throw_format(ErrorCode::kTruncated, path,
                     "truncated: " + std::to_string(file_size) + " bytes, shorter than the header pages");

    // Commit slots: the valid one with the higher generation wins.
    CommitSlot slots[2];
    int best = -1;
    for (int i = 0; i < 2; ++i) {
        file_.pread(&slots[i], sizeof(CommitSlot), kCommitSlotOffset[i]);
        const bool valid = slots[i].generation != 0 && slots[i].checksum == slot_checksum(slots[i]);
        if (valid && (best < 0 || slots[i].generation > slots[best].generation)) best = i;
    }
    if (best < 0) throw_format(ErrorCode::kCorrupt, path, "corrupt header: both commit slots fail their checksums");
    generation_ = slots[best].generation;

    LiveHeader live{};
    file_.pread(&live, sizeof live, kLiveHeaderOffset);
    auto size_ok = [&](std::uint64_t s) { return s >= kDataStart && s % kPageSize == 0; };
    bool dirty = live.dirty != 0 || slots[best].state.dirty != 0;
    // A clean slot must match the live state byte for byte; any difference is damage, repaired like a crash.
    if (!dirty && std::memcmp(&live, &slots[best].state, sizeof live) != 0) dirty = true;
    if (!size_ok(live.file_size)) {
        if (!size_ok(slots[best].state.file_size))
            throw_format(ErrorCode::kCorrupt, path, "corrupt header: invalid store size");
        live = slots[best].state;  // fall back to the last committed state, then repair
        dirty = true;
    }
    if (live.file_size > file_size)
        throw_format(ErrorCode::kTruncated, path,
                     "truncated: file has " + std::to_string(file_size) + " bytes but its header records " +
                         std::to_string(live.file_size));
    was_dirty_ = dirty;

    reserved_ = round_up(std::max<std::uint64_t>(options.reserve, live.file_size * 4), 1 << 20);
    const std::uint64_t floor = round_up(live.file_size * 2, 1 << 20);
    for (;;) {
        try {
            base_ = static_cast<std::uint8_t*>(os::reserve_address_space(reserved_));
            break;
        } catch (const Error&) {
            if (reserved_ / 2 < floor) throw;
            reserved_ = round_up(reserved_ / 2, 1 << 20);
        }
    }
    try {
        map_range(0, live.file_size);
    } catch (...) {
        os::release_address_space(base_, reserved_);
        base_ = nullptr;
        throw;
    }
    mapped_ = live.file_size;
    if (file_.writable()) {
        std::memcpy(&this->live(), &live, sizeof live);
        auto* lock = reinterpret_cast<LockSlot*>(base_ + sizeof(FileHeader));
        lock->writer_pid = static_cast<std::uint32_t>(os::current_pid());
        lock->writer_since_unix_ns = now_ns();
        this->live().dirty = 1;
        write_commit_slot(false);
    }
}

void Region::map_range(std::uint64_t from, std::uint64_t to) {
    if (to > from) os::map_file_fixed(base_ + from, to - from, file_, from, file_.writable());
}

void Region::grow(std::uint64_t min_size) {
    if (min_size <= mapped_) return;
    // Grow by 1/8 (at least 1 MiB, at most 1 GiB): blocks are reserved with fallocate as the file grows,
    // so the step bounds the disk held beyond the data (a doubling step held up to 2x, measured 95 B per
    // int->int entry instead of ~45).
    std::uint64_t target = std::max(min_size, mapped_ + std::clamp<std::uint64_t>(mapped_ / 8, 1 << 20, kMaxGrowStep));
    target = round_up(target, kGrowQuantum);
    if (target > reserved_) {
        target = round_up(min_size, kPageSize);
        if (target > reserved_)
            throw_error(ErrorCode::kCapacity, path(),
                        "store needs " + std::to_string(min_size) + " bytes but its address reservation is " +
                            std::to_string(reserved_) + "; reopen it with a larger reserve");
    }
    file_.resize(target);  // reserves blocks first: a full disk throws here, nothing changed
    map_range(mapped_, target);
    mapped_ = target;
    live().file_size = target;  // publish: one 8-byte store
}

void Region::shrink(std::uint64_t new_size) {
    new_size = std::max(round_up(new_size, kPageSize), kDataStart);
    if (new_size >= mapped_) return;
    live().file_size = new_size;  // publish the smaller size before cutting the file
    os::unmap_to_reservation(base_ + new_size, mapped_ - new_size);
    mapped_ = new_size;
    file_.resize(new_size);
}

void Region::write_commit_slot(bool clean) {
    const int idx = static_cast<int>(generation_ % 2);  // alternate: the other slot keeps the previous state
    auto* slot = reinterpret_cast<CommitSlot*>(base_ + kCommitSlotOffset[idx]);
    CommitSlot next{};
    next.generation = generation_ + 1;
    next.state = live();
    next.state.dirty = clean ? 0 : 1;
    next.checksum = slot_checksum(next);
    std::memcpy(slot, &next, sizeof next);
    os::sync_range(path(), base_ + kCommitSlotOffset[idx], kPageSize);
    generation_ = next.generation;
}

void Region::sync() {
    if (!file_.writable()) return;
    os::sync_range(path(), base_ + kDataStart, mapped_ - kDataStart);
    os::sync_range(path(), base_, kPageSize);
    file_.fsync();
    write_commit_slot(false);
}

void Region::close() {
    if (base_ == nullptr) return;
    if (file_.writable()) {
        os::sync_range(path(), base_ + kDataStart, mapped_ - kDataStart);
        file_.fsync();
        live().dirty = 0;
        reinterpret_cast<LockSlot*>(base_ + sizeof(FileHeader))->writer_pid = 0;
        os::sync_range(path(), base_, kPageSize);
        write_commit_slot(true);
    }
    os::release_address_space(base_, reserved_);
    base_ = nullptr;
    mapped_ = 0;
    file_.close();
}

void Region::abandon() noexcept {
    if (base_ != nullptr) os::release_address_space(base_, reserved_);
    base_ = nullptr;
    mapped_ = 0;
    file_.close();
}

}  // namespace mmstore::storage
