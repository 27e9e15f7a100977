#include "mmstore/containers/store.hpp"

#include <unistd.h>

#include <cstdio>

namespace mmstore::containers {

namespace {
std::string hex64(std::uint64_t w) {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(w));
    return buf;
}
}  // namespace

void Store::open(const std::string& path, storage::StoreKind kind, const storage::OpenOptions& options) {
    region_.open(path, kind, options);
    kind_ = kind;
    options_ = options;
    closed_path_ = path;
    fork_gen_ = os::fork_generation();
    durable_ = options.durable;
    verify_ = options.verify;
    arena_.drop_pending();
    if (region_.created()) arena_.format();
}

void Store::check_open_slow() const {
    if (!region_.is_open()) throw_closed();
    if (fork_gen_ != os::fork_generation()) {
        if (!options_.reattach_after_fork) throw_forked();
        const_cast<Store*>(this)->reattach();
    }
}

void Store::reattach() {
    // The inherited mapping is the parent's view: drop it (the parent's locks stay with the parent's
    // descriptor) and open the segment again as this process.
    region_.abandon();
    local_depth_ = 0;
    waiting_.store(0);
    storage::OpenOptions o = options_;
    o.create = storage::OpenOptions::Create::kNever;
    region_.open(closed_path_, kind_, o);
    fork_gen_ = os::fork_generation();
    try {
        if (on_reattach_) read([&] {
            on_reattach_();
            return 0;
        });
    } catch (...) {
        region_.abandon();
        throw;
    }
    region_.release_gate();
}

namespace {
// Counts a thread waiting on the store's LockSlot (the write lock, or the change futex) for as long as it
// waits: close() from another thread must not unmap the slot under it (Store::waiting_).
struct Waiting {
    std::atomic<int>& n;
    explicit Waiting(std::atomic<int>& w) : n(w) { n.fetch_add(1); }
    ~Waiting() { n.fetch_sub(1); }
    Waiting(const Waiting&) = delete;
    Waiting& operator=(const Waiting&) = delete;
};
}  // namespace

sync::Acquired Store::acquire(std::int64_t timeout_ns) {
    sync::ProcessMutex m(region_.lock_slot());
    sync::Acquired a = m.try_lock();
    if (a != sync::Acquired::kBusy || timeout_ns == 0) return a;
    const Waiting waiting(waiting_);
    // A short spin first, without the blocking hooks: when another process holds the lock for a short
    // critical section (a transaction commits in about a microsecond), the wait ends within it, and
    // releasing the GIL around it would only make this thread take the GIL back after it got the lock:
    // time spent holding the lock, which the other process then waits for. Bounded, so a thread of this
    // process that holds the lock and needs the GIL to finish waits at most kQuickSpinNs for it.
    const std::int64_t start = os::monotonic_ns();
    a = m.spin_for(timeout_ns < 0 ? kQuickSpinNs : std::min(kQuickSpinNs, timeout_ns));
    if (a != sync::Acquired::kBusy) return a;
    if (timeout_ns > 0) {
        timeout_ns -= os::monotonic_ns() - start;
        if (timeout_ns <= 0) return sync::Acquired::kBusy;
    }
    void* token = hooks_.before ? hooks_.before() : nullptr;
    try {
        a = m.lock_for(timeout_ns);
    } catch (...) {
        if (hooks_.after) hooks_.after(token);
        throw;
    }
    if (hooks_.after) hooks_.after(token);
    return a;
}

void Store::after_acquire(sync::Acquired a) {
    sync::ProcessMutex m(region_.lock_slot());
    if (a == sync::Acquired::kOwnerDied) {
        try {
            region_.refresh();
            if (recover_) recover_();
            // The recovery's mark and sweep freed whatever the dead writer had dropped, including blocks of
            // the committed state: commit now, so that state is never needed again (power-loss safety).
            if (!region_.is_volatile() && region_.writable()) commit();
        } catch (...) {
            m.mark_consistent();  // usable again; the error (a damaged store) reaches the caller
            m.unlock();
            throw;
        }
        m.mark_consistent();
    }
    // Before anything changes, the newest commit slot must say dirty (Region::prepare_write). A holder that
    // died had made it so before it wrote, and the recovery above committed.
    try {
        region_.prepare_write();
    } catch (...) {
        m.unlock();  // a failed disk write: the lock is released with nothing changed; the caller sees why
        throw;
    }
    ++local_depth_;
    region_.refresh();
}

bool Store::try_lock_write(std::int64_t timeout_ns) {
    const sync::Acquired a = acquire(timeout_ns);
    if (a == sync::Acquired::kBusy) return false;
    after_acquire(a);
    return true;
}

void Store::unlock_write() noexcept {
    if (local_depth_ > 0) --local_depth_;
    sync::ProcessMutex(region_.lock_slot()).unlock();
}

bool Store::wait_for_change(std::uint32_t seen, std::int64_t timeout_ns) const {
    storage::LockSlot* slot = region_.lock_slot();
    const std::int64_t deadline = timeout_ns < 0 ? -1 : os::monotonic_ns() + timeout_ns;
    const Waiting waiting(waiting_);
    __atomic_fetch_add(&slot->waiters, 1u, __ATOMIC_SEQ_CST);
    bool changed = false;
    for (;;) {
        if (__atomic_load_n(&slot->change, __ATOMIC_SEQ_CST) != seen) {
            changed = true;
            break;
        }
        std::int64_t left = -1;
        if (deadline >= 0) {
            left = deadline - os::monotonic_ns();
            if (left <= 0) break;
        }
        os::futex_wait(&slot->change, seen, left);
    }
    __atomic_fetch_sub(&slot->waiters, 1u, __ATOMIC_SEQ_CST);
    return changed;
}

void Store::close() {
    if (!region_.is_open()) return;
    if (fork_gen_ != os::fork_generation()) {
        region_.abandon();
        return;
    }
    if (local_depth_ > 0)
        throw_error(ErrorCode::kInvalidArgument, path(), "close() while this handle holds the store's lock; release it first");
    if (waiting_.load() != 0)
        throw_error(ErrorCode::kInvalidArgument, path(),
                    "close() while another thread of this process waits on the store; close after it is done");
    // A handle that never took the lock to write has nothing to commit or move (the writer that grew the
    // table moved it down when it closed), and skipping the lock spares it the dirty commit slot.
    if ((arena_.pending_count() != 0 || (relocate_ && region_.write_prepared())) && region_.writable()) {
        // Move the root block down when it ends the arena and fits in free space below (alloc::Arena,
        // "Density"): top then falls back and the last handle to close cuts the file there. Frees parked
        // since the last commit are reused only after a commit: commit first, so that blocks replaced since
        // (a table that grew) are free space the move can use; a moved block that belonged to that commit
        // is itself parked, so commit again. All only when no other process holds the lock (closing never
        // waits; parked blocks then leak until the next repair). The move is an optimization: its failure
        // (a full disk re-reserving a punched block, a lock that cannot be mapped) never fails close().
        const bool must_commit = arena_.pending_count() != 0;
        bool locked = false;
        try {
            locked = try_lock_write(0);
        } catch (const Error&) {
            if (must_commit) throw;
        }
        if (locked) {
            try {
                if (arena_.pending_count() != 0) commit();
                bool moved = false;
                try {
                    moved = relocate_ && relocate_();
                } catch (const Error&) {
                    moved = false;  // nothing changed (copy_below)
                }
                if (moved && arena_.pending_count() != 0) commit();
            } catch (...) {
                unlock_write();
                throw;
            }
            unlock_write();
        }
        arena_.drop_pending();
    }
    try {
        if (region_.close_prepare()) {
            // Last handle open: mark the store clean if no writer can be mid-operation. The mutex can only
            // be held by a dead process now (recovered here) or by another handle of this process (then
            // the store stays dirty and its next first opener checks it).
            sync::ProcessMutex m(region_.lock_slot());
            const sync::Acquired a = m.try_lock();
            if (a != sync::Acquired::kBusy) {
                bool ok = true;
                if (a == sync::Acquired::kOwnerDied) {
                    try {
                        if (recover_) recover_();
                    } catch (...) {
                        ok = false;  // left dirty: the next opener repairs or reports it
                    }
                    m.mark_consistent();
                }
                if (ok) region_.mark_clean(arena_.trim());  // cut the file at the arena's end
                m.unlock();
            }
        }
    } catch (...) {
        region_.abandon();
        throw;
    }
    region_.close();
}


std::uint64_t Store::put_record(std::string_view bytes) {
    if (bytes.size() > 0xFFFFFFF0u)
        throw_error(ErrorCode::kCapacity, path(), "value of " + std::to_string(bytes.size()) + " bytes exceeds the 4 GiB record limit");
    const std::uint64_t off = arena_.allocate(sizeof(RecordHeader) + bytes.size());
    if (off > kPayloadMask) [[unlikely]] {  // a word holds 48 bits of offset: 256 TiB, past any reservation
        arena_.free(off, sizeof(RecordHeader) + bytes.size());
        throw_error(ErrorCode::kCapacity, path(), "store exceeds 256 TiB (the offset range of a word)");
    }
    auto* rec = region_.at<RecordHeader>(off);
    rec->len = static_cast<std::uint32_t>(bytes.size());
    rec->check = static_cast<std::uint32_t>(hash64(bytes.data(), bytes.size()));
    std::memcpy(rec + 1, bytes.data(), bytes.size());
    return record_word(off);
}

void Store::release(std::uint64_t word) noexcept {
    if (is_inline(word) || word == kTombWord || word == 0) return;  // inline words own nothing
    // A damaged word must not put a bogus block on a free list: leak it instead (verify() reports it; the
    // arena rebuild after a dirty open reclaims whatever is really free).
    if (!word_intact(word) || !is_record_word(word)) return;
    const std::uint64_t off = record_offset(word);
    if (off % 16 != 0 || !region_.in_bounds(off, sizeof(RecordHeader))) return;
    const auto* rec = region_.at<RecordHeader>(off);
    if (!region_.in_bounds(off + sizeof(RecordHeader), rec->len)) return;
    arena_.free(off, sizeof(RecordHeader) + rec->len);
}

std::string_view Store::view_record(std::uint64_t w) const {
    const std::uint64_t off = record_offset(w);
    if (!is_record_word(w) || off % 16 != 0 || !region_.in_bounds(off, sizeof(RecordHeader)))
        throw_corrupt("record word 0x" + hex64(w) + " is not a record in bounds");
    const RecordHeader rec = load_record_header(off);
    if (!region_.in_bounds(off + sizeof(RecordHeader), rec.len))
        throw_corrupt("record at offset " + std::to_string(off) + " has length " + std::to_string(rec.len) + " past the end");
    const char* data = region_.at<const char>(off + sizeof(RecordHeader));
    // Every record is checked on read (an XXH3 pass, ~100 ns per 4 KiB) unless the handle opted out.
    if (verify_ && static_cast<std::uint32_t>(hash64(data, rec.len)) != rec.check)
        throw_corrupt("record at offset " + std::to_string(off) + " fails its checksum");
    return {data, rec.len};
}

bool Store::word_ok(std::uint64_t word) const noexcept {
    if (!word_intact(word)) return false;
    if (is_inline(word)) return inline_shape_ok(word);
    if (!is_record_word(word)) return false;
    const std::uint64_t off = record_offset(word);
    if (off % 16 != 0 || !region_.in_bounds(off, sizeof(RecordHeader))) return false;
    const RecordHeader rec = load_record_header(off);
    if (!region_.in_bounds(off + sizeof(RecordHeader), rec.len)) return false;
    return static_cast<std::uint32_t>(hash64(region_.at<const char>(off + sizeof(RecordHeader)), rec.len)) == rec.check;
}

bool Store::word_block(std::uint64_t word, std::uint64_t& off, std::uint64_t& bytes) const noexcept {
    if (is_inline(word) || word == kTombWord || !word_intact(word) || !is_record_word(word)) return false;
    off = record_offset(word);
    if (off % 16 != 0 || !region_.in_bounds(off, sizeof(RecordHeader))) return false;
    bytes = sizeof(RecordHeader) + load_record_header(off).len;
    return region_.in_bounds(off, bytes);
}

void Store::throw_bad_word(std::uint64_t w, const void* slot) const {
    const auto* p = static_cast<const std::uint8_t*>(slot);
    const std::uint8_t* base = region_.base();
    std::string where = "word 0x" + hex64(w);
    if (base != nullptr && p >= base && p < base + region_.size())
        where = "word at offset " + std::to_string(p - base) + " (0x" + hex64(w) + ")";
    throw_corrupt(where + " fails its check byte or has an invalid kind");
}

void Store::verify_arena_unlocked(const alloc::Arena::Enumerate& reachable) const {
    for (int attempt = 0; attempt < 3; ++attempt) {
        if (writer_active()) return;
        const std::uint32_t seen = change_count();
        const std::uint64_t snap = read_begin();
        try {
            region_.refresh();
            arena_.verify(reachable);
            return;
        } catch (const FormatError&) {
            if (!writer_active() && change_count() == seen && read_valid(snap)) throw;
        }
    }
}

StoreStats Store::stats() const {
    check_open();
    StoreStats s;
    s.file_bytes = region_.size();
    s.allocated_bytes = region_.allocated_bytes();
    s.arena_top = arena_.top();
    s.free_bytes = arena_.free_bytes();
    return s;
}

void Store::throw_corrupt(const std::string& what) const { throw_format(ErrorCode::kCorrupt, path(), "corrupt: " + what); }
void Store::throw_closed() const { throw_error(ErrorCode::kClosed, closed_path_, "operation on a closed store"); }
void Store::throw_forked() const {
    throw_error(ErrorCode::kForked, closed_path_, "handle was opened before fork(); open the store again in this process");
}
void Store::throw_readonly() const {
    throw_error(ErrorCode::kReadOnly, path(), "store is open read-only; open it without readonly=True to write");
}

}  // namespace mmstore::containers
