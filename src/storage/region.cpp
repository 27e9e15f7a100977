#include "mmstore/storage/region.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "mmstore/error.hpp"
#include "mmstore/storage/checksum.hpp"
#include "mmstore/sync/process_mutex.hpp"

#include <sys/stat.h>

namespace mmstore::storage {

namespace {

constexpr std::uint64_t kInitialSize = 16 * kPageSize;  // header pages + 52 KiB of arena
constexpr std::uint64_t kGrowQuantum = 64 * 1024;
constexpr std::uint64_t kMaxGrowStep = std::uint64_t{1} << 30;
// The two lock bytes (os::File::range_lock) lie far past any data, so they never conflict with I/O.
constexpr std::uint64_t kGateByte = std::uint64_t{1} << 62;
constexpr std::uint64_t kPresenceByte = kGateByte + 1;

std::uint64_t round_up(std::uint64_t v, std::uint64_t to) { return (v + to - 1) / to * to; }

std::string dir_of_path(const std::string& path) {
    const auto slash = path.rfind('/');
    return slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
}

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
    // A new store is built under no name (os::File::create_unlinked) and linked into place with its header
    // complete, holding the gate, so a file at `path` is never a half-created store: an empty or all-zero
    // file there is someone else's (ForeignFileError), and a failed creation leaves nothing behind.
    // Returns false when another process linked its store there first (nothing of ours remains).
    auto create_aside = [&] {
        file_ = os::File::create_unlinked(path, options.mode);
        try {
            file_.range_lock(kGateByte, os::LockMode::kExclusive, true);  // nobody else can see it yet
            volatile_ = options.volatile_memory;
            create_layout(kind, options);
            if (!file_.link_into_place()) return false;
        } catch (...) {
            file_.close();  // the nameless file goes with its descriptor (a named temporary is unlinked)
            throw;
        }
        if (!volatile_) os::fsync_parent_dir(path);
        return true;
    };
    if (options.create == Create::kAlways) {
        if (!writable) throw_error(ErrorCode::kInvalidArgument, path, "cannot create a store read-only");
        if (!create_aside()) throw_error(ErrorCode::kExists, path, "store already exists", EEXIST);
        fresh = true;
    } else if (options.create == Create::kNever || !writable) {
        file_ = os::File::open(path, writable, false, false, 0);
    } else {
        try {
            file_ = os::File::open(path, true, false, false, 0);
        } catch (const Error& e) {
            if (e.code() != ErrorCode::kNotFound) throw;
            fresh = create_aside();
            if (!fresh) file_ = os::File::open(path, true, false, false, 0);  // lost a creation race
        }
    }
    volatile_ = options.volatile_memory;
    // The gate: exclusive for writable openers (they may create, repair or initialize the lock), shared for
    // read-only ones (a read-only descriptor cannot hold an exclusive record lock; they never change
    // anything). A file renamed over while we waited (compaction) is reopened.
    for (;;) {
        file_.range_lock(kGateByte, writable ? os::LockMode::kExclusive : os::LockMode::kShared, true);
        if (same_file_as_path()) break;
        fresh = false;
        try {
            file_ = os::File::open(path, writable, false, false, 0);
        } catch (const Error& e) {
            // The last handle of a SharedDict removed it while we waited: create it anew if allowed.
            if (e.code() != ErrorCode::kNotFound || !writable || options.create == Create::kNever) throw;
            fresh = create_aside();
            if (!fresh) file_ = os::File::open(path, true, false, false, 0);  // lost a creation race
        }
    }
    gate_ = true;
    try {
        alone_ = writable && file_.range_lock(kPresenceByte, os::LockMode::kExclusive, false);
        std::uint64_t file_size = file_.size();
        if (alone_) {
            remove_stale_compactions();
        } else {
            fresh = false;  // someone else has it open: it exists, whatever it holds
        }
        created_ = fresh;
        validate_header(kind, options, file_size);
        file_.range_lock(kPresenceByte, os::LockMode::kShared, true);  // (from exclusive: one call, atomic)
    } catch (...) {
        if (base_ != nullptr) os::release_address_space(base_, reserved_);
        base_ = nullptr;
        file_.close();  // releases both record locks
        gate_ = false;
        throw;
    }
}

bool Region::same_file_as_path() const {
    struct stat a {}, b {};
    if (::fstat(file_.fd(), &a) != 0) return true;  // let later calls report
    if (::stat(file_.path().c_str(), &b) != 0) return false;  // removed while we waited (last close unlinked it)
    return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

bool Region::in_use(const std::string& path) {
    os::File f = os::File::open(path, false, false, false, 0);
    return f.range_locked_elsewhere(kPresenceByte) || f.range_locked_elsewhere(kGateByte);
}

void Region::release_gate() noexcept {
    if (gate_ && file_.is_open()) file_.range_unlock(kGateByte);
    gate_ = false;
}

bool Region::claim_exclusive() {
    file_.range_lock(kGateByte, os::LockMode::kExclusive, true);
    if (file_.range_lock(kPresenceByte, os::LockMode::kExclusive, false)) {
        gate_ = true;
        return true;
    }
    file_.range_unlock(kGateByte);
    return false;
}

void Region::remove_stale_compactions() const {
    // compact() writes "<target>.compact.<pid>" next to the file the path resolves to and renames it over
    // that file while holding the write lock; holding the lock now means any such file is left over from a
    // compaction that was killed.
    const std::string target = os::resolve_symlinks(file_.path());
    os::remove_with_prefix(target + ".compact.");
    // Where the filesystem has no O_TMPFILE, creation builds "<path>.create.<pid>-<n>" (os::File::
    // create_unlinked); one whose process is gone was killed before linking it into place.
    const std::string dir = dir_of_path(target);
    const std::string stem = target.substr(target.rfind('/') + 1) + ".create.";  // (npos + 1 == 0)
    for (const std::string& name : os::list_dir(dir)) {
        if (!name.starts_with(stem)) continue;
        const std::string rest = name.substr(stem.size());  // "<pid>-<n>"
        const std::string pid = rest.substr(0, rest.find('-'));
        if (pid.empty() || pid.size() > 9 || pid.find_first_not_of("0123456789") != std::string::npos) continue;
        if (!os::process_alive(std::stoi(pid))) os::remove_file(dir + "/" + name);
    }
}

void Region::create_layout(StoreKind kind, const OpenOptions& options) {
    // Sizes the file, then writes the header pages through a temporary mapping with the magic last. The
    // file has no name yet (open: create_aside), so a kill here leaves nothing at the store's path.
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
    h.creator_pid = static_cast<std::uint32_t>(os::current_pid());
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
        if (!volatile_) os::sync_range(file_.path(), tmp, kDataStart);
    } catch (...) {
        os::release_address_space(tmp, kDataStart);
        throw;
    }
    os::release_address_space(tmp, kDataStart);
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
        if (file_size == 0)
            throw_format(ErrorCode::kForeign, path,
                         "not an mmstore file (empty); mmstore creates its stores itself, so an existing empty file "
                         "is not initialized: remove it or choose another path");
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
    if (h.format_version < kFormatVersion && h.format_version >= kOldestUpgradable)
        throw_format(ErrorCode::kVersion, path,
                     "format version " + std::to_string(h.format_version) +
                         " (mmstore 0.2) is not read by this build (format " + std::to_string(kFormatVersion) +
                         ", whose words carry check bytes); convert the file once with `mmstore upgrade " + path +
                         "` (Python: mmstore.upgrade(path), C++: mmstore::upgrade(path)), which rewrites it in place");
    if (h.format_version < kOldestUpgradable)
        throw_format(ErrorCode::kVersion, path,
                     "format version " + std::to_string(h.format_version) +
                         " predates mmstore 0.2 and is not read or converted by this build (mmstore upgrade converts format 2)");
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

    rolled_back_ = false;
    write_prepared_ = !file_.writable() || options.volatile_memory;  // these never write a commit slot
    committed_key_[0] = committed_key_[1] = ~std::uint64_t{0};  // a cache of another file's slots is stale
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
    if (!alone_) dirty = false;  // others have it open: it is dirty by design, and theirs to repair
    if (!size_ok(live.file_size) && !alone_)
        throw_format(ErrorCode::kCorrupt, path, "corrupt header: invalid store size");
    if (!size_ok(live.file_size)) {
        if (!size_ok(slots[best].state.file_size))
            throw_format(ErrorCode::kCorrupt, path, "corrupt header: invalid store size");
        live = slots[best].state;  // fall back to the last committed state, then repair
        dirty = true;
    }
    // A power loss (the machine rebooted since the store was last open, and it was not closed cleanly):
    // the live state in page 0 may be newer than the pages it points to. Roll back to the newest commit
    // slot, whose state sync() made durable before writing it and which the write discipline keeps intact
    // until the next commit (deferred frees, copy-on-write of committed entries; docs/design.md).
    if (alone_ && dirty && !volatile_ && file_.writable() && live.boot_id != os::boot_id() &&
        size_ok(slots[best].state.file_size)) {
        live = slots[best].state;
        rolled_back_ = true;
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
    set_mapped(live.file_size);
    if (alone_) {
        // Nobody else maps the store: take over the live state (possibly the committed fallback), and
        // (re)create the mutex, whose previous state belongs to processes that are gone.
        std::memcpy(&this->live(), &live, sizeof live);
        sync::ProcessMutex::initialize(lock_slot());
        lock_slot()->waiters = 0;  // waiters killed while waiting left their count behind
        this->live().boot_id = os::boot_id();
        this->live().dirty = 1;
        // A dirty or damaged store is repaired next (attach_root), a new one formatted: both write, so
        // their dirty slot goes to the disk now, as it always did. A clean store's slot waits for the
        // first write (prepare_write): a reopen that only reads writes nothing durable, and a kill before
        // the first write leaves the committed state as it was (the live dirty flag, only in page 0,
        // still makes the next opener check the store).
        if (dirty || created_ || rolled_back_) write_commit_slot(false);
    } else if (file_.writable() && this->live().boot_id != os::boot_id()) {
        // Everyone else present opened it read-only, so nobody initialized the lock in this boot.
        sync::ProcessMutex::initialize(lock_slot());
        this->live().boot_id = os::boot_id();
    }
}

void Region::refresh_slow() const {
    std::lock_guard<std::mutex> g(refresh_mu_);  // another reader thread may be mapping the same growth
    const std::uint64_t size = __atomic_load_n(&live().file_size, __ATOMIC_ACQUIRE);
    if (size <= mapped_) return;  // only growth is published while others have the store open
    // A writer sizes the file before it publishes the growth: a size word past the end of the file is
    // damage, and mapping it would turn reads past the end into SIGBUS.
    if (const std::uint64_t real = file_.size(); size > real)
        throw_format(ErrorCode::kTruncated, path(),
                     "the store's size word (LiveHeader.file_size, offset 264) says " + std::to_string(size) +
                         " bytes, but the file has " + std::to_string(real) + " (damaged or truncated)");
    if (size > reserved_)
        throw_error(ErrorCode::kCapacity, path(),
                    "another process grew the store to " + std::to_string(size) + " bytes, past this handle's address "
                    "reservation of " + std::to_string(reserved_) + "; reopen it");
    map_range(mapped_, size);
    set_mapped(size);
}

void Region::map_range(std::uint64_t from, std::uint64_t to) const {
    if (to > from) os::map_file_fixed(base_ + from, to - from, file_, from, file_.writable());
}

void Region::grow(std::uint64_t min_size) {
    refresh();  // another writer may have grown it already
    std::lock_guard<std::mutex> g(refresh_mu_);  // reader threads of this handle may be refreshing
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
    set_mapped(target);
    __atomic_store_n(&live().file_size, target, __ATOMIC_RELEASE);  // publish: one 8-byte store
}

void Region::fill(std::uint64_t offset, std::uint64_t len, const void* pattern, std::size_t pattern_len) noexcept {
    const auto* pat = static_cast<const std::uint8_t*>(pattern);
    auto through_mapping = [&](std::uint64_t from, std::uint64_t to) {
        for (std::uint64_t a = from; a < to; ++a) base_[a] = pat[(a - offset) % pattern_len];
    };
    constexpr std::uint64_t kChunk = std::uint64_t{1} << 20;  // pwrite buffer; also the smallest range worth it
    const std::uint64_t first = round_up(offset, kPageSize);
    const std::uint64_t last = (offset + len) / kPageSize * kPageSize;
    if (last < first + kChunk) {
        if (pattern_len == 1) std::memset(base_ + offset, pat[0], len);
        else for (std::uint64_t a = 0; a < len; a += pattern_len) std::memcpy(base_ + offset + a, pat, std::min<std::uint64_t>(pattern_len, len - a));
        return;
    }
    through_mapping(offset, first);
    // The buffer starts at a page boundary, which is a whole number of patterns from `first`'s phase.
    std::vector<std::uint8_t> buf;
    try {
        buf.resize(kChunk);
    } catch (...) {
        through_mapping(first, offset + len);
        return;
    }
    for (std::size_t i = 0; i < pattern_len; ++i) buf[i] = pat[(first - offset + i) % pattern_len];
    for (std::size_t have = pattern_len; have < kChunk; have *= 2)  // pattern_len divides kChunk
        std::memcpy(buf.data() + have, buf.data(), std::min<std::size_t>(have, kChunk - have));
    for (std::uint64_t at = first; at < last;) {
        const std::uint64_t n = std::min(kChunk, last - at);
        if (!file_.try_pwrite(buf.data(), n, at)) {  // cannot happen on reserved blocks; stay correct anyway
            through_mapping(at, last);
            break;
        }
        at += n;
    }
    through_mapping(last, offset + len);
}

void Region::zero(std::uint64_t offset, std::uint64_t len) noexcept {
    static constexpr std::uint8_t kZeros[64 * 1024] = {};
    const std::uint64_t first = std::min(round_up(offset, kPageSize), offset + len);
    const std::uint64_t last = std::max((offset + len) / kPageSize * kPageSize, first);
    std::memset(base_ + offset, 0, first - offset);
    std::uint64_t at = first;
    while (at < last) {
        const std::uint64_t n = std::min<std::uint64_t>(sizeof kZeros, last - at);
        if (!file_.try_pwrite(kZeros, n, at)) break;  // cannot happen on reserved blocks; stay correct anyway
        at += n;
    }
    std::memset(base_ + at, 0, offset + len - at);
}

void Region::copy(std::uint64_t to, std::uint64_t from, std::uint64_t len) noexcept {
    constexpr std::uint64_t kChunk = std::uint64_t{1} << 20;  // per pwrite; also the smallest range worth it
    const std::uint64_t first = round_up(to, kPageSize);
    const std::uint64_t last = (to + len) / kPageSize * kPageSize;
    if (last < first + kChunk) {
        std::memcpy(base_ + to, base_ + from, len);
        return;
    }
    std::memcpy(base_ + to, base_ + from, first - to);
    std::uint64_t at = first;
    while (at < last) {
        const std::uint64_t n = std::min(kChunk, last - at);
        if (!file_.try_pwrite(base_ + from + (at - to), n, at)) break;  // cannot happen on reserved blocks
        at += n;
    }
    std::memcpy(base_ + at, base_ + from + (at - to), to + len - at);  // the tail, or the rest after a failure
}

void Region::shrink(std::uint64_t new_size) {
    new_size = std::max(round_up(new_size, kPageSize), kDataStart);
    if (new_size >= mapped_) return;
    live().file_size = new_size;  // publish the smaller size before cutting the file
    os::unmap_to_reservation(base_ + new_size, mapped_ - new_size);
    set_mapped(new_size);
    file_.resize(new_size);
}

void Region::write_commit_slot(bool clean) {
    // Several processes write commit slots (each under the mutex), so the next generation comes from the
    // slots themselves, not from what this handle wrote last.
    const auto* a = reinterpret_cast<const CommitSlot*>(base_ + kCommitSlotOffset[0]);
    const auto* b = reinterpret_cast<const CommitSlot*>(base_ + kCommitSlotOffset[1]);
    generation_ = std::max({generation_, a->checksum == slot_checksum(*a) ? a->generation : 0,
                            b->checksum == slot_checksum(*b) ? b->generation : 0});
    const int idx = static_cast<int>(generation_ % 2);  // alternate: the other slot keeps the previous state
    auto* slot = reinterpret_cast<CommitSlot*>(base_ + kCommitSlotOffset[idx]);
    CommitSlot next{};
    next.generation = generation_ + 1;
    next.state = live();
    next.state.dirty = clean ? 0 : 1;
    next.checksum = slot_checksum(next);
    std::memcpy(slot, &next, sizeof next);
    if (!volatile_) os::sync_range(path(), base_ + kCommitSlotOffset[idx], kPageSize);
    generation_ = next.generation;
    if (!clean) write_prepared_ = true;
}

void Region::prepare_write_slow() {
    // Under the write lock: whoever wrote since the last clean close made the newest slot dirty first (here,
    // or at a dirty open, or in sync()), so a dirty slot means there is nothing to do.
    if (!file_.writable() || volatile_) {
        write_prepared_ = true;
        return;
    }
    if (committed().dirty == 0) write_commit_slot(false);
    write_prepared_ = true;
}

const LiveHeader& Region::committed() const {
    const auto* a = reinterpret_cast<const CommitSlot*>(base_ + kCommitSlotOffset[0]);
    const auto* b = reinterpret_cast<const CommitSlot*>(base_ + kCommitSlotOffset[1]);
    if (a->generation != committed_key_[0] || b->generation != committed_key_[1]) {
        const bool va = a->generation != 0 && a->checksum == slot_checksum(*a);
        const bool vb = b->generation != 0 && b->checksum == slot_checksum(*b);
        const CommitSlot* best = va && (!vb || a->generation > b->generation) ? a : (vb ? b : nullptr);
        if (best != nullptr) committed_ = best->state;
        else std::memset(&committed_, 0, sizeof committed_);  // nothing committed: nothing to protect
        committed_key_[0] = a->generation;
        committed_key_[1] = b->generation;
    }
    return committed_;
}

void Region::sync() {
    if (!file_.writable()) return;
    if (before_commit_) before_commit_();
    refresh();
    if (!volatile_) {
        os::sync_range(path(), base_ + kDataStart, size() - kDataStart);
        os::sync_range(path(), base_, kPageSize);
        file_.fsync();
    }
    write_commit_slot(false);
}

bool Region::close_prepare() {
    if (base_ == nullptr || closing_prepared_) return last_;
    closing_prepared_ = true;
    last_ = false;
    if (!file_.writable()) return false;
    refresh();
    // The gate keeps openers out while we decide whether we are the last handle open.
    file_.range_lock(kGateByte, os::LockMode::kExclusive, true);
    gate_ = true;
    last_ = file_.range_lock(kPresenceByte, os::LockMode::kExclusive, false);
    if (!volatile_) {
        os::sync_range(path(), base_ + kDataStart, size() - kDataStart);
        file_.fsync();
    }
    return last_;
}

void Region::mark_clean(std::uint64_t cut_to) {
    // Only the last handle calls this (holding the gate and the mutex): nobody else maps the tail. The
    // shorter size is durable in page 0 and in the slot before the file is cut, so a power loss in between
    // leaves a file longer than recorded (valid), never shorter (TruncatedFileError).
    const bool cut = cut_to >= kDataStart && cut_to % kPageSize == 0 && cut_to < mapped_;
    if (cut) live().file_size = cut_to;
    live().dirty = 0;
    if (!volatile_) os::sync_range(path(), base_, kPageSize);
    write_commit_slot(true);
    if (cut) {
        try {
            file_.resize(cut_to);
        } catch (const Error&) {
            // The file stays longer than recorded, which is valid; the next close tries again.
        }
    }
}

void Region::close() {
    if (base_ == nullptr) return;
    close_prepare();
    // Still holding the gate: an opener waiting for it finds the name gone and starts afresh.
    if (last_ && live().unlink_on_last_close != 0) os::remove_file(path());
    os::release_address_space(base_, reserved_);
    base_ = nullptr;
    set_mapped(0);
    closing_prepared_ = false;
    last_ = false;
    gate_ = false;
    file_.close();  // releases the gate and presence locks
}

void Region::abandon() noexcept {
    if (base_ != nullptr) os::release_address_space(base_, reserved_);
    base_ = nullptr;
    set_mapped(0);
    closing_prepared_ = false;
    last_ = false;
    gate_ = false;
    file_.close();
}

}  // namespace mmstore::storage
