// mmstore/storage/region.hpp
//
// Region: a store file mapped into an address range reserved up front (PROT_NONE, MAP_NORESERVE), so the
// base address never moves while the Region is open; growth extends the file and maps the new part in
// place. A Region owns the file's header pages (storage/header.hpp): it validates them at open, takes the
// write lock, and writes commit slots on sync().
//
// Pointers into the region stay valid until close(). Offsets read from the file must be bounds-checked
// with check_range() before use (DESIGN.md contract 5).
// Thread safety: any number of threads may read through one Region at once (size(), in_bounds(), at(),
// refresh(): mapping growth another process published is serialized by a process-local mutex, and the mapped
// size is read and written atomically); everything that writes (grow, shrink, sync, close) needs the caller
// to hold the store's write lock, and close() must not race with other threads' use. Process safety: any number of processes may open
// a store, read-write or read-only. Writers serialize on the LockSlot's ProcessMutex (the caller takes it,
// see containers::Store); readers take no lock. Two open-file-description locks on bytes past any data
// coordinate opening and closing (docs/design.md, "Many processes"):
//   gate      exclusive while a process opens or closes, so "am I alone?" has a stable answer;
//   presence  shared while a process has the store open; whoever gets it exclusively is alone.
// The first opener (alone) creates, repairs and initializes the mutex; the last closer marks the store
// clean. A file grown by one process is mapped by the others at their next operation (refresh()).
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>

#include "mmstore/os/file.hpp"
#include "mmstore/storage/header.hpp"

namespace mmstore::storage {

struct OpenOptions {
    // true: must create (error if it exists); false: must exist; unset: open or create.
    enum class Create { kIfMissing, kAlways, kNever } create = Create::kIfMissing;
    unsigned mode = 0600;
    bool readonly = false;
    bool durable = false;  // sync() after every mutation
    // Check what reads return (docs/design.md, "Checked reads"): every word's check byte, every record's
    // checksum, the container header's counters, and on a lookup miss the probed index groups and
    // candidate keys. false skips these read checks (not open-time checks, verify() or repair): a few ns
    // per read faster (O(size) for large records), at the risk of returning damaged data as if it were real.
    bool verify = true;
    // Shared-memory segments (SharedDict): nothing to make durable, so close() and sync() skip msync/fsync.
    bool volatile_memory = false;
    // SharedDict: a handle used in a child after fork() reopens the segment there instead of refusing.
    bool reattach_after_fork = false;
    // Address space reserved for growth: the file can grow to this size (or 4x its size at open, if larger)
    // without its base moving. 256 GiB costs no memory and leaves room for ~500 open stores in the 128 TiB
    // of a 47-bit address space; when the kernel refuses a reservation it is halved down to 2x the file.
    std::uint64_t reserve = std::uint64_t{256} << 30;
    std::uint32_t elem_size = 0;  // Vector<T>
    std::uint64_t elem_tag = 0;
};

class Region {
public:
    Region() = default;
    ~Region();
    Region(const Region&) = delete;
    Region& operator=(const Region&) = delete;

    // Opens or creates the store at `path` of `kind`. Throws FormatError (kForeign, kTruncated, kCorrupt,
    // kWrongKind, kVersion) or Error (kIo, kNotFound, kExists). Returns holding the open gate: the caller
    // attaches its container (formats or repairs it if alone()) and then calls release_gate().
    void open(const std::string& path, StoreKind kind, const OpenOptions& options);
    void release_gate() noexcept;
    // True when no other handle had the store open when this one opened (creation, repair and lock
    // initialization happen only then).
    bool alone() const noexcept { return alone_; }
    // Takes the gate and keeps it when this is the only handle open (true); otherwise releases it (false).
    // Compaction replaces the file, so it needs the store to itself until it closes.
    bool claim_exclusive();
    bool is_open() const noexcept { return base_ != nullptr; }
    // True when the last opener did not close cleanly (dirty flag set): the caller must check and repair.
    bool was_dirty() const noexcept { return was_dirty_; }
    // True when this open rolled an unclean store back to its newest commit slot because the machine has
    // rebooted since the store was last open (its boot_id differs): after a power loss the pages written
    // since the last sync() may have reached the disk in any subset, so only the committed state, and the
    // changes that the write discipline makes whole on their own, can be trusted (docs/design.md,
    // "Durability"). was_dirty() is then true as well.
    bool rolled_back() const noexcept { return rolled_back_; }
    // The state of the newest valid commit slot: what a power loss now would come back to. Cached until a
    // slot changes; call with the write lock held (commit slots are written under it).
    const LiveHeader& committed() const;
    // Called by sync() before anything is flushed: the container stamps what the commit will cover
    // (e.g. how many entries of its root are committed) so that writers know what they must not overwrite.
    void set_before_commit(std::function<void()> f) { before_commit_ = std::move(f); }
    // Runs that hook without a commit: for a store opened clean, whose state is its newest commit.
    void stamp_commit() const {
        if (before_commit_ && file_.writable() && !volatile_) before_commit_();
    }
    bool created() const noexcept { return created_; }
    bool writable() const noexcept { return file_.writable(); }
    const std::string& path() const noexcept { return file_.path(); }
    const FileHeader& file_header() const noexcept { return *reinterpret_cast<const FileHeader*>(base_); }

    std::uint8_t* base() const noexcept { return base_; }
    LiveHeader& live() const noexcept { return *reinterpret_cast<LiveHeader*>(base_ + kLiveHeaderOffset); }
    LockSlot* lock_slot() const noexcept { return reinterpret_cast<LockSlot*>(base_ + sizeof(FileHeader)); }
    std::uint64_t size() const noexcept { return __atomic_load_n(&mapped_, __ATOMIC_ACQUIRE); }
    // Maps what other processes added since this handle last looked (the file only grows while shared).
    // Cheap when nothing changed: one load and a compare. Throws kCapacity if the growth exceeds this
    // handle's address reservation.
    void refresh() const {
        if (__atomic_load_n(&live().file_size, __ATOMIC_ACQUIRE) != size()) [[unlikely]] refresh_slow();
    }
    // The reclaim counter (LiveHeader::reclaims): readers snapshot it before and compare it after a read.
    std::uint64_t reclaims() const noexcept { return __atomic_load_n(&live().reclaims, __ATOMIC_ACQUIRE); }
    // Writers call this before freeing or rewriting in place anything a reader may be reading.
    void bump_reclaims() noexcept {
        __atomic_store_n(&live().reclaims, live().reclaims + 1, __ATOMIC_RELEASE);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);  // the bump is visible before the first overwrite
    }
    bool is_volatile() const noexcept { return volatile_; }

    template <class T>
    T* at(std::uint64_t offset) const noexcept { return reinterpret_cast<T*>(base_ + offset); }
    // True when [offset, offset+len) lies inside the arena part of the mapping.
    bool in_bounds(std::uint64_t offset, std::uint64_t len) const noexcept {
        const std::uint64_t mapped = size();
        return offset >= kDataStart && offset <= mapped && len <= mapped - offset;
    }

    // Grows the file (and mapping) to at least `min_size`, by at least 1/8 of its size. Throws kDiskFull or
    // kCapacity; on failure nothing changes.
    void grow(std::uint64_t min_size);
    // Cuts the file (and mapping) down to `new_size` (page multiple, >= kDataStart). Used by compaction.
    void shrink(std::uint64_t new_size);
    // msync data, fsync the file, then write and sync the next commit slot. Caller holds the mutex.
    void sync();
    // Called by every writer right after it takes the write lock, before it changes anything: makes sure
    // the newest commit slot says dirty (and is on the disk), so that a power loss after this write is
    // seen as one by the next opener. A clean open defers that slot (a disk write, 3-160 ms on a busy disk)
    // to here, so opening writes nothing durable; once per handle, then one load and a branch.
    void prepare_write() {
        if (!write_prepared_) [[unlikely]] prepare_write_slow();
    }
    // True when this handle has written, or had to write, since it opened (see prepare_write).
    bool write_prepared() const noexcept { return write_prepared_ && file_.writable() && !volatile_; }
    // Close in steps, so that only the last handle open needs the store's mutex (a closing process never
    // waits for a lock holder, even a stopped one): close_prepare() syncs this handle's writes, takes the
    // gate and returns whether this is the last handle open; the caller, if so and if it can take the
    // mutex, calls mark_clean(); close() removes a segment marked for unlinking (when last) and releases
    // the mapping, the file and its locks.
    bool close_prepare();
    // Marks the store clean (commit slot with dirty = 0). With `cut_to` (a page multiple below the file
    // size, the arena's end), the file is first recorded as that long and cut to it once the slot is
    // written: the last handle gives back the growth slack and the free tail, so a closed store's apparent
    // size (st_size, what cp and backups see) is what it uses.
    void mark_clean(std::uint64_t cut_to = 0);
    void close();
    // For listings (mmstore.shared_dicts()): whether any handle has the store at `path` open, without
    // opening it as a store.
    static bool in_use(const std::string& path);
    // Unclean close (used by tests and after fork): unmaps without syncing or clearing the dirty flag.
    void abandon() noexcept;
    void punch_hole(std::uint64_t offset, std::uint64_t len) noexcept { file_.punch_hole(offset, len); }
    // Writes [offset, offset+len) of the mapping (arena space the caller owns, not yet published) with
    // `pattern` repeated from `offset` on; `pattern_len` divides kPageSize. The page-aligned middle of a
    // large range goes through pwrite(): a fresh page filled by a write of the whole page needs no zeroing
    // first, where a first store through the mapping faults it in through ext4's readahead path, which
    // zero-fills it and on this VM ran at a median 0.25 GB/s against 2.9 GB/s for pwrite (docs/design.md,
    // "Growth"). The page cache is shared, so the mapping sees the bytes at once.
    void fill(std::uint64_t offset, std::uint64_t len, const void* pattern, std::size_t pattern_len) noexcept;
    // Zeroes [offset, offset+len) (free arena space the caller owns), whole pages with pwrite() whatever
    // the length. For space that may be a punched or never-written hole about to be written through the
    // mapping in small pieces (a records chunk, a free block's header): the first store through the mapping
    // would fault the page in through readahead, which zero-fills a large folio around it at this VM's slow
    // rate (see fill()); a page written whole by pwrite() is just copied.
    void zero(std::uint64_t offset, std::uint64_t len) noexcept;
    // Copies [from, from+len) of the mapping to [to, to+len) (arena space the caller owns, not yet published;
    // the ranges do not overlap). As fill(): the page-aligned middle of a large destination goes through
    // pwrite() from the mapping, so fresh (punched or fallocated) destination pages are not zero-filled
    // first. What moving a multi-GB table down at close costs (docs/design.md, "File density").
    void copy(std::uint64_t to, std::uint64_t from, std::uint64_t len) noexcept;
    void reserve_blocks(std::uint64_t offset, std::uint64_t len) { file_.reserve(offset, len); }
    std::uint64_t allocated_bytes() const { return file_.allocated_bytes(); }
    std::uint64_t generation() const noexcept { return generation_; }

private:
    void create_layout(StoreKind kind, const OpenOptions& options);
    void remove_stale_compactions() const;
    void validate_header(StoreKind kind, const OpenOptions& options, std::uint64_t file_size);
    void write_commit_slot(bool clean);
    void prepare_write_slow();
    void map_range(std::uint64_t from, std::uint64_t to) const;
    void refresh_slow() const;
    bool same_file_as_path() const;

    os::File file_;
    std::uint8_t* base_ = nullptr;
    std::uint64_t reserved_ = 0;
    mutable std::uint64_t mapped_ = 0;  // bytes mapped; read with size(), written with set_mapped()
    mutable std::mutex refresh_mu_;      // threads of this process mapping another process's growth
    void set_mapped(std::uint64_t v) const noexcept { __atomic_store_n(&mapped_, v, __ATOMIC_RELEASE); }
    std::uint64_t generation_ = 0;
    bool was_dirty_ = false;
    bool rolled_back_ = false;
    bool created_ = false;
    bool alone_ = false;
    bool gate_ = false;
    bool volatile_ = false;
    bool closing_prepared_ = false;
    bool last_ = false;
    // True once the newest commit slot is known to say dirty (prepare_write). It stays true while this
    // handle is open: only the last handle to close writes a clean slot (mark_clean).
    bool write_prepared_ = false;
    std::function<void()> before_commit_;
    mutable LiveHeader committed_{};
    mutable std::uint64_t committed_key_[2] = {~std::uint64_t{0}, ~std::uint64_t{0}};
};

}  // namespace mmstore::storage
