// mmstore/containers/store.hpp
//
// Store: one opened store file -- its Region, its Arena, and the encoding of byte strings into 8-byte
// *words*, the unit every container slot holds (docs/format.md, "Words and records"):
//
//   inline word   top byte 0x80 | kind << 4 | len (len 0..6); the bytes live in the word's low 6 bytes,
//                 so on a little-endian machine a word in the mapping *is* its data (zero-copy views).
//   record word   a 16-aligned arena offset (< 2^48, top byte 0) of a record {u32 len, u32 check, len
//                 bytes}, check = low 32 bits of XXH3-64 of the bytes; the block is block_size(8 + len) long.
//   kTombWord     all ones: an erased entry.
// Byte 6 of every word is its check byte (containers/word.hpp, the one implementation of the format).
//
// Read checks (OpenOptions::verify, on by default): view() verifies the word's check byte and a record's
// checksum before returning anything, so a damaged word or record raises FormatError instead of being
// read as other data. A handle opened with verify = false skips them (docs/design.md, "Checked reads").
//
// Views returned by view() point into the mapping and stay valid until the word's slot is overwritten or
// erased, or the store is closed -- by any process: with other processes writing, hold the write lock
// while a view is in use, or copy.
//
// Many processes (DESIGN.md contract 4): writers take the store's ProcessMutex (lock_write(), WriteGuard)
// around every mutation; readers take nothing and use the optimistic protocol of read(): snapshot the
// reclaim counter, read and copy, re-check the counter, retry when a writer freed something meanwhile.
// Thread safety: one thread at a time per Store object (the Python bindings run under the GIL).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "mmstore/alloc/arena.hpp"
#include "mmstore/containers/word.hpp"
#include "mmstore/error.hpp"
#include "mmstore/os/file.hpp"
#include "mmstore/os/prefetch.hpp"
#include "mmstore/storage/checksum.hpp"
#include "mmstore/storage/region.hpp"
#include "mmstore/sync/process_mutex.hpp"

#include <atomic>
#include <functional>

namespace mmstore::containers {

// Records of up to this size are checksummed on every read by default (OpenOptions::verify); larger ones
// too, unless the handle opted out of read checks. The constant now only names the bound the docs quote
// for the cost of a check (~100 ns at 4 KiB).
inline constexpr std::uint32_t kReadCheckMax = 4096;

// Scratch for view(): an inline word with an implied tag is rebuilt here (tag + up to 6 bytes).
struct WordBuf {
    char bytes[8];
};

struct RecordHeader {
    std::uint32_t len;    // payload bytes
    std::uint32_t check;  // low 32 bits of XXH3-64 of the payload
};
static_assert(sizeof(RecordHeader) == 8);

// a[0, n) == b[0, n). Keys are short (most encodings of at most 16 bytes): those compare with two
// overlapping word loads per side instead of a call to memcmp (a sixth of an in-cache lookup, callgrind).
inline bool bytes_equal(const char* a, const char* b, std::size_t n) noexcept {
    if (n >= 8 && n <= 16) {
        std::uint64_t a0, a1, b0, b1;
        std::memcpy(&a0, a, 8);
        std::memcpy(&b0, b, 8);
        std::memcpy(&a1, a + n - 8, 8);
        std::memcpy(&b1, b + n - 8, 8);
        return ((a0 ^ b0) | (a1 ^ b1)) == 0;
    }
    return std::memcmp(a, b, n) == 0;
}

struct StoreStats {
    std::uint64_t file_bytes = 0;       // size of the file in use
    std::uint64_t allocated_bytes = 0;  // blocks the filesystem has allocated (holes excluded)
    std::uint64_t arena_top = 0;        // end of the used arena
    std::uint64_t free_bytes = 0;       // bytes on the arena's free lists
};

class Store {
public:
    Store() = default;
    Store(const Store&) = delete;
    Store& operator=(const Store&) = delete;

    // Opens the region; the caller attaches its container and then calls finish_open() (Region::open).
    void open(const std::string& path, storage::StoreKind kind, const storage::OpenOptions& options);
    void finish_open() noexcept { region_.release_gate(); }
    bool is_open() const noexcept { return region_.is_open(); }
    // Throws kClosed after close(), kForked when used in a child of the opening process (unless the store
    // reattaches after fork: SharedDict). Maps growth made by other processes.
    void check_open() const {
        if (!region_.is_open() || fork_gen_ != os::fork_generation()) [[unlikely]] check_open_slow();
        region_.refresh();
    }
    // check_open() without exceptions, for per-element loops that raise through their own slow path.
    bool usable() const noexcept { return region_.is_open() && fork_gen_ == os::fork_generation(); }
    void check_writable() const {
        check_open();
        if (!region_.writable()) [[unlikely]] throw_readonly();
    }
    storage::Region& region() noexcept { return region_; }
    const storage::Region& region() const noexcept { return region_; }
    alloc::Arena& arena() noexcept { return arena_; }
    const std::string& path() const noexcept { return region_.path(); }
    bool durable() const noexcept { return durable_; }
    std::uint64_t root() const noexcept { return __atomic_load_n(&region_.live().root, __ATOMIC_ACQUIRE); }
    void publish_root(std::uint64_t off) noexcept { __atomic_store_n(&region_.live().root, off, __ATOMIC_RELEASE); }
    // The file offset of LiveHeader::root, the root cell of a store's main container.
    static constexpr std::uint64_t kRootCell = storage::kLiveHeaderOffset + offsetof(storage::LiveHeader, root);
    void bump_mutations() noexcept {
        ++region_.live().mutations;
        ++local_mutations_;
    }
    std::uint64_t mutations() const noexcept { return region_.live().mutations; }
    // Key-set / length changes made through this handle only: Python iterators raise on these (as dict and
    // list do) and ride out other processes' changes.
    std::uint64_t local_mutations() const noexcept { return local_mutations_; }
    // Nesting depth of the write lock taken through this handle.
    int lock_depth() const noexcept { return local_depth_; }
    // The root table's write in progress through this handle (containers/snapshot.hpp, VersionScope):
    // nesting depth, whether open snapshots make it record before-images, its version and the bounds of
    // the open snapshots' versions (read once per write). Written and read by the lock holder only.
    struct SnapOp {
        int depth = 0;
        bool recording = false;
        std::uint64_t phase = 0;
        std::uint64_t version = 0;
        std::uint64_t min_open = 0;
        std::uint64_t max_open = 0;
        bool fences_marked = false;  // this handle stored 1 in the kSnapFences word (containers/snapshot.cpp)
    } snap_op;

    // Writes `bytes` as a word (inline when it fits, else a new record). Not yet reachable.
    std::uint64_t put(std::string_view bytes) {
        const std::uint64_t w = inline_word(bytes);
        return w != 0 ? w : put_record(bytes);
    }
    std::uint64_t put_record(std::string_view bytes);
    // Frees the record behind a record word; inline words need nothing.
    void release(std::uint64_t word) noexcept;
    // Whether reads check words and records (OpenOptions::verify).
    bool verifying() const noexcept { return verify_; }
    // Throws FormatError unless `w` (loaded from `slot`) passes its check byte; a no-op without verify.
    void check_word(std::uint64_t w, const void* slot) const {
        if (verify_ && !word_intact(w)) [[unlikely]] throw_bad_word(w, slot);
    }
    // The encoding held by the word at `*slot`. Record words and raw inline words are viewed in place
    // (valid while the slot holds the word); inline words with an implied tag are rebuilt in `buf` (valid
    // while `buf` lives). Checks the word's check byte, record bounds and checksum, throwing FormatError.
    std::string_view view(const std::uint64_t* slot, WordBuf& buf) const { return view_word(*slot, slot, buf); }
    // view() of a word already loaded from `slot` (lock-free readers load once); a raw inline word is then
    // viewed in `slot` too, so `slot` must still hold `w` (or be a private copy of it).
    std::string_view view_word(std::uint64_t w, const std::uint64_t* slot, WordBuf& buf) const {
        check_word(w, slot);
        if (is_inline(w)) [[likely]] {
            if (!inline_shape_ok(w)) [[unlikely]] throw_bad_word(w, slot);
            const std::size_t n = inline_len(w);
            if (inline_kind(w) == InlineKind::kRaw) return {reinterpret_cast<const char*>(slot), n};
            return {buf.bytes, implied_encoding(w, buf.bytes)};
        }
        return view_record(w);
    }
    std::string_view view_record(std::uint64_t w) const;
    // The header of the record at `off` (bounds-checked by the caller), read with one 8-byte load. A
    // lock-free reader must use this copy, never the mapped fields again: a writer may free the block
    // meanwhile, and a freed block's first word becomes a free-list link, so a length read twice can
    // differ from the one that was bounds-checked (a read past the mapping: SIGSEGV).
    RecordHeader load_record_header(std::uint64_t off) const noexcept {
        const std::uint64_t raw = __atomic_load_n(region_.at<const std::uint64_t>(off), __ATOMIC_RELAXED);
        return {static_cast<std::uint32_t>(raw), static_cast<std::uint32_t>(raw >> 32)};
    }
    // Payload of a record word with bounds checks only (for key comparison; a bad record compares unequal).
    // Inline: it runs on every lookup of a key too long to be inline.
    std::string_view record_unchecked(std::uint64_t w) const noexcept {
        if (!is_record_word(w)) return {};
        const std::uint64_t off = record_offset(w);
        if (!region_.in_bounds(off, sizeof(RecordHeader))) [[unlikely]] return {};
        const std::uint32_t len = load_record_header(off).len;
        if (!region_.in_bounds(off + sizeof(RecordHeader), len)) [[unlikely]] return {};
        return {region_.at<const char>(off + sizeof(RecordHeader)), len};
    }
    // True when the word passes its check byte and is inline (of a valid shape) or a record that passes
    // bounds and checksum. Used by verify() and repair, whatever OpenOptions::verify says.
    bool word_ok(std::uint64_t word) const noexcept;
    // Arena block (offset, bytes) behind a record word, for reachability; false for inline or damaged words.
    bool word_block(std::uint64_t word, std::uint64_t& off, std::uint64_t& bytes) const noexcept;
    // FormatError naming the file offset of `slot` (or the word itself when `slot` is outside the mapping).
    [[noreturn]] void throw_bad_word(std::uint64_t w, const void* slot) const;

    // --- the write lock (sync::ProcessMutex in the LockSlot), recursive per thread
    // Blocks until held. If the previous holder died holding it, runs the recovery hook (the container's
    // reader-safe repair) before returning.
    void lock_write() { after_acquire(acquire(-1)); }
    // lock_write() for a transaction, which writes the live header's first two lines whatever it changes:
    // the instant the lock is held, those lines are fetched for writing and `on_acquired()` runs (it may
    // only start prefetches: nothing is recovered or mapped yet), so that these transfers from the process
    // that held the lock last run in parallel instead of one after another (os/prefetch.hpp).
    template <class F>
    void lock_write_then(F&& on_acquired) {
        const sync::Acquired a = acquire(-1);
        const char* live = region_.at<const char>(storage::kLiveHeaderOffset);
        os::prefetch_for_write(live);
        os::prefetch_for_write(live + 64);
        on_acquired();
        after_acquire(a);
    }
    // Waits at most timeout_ns (0: don't wait; < 0: forever); false when not acquired.
    bool try_lock_write(std::int64_t timeout_ns);
    void unlock_write() noexcept;
    int lock_holder_pid() const noexcept { return sync::ProcessMutex(region_.lock_slot()).holder_pid(); }
    bool writer_active() const noexcept { return lock_holder_pid() != 0; }
    bool lock_held_by_me() const noexcept { return sync::ProcessMutex(region_.lock_slot()).held_by_me(); }
    // Set by the container: rebuilds what a writer killed mid-operation may have left half done, without
    // disturbing lock-free readers.
    void set_recovery(std::function<void()> recover) { recover_ = std::move(recover); }
    // Called by close(), holding the write lock, to move the container's root block down into free space
    // (HashTable::relocate_down), so that the last handle to close can cut the file at the arena's top.
    // Returns whether it moved the block.
    void set_relocation(std::function<bool()> relocate) { relocate_ = std::move(relocate); }

    // RAII write lock; checks the store is open and writable first.
    class WriteGuard {
    public:
        explicit WriteGuard(Store& s) : s_(&s) {
            s.check_writable();
            s.lock_write();
        }
        ~WriteGuard() { s_->unlock_write(); }
        WriteGuard(const WriteGuard&) = delete;
        WriteGuard& operator=(const WriteGuard&) = delete;

    private:
        Store* s_;
    };

    // --- lock-free reads
    std::uint64_t read_begin() const noexcept { return region_.reclaims(); }
    // True when nothing read since read_begin() returned `snap` can have been freed or overwritten.
    bool read_valid(std::uint64_t snap) const noexcept {
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        return region_.reclaims() == snap;
    }
    // Runs `f` (which reads and copies) until it ran without interference. An error raised from a read that
    // raced with a writer is a false alarm and retried; one raised from an undisturbed read is real. Any
    // Error, not only a FormatError: a read of a slot a writer reused meanwhile can decode a value of another
    // type, and a check on it (Dict::get's "not a bytes value") must not reach the caller.
    template <class F>
    auto read(F&& f) const -> decltype(f()) {
        for (;;) {
            check_open();
            const std::uint64_t snap = read_begin();
            try {
                auto result = f();
                if (read_valid(snap)) return result;
            } catch (const Error&) {
                if (!raced(snap)) throw;
            }
        }
    }
    // True when a FormatError seen by a read begun at `snap` may be a false alarm: a writer freed memory
    // since, or another process grew the store past this handle's mapping (the retry's check_open() maps
    // it). Only growth counts: the size is never published smaller while the store is open, so a size
    // word below the mapping is damage, and counting it as a race would retry forever.
    bool raced(std::uint64_t snap) const noexcept {
        return !read_valid(snap) || __atomic_load_n(&region_.live().file_size, __ATOMIC_ACQUIRE) > region_.size();
    }

    // verify() of a read-only handle, which cannot take the lock: checks the arena's free lists against
    // the reachable blocks while no writer is active; a failure raises only if no writer was active and no
    // write happened during the check (otherwise the lists were changing under it, and it is skipped).
    void verify_arena_unlocked(const alloc::Arena::Enumerate& reachable) const;

    // --- change notification (LockSlot::change, a futex word)
    std::uint32_t change_count() const noexcept { return __atomic_load_n(&region_.lock_slot()->change, __ATOMIC_ACQUIRE); }
    // Blocks until change_count() != seen or timeout_ns passes (< 0: forever); true when it changed.
    bool wait_for_change(std::uint32_t seen, std::int64_t timeout_ns) const;

    // After every mutation, still holding the write lock: wakes change waiters, commits when durable (or
    // when this handle has parked so many frees that its memory for them would keep growing). `counted`:
    // the mutation already bumped LockSlot::change itself, followed by a full barrier before this load of
    // `waiters` (a transaction's commit does, at its publication), so it is not bumped twice. Each bump is
    // a store to the lock's cache line, which a waiter spinning on the lock keeps reading: one miss per bump.
    void after_mutation(bool counted = false) {
        storage::LockSlot* slot = region_.lock_slot();
        if (!counted) __atomic_fetch_add(&slot->change, 1u, __ATOMIC_SEQ_CST);  // a full barrier before reading `waiters`
        if (__atomic_load_n(&slot->waiters, __ATOMIC_RELAXED) != 0) [[unlikely]] os::futex_wake_all(&slot->change);
        if (durable_ || arena_.pending_count() >= alloc::Arena::kMaxPending) [[unlikely]] commit();
    }
    void sync() {
        check_open();
        if (!region_.writable()) return;  // a read-only handle has nothing to write
        WriteGuard g(*this);
        commit();
    }
    // Holding the write lock: makes the current state the committed one (Region::sync: data, then the
    // commit slot), then reuses the blocks freed since the previous commit (alloc::Arena, "Deferred frees").
    void commit() {
        region_.sync();
        arena_.release_pending();
    }
    // A handle inherited through fork() must not touch the parent's store: the child only unmaps.
    void close();
    void abandon() noexcept { region_.abandon(); }
    StoreStats stats() const;

    [[noreturn]] void throw_corrupt(const std::string& what) const;

    // Called around every wait for the write lock that may block (set once by the Python module to release
    // and re-take the GIL, so a thread waiting here never stalls the thread that holds the lock).
    struct BlockingHooks {
        void* (*before)();
        void (*after)(void*);
    };
    static void set_blocking_hooks(BlockingHooks hooks) noexcept { hooks_ = hooks; }

    // Called after this Store reopened its segment in a child process (OpenOptions::reattach_after_fork),
    // still holding the open gate: the container checks its root there.
    void set_on_reattach(std::function<void()> f) { on_reattach_ = std::move(f); }

private:
    void check_open_slow() const;
    [[noreturn]] void throw_closed() const;
    [[noreturn]] void throw_forked() const;
    [[noreturn]] void throw_readonly() const;

    storage::Region region_;
    alloc::Arena arena_{&region_};
    std::uint64_t fork_gen_ = 0;
    bool durable_ = false;
    bool verify_ = true;  // OpenOptions::verify
    std::string closed_path_;
    void reattach();

    std::function<void()> recover_;
    std::function<bool()> relocate_;
    std::function<void()> on_reattach_;
    storage::StoreKind kind_ = storage::StoreKind::kDict;
    storage::OpenOptions options_;
    // Threads of this process blocked in lock_write(); close() refuses to unmap the lock under them.
    mutable std::atomic<int> waiting_{0};
    std::uint64_t local_mutations_ = 0;
    int local_depth_ = 0;
    static inline BlockingHooks hooks_{nullptr, nullptr};
    // acquire()'s spin before it calls the blocking hooks: a few critical sections of a transaction.
    static constexpr std::int64_t kQuickSpinNs = 4'000;
    sync::Acquired acquire(std::int64_t timeout_ns);
    void after_acquire(sync::Acquired a);
};

// Connects a container to its store after open: formats a new store (or one whose creation was cut short
// before its root was published), else validates the root and, after an unclean shutdown, repairs.
// Runs while the open gate is held (no other process can join), then releases it. Only the first opener
// (alone) formats or repairs; later openers find the container in shape.
template <class Format, class Check, class Repair>
void attach_root(Store& store, Format&& format, Check&& check, Repair&& repair) {
    if (store.region().alone()) {
        if (store.region().created() || store.root() == 0) {
            store.arena().format();
            format();
            store.commit();
            store.finish_open();
            return;
        }
        check();
        if (store.region().was_dirty()) {
            repair();
            store.commit();
        } else {
            store.region().stamp_commit();  // a clean store is its last commit: say so (old files say nothing)
        }
    } else {
        // Other processes may be writing: a check that raced a writer (a table freed under it) is repeated.
        store.read([&] {
            check();
            return 0;
        });
    }
    store.finish_open();
}

}  // namespace mmstore::containers
