// Snapshots of a store's root table: reader slots, version chains, reads at a version
// (containers/snapshot.hpp; docs/design.md, "Transactions and snapshots").
//
// Why the opening race is closed:
//   writer W, per write:  phase := odd  ->  m := mask  ->  [m != 0: version += 1 (seq_cst), record]  ->
//                         stores  ->  phase := even (release)
//   opener O:             mask |= bit (seq_cst)  ->  global barrier  ->  V := version  ->  p := phase  ->
//                         wait while phase == p when p is odd  ->  slot.version := V
// W's "phase := odd" then "m := mask" is a store followed by a load of another word, which the processor may
// reorder unless something fences them. Either W fences them itself (a seq_cst store: one locked
// instruction per write, ~7 ns of a ~125 ns Python set), or -- in a process registered for membarrier(2),
// the usual case -- W stores plainly with only a compiler barrier and O calls membarrier
// (MEMBARRIER_CMD_GLOBAL_EXPEDITED, os::global_barrier) after setting its bit: the kernel makes every running
// thread of every registered process execute a full barrier B_W at some point within that call (a thread
// not running passes one at its context switch). Writers live in other processes too (SharedDict), hence
// the GLOBAL command, not the process-private one. So, for the write W in flight around the call:
// (1) W's mask load comes after B_W: the bit was set before the call, so W sees it: W bumps the version and
//     records before its first store. (2) W's mask load comes before B_W: then so does its phase store
//     (program order, compiler barrier), which O's phase load after the call therefore sees (or a later
//     value): O sees p odd and waits for W to end, or sees W ended. In both cases W is complete when O reads
//     data, or numbered above V and recorded. Also if O's V includes W's bump (case 1 with the bump before
//     O's V load): the bump is a seq_cst (release) store after W's phase store, so O's phase load sees W's odd
//     phase or later and O waits for W: W is then part of the instant, complete. Writes serialize on the
//     lock and the phase only grows, so the one write O may wait for is the latest. A write of a process
//     without membarrier uses the seq_cst store, for which the classical argument holds: both sides then
//     store seq_cst and load seq_cst, and one of them sees the other.
//   The barrier can fail only where membarrier is filtered or missing (then registration fails too and the
//   process's writers use seq_cst stores). A process whose barrier fails while another process writes with
//   plain stores (the kSnapFences word, set with seq_cst by each such handle before its first plain store:
//   if O's load misses it, that handle's store comes later in the total order and its mask loads see the
//   bit) refuses to open rather than risk a torn instant.
// A List's appends are the one kind of write outside this protocol (no phase, no record): a List snapshot
// instead fixes its length as it opens (open_at, where the argument is).
// The wait is the one place a snapshot waits for a writer: only a writer stopped (SIGSTOP) inside the few
// instructions of one operation delays an *opening*; open snapshots never wait.
#include "mmstore/containers/snapshot.hpp"

#include <sched.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <unordered_set>
#include <vector>

#include "mmstore/codec/value.hpp"
#include "mmstore/error.hpp"
#include "mmstore/os/file.hpp"

namespace mmstore::containers {
namespace {

std::uint64_t* snap_word(const Store& s, int i) noexcept {
    return &const_cast<storage::LiveHeader&>(s.region().live()).reserved[i];
}
SnapshotSlot* slots(const Store& s) noexcept {
    return const_cast<SnapshotSlot*>(s.region().at<const SnapshotSlot>(kSnapshotSlotsOffset));
}
std::uint32_t pid_of(std::uint64_t owner) noexcept { return static_cast<std::uint32_t>(owner); }
std::uint64_t gen_of(std::uint64_t owner) noexcept { return (owner >> 32) & 0xFFFF; }
std::uint64_t start_hash(std::uint64_t start) noexcept { return (start * 0x9E3779B97F4A7C15ull) >> 48; }
std::uint64_t freed_owner(std::uint64_t owner) noexcept { return ((gen_of(owner) + 1) & 0xFFFF) << 32; }

// Chain: nodes {u64 version, u32 len (kAbsent: the key was absent), len bytes}, oldest first. Each node
// holds the value the key had just before write `version`.
constexpr std::uint32_t kAbsent = 0xFFFFFFFFu;
struct Node {
    std::uint64_t version;
    std::optional<std::string_view> old;
    std::size_t end;  // offset of the next node
};
// Parses the node at `at`; false when the chain is malformed (a damaged store).
bool node_at(std::string_view chain, std::size_t at, Node& n) noexcept {
    if (chain.size() - at < 12) return false;
    std::uint32_t len;
    std::memcpy(&n.version, chain.data() + at, 8);
    std::memcpy(&len, chain.data() + at + 8, 4);
    at += 12;
    if (len == kAbsent) {
        n.old = std::nullopt;
    } else {
        if (chain.size() - at < len) return false;
        n.old = chain.substr(at, len);
        at += len;
    }
    n.end = at;
    return true;
}
void append_node(std::string& chain, std::uint64_t version, std::optional<std::string_view> old) {
    char head[12];
    const std::uint32_t len = old ? static_cast<std::uint32_t>(old->size()) : kAbsent;
    std::memcpy(head, &version, 8);
    std::memcpy(head + 8, &len, 4);
    chain.append(head, 12);
    if (old) chain.append(*old);
}

HashTable versions(const Store& s) noexcept {
    HashTable vt(const_cast<Store*>(&s), kSnapCellOffset);
    return vt.unversioned();
}

// Version table keys. The root table's chains are keyed by the encoded key itself (format.md §1.3); a
// nested table's by {kNestedKey, 8-byte LE cell offset, encoded key}, and a retired nested table is the
// entry {kRetiredKey, cell}. No encoding starts with either byte (codec tags end at 0x5F).
constexpr char kNestedKey = '\xFF';
constexpr char kRetiredKey = '\xFE';
// A List's chains: {kListKey, page u64 LE} for a page of words; a record word a
// recording write dropped is the entry {kRetiredWord, word u64 LE} whose value is that word (a List store's
// version table holds nothing else). No key of a root table starts at or above kFirstInternalKey.
constexpr char kListKey = '\xFD';
constexpr char kRetiredWord = '\xFC';
constexpr char kFirstInternalKey = kRetiredWord;
constexpr std::size_t kPrefix = 9;
std::string table_prefix(char kind, std::uint64_t cell) {
    std::string p(kPrefix, kind);
    std::memcpy(p.data() + 1, &cell, 8);
    return p;
}
bool is_root(const HashTable& t) noexcept { return t.cell() == Store::kRootCell; }
// The chain key of `key` of table `t` (a view of `key` itself for the root; `buf` holds a nested one).
std::string_view chain_key(const HashTable& t, std::string_view key, std::string& buf) {
    if (is_root(t)) return key;
    buf = table_prefix(kNestedKey, t.cell());
    buf.append(key);
    return buf;
}
// The key of table `t` a version-table key is the chain of, or nullopt when it belongs to another table.
std::optional<std::string_view> key_of_chain(const HashTable& t, std::string_view vkey, const std::string& prefix) {
    if (is_root(t)) {
        if (!vkey.empty() && static_cast<unsigned char>(vkey[0]) >= static_cast<unsigned char>(kFirstInternalKey))
            return std::nullopt;
        return vkey;
    }
    if (vkey.size() < kPrefix || vkey.compare(0, kPrefix, prefix) != 0) return std::nullopt;
    return vkey.substr(kPrefix);
}

// The value at `version` given the live value and the key's chain: the oldest node newer than `version`.
template <class Live>
std::optional<std::string> resolve(std::string_view chain, std::uint64_t version, Live&& live, const Store& s) {
    Node n;
    for (std::size_t at = 0; at < chain.size(); at = n.end) {
        if (!node_at(chain, at, n)) s.throw_corrupt("a snapshot version chain is malformed");
        if (n.version > version) return n.old ? std::optional<std::string>(std::string(*n.old)) : std::nullopt;
    }
    return live();
}

}  // namespace

void VersionScope::enter() {
    Store& s = s_;
    Store::SnapOp& op = s.snap_op;
    std::uint64_t* phase = snap_word(s, kSnapPhase);
    op.phase = *phase + 1 + (*phase & 1);  // odd (a dead writer's odd phase is ended by recover_snapshots)
    if (!op.fences_marked && os::global_barrier_registered()) [[unlikely]] {
        // Once per handle: tell openers that plain phase stores happen here (see the top of this file).
        __atomic_store_n(snap_word(s, kSnapFences), 1, __ATOMIC_SEQ_CST);
        op.fences_marked = true;
    }
    std::uint64_t mask;
    if (op.fences_marked) {
        // The opener's membarrier orders this store before the load (case analysis at the top of the file).
        __atomic_store_n(phase, op.phase, __ATOMIC_RELAXED);
        __atomic_signal_fence(__ATOMIC_SEQ_CST);
        mask = __atomic_load_n(snap_word(s, kSnapMask), __ATOMIC_RELAXED);
    } else {
        __atomic_store_n(phase, op.phase, __ATOMIC_SEQ_CST);
        mask = __atomic_load_n(snap_word(s, kSnapMask), __ATOMIC_SEQ_CST);
    }
    after_mask(mask);
}

void VersionScope::after_mask(std::uint64_t mask) {
    Store& s = s_;
    Store::SnapOp& op = s.snap_op;
    op.recording = mask != 0;
    if (!op.recording) [[likely]] {
        if (*snap_word(s, kSnapCell) != 0) [[unlikely]] {
            // The last snapshot closed: every chain is garbage. Unpublish, then free (readers retry).
            HashTable vt = versions(s);
            vt.destroy();
            __atomic_store_n(snap_word(s, kSnapCell), 0, __ATOMIC_RELEASE);
        }
        return;
    }
    op.version = *snap_word(s, kSnapVersion) + 1;
    __atomic_store_n(snap_word(s, kSnapVersion), op.version, __ATOMIC_SEQ_CST);
    // Bounds of the open instants, read after the bump (an opener that claimed after this scan read V
    // after the bump, so this write is part of its instant). An opening slot keeps everything.
    op.min_open = kOpening;
    op.max_open = 0;
    const SnapshotSlot* sl = slots(s);
    for (unsigned i = 0; i < kSnapshotSlots; ++i) {
        if ((mask >> i & 1) == 0) continue;
        const std::uint64_t v = __atomic_load_n(&sl[i].version, __ATOMIC_SEQ_CST);
        if (v == kOpening) {
            op.min_open = 0;
            op.max_open = kOpening;
        } else {
            op.min_open = std::min(op.min_open, v);
            op.max_open = std::max(op.max_open, v);
        }
    }
    // A slot whose bit was set after the mask load (an opener in case (a)) is covered by the numbering.
}

namespace {
// Appends the before-image `old` of write op.version to the chain of version-table key `key`, pruning the
// nodes no open snapshot can see; nothing when the chain answers for every open instant already.
void record_chain(Store& s, std::string_view key, std::optional<std::string_view> old) {
    const Store::SnapOp& op = s.snap_op;
    HashTable vt = versions(s);
    if (*snap_word(s, kSnapCell) == 0) vt.format();
    const std::uint64_t hash = hash64(key.data(), key.size());
    const std::uint64_t pos = vt.find(key, hash);
    std::string chain;
    if (pos != kNotFound) {
        WordBuf buf;
        const std::string_view cur = vt.value_at(pos, buf);
        // Keep the nodes some open snapshot can see (newer than the oldest open instant).
        Node n;
        std::size_t at = 0, keep = cur.size();
        bool have_last = false;
        std::uint64_t last = 0;
        for (; at < cur.size(); at = n.end) {
            if (!node_at(cur, at, n)) s.throw_corrupt("a snapshot version chain is malformed");
            if (n.version > op.min_open && keep == cur.size()) keep = at;
            last = n.version;
            have_last = true;
        }
        // Recorded already for every open instant: a node newer than the newest open snapshot (or this same
        // write) answers for all of them.
        if (have_last && last == op.version) return;
        if (have_last && op.max_open != kOpening && last > op.max_open) return;
        chain.assign(cur.substr(keep));
    }
    append_node(chain, op.version, old);
    vt.set(key, hash, chain);  // frees the old chain record: lock-free readers of it retry
}
}  // namespace

void record_before(Store& s, const HashTable& t, std::string_view table_key, std::optional<std::string_view> old) {
    std::string buf;
    record_chain(s, chain_key(t, table_key, buf), old);
}

void record_entry(Store& s, const HashTable& t, std::uint64_t pos) {
    WordBuf kb, vb;
    const std::string key(t.key_at(pos, kb));
    const std::string old(t.value_at(pos, vb));
    record_before(s, t, key, old);
    // A nested table the write is about to drop is kept for the snapshots (retired, retire_dropped): its
    // entry is made here, before the write changes anything, so that a lack of space fails the write rather
    // than the snapshot. It holds a placeholder (None) until the drop really happens: a write that fails
    // after this point keeps its table, which the version table's destroy must then not free.
    const std::uint64_t w = inline_word(old);
    if (w != 0 && is_table_ref(w)) versions(s).set(table_prefix(kRetiredKey, table_ref_cell(w)), std::string_view("\0", 1));
}

bool retire_dropped(Store& s, std::uint64_t cell) noexcept {
    try {
        if (*snap_word(s, kSnapCell) == 0) return false;
        HashTable vt = versions(s);
        const std::string key = table_prefix(kRetiredKey, cell);
        if (vt.find(key) == kNotFound) return false;
        std::string ref(7, '\0');
        ref[0] = static_cast<char>(codec::tag::kTableRef);
        std::memcpy(ref.data() + 1, &cell, 6);
        // An inline value over an existing entry: no allocation. The value references the table, so the
        // version table's destroy, enumerate and recover cover it with everything below it.
        vt.set(key, ref);
        return true;
    } catch (...) {
        return true;  // a damaged version table: keep the table (leaked until a repair) rather than free it
    }
}

// ---- Lists -----------------------------------------------------------------------------------------------

namespace {
std::string list_key(char kind, std::uint64_t n) { return table_prefix(kind, n); }

// The node of `key`'s chain that answers for `version` (the oldest newer than it): false when none does
// (the live value answers). n.old views the chain's record: valid within the caller's Store::read.
bool node_for(const Store& s, const HashTable& vt, const HashTable::Snapshot& vs, std::string_view key,
              std::uint64_t version, WordBuf& buf, Node& n) {
    const std::uint64_t vp = vt.find_in(vs, key, hash64(key.data(), key.size()));
    if (vp == kNotFound) return false;
    const std::string_view chain = s.view(&HashTable::entries_of(vs)[vp].value, buf);
    for (std::size_t at = 0; at < chain.size(); at = n.end) {
        if (!node_at(chain, at, n)) s.throw_corrupt("a snapshot version chain is malformed");
        if (n.version > version) return true;
    }
    return false;
}
}  // namespace

void record_list(Store& s, const Sequence& seq, std::uint64_t begin, std::uint64_t end,
                 std::span<const std::uint64_t> dropped) {
    const std::uint64_t n = seq.size();
    end = std::min(end, n);
    const auto* words = reinterpret_cast<const std::uint64_t*>(seq.data());
    for (std::uint64_t p = begin / kListPage; begin < end && p <= (end - 1) / kListPage; ++p) {
        const std::uint64_t lo = p * kListPage, hi = std::min(n, lo + kListPage);
        record_chain(s, list_key(kListKey, p), std::string_view(reinterpret_cast<const char*>(words + lo), (hi - lo) * 8));
    }
    HashTable vt = versions(s);
    for (const std::uint64_t w : dropped) {
        if (is_inline(w)) continue;
        if (*snap_word(s, kSnapCell) == 0) vt.format();
        vt.set(list_key(kRetiredWord, w), std::string_view("\0", 1));  // None until release_word fills it
    }
}

void release_word(Store& s, std::uint64_t w) noexcept {
    if (is_inline(w)) return;
    if (s.snap_op.recording && *snap_word(s, kSnapCell) != 0) {
        try {
            HashTable vt = versions(s);
            const std::uint64_t pos = vt.find(list_key(kRetiredWord, w));
            if (pos != kNotFound) {
                vt.adopt_value(pos, w);
                return;
            }
        } catch (...) {
            return;  // a damaged version table: leak the record (until a repair) rather than free what a snapshot reads
        }
    }
    s.release(w);
}

void list_words_at(const Store& s, const Sequence& seq, std::uint64_t version, std::uint64_t count, std::uint64_t begin,
                   std::uint64_t end, std::vector<std::uint64_t>& out) {
    end = std::min(end, count);
    s.read([&] {
        out.clear();
        // Live first, chains second: a writer records before it stores.
        const Sequence::View live = seq.checked();
        for (std::uint64_t i = begin; i < std::min(end, live.count); ++i) out.push_back(__atomic_load_n(live.slot(i), __ATOMIC_ACQUIRE));
        if (__atomic_load_n(snap_word(s, kSnapCell), __ATOMIC_ACQUIRE) == 0) {
            if (out.size() != (end > begin ? end - begin : 0)) s.throw_corrupt("a list's snapshot is missing a page");
            return 0;
        }
        out.resize(end > begin ? end - begin : 0);
        const HashTable vt = versions(s);
        const HashTable::Snapshot vs = vt.checked();
        Node n;
        for (std::uint64_t i = begin; i < end;) {
            const std::uint64_t page = i / kListPage, stop = std::min(end, (page + 1) * kListPage);
            WordBuf pb;
            if (!node_for(s, vt, vs, list_key(kListKey, page), version, pb, n)) {
                if (stop > live.count) s.throw_corrupt("a list's snapshot is missing a page");
                i = stop;  // the live words answer
                continue;
            }
            for (; i < stop; ++i) {
                const std::uint64_t at = (i - page * kListPage) * 8;
                if (!n.old || n.old->size() < at + 8) s.throw_corrupt("a list's snapshot page is shorter than its count");
                std::memcpy(&out[i - begin], n.old->data() + at, 8);
            }
        }
        return 0;
    });
}

void list_range_at(const Store& s, const Sequence& seq, std::uint64_t version, std::uint64_t count, std::uint64_t begin,
                   std::uint64_t end, std::vector<std::string>& out) {
    std::vector<std::uint64_t> words;
    list_words_at(s, seq, version, count, begin, end, words);
    // The records stay put while the snapshot is open: a write that drops one while any snapshot is open
    // retires it (release_word) until the version table goes, after the last close.
    out.clear();
    out.reserve(words.size());
    for (const std::uint64_t& w : words) {
        WordBuf b;
        out.emplace_back(s.view(&w, b));
    }
}

void retire_orphaned_words(Store& s, const Sequence& seq) {
    if (*snap_word(s, kSnapCell) == 0) return;
    HashTable vt = versions(s);
    std::unordered_set<std::uint64_t> waiting;  // placeholders' words: at most the version table's size
    for (std::uint64_t pos = 0, end = vt.end(); pos < end; ++pos) {
        if (!vt.occupied(pos) || !is_inline(*vt.value_word_ptr(pos))) continue;
        WordBuf kb;
        const std::string_view key = vt.key_at(pos, kb);
        if (key.size() != kPrefix || key[0] != kRetiredWord) continue;
        std::uint64_t w;
        std::memcpy(&w, key.data() + 1, 8);
        waiting.insert(w);
    }
    if (waiting.empty()) return;
    const auto* words = reinterpret_cast<const std::uint64_t*>(seq.data());
    for (std::uint64_t i = 0, n = seq.size(); i < n && !waiting.empty(); ++i) waiting.erase(words[i]);
    for (const std::uint64_t w : waiting) {
        if (!s.word_ok(w)) continue;  // damage: leave the placeholder (the rebuild frees what nothing references)
        const std::uint64_t pos = vt.find(list_key(kRetiredWord, w));
        if (pos != kNotFound) vt.adopt_value(pos, w);
    }
}

std::string list_read_at(const Store& s, const Sequence& seq, std::uint64_t version, std::uint64_t count, std::uint64_t i) {
    std::vector<std::string> one;
    list_range_at(s, seq, version, count, i, i + 1, one);
    if (one.empty()) throw std::out_of_range("list index " + std::to_string(i) + " out of range (snapshot size " + std::to_string(count) + ")");
    return std::move(one[0]);
}

namespace {
// Waits while the write in flight when the opener loaded phase `p` (odd) is still in it (see the top of this
// file). A writer that died there holds the lock until the next locker recovers it, which ends the phase.
void wait_for_phase(const Store& s, std::uint64_t p) {
    if ((p & 1) == 0) return;
    while (__atomic_load_n(snap_word(s, kSnapPhase), __ATOMIC_SEQ_CST) == p) {
        if (!os::process_alive(s.lock_holder_pid())) break;
        sched_yield();
    }
}

// Claims a slot and finds the instant; `list` (a List's snapshot) also reads the length into `count`.
unsigned open_at(Store& s, std::uint64_t tag, std::uint64_t& version, const Sequence* list, std::uint64_t& count) {
    s.check_open();
    reclaim_dead(s);
    const int pid = os::current_pid();
    const std::uint64_t me = start_hash(os::process_start_time(pid)) << 48 | static_cast<std::uint32_t>(pid);
    SnapshotSlot* sl = slots(s);
    for (unsigned i = 0; i < kSnapshotSlots; ++i) {
        std::uint64_t w = __atomic_load_n(&sl[i].owner, __ATOMIC_ACQUIRE);
        if (pid_of(w) != 0) continue;
        if (!__atomic_compare_exchange_n(&sl[i].owner, &w, me | gen_of(w) << 32, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED))
            continue;
        __atomic_store_n(&sl[i].tag, tag, __ATOMIC_RELAXED);
        __atomic_store_n(&sl[i].version, kOpening, __ATOMIC_SEQ_CST);
        __atomic_fetch_or(snap_word(s, kSnapMask), std::uint64_t{1} << i, __ATOMIC_SEQ_CST);
        if (!os::global_barrier() && __atomic_load_n(snap_word(s, kSnapFences), __ATOMIC_SEQ_CST) != 0) {
            const int err = errno;
            close_snapshot(s, i);
            throw_error(ErrorCode::kIo, s.path(),
                        "cannot open a snapshot: membarrier(2) is unavailable in this process, and other processes "
                        "write this store relying on it (a seccomp filter?)", err);
        }
        std::uint64_t v = __atomic_load_n(snap_word(s, kSnapVersion), __ATOMIC_SEQ_CST);
        wait_for_phase(s, __atomic_load_n(snap_word(s, kSnapPhase), __ATOMIC_SEQ_CST));
        if (list != nullptr) {
            // A List's appends run in no VersionScope (they change nothing below the length, and a snapshot
            // reads nothing at or past its own length), so the length at the instant is the live length read
            // now -- with or without an append in flight, both are the same instant below it -- provided no
            // recorded write stored a new length before this read: such a write bumps the version before it
            // stores, so an unchanged version after the read proves there was none. Otherwise take the newer
            // instant (after waiting for its write) and read again; each round needs a write of its own.
            for (;;) {
                try {
                    count = s.read([&] { return list->size_checked(); });
                } catch (...) {
                    close_snapshot(s, i);
                    throw;
                }
                const std::uint64_t again = __atomic_load_n(snap_word(s, kSnapVersion), __ATOMIC_SEQ_CST);
                if (again == v) break;
                v = again;
                wait_for_phase(s, __atomic_load_n(snap_word(s, kSnapPhase), __ATOMIC_SEQ_CST));
            }
        }
        __atomic_store_n(&sl[i].version, v, __ATOMIC_SEQ_CST);
        version = v;
        return i;
    }
    throw_error(ErrorCode::kCapacity, s.path(), "too many open snapshots (64 per store)");
}
}  // namespace

unsigned open_snapshot(Store& s, std::uint64_t tag, std::uint64_t& version) {
    std::uint64_t unused = 0;
    return open_at(s, tag, version, nullptr, unused);
}

unsigned open_list_snapshot(Store& s, const Sequence& seq, std::uint64_t tag, std::uint64_t& version, std::uint64_t& count) {
    return open_at(s, tag, version, &seq, count);
}

void close_snapshot(Store& s, unsigned i) noexcept {
    SnapshotSlot* sl = slots(s);
    __atomic_fetch_and(snap_word(s, kSnapMask), ~(std::uint64_t{1} << i), __ATOMIC_SEQ_CST);
    const std::uint64_t w = __atomic_load_n(&sl[i].owner, __ATOMIC_ACQUIRE);
    __atomic_store_n(&sl[i].tag, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&sl[i].owner, freed_owner(w), __ATOMIC_RELEASE);
}

void close_snapshots_of(Store& s, std::uint64_t tag) noexcept {
    SnapshotSlot* sl = slots(s);
    const int pid = os::current_pid();
    for (unsigned i = 0; i < kSnapshotSlots; ++i) {
        const std::uint64_t w = __atomic_load_n(&sl[i].owner, __ATOMIC_ACQUIRE);
        if (pid_of(w) == static_cast<std::uint32_t>(pid) && __atomic_load_n(&sl[i].tag, __ATOMIC_RELAXED) == tag)
            close_snapshot(s, i);
    }
}

bool has_snapshots_of(const Store& s, std::uint64_t tag) noexcept {
    const SnapshotSlot* sl = slots(s);
    const int pid = os::current_pid();
    for (unsigned i = 0; i < kSnapshotSlots; ++i) {
        const std::uint64_t w = __atomic_load_n(&sl[i].owner, __ATOMIC_ACQUIRE);
        if (pid_of(w) == static_cast<std::uint32_t>(pid) && __atomic_load_n(&sl[i].tag, __ATOMIC_RELAXED) == tag)
            return true;
    }
    return false;
}

void reclaim_dead(Store& s) noexcept {
    SnapshotSlot* sl = slots(s);
    for (unsigned i = 0; i < kSnapshotSlots; ++i) {
        std::uint64_t w = __atomic_load_n(&sl[i].owner, __ATOMIC_ACQUIRE);
        const std::uint32_t pid = pid_of(w);
        if (pid == 0 || pid == kReclaiming) continue;
        const int p = static_cast<int>(pid);
        if (os::process_alive(p)) {
            const std::uint64_t start = os::process_start_time(p);
            if (start == 0 || start_hash(start) == w >> 48) continue;  // the same process (or unknown)
        }
        // Gone: take the slot from the dead owner (only one reclaimer wins), clear its bit, free it.
        if (!__atomic_compare_exchange_n(&sl[i].owner, &w, (w & ~std::uint64_t{0xFFFFFFFF}) | kReclaiming, false,
                                         __ATOMIC_SEQ_CST, __ATOMIC_RELAXED))
            continue;
        __atomic_fetch_and(snap_word(s, kSnapMask), ~(std::uint64_t{1} << i), __ATOMIC_SEQ_CST);
        __atomic_store_n(&sl[i].tag, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&sl[i].owner, freed_owner(w), __ATOMIC_RELEASE);
    }
}

void reset_snapshots(Store& s) noexcept {
    std::memset(slots(s), 0, kSnapshotSlots * sizeof(SnapshotSlot));
    for (int i : {kSnapMask, kSnapPhase, kSnapCell}) *snap_word(s, i) = 0;
}

void recover_snapshots(Store& s) {
    std::uint64_t* phase = snap_word(s, kSnapPhase);
    if (*phase & 1) __atomic_store_n(phase, *phase + 1, __ATOMIC_RELEASE);
    s.snap_op = Store::SnapOp{};
    if (*snap_word(s, kSnapCell) != 0) versions(s).recover();
}

void retire_orphaned_tables(Store& s, const HashTable& root) {
    if (*snap_word(s, kSnapCell) == 0) return;
    HashTable vt = versions(s);
    std::unordered_set<std::uint64_t> waiting;  // placeholders' cells
    std::vector<HashTable> todo{root};          // the tables that own nested tables: live and retired
    for (std::uint64_t pos = 0, end = vt.end(); pos < end; ++pos) {
        if (!vt.occupied(pos)) continue;
        const std::uint64_t v = *vt.value_word_ptr(pos);
        if (!is_inline(v)) continue;
        WordBuf kb;
        const std::string_view key = vt.key_at(pos, kb);
        if (key.size() != kPrefix || key[0] != kRetiredKey) continue;
        if (is_table_ref(v)) {
            todo.push_back(root.child(v));
        } else {
            std::uint64_t cell;
            std::memcpy(&cell, key.data() + 1, 8);
            waiting.insert(cell);
        }
    }
    if (waiting.empty()) return;
    std::unordered_set<std::uint64_t> seen;  // damage could make a cycle
    while (!todo.empty() && !waiting.empty()) {
        const HashTable t = todo.back();
        todo.pop_back();
        if (!seen.insert(t.cell()).second) continue;
        for (std::uint64_t pos = 0, end = t.end(); pos < end; ++pos) {
            if (!t.occupied(pos)) continue;
            const std::uint64_t v = *t.value_word_ptr(pos);
            if (!is_inline(v) || !is_table_ref(v)) continue;
            waiting.erase(table_ref_cell(v));
            todo.push_back(t.child(v));
        }
    }
    for (const std::uint64_t cell : waiting) (void)retire_dropped(s, cell);
}

void enumerate_versions(const Store& s, const alloc::Arena::Visit& visit) {
    if (*snap_word(s, kSnapCell) != 0) versions(s).enumerate(visit);
}

std::uint64_t version_keys(const Store& s) {
    return s.read([&]() -> std::uint64_t {
        if (__atomic_load_n(snap_word(s, kSnapCell), __ATOMIC_ACQUIRE) == 0) return 0;
        return versions(s).size_checked();
    });
}

bool has_versions(const Store& s) noexcept { return __atomic_load_n(snap_word(s, kSnapCell), __ATOMIC_ACQUIRE) != 0; }

std::optional<std::string> read_at(const Store& s, const HashTable& t, std::uint64_t version, std::string_view key,
                                   std::uint64_t hash) {
    std::string ckey_buf;
    const std::string_view ckey = chain_key(t, key, ckey_buf);
    const std::uint64_t chash = is_root(t) ? hash : hash64(ckey.data(), ckey.size());
    return s.read([&]() -> std::optional<std::string> {
        // Live first, chain second: a writer records before it stores.
        const auto live = t.checked();
        const std::uint64_t pos = t.find_in(live, key, hash);
        std::optional<std::string> cur;
        if (pos != kNotFound) {
            WordBuf buf;
            cur.emplace(s.view(&HashTable::entries_of(live)[pos].value, buf));
        }
        if (__atomic_load_n(snap_word(s, kSnapCell), __ATOMIC_ACQUIRE) == 0) return cur;
        const HashTable vt = versions(s);
        const auto vs = vt.checked();
        const std::uint64_t vp = vt.find_in(vs, ckey, chash);
        if (vp == kNotFound) return cur;
        WordBuf buf;
        const std::string_view chain = s.view(&HashTable::entries_of(vs)[vp].value, buf);
        return resolve(chain, version, [&] { return std::move(cur); }, s);
    });
}

void items_at(const Store& s, const HashTable& t, std::uint64_t version,
              const std::function<void(std::string&&, std::string&&)>& out) {
    // Keys whose chain says they were present at `version` (a node newer than it holding a value): at most
    // the keys of the instant, whatever was inserted since.
    const std::string prefix = is_root(t) ? std::string() : table_prefix(kNestedKey, t.cell());
    auto chained_present = [&] {
        std::unordered_set<std::string> keys;
        s.read([&] {
            keys.clear();
            if (__atomic_load_n(snap_word(s, kSnapCell), __ATOMIC_ACQUIRE) == 0) return 0;
            const HashTable vt = versions(s);
            const auto vs = vt.checked();
            const EntrySlot* ent = HashTable::entries_of(vs);
            for (std::uint64_t i = 0; i < vs.used; ++i) {
                if (__atomic_load_n(&ent[i].key, __ATOMIC_ACQUIRE) == kTombWord) continue;
                WordBuf kb, vb;
                const std::optional<std::string_view> key = key_of_chain(t, s.view(&ent[i].key, kb), prefix);
                if (!key) continue;  // another table's chain, or a retired table
                const std::string_view chain = s.view(&ent[i].value, vb);
                Node n;
                for (std::size_t at = 0; at < chain.size(); at = n.end) {
                    if (!node_at(chain, at, n)) s.throw_corrupt("a snapshot version chain is malformed");
                    if (n.version > version) {
                        if (n.old) keys.emplace(*key);
                        break;
                    }
                }
            }
            return 0;
        });
        return keys;
    };
    std::unordered_set<std::string> known = chained_present();
    std::vector<std::pair<std::string, std::string>> items;
    for (;;) {
        items.clear();
        // Pass 1: the live table's entries up to its end when the pass began (later ones were inserted
        // after the instant; a key re-inserted after an erase has a chain and comes from pass 2), each read
        // at `version`, skipping the chained keys. A rebuild moves entries but keeps their order: the pass
        // goes on after the last key it saw, up to the key that was last when it began, found again by
        // lookups (when either is gone, the pass starts over).
        std::uint64_t table = 0, pos = 0, end = 0;
        std::string last_key, end_key;
        bool restart = false;
        for (;;) {
            std::optional<std::string> key;
            int state = 0;  // 0: done, 1: entry at pos read, 2: the table was switched
            s.read([&] {
                key.reset();
                const auto live = t.checked();
                const std::uint64_t off = t.root();
                const EntrySlot* ent = HashTable::entries_of(live);
                if (table == 0) {
                    table = off;
                    end = live.used;
                    end_key.clear();
                    for (std::uint64_t j = end; j > 0; --j)
                        if (__atomic_load_n(&ent[j - 1].key, __ATOMIC_ACQUIRE) != kTombWord) {
                            WordBuf kb;
                            end_key.assign(s.view(&ent[j - 1].key, kb));
                            end = j;
                            break;
                        }
                    if (end_key.empty()) end = 0;
                }
                if (off != table) {
                    state = 2;
                    return 0;
                }
                if (pos >= end || pos >= live.used) {
                    state = 0;
                    return 0;
                }
                state = 1;
                if (__atomic_load_n(&ent[pos].key, __ATOMIC_ACQUIRE) == kTombWord) return 0;
                WordBuf kb;
                key.emplace(s.view(&ent[pos].key, kb));
                return 0;
            });
            if (state == 0) break;
            if (state == 2) {
                const bool found = s.read([&] {
                    const auto live = t.checked();
                    const std::uint64_t e = t.find_in(live, end_key);
                    const std::uint64_t p = last_key.empty() ? 0 : t.find_in(live, last_key);
                    if (e == kNotFound || p == kNotFound) return false;
                    table = t.root();
                    pos = last_key.empty() ? 0 : p + 1;
                    end = e + 1;
                    return true;
                });
                if (!found) {
                    restart = true;
                    break;
                }
                continue;
            }
            ++pos;
            if (!key) continue;
            last_key = *key;
            if (known.count(*key) != 0) continue;
            std::optional<std::string> v = read_at(s, t, version, *key, hash64(key->data(), key->size()));
            if (v) items.emplace_back(std::move(*key), std::move(*v));
        }
        if (restart) continue;
        // Pass 2: the chained keys.
        for (const std::string& k : known) {
            std::optional<std::string> v = read_at(s, t, version, k, hash64(k.data(), k.size()));
            if (v) items.emplace_back(k, std::move(*v));
        }
        // A key present at `version` that got its chain during the passes may have been missed (erased
        // before pass 1 reached it) or read twice: start again knowing it. Each round adds such keys, of
        // which there are at most len(d) at `version`, so this ends.
        bool again = false;
        for (const std::string& k : chained_present())
            if (known.insert(k).second) again = true;
        if (!again) break;
    }
    for (auto& [k, v] : items) out(std::move(k), std::move(v));
}

}  // namespace mmstore::containers
