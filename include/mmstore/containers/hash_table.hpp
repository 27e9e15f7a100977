// mmstore/containers/hash_table.hpp
//
// HashTable: an insertion-ordered, open-addressing map from encoded keys to encoded values, stored in one
// arena block so that a table is published or retired with a single 8-byte store of its offset. Lookups
// never allocate, lock or throw on a healthy store; writers hold the store's write lock.
//
// Layout of the block (docs/format.md, "Dict"):
//
//   TableHeader   64 B   capacity, entries_cap (immutable, checksummed), used, live (counters)
//   groups        capacity/16 x Group {12 ctrl bytes, 12 x u32 index, 4 B pad}: one 64-byte cache line
//                 ctrl: 0x80 empty, 0xFE deleted, 0..127 = the low 7 bits of the key's hash (H2)
//                 index: position of the entry a full ctrl byte belongs to
//                 (slot ids are group * 16 + lane, lane < 12, so `capacity` stays a power of two)
//   entries       entries_cap x {key word, value word} in insertion order (kTombWord key = erased)
//
// This is CPython's compact-dict shape (a sparse index over dense entries) with Swiss-table control bytes:
// a lookup compares 16 ctrl bytes at once (SSE2), then checks the few candidates' entries. Keys of up to 7
// encoded bytes (every int below 2^48, short strings) are inline words, so most key comparisons are one
// 8-byte compare with no record access. Probing walks 16-slot groups in triangular order from group
// (hash >> 7) & (groups - 1), which visits every group because the group count is a power of two.
//
// The ctrl bytes and indices of a group share one cache line, so a probe costs one miss before the entry.
// Tried before: separate ctrl and index arrays (one more miss per lookup, ~25% slower random gets), then
// 16-lane groups of 80 bytes (ctrl and the matching index often in different lines).
//
// Why these numbers: entries_cap = 7/8 of the usable slots (capacity * 12/16 * 7/8 = capacity * 21/32)
// bounds the index load at 87.5% (abseil's maximum); a
// table is rebuilt when its entries fill up, at twice the live count, so growth doubles and a churn of
// deletes compacts instead of growing. A u32 index caps a table at 2^32 - 1 entries.
//
// Where a lookup's time goes (issue 13; perf and callgrind on bench/cpp, 1M 11-byte keys, 16-byte values):
// at 1M entries nearly all of it is three dependent cache misses -- the group, the entry, the key record
// (the value record sits next to the key record and is prefetched as soon as the entry is read, so it
// overlaps the key record's miss). What runs between them decides how far the CPU can overlap one lookup's
// misses with the next one's: Dict::get ran ~600 instructions, now ~470 (snapshot check and short-key
// hash inline, short record keys compared with two word loads instead of memcmp, no std::optional round
// trip through the stack). Of the rest, about 90 are the value record's checksum on read (Store::view_record)
// and about 120 the probe. get_many avoids the dependence instead: per batch of 16 keys it prefetches all
// groups, then all candidate entries, then all key and value records, before resolving any key.
//
// Integrity (docs/design.md, "Checked reads"): each group's last 4 bytes hold a check (a rotate-xor fold) of
// its ctrl bytes and indices. Writers update it after every change of the group; lookups verify it only on
// the miss path (a hit is proven by the key comparison), which costs nothing on hits and catches a flipped
// index byte that would otherwise make a stored key silently unfindable. The miss path also checks every
// candidate entry whose ctrl byte matched (its index below `used`, its key word intact), so a damaged key
// word or a lowered `used` is an error, not a miss. Every key and value word carries its own check byte
// (containers/word.hpp), verified when it is read; the header's counters carry TableHeader::check.
//
// Crash safety: an insert writes the entry, publishes it to iteration (used += 1), then to lookups (index,
// then ctrl byte); an erase unpublishes the ctrl byte first, then tombstones the entry. A kill between two
// steps leaves an entry reachable by iteration but not by lookup; repair() (run on every dirty open)
// rebuilds the index from the entries. Growth builds a new block and switches the root with one store.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "mmstore/codec/value.hpp"
#include "mmstore/containers/store.hpp"
#include "mmstore/os/prefetch.hpp"

namespace mmstore::containers {

struct TableHeader {
    std::uint64_t capacity;     // slot ids (16 per group, 12 usable), a power of two >= 16; immutable
    std::uint64_t entries_cap;  // capacity * 21 / 32; immutable
    std::uint64_t used;         // entries [0, used) have been written (some may be tombstones)
    std::uint64_t live;         // number of keys
    // Entries [0, committed) belong to the newest commit: stamped with `used` by each commit while this is
    // the root (stamp_commit), 0 in a table built since. Writers never point such an entry at a record
    // written after that commit (copy-on-write of the table instead), so a power loss that loses the newer
    // record cannot cost the entry its committed value (docs/design.md, "Durability").
    std::uint64_t committed;
    // Offset of the published commit log of a transaction being applied (CommitLogHeader), 0 otherwise.
    // While set, lookups answer the log's keys from it (docs/design.md, "Transactions and snapshots").
    std::uint64_t pending_log;
    // counters_check(capacity, entries_cap, used, live) (containers/word.hpp), re-sealed by every writer
    // after it changes used or live; readers verify it in checked(), so a damaged counter (a `used` that
    // hides entries, a wrong len()) raises instead of being believed.
    std::uint64_t check;
    // XXH3-64 of {capacity, entries_cap}, XOR cell_binding(cell of the table): header_checksum() below.
    std::uint64_t checksum;
};
static_assert(sizeof(TableHeader) == 64);

// What a table's header checksum mixes in of the cell that publishes the table (docs/format.md §4): 0 for
// the store's root cell (LiveHeader.root, so every Dict file's root table keeps the checksum it always
// had), the cell offset times an odd constant (a bijection: distinct and nonzero for every other cell) for
// the version table's cell and SharedDict's nested cells. A cell whose pointer was damaged into pointing at
// another intact table -- another nested dict, the root, the version table -- then fails the check instead
// of reading back that table's keys as its own.
constexpr std::uint64_t cell_binding(std::uint64_t cell) noexcept {
    return cell == Store::kRootCell ? 0 : cell * 0x9E3779B97F4A7C15ull;
}
inline std::uint64_t header_checksum(const TableHeader* h, std::uint64_t cell) noexcept {
    return hash64(h, 16) ^ cell_binding(cell);
}
// Writers, after changing used or live (readers that see the counters mid-update trust them while the
// writer holds the lock: HashTable::checked()).
void seal_counters(TableHeader* h) noexcept;
// What an erase XORs into the sealed check before its first store (HashTable::erase_at): a 24-bit tag and
// the position of the entry it erases (below 2^36, as every entries_cap is). A reader finds it by XORing
// the check with the counters' own: HashTable::size_checked().
inline constexpr std::uint64_t kEraseTag = std::uint64_t{0x455241} << 40;
inline constexpr std::uint64_t kErasePosMask = (std::uint64_t{1} << 40) - 1;
constexpr std::uint64_t erase_announcement(std::uint64_t pos) noexcept { return kEraseTag | pos; }

inline constexpr std::uint64_t kGroup = 16;  // slot ids per group (a slot id is group * 16 + lane)
inline constexpr unsigned kLanes = 12;  // usable slots per group

struct Group {
    std::uint8_t ctrl[kLanes];
    std::uint32_t index[kLanes];
    std::uint32_t check;  // group_check() of the 60 bytes above; verified when a lookup misses
};
static_assert(sizeof(Group) == 64);
static_assert(offsetof(Group, index) == 12);

inline constexpr std::uint64_t entries_cap_of(std::uint64_t capacity) noexcept { return capacity * 21 / 32; }

struct EntrySlot {
    std::uint64_t key;
    std::uint64_t value;
};
static_assert(sizeof(EntrySlot) == 16);

// Bytes of a table block of `capacity` slots (inline: every lock-free lookup bounds-checks its table with it).
inline constexpr std::uint64_t table_bytes(std::uint64_t capacity) noexcept {
    return sizeof(TableHeader) + capacity / 16 * sizeof(Group) + sizeof(EntrySlot) * entries_cap_of(capacity);
}

// SharedDict's nested tables (recurse=True). A value may be a reference to a child table in the same store:
// the 7-byte encoding {codec::tag::kTableRef, 6-byte LE offset of the child's cell}, always an inline word
// of kind kTableRef (the tag implied, the offset in the payload bytes). The cell is a 16-byte arena block holding the child's current table offset (its root cell, as
// LiveHeader::root is the main table's) and a unique id, so a stale reference to a replaced child is
// recognized instead of followed. A child is owned by the entry that references it: overwriting or erasing
// that value destroys the child and everything under it.
struct CellRecord {
    std::uint64_t table;  // offset of the child's table block (published like a root)
    std::uint64_t id;     // from LiveHeader::next_id at creation; never reused
};
static_assert(sizeof(CellRecord) == 16);
// is_table_ref() / table_ref_cell(): containers/word.hpp (inline kind kTableRef).
inline constexpr int kMaxNesting = 64;  // deeper is treated as damage (a reference cycle would recurse forever)

inline constexpr std::uint8_t kCtrlEmpty = 0x80;
inline constexpr std::uint8_t kCtrlDeleted = 0xFE;
inline constexpr std::uint64_t kNotFound = ~std::uint64_t{0};
inline constexpr std::uint64_t kNotInLog = kNotFound - 1;

// A transaction's commit log (docs/design.md, "Transactions and snapshots"): published in
// TableHeader::pending_log while the commit is applied. Entries [used0, used0 + inserts) of the table are
// the inserted keys at their final positions; [used0 + inserts, used0 + items) are copies {key word, new
// value word or kTombWord} of the overwritten and erased entries. Written once by the committing writer
// before it is published, never changed after; freed when the commit is applied.
struct CommitLogHeader {
    std::uint64_t magic;     // kCommitLogMagic
    std::uint64_t slots;     // slots of the map below, a power of two >= 2 * items
    std::uint64_t items;     // writes of the commit
    std::uint64_t used0;     // the table's `used` when the commit began
    std::uint64_t inserts;   // of which inserts
    std::uint64_t live;      // the table's live count after the commit
    std::uint64_t reserved;  // 0
    std::uint64_t checksum;  // XXH3-64 of the 56 bytes above
};
static_assert(sizeof(CommitLogHeader) == 64);
struct CommitLogSlot {
    std::uint64_t hash;   // the key's hash64
    std::uint32_t entry;  // position of the new entry; kLogEmpty for an empty slot
    std::uint32_t old;    // position + 1 of the entry it replaces, 0 for an insert
};
static_assert(sizeof(CommitLogSlot) == 16);
inline constexpr std::uint64_t kCommitLogMagic = 0x474F4C54584E4D4Dull;  // "MMNXTLOG"
inline constexpr std::uint32_t kLogEmpty = 0xFFFFFFFFu;

class HashTable {
public:
    // A table whose current block offset lives in the 8-byte cell at file offset `cell`: the store's root
    // (Store::kRootCell) or, for SharedDict's nested tables, a cell block in the arena.
    explicit HashTable(Store* store, std::uint64_t cell = Store::kRootCell) noexcept : store_(store), cell_(cell) {}
    std::uint64_t cell() const noexcept { return cell_; }
    // Excludes this table from snapshot versioning (containers/snapshot.hpp: the version table itself).
    HashTable& unversioned() noexcept {
        unversioned_ = true;
        return *this;
    }
    Store* store() const noexcept { return store_; }
    std::uint64_t root() const noexcept { return __atomic_load_n(store_->region().at<std::uint64_t>(cell_), __ATOMIC_ACQUIRE); }

    // Starts fetching the index group a probe for `hash` reads first. On a table larger than the caches
    // that load is a miss (81% of find_slot_in, three quarters of mmstore's own time in a 1M-int insert
    // loop, perf): a caller that prefetches as soon as it knows the hash overlaps the miss with its
    // other work (encoding the value, taking the lock). Lock-free and harmless at any moment: it reads
    // the root and the capacity, bounds-checked, and a prefetch never faults.
    void prefetch_probe(std::uint64_t hash) const noexcept {
        const std::uint64_t off = root();
        if (!store_->region().in_bounds(off, sizeof(TableHeader))) return;
        const auto* h = store_->region().at<const TableHeader>(off);
        const std::uint64_t groups = __atomic_load_n(&h->capacity, __ATOMIC_RELAXED) / kGroup;
        if (groups == 0) return;
        __builtin_prefetch(reinterpret_cast<const Group*>(h + 1) + ((hash >> 7) & (groups - 1)));
    }

    // Creates an empty table and publishes it in the cell.
    void format();
    // Validates the root table header (cheap); throws FormatError.
    void check_root() const;

    std::uint64_t size() const noexcept { return header()->live; }
    // The current table block, loaded once and checked to lie inside the mapping with sane counters: a
    // lock-free reader may load the offset of a table another process is freeing, whose header memory
    // is then being reused. Throws FormatError (a reader retries it when its snapshot moved).
    struct Snapshot {
        const TableHeader* h;
        std::uint64_t capacity;  // read once; use these, not h->capacity / h->used again
        std::uint64_t used;
    };
    // Inline: every lock-free read starts here. The common case (a sane header inside the mapping) costs a
    // few loads and compares; anything else goes to checked_slow(), which maps other processes' growth
    // first and throws when the table really is out of range.
    Snapshot checked() const {
        const auto& r = store_->region();
        const std::uint64_t off = root();
        const std::uint64_t mapped = r.size();
        if (off % 16 == 0 && off >= storage::kDataStart && off <= mapped && mapped - off >= sizeof(TableHeader)) [[likely]] {
            const auto* h = r.at<const TableHeader>(off);
            const std::uint64_t cap = __atomic_load_n(&h->capacity, __ATOMIC_RELAXED);
            const std::uint64_t used = __atomic_load_n(&h->used, __ATOMIC_ACQUIRE);
            // With checked reads (OpenOptions::verify), the header's checksum proves it intact and the table
            // this cell's (cell_binding), and `check` proves the counters (a damaged `used` would hide
            // entries from iteration). Anything else -- a writer between its stores of the counters and
            // their check included -- goes to checked_slow().
            if (snapshot_sane(cap, used) && table_bytes(cap) <= mapped - off &&
                (!store_->verifying() ||
                 (__atomic_load_n(&h->checksum, __ATOMIC_RELAXED) == header_checksum(h, cell_) &&
                  __atomic_load_n(&h->check, __ATOMIC_RELAXED) ==
                      counters_check(cap, entries_cap_of(cap), used, __atomic_load_n(&h->live, __ATOMIC_RELAXED)))))
                [[likely]]
                return {h, cap, used};
        }
        return checked_slow();
    }
    // Position of the entry for `key` (an encoding), or kNotFound. A hit is proven by comparing the key; a
    // miss is trusted only after the check words of the groups it probed verify, so a damaged index raises
    // FormatError instead of hiding a key.
    std::uint64_t find(std::string_view key, std::uint64_t hash) const;
    std::uint64_t find(std::string_view key) const { return find(key, hash64(key.data(), key.size())); }
    // Batched lookups in one snapshot: per batch of 16 keys, hashes them and prefetches their groups, then
    // their candidate entries, then those entries' key and value records, and only then resolves each key.
    // out[i] = position in entries_of(t).
    void find_many(const Snapshot& t, std::span<const std::string_view> keys, std::span<std::uint64_t> out) const;

    // Entry access by position, valid for positions < end(); views follow Store::view lifetimes.
    std::uint64_t end() const noexcept { return header()->used; }
    // size() for lock-free readers, at one instant with lookups and iteration: a writer stopped inside
    // one insert or erase (any instruction of it) is counted on the same side of its write as they see it.
    std::uint64_t size_checked() const;
    // find() within one snapshot; entries_of(t)[result] is the entry (use it, not value_word_ptr(), which
    // re-reads the root: another process may have switched tables since).
    std::uint64_t find_in(const Snapshot& t, std::string_view key, std::uint64_t hash) const {
        // A transaction's commit being applied: its keys answer from the log (docs/design.md, "Transactions").
        if (const std::uint64_t log = __atomic_load_n(&t.h->pending_log, __ATOMIC_ACQUIRE); log != 0) [[unlikely]] {
            const std::uint64_t r = find_in_log(t, log, key, hash);
            if (r != kNotInLog) return r;
        }
        const std::uint64_t pos = find_slot_in(t, key, hash, nullptr);
        if (pos == kNotFound) [[unlikely]] verify_probe(t, hash);
        return pos;
    }
    std::uint64_t find_in(const Snapshot& t, std::string_view key) const { return find_in(t, key, hash64(key.data(), key.size())); }
    // The entry array of a snapshot (lock-free readers index it below snapshot.used).
    static const EntrySlot* entries_of(const Snapshot& t) noexcept {
        return reinterpret_cast<const EntrySlot*>(reinterpret_cast<const Group*>(t.h + 1) + t.capacity / 16);
    }
    bool occupied(std::uint64_t pos) const noexcept { return entries()[pos].key != kTombWord; }
    std::string_view key_at(std::uint64_t pos, WordBuf& buf) const { return store_->view(&entries()[pos].key, buf); }
    const std::uint64_t* value_word_ptr(std::uint64_t pos) const noexcept { return &entries()[pos].value; }
    // The version table's retired words (containers/snapshot.cpp): stores the word `w` as the value of the
    // entry at `pos`, whose value is inline, so the table owns w's record from now on. Allocates nothing.
    void adopt_value(std::uint64_t pos, std::uint64_t w) noexcept { __atomic_store_n(&entries()[pos].value, w, __ATOMIC_RELEASE); }
    const std::uint64_t* key_word_ptr(std::uint64_t pos) const noexcept { return &entries()[pos].key; }
    std::string_view value_at(std::uint64_t pos, WordBuf& buf) const { return store_->view(&entries()[pos].value, buf); }

    // Inserts or overwrites. Returns true when the key was new.
    bool set(std::string_view key, std::string_view value);
    bool set(std::string_view key, std::uint64_t hash, std::string_view value);
    // Inserts only when absent; returns the entry's position and whether it was inserted.
    std::pair<std::uint64_t, bool> insert(std::string_view key, std::uint64_t hash, std::string_view value);
    // Replaces the value of the entry at `pos`. May rebuild the table first (copy-on-write of a committed
    // entry, see TableHeader::committed), which moves entries: positions found before are then stale.
    void assign_at(std::uint64_t pos, std::string_view value);
    // Called before each commit of a file-backed store: entries [0, used) become committed.
    void stamp_commit() noexcept { header()->committed = header()->used; }
    bool erase(std::string_view key, std::uint64_t hash);
    void erase_at(std::uint64_t pos);
    void clear();
    // Position of the last live entry, or kNotFound.
    std::uint64_t last() const noexcept;

    // Full check of every invariant (child tables included); throws FormatError naming what failed.
    // `arena`: also check the arena's free lists (needs the write lock: allocations change them).
    void verify(bool arena = true) const;
    // Rebuilds the index from the entries, dropping entries that fail validation, then the arena's free
    // lists. Run after an unclean shutdown, with no other process attached.
    void repair();
    // After a writer died holding the lock, with readers possibly attached: rebuilds the table aside from
    // its entries (an entry the dead writer had half inserted or half erased is kept) and switches to it
    // with one store, so concurrent lock-free readers never see a half-built index. Does not rebuild the
    // arena (the caller does, once for the whole store).
    void recover();
    // Frees the table block, every record it references and every child table below it.
    void destroy();
    // Copy-on-write (SharedDict's update_many, which every reader must see whole without ever waiting):
    // begin_copy() returns a private copy of this table, in its own temporary cell, with room for `extra`
    // more keys; modify it freely -- values it replaces are collected in `deferred` instead of freed,
    // since the published table still references them. commit_copy() switches this table to the copy
    // with one store, then frees the old block and the deferred values. O(size of the table).
    HashTable begin_copy(std::uint64_t extra, std::vector<std::uint64_t>* deferred);
    void commit_copy(HashTable& copy);
    // Drops an uncommitted copy: its block and cell are freed; values it added leak until the next
    // repair (a failure path only, e.g. a value that could not be encoded).
    void abandon_copy(HashTable& copy) noexcept;
    // Creates an empty child table (cell + block) and returns the encoding of a reference to it, to be
    // stored as a value of this (or any) table of the store. Nothing is published yet.
    std::string create_child();
    // The child table behind a table-reference value word, after bounds checks (FormatError otherwise).
    HashTable child(std::uint64_t value_word) const;
    // The id in the cell at `cell` (mapping growth this handle has not seen yet first), or 0 when the
    // offset cannot hold a cell. Views of nested tables compare it to detect a replaced child.
    static std::uint64_t cell_id(const Store& store, std::uint64_t cell);
    // Rewrites the table at its minimal capacity (entries compacted, tombstones dropped).
    void shrink_to_fit() { rehash(header()->live, true); }
    // Ensures room for `n` keys without further rebuilds.
    void reserve(std::uint64_t n);
    // Moves the table block down into free space below it when the block ends the arena (the same bytes,
    // one switch, the old block freed), so that top falls back and the file can be cut at close
    // (alloc::Arena, "Density"). Returns whether it moved. Holding the write lock.
    bool relocate_down();
    // Reachable blocks: the table block, every record, and child tables with their cells.
    // The root table also reports its snapshot version table (containers/snapshot.hpp).
    void enumerate(const alloc::Arena::Visit& visit) const;
    std::uint64_t capacity() const noexcept { return header()->capacity; }

    // --- transactions (containers/table_txn.hpp builds the write set; docs/design.md, "Transactions")
    // One write of a batch: value nullopt erases. A value may be a table reference created for the batch.
    struct BatchWrite {
        std::string_view key;
        std::uint64_t hash;
        std::optional<std::string_view> value;
    };
    // Holding the write lock: applies every write so that lock-free readers see all of them at one instant
    // (the store of a commit log's offset in the table header), in O(writes), never O(size). A process
    // killed at any point leaves all of them or none after recovery (redo_log). Keys must be distinct.
    // Throws (nothing applied) when space runs out before the publication.
    // Returns false when it changed nothing (every write an erase of an absent key).
    bool commit_batch(std::span<const BatchWrite> writes);
    // Holding the write lock, at the start of a transaction: starts fetching, for writing, the cache lines a
    // small commit writes whatever its keys -- the table header and the entries past `used` (the copies
    // and the log) -- so that their transfers from another process that committed last overlap the
    // transaction's own work instead of stalling it; and remembers where they were for the next one.
    void prefetch_commit_lines() const noexcept {
        const TableHeader* h = header();
        os::prefetch_for_write(h);
        const char* e = reinterpret_cast<const char*>(entries() + h->used);
        for (int i = 0; i < 4; ++i) os::prefetch_for_write(e + 64 * i);
        hint_header_ = h;
        hint_log_ = e;
    }
    // The same lines as the last prefetch_commit_lines() of this object found them, without reading the
    // store: called the instant the lock is taken (Store::lock_write_then), it puts the header's transfer
    // in flight together with the live header's instead of after it (finding the header takes a load of
    // the root, which lives in the live header's first line). A stale address (the table moved or grew) only
    // wastes a prefetch, which never faults: the mapping's base never moves.
    void prefetch_commit_hint() const noexcept {
        if (hint_header_ == nullptr) return;
        os::prefetch_for_write(hint_header_);
        for (int i = 0; i < 4; ++i) os::prefetch_for_write(hint_log_ + 64 * i);
    }
    // The published commit log word of the current table (0 when none); consistent multi-key reads check
    // it did not change across their reads.
    std::uint64_t pending_log() const { return __atomic_load_n(&checked().h->pending_log, __ATOMIC_ACQUIRE); }

private:
    // The tables a snapshot can read -- the root and its nested tables -- keep version chains while snapshots
    // are open; the version table itself and begin_copy()'s unpublished copies do not.
    bool versioned() const noexcept { return !unversioned_; }
    Snapshot checked_slow() const;
    // Throws the FormatError of a header at `off` that fails header_checksum(h, cell_).
    [[noreturn]] void throw_foreign_table(std::uint64_t off) const;
    static bool snapshot_sane(std::uint64_t cap, std::uint64_t used) noexcept {
        return cap >= 16 && (cap & (cap - 1)) == 0 && cap <= (std::uint64_t{1} << 36) && used <= entries_cap_of(cap);
    }
    TableHeader* header() const noexcept { return store_->region().at<TableHeader>(root()); }
    void publish(std::uint64_t off) noexcept { __atomic_store_n(store_->region().at<std::uint64_t>(cell_), off, __ATOMIC_RELEASE); }
    Group* groups() const noexcept { return reinterpret_cast<Group*>(header() + 1); }
    EntrySlot* entries() const noexcept {
        return reinterpret_cast<EntrySlot*>(groups() + header()->capacity / 16);
    }
    // The file offset of entries()[i].
    std::uint64_t entry_offset(std::uint64_t i) const noexcept {
        return root() + sizeof(TableHeader) + header()->capacity / 16 * sizeof(Group) + i * sizeof(EntrySlot);
    }
    std::uint64_t find_slot(std::string_view key, std::uint64_t hash, std::uint64_t* pos) const noexcept {
        const TableHeader* h = header();
        return find_slot_in({h, h->capacity, h->used}, key, hash, pos);
    }
    std::uint64_t find_slot_in(const Snapshot& t, std::string_view key, std::uint64_t hash, std::uint64_t* pos) const noexcept;
    // After a miss (with OpenOptions::verify): throws FormatError when a probed group fails its check or a
    // candidate entry the probe compared is damaged, so damage is never reported as an absent key.
    void verify_probe(const Snapshot& t, std::uint64_t hash) const;
    // checked() when the counters fail their check: trusted while a writer is active, else FormatError.
    Snapshot checked_slow(std::uint64_t off, std::uint64_t cap) const;
    bool key_equals(const EntrySlot& e, std::string_view key) const noexcept;
    void rehash(std::uint64_t min_live, bool exact = false);
    // Allocates and initializes an empty, unpublished table block of `capacity` slots; `replaces` is the
    // live block it will replace (placement for density, Arena::allocate_replacement), or 0.
    std::uint64_t build(std::uint64_t capacity, std::uint64_t replaces = 0);
    // Appends a key known to be absent.
    std::uint64_t insert_new(std::string_view key, std::uint64_t hash, std::string_view value);
    std::uint64_t hash_word(const std::uint64_t* slot) const;
    // Frees what a value word owns: a record, or a child table with everything below it.
    void release_value(std::uint64_t w) noexcept;
    void enumerate_at(const alloc::Arena::Visit& visit, int depth) const;
    void verify_at(int depth) const;
    void repair_at(int depth);
    void recover_at(int depth);
    void destroy_at(int depth) noexcept;
    // Lookup of `key` in the commit log at `log`: its entry position, kNotFound (erased by the commit), or
    // kNotInLog.
    std::uint64_t find_in_log(const Snapshot& t, std::uint64_t log, std::string_view key, std::uint64_t hash) const;
    // Recovery: finishes applying a published commit log (idempotent), then unpublishes it.
    void redo_log() noexcept;
    // Indexes the entry at `pos` (already counted by `used`) under `hash`.
    void link_index(std::uint64_t pos, std::uint64_t hash) noexcept;

    // Frees what a key word owns (a record), or defers it (copy-on-write copies).
    void release_key(std::uint64_t w) noexcept;

    Store* store_;
    std::uint64_t cell_;
    std::vector<std::uint64_t>* deferred_ = nullptr;  // set on copies: releases wait for commit_copy()
    bool unversioned_ = false;                         // see versioned()
    // prefetch_commit_lines()'s last addresses; read and written only by the write lock's holder.
    mutable const TableHeader* hint_header_ = nullptr;
    mutable const char* hint_log_ = nullptr;
};

}  // namespace mmstore::containers
