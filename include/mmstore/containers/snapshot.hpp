// mmstore/containers/snapshot.hpp
//
// Snapshots of a store's root hash table (Dict, SharedDict) or of its List: a read-only view as of one
// instant, opened in O(1) without the write lock, never blocking writers and never blocked by them
// (docs/design.md, "Transactions and snapshots"; docs/format.md §1.4).
//
//   * Reader slots. Page 0 holds kSnapshotSlots SnapshotSlots after the LiveHeader. A snapshot claims a
//     free slot with one CAS of its owner word ({start-time hash, generation, pid}), sets the slot's bit in
//     LiveHeader::reserved[kSnapMask] and reads the version counter: that number is its instant.
//   * Writers pay only while a bit is set. Every write of the root table runs in a VersionScope: one
//     store of the phase word (odd: a write in flight), one load of the mask. The store is a plain one
//     (ordered before the load by the opener's membarrier, os::global_barrier) in a process registered for
//     membarrier, a seq_cst one elsewhere. With the mask empty nothing else happens. With it set, the write bumps the version counter and first records the
//     before-image of each key it changes -- {version, old encoded value or "absent"} appended to the key's
//     chain in the *version table*, a HashTable of the same store whose cell is LiveHeader::
//     reserved[kSnapCell] -- then writes in place as usual. O(1) per write (the chain holds at most one
//     node per open snapshot generation: nodes no open snapshot can see are pruned, and a key is recorded
//     once per generation).
//   * The opening race. The opener sets its bit, reads the version V, then the phase: a write that is
//     in flight then may have missed the bit, so the opener waits for that one write (a few stores, never
//     user code) to leave its scope; every later write sees the bit. See snapshot.cpp for the argument.
//   * Reads at V: the live value first, then the key's chain; the oldest node newer than V holds the value
//     at V. A writer records before it stores, so a reader that saw the new word finds the before-image.
//   * Nested tables (SharedDict) are versioned like the root: their chains are keyed by {kNestedKey, the
//     table's cell offset, key}, and a nested table dropped by its parent while a snapshot is open is kept
//     (retired: a {kRetiredKey, cell} entry of the version table whose value references it) until the
//     version table is destroyed, which destroys it with everything below it.
//   * Lists record 64-word pages instead of keys, and retire the records they drop (below,
//     record_list; docs/design.md, "Snapshots of a List").
//   * Reclaim. The first write that finds the mask empty frees the version table whole; with snapshots
//     open, a write prunes the chain it touches. A slot whose owner process is gone (dead pid, or a pid
//     reused by a process with another start time) is freed by the next snapshot to open (reclaim_dead).
//
// Thread/process safety: open/close/reads are lock-free and may run in any thread or process; the
// VersionScope and record_* functions run under the store's write lock.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include <span>
#include <vector>

#include "mmstore/containers/hash_table.hpp"
#include "mmstore/containers/sequence.hpp"
#include "mmstore/containers/store.hpp"
#include "mmstore/storage/header.hpp"

namespace mmstore::containers {

// One reader slot (page 0, offset kSnapshotSlotsOffset + 32 * i). All zero in a file that never had a
// snapshot open, so such files are unchanged byte for byte.
struct SnapshotSlot {
    // {start-time hash (16 bits) << 48 | generation (16 bits) << 32 | pid}; pid 0: free, kReclaiming: being
    // freed by reclaim_dead. Claimed and freed by CAS (the generation changes at each free).
    std::uint64_t owner;
    std::uint64_t version;  // the snapshot's instant; kOpening until the opener has read it
    std::uint64_t tag;      // the owning handle's id: closing a handle frees its snapshots
    std::uint64_t reserved; // 0
};
static_assert(sizeof(SnapshotSlot) == 32);
inline constexpr std::uint64_t kSnapshotSlotsOffset = storage::kLiveHeaderOffset + sizeof(storage::LiveHeader);
inline constexpr unsigned kSnapshotSlots = 64;  // one bit each in the mask word
static_assert(kSnapshotSlotsOffset + kSnapshotSlots * sizeof(SnapshotSlot) <= storage::kPageSize);
inline constexpr std::uint64_t kOpening = ~std::uint64_t{0};
inline constexpr std::uint32_t kReclaiming = 0xFFFFFFFFu;
// LiveHeader::reserved[] words (docs/format.md §1.4).
inline constexpr int kSnapMask = 0;     // bit i: slot i is open (writers record)
inline constexpr int kSnapPhase = 1;    // odd while a root-table write is in flight
inline constexpr int kSnapVersion = 2;  // bumped by every write made while a snapshot is open
inline constexpr int kSnapCell = 3;     // the version table's cell: its block offset, 0 when none
inline constexpr int kSnapFences = 4;   // 1 once a process that orders the phase store by membarrier wrote
inline constexpr std::uint64_t kSnapCellOffset =
    storage::kLiveHeaderOffset + offsetof(storage::LiveHeader, reserved) + kSnapCell * sizeof(std::uint64_t);

// RAII around one write of a store's table or List (held under the write lock; nests). Inline: every write
// pays it, so the usual case -- this handle's writes already order the phase store by the openers'
// membarrier, and no snapshot is open or was since the last write -- is a plain store and two loads here;
// anything else goes to enter() (snapshot.cpp, where the protocol is argued).
class VersionScope {
public:
    explicit VersionScope(Store& s) : s_(s) {
        Store::SnapOp& op = s.snap_op;
        if (op.depth++ != 0) return;
        std::uint64_t* w = s.region().live().reserved;
        if (op.fences_marked) [[likely]] {
            op.phase = w[kSnapPhase] + 1 + (w[kSnapPhase] & 1);  // odd
            __atomic_store_n(&w[kSnapPhase], op.phase, __ATOMIC_RELAXED);
            __atomic_signal_fence(__ATOMIC_SEQ_CST);
            const std::uint64_t mask = __atomic_load_n(&w[kSnapMask], __ATOMIC_RELAXED);
            if (mask == 0 && w[kSnapCell] == 0) [[likely]] {
                op.recording = false;
                return;
            }
            after_mask(mask);
            return;
        }
        enter();
    }
    ~VersionScope() {
        Store::SnapOp& op = s_.snap_op;
        if (--op.depth != 0) return;
        __atomic_store_n(&s_.region().live().reserved[kSnapPhase], op.phase + 1, __ATOMIC_RELEASE);
        op.recording = false;
    }
    VersionScope(const VersionScope&) = delete;
    VersionScope& operator=(const VersionScope&) = delete;
    bool recording() const noexcept { return s_.snap_op.recording; }

private:
    void enter();                         // the outermost scope, in full
    void after_mask(std::uint64_t mask);  // the mask loaded: records, or frees a version table left over
    Store& s_;
};

// Under the write lock, inside a recording VersionScope: appends the before-image of `key` of table `t` (its
// current encoded value, nullopt when absent) to the key's chain.
void record_before(Store& s, const HashTable& t, std::string_view key, std::optional<std::string_view> old);
// The same for the entry at `pos` of `t` (key and value read from the table). When the value is a nested
// table, which the write is about to drop, this also makes room to retire it (retire_dropped).
void record_entry(Store& s, const HashTable& t, std::uint64_t pos);
// Called as the nested table at `cell` is dropped by its parent (inside a recording VersionScope): when
// record_entry made room for it, keeps it whole until the version table is destroyed (a snapshot may still
// read it) and returns true; false (a table never published) means the caller frees it.
bool retire_dropped(Store& s, std::uint64_t cell) noexcept;

// --- Lists (docs/design.md, "Snapshots of a List"). A snapshot of a List keeps the length it found at its
// instant (open_list_snapshot), so appends -- which change nothing below the length -- run in no
// VersionScope and record nothing. Every other List write runs in one; when it records, it first calls
// record_list with what it is about to change, then makes its change, then drops the words it removed with
// release_word. Chains: 64-word pages ({kListKey, page u64 LE}, nodes holding the page's words below the
// count). A record word dropped while recording is not freed but retired ({kRetiredWord, word u64 LE} -> the
// word itself), since a recorded page may still reference it; the version table's destroy frees it.
// Words per recorded page: 64 (a 512-byte copy). 512 was measured too: each snapshot read after a write
// checksums the page's chain record, and a set copies a page the first time; 64-word pages read 1.3x and
// write 1.4x faster (bench_snapshot.py --list), at 8x the version-table entries for a bulk write.
inline constexpr std::uint64_t kListPage = 64;
// Under the write lock, inside a recording VersionScope, before the change: records every page holding a
// position in [begin, end) below the count, and makes room to retire each record word of `dropped` (a
// placeholder, filled by release_word: so a full disk fails the write here, before anything changed, and a
// write that fails later leaves a placeholder, which frees nothing).
void record_list(Store& s, const Sequence& seq, std::uint64_t begin, std::uint64_t end,
                 std::span<const std::uint64_t> dropped = {});
// For the writes that run in no VersionScope (a List's appends), under the write lock: frees the version table
// the last snapshot to close left behind, as the first write of any other kind does, so that an append-only
// List reclaims too. Two loads when there is nothing to do.
inline void reclaim_versions(Store& s) {
    const std::uint64_t* w = s.region().live().reserved;
    if (__atomic_load_n(&w[kSnapCell], __ATOMIC_RELAXED) != 0 && __atomic_load_n(&w[kSnapMask], __ATOMIC_RELAXED) == 0)
        [[unlikely]] {
        VersionScope scope(s);  // finds the mask empty (or a snapshot opened meanwhile: then it records nothing)
    }
}
// Drops a word a List write removed: retired when a recording write made room for it, freed otherwise.
void release_word(Store& s, std::uint64_t w) noexcept;
// Recovery after a List writer died holding the lock (the list repaired, before the arena's rebuild): a
// record word that a recording write made room to retire and then dropped from the list, dying before
// release_word stored it over its placeholder, is retired now -- an open snapshot's page may reference it,
// and the rebuild would free it. A placeholder whose word is still in the list (the write died before its
// change) stays as it is.
void retire_orphaned_words(Store& s, const Sequence& seq);
// Lock-free reads of a List at `version`, whose length then was `count` (open_list_snapshot): element i's
// encoding, the encodings of positions [begin, min(end, count)) in one consistent pass, and their words
// (whose records stay valid while the snapshot is open: release_word retires what writes drop meanwhile).
void list_words_at(const Store& s, const Sequence& seq, std::uint64_t version, std::uint64_t count, std::uint64_t begin,
                   std::uint64_t end, std::vector<std::uint64_t>& out);
std::string list_read_at(const Store& s, const Sequence& seq, std::uint64_t version, std::uint64_t count, std::uint64_t i);
void list_range_at(const Store& s, const Sequence& seq, std::uint64_t version, std::uint64_t count, std::uint64_t begin,
                   std::uint64_t end, std::vector<std::string>& out);

// Open snapshots (lock-free). open_snapshot returns the slot index and sets `version`; throws Error
// (kBusy) when every slot is taken.
unsigned open_snapshot(Store& s, std::uint64_t tag, std::uint64_t& version);
// open_snapshot for a List: also sets `count`, the length at the instant (see snapshot.cpp for why it is
// read between two equal loads of the version).
unsigned open_list_snapshot(Store& s, const Sequence& seq, std::uint64_t tag, std::uint64_t& version, std::uint64_t& count);
void close_snapshot(Store& s, unsigned slot) noexcept;
// Frees every slot held by handle `tag` (its close()).
void close_snapshots_of(Store& s, std::uint64_t tag) noexcept;
// Whether handle `tag` of this process holds an open snapshot.
bool has_snapshots_of(const Store& s, std::uint64_t tag) noexcept;
// Frees slots whose owner process is gone.
void reclaim_dead(Store& s) noexcept;
// After an unclean shutdown, with no process attached: forgets every slot and the version table (its
// blocks become unreachable and the arena rebuild that follows frees them).
void reset_snapshots(Store& s) noexcept;
// After a writer died holding the lock: ends its write's phase and rebuilds the version table's index.
void recover_snapshots(Store& s);
// Then, once the tables are recovered (before the arena's rebuild): a nested table that a recording write
// made room to retire (record_entry's placeholder) and then dropped from its parent, dying before
// retire_dropped, is retired now -- an open snapshot may read it, and the rebuild would free it. A
// placeholder whose table is still referenced (by a live table or a retired one) stays as it is.
void retire_orphaned_tables(Store& s, const HashTable& root);
// Blocks of the version table, for reachability.
void enumerate_versions(const Store& s, const alloc::Arena::Visit& visit);
// Keys with a chain (for tests and stats: 0 once no snapshot is open and a write ran).
std::uint64_t version_keys(const Store& s);

// Whether the version table exists (one acquire load). While a snapshot is open it only goes from absent to
// present (it is destroyed only by a write that finds the mask empty), and a write records -- creating the
// table -- before its first store. So a lock-free read of a live value followed by has_versions() == false
// proves that value is the one at every open snapshot's instant: the fast path of a snapshot read.
bool has_versions(const Store& s) noexcept;
// Lock-free reads at `version` of table `t`: the store's root table or one of its nested tables (a reference
// read at `version`, so retired nested tables too).
std::optional<std::string> read_at(const Store& s, const HashTable& t, std::uint64_t version, std::string_view key,
                                   std::uint64_t hash);
// Every {encoded key, encoded value} at `version`, exactly once each (order unspecified).
void items_at(const Store& s, const HashTable& t, std::uint64_t version,
              const std::function<void(std::string&&, std::string&&)>& out);

}  // namespace mmstore::containers
