#include "mmstore/containers/hash_table.hpp"
#include "mmstore/containers/snapshot.hpp"

#include <emmintrin.h>

#include <cstring>
#include <string>
#include <vector>

#include "mmstore/codec/value.hpp"

namespace mmstore::containers {

namespace {

constexpr std::uint64_t kMinCapacity = 16;

std::uint64_t counters_of(const TableHeader* h, std::uint64_t used, std::uint64_t live) noexcept {
    return counters_check(h->capacity, h->entries_cap, used, live);
}

constexpr std::uint32_t kLaneMask = (1u << kLanes) - 1;

// Compares the 12 ctrl bytes of a group (the 16-byte load also reads index[0]; its lanes are masked off).
inline std::uint32_t match_byte(const std::uint8_t* group, std::uint8_t b) noexcept {
    const __m128i g = _mm_load_si128(reinterpret_cast<const __m128i*>(group));
    return static_cast<std::uint32_t>(_mm_movemask_epi8(_mm_cmpeq_epi8(g, _mm_set1_epi8(static_cast<char>(b))))) &
           kLaneMask;
}

inline std::uint32_t match_empty(const std::uint8_t* group) noexcept { return match_byte(group, kCtrlEmpty); }

// Empty or deleted: the high bit is set (0x80 and 0xFE); full slots hold 0..127.
inline std::uint32_t match_free(const std::uint8_t* group) noexcept {
    const __m128i g = _mm_load_si128(reinterpret_cast<const __m128i*>(group));
    return static_cast<std::uint32_t>(_mm_movemask_epi8(g)) & kLaneMask;
}

std::uint64_t capacity_for(std::uint64_t live) noexcept {
    // Room for about twice the live keys, so a table that fills with live keys doubles.
    std::uint64_t cap = kMinCapacity;
    while (entries_cap_of(cap) < live + 1 || entries_cap_of(cap) < 2 * live - live / 64) cap *= 2;
    return cap;
}

// Rotate-xor fold of the group's first 60 bytes: any single damaged byte changes it. The fold is XOR-linear
// in the group's words, so writers update it from the bytes they change (update_check) instead of
// re-reading the group, whose just-stored bytes would miss store forwarding.
constexpr std::uint64_t rotl(std::uint64_t w, unsigned r) noexcept { return (w << r) | (w >> (64 - r)); }
constexpr std::uint32_t fold32(std::uint64_t x) noexcept { return static_cast<std::uint32_t>(x ^ (x >> 32)); }

inline std::uint32_t group_check(const Group& g) noexcept {
    std::uint64_t w[8];
    std::memcpy(w, &g, sizeof w);
    w[7] &= 0x00000000FFFFFFFFull;  // exclude the check itself
    std::uint64_t x = 0x9E3779B97F4A7C15ull;
    for (unsigned i = 0; i < 8; ++i) x ^= rotl(w[i], 7 * i + 1);
    return fold32(x);
}

// The change of group_check when the bytes [offset, offset + width) (within one word) change by `delta`.
inline std::uint32_t check_delta(unsigned offset, std::uint64_t delta) noexcept {
    return fold32(rotl(delta << (8 * (offset % 8)), 7 * (offset / 8) + 1));
}

// Records in the check that lane `lane` went from (old_ctrl, old_index) to (new_ctrl, new_index).
inline void update_check(Group& g, unsigned lane, std::uint8_t old_ctrl, std::uint8_t new_ctrl, std::uint32_t old_index,
                         std::uint32_t new_index) noexcept {
    const std::uint32_t c = g.check ^ check_delta(lane, std::uint64_t{old_ctrl} ^ new_ctrl) ^
                            check_delta(12 + 4 * lane, std::uint64_t{old_index} ^ new_index);
    __atomic_store_n(&g.check, c, __ATOMIC_RELEASE);
}

inline void seal(Group& g) noexcept { __atomic_store_n(&g.check, group_check(g), __ATOMIC_RELEASE); }

Group empty_group() noexcept {
    Group empty;
    std::memset(empty.ctrl, kCtrlEmpty, kLanes);
    std::memset(empty.index, 0, sizeof empty.index);
    empty.check = 0;
    seal(empty);
    return empty;
}

void init_groups(Group* g, std::uint64_t capacity) noexcept {
    const Group empty = empty_group();
    for (std::uint64_t i = 0; i < capacity / kGroup; ++i) std::memcpy(&g[i], &empty, sizeof empty);
}

// First empty-or-deleted slot on the probe path of `hash`.
std::uint64_t free_slot(Group* grp, std::uint64_t mask, std::uint64_t hash) noexcept {
    std::uint64_t g = (hash >> 7) & mask;
    for (std::uint64_t step = 1;; ++step) {
        if (const std::uint32_t m = match_free(grp[g].ctrl); m != 0)
            return g * kGroup + static_cast<std::uint64_t>(__builtin_ctz(m));
        g = (g + step) & mask;
    }
}

// True when the key word holds its encoding `k` the one way a writer stores it: inline exactly when the
// encoding fits a word, and the encoding itself canonical (codec::canonical_scalar).
bool canonical_key(std::uint64_t word, std::string_view k) noexcept {
    const std::uint64_t w = inline_word(k);
    if (is_inline(word) ? w != word : w != 0) return false;
    return codec::canonical_scalar(k);
}

}  // namespace

void seal_counters(TableHeader* h) noexcept { __atomic_store_n(&h->check, counters_of(h, h->used, h->live), __ATOMIC_RELEASE); }

std::uint64_t HashTable::build(std::uint64_t capacity, std::uint64_t replaces) {
    const std::uint64_t bytes = table_bytes(capacity);
    const std::uint64_t off = replaces == 0 ? store_->arena().allocate(bytes)
                                            : store_->arena().allocate_replacement(
                                                  bytes, replaces, table_bytes(header()->capacity));
    auto* h = store_->region().at<TableHeader>(off);
    std::memset(h, 0, sizeof *h);
    h->capacity = capacity;
    h->entries_cap = entries_cap_of(capacity);
    h->checksum = header_checksum(h, cell_);
    seal_counters(h);
    // Region::fill: a large table's fresh pages are written whole with pwrite, not faulted in zeroed.
    const Group empty = empty_group();
    const std::uint64_t groups_off = off + sizeof(TableHeader);
    store_->region().fill(groups_off, capacity / kGroup * sizeof(Group), &empty, sizeof empty);
    // Entries not yet written are zero (an invalid word), never what the block held before: after a power
    // loss, `used` may have reached the disk before the entries it counts (repair drops zero entries).
    const std::uint8_t zero = 0;
    store_->region().fill(groups_off + capacity / kGroup * sizeof(Group), 16 * entries_cap_of(capacity), &zero, 1);
    return off;
}

void HashTable::format() { publish(build(kMinCapacity)); }

void HashTable::check_root() const {
    const std::uint64_t off = root();
    const auto& r = store_->region();
    if (off == 0 || off % 16 != 0 || !r.in_bounds(off, sizeof(TableHeader)))
        store_->throw_corrupt("dict root offset " + std::to_string(off) + " is out of bounds");
    const auto* h = r.at<const TableHeader>(off);  // not header(): the root may have moved since `off`
    if (h->checksum != header_checksum(h, cell_) || h->capacity < kMinCapacity || (h->capacity & (h->capacity - 1)) != 0 ||
        h->capacity > (std::uint64_t{1} << 36) || h->entries_cap != entries_cap_of(h->capacity))
        throw_foreign_table(off);
    if (!r.in_bounds(off, table_bytes(h->capacity)))
        store_->throw_corrupt("dict table at offset " + std::to_string(off) + " extends past the end of the file");
    if (h->used > h->entries_cap || h->live > h->used)
        store_->throw_corrupt("dict table counters out of range (used " + std::to_string(h->used) + ", live " +
                              std::to_string(h->live) + ")");
}

void HashTable::throw_foreign_table(std::uint64_t off) const {
    store_->throw_corrupt("dict table header at offset " + std::to_string(off) + " fails its checksum (" +
                          (cell_ == Store::kRootCell ? std::string("the root pointer or the header is damaged")
                                                     : "the table pointer at offset " + std::to_string(cell_) +
                                                           " or the header it points to is damaged, or the store "
                                                           "was written by an mmstore before 0.2.1") +
                          ")");
}

bool HashTable::key_equals(const EntrySlot& e, std::string_view key) const noexcept {
    // An inlinable key never reaches here (see find_slot). A record key word must pass its check byte: a
    // damaged offset could point at another record that happens to hold the same bytes.
    if (is_inline(e.key) || !word_intact(e.key)) return false;
    const std::string_view k = store_->record_unchecked(e.key);
    return k.size() == key.size() && bytes_equal(k.data(), key.data(), key.size());
}

HashTable::Snapshot HashTable::checked_slow() const {
    const auto& r = store_->region();
    const std::uint64_t off = root();
    // Another process may have published a table in space it grew after this handle last mapped: growth
    // is published before the table, so mapping up to the published size makes any current root visible.
    if (!r.in_bounds(off, sizeof(TableHeader))) r.refresh();
    if (off % 16 != 0 || !r.in_bounds(off, sizeof(TableHeader))) store_->throw_corrupt("table offset out of bounds");
    const auto* h = r.at<const TableHeader>(off);
    const std::uint64_t cap = __atomic_load_n(&h->capacity, __ATOMIC_RELAXED);
    const std::uint64_t used = __atomic_load_n(&h->used, __ATOMIC_ACQUIRE);
    const bool sane = snapshot_sane(cap, used);
    if (sane && !r.in_bounds(off, table_bytes(cap))) r.refresh();
    if (!sane || !r.in_bounds(off, table_bytes(cap)))
        store_->throw_corrupt("table header at offset " + std::to_string(off) + " is out of range");
    if (store_->verifying()) [[likely]] {
        if (__atomic_load_n(&h->checksum, __ATOMIC_RELAXED) != header_checksum(h, cell_)) throw_foreign_table(off);
        const std::uint64_t live = __atomic_load_n(&h->live, __ATOMIC_RELAXED);
        const std::uint64_t check = __atomic_load_n(&h->check, __ATOMIC_RELAXED);
        if (check != counters_check(cap, entries_cap_of(cap), used, live)) [[unlikely]] return checked_slow(off, cap);
    }
    return {h, cap, used};
}

HashTable::Snapshot HashTable::checked_slow(std::uint64_t off, std::uint64_t cap) const {
    // The counters disagree with their check: a writer (in another process or thread) between its stores
    // of used, live and check, or damage. While another holds the lock its counters are trusted, bounded by
    // the capacity checked() validated (re-read nothing else: the block may be freed and reused meanwhile);
    // otherwise a second look after the writer left decides.
    const auto* h = store_->region().at<const TableHeader>(off);
    const std::uint64_t ecap = entries_cap_of(cap);
    for (int attempt = 0; attempt < 2; ++attempt) {
        if (store_->writer_active() && !store_->lock_held_by_me())
            return {h, cap, std::min(__atomic_load_n(&h->used, __ATOMIC_ACQUIRE), ecap)};
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        const std::uint64_t used = __atomic_load_n(&h->used, __ATOMIC_ACQUIRE);
        const std::uint64_t live = __atomic_load_n(&h->live, __ATOMIC_RELAXED);
        if (__atomic_load_n(&h->check, __ATOMIC_RELAXED) == counters_check(cap, ecap, used, live) && used <= ecap)
            return {h, cap, used};
    }
    store_->throw_corrupt("table at offset " + std::to_string(off) + ": its counters (used " +
                          std::to_string(__atomic_load_n(&h->used, __ATOMIC_RELAXED)) + ") fail their check");
}

std::uint64_t HashTable::find_slot_in(const Snapshot& t, std::string_view key, std::uint64_t hash,
                                      std::uint64_t* pos) const noexcept {
    // Everything from one validated snapshot: re-reading the root or the header could mix two tables.
    const Group* grps = reinterpret_cast<const Group*>(t.h + 1);
    const EntrySlot* ent = reinterpret_cast<const EntrySlot*>(grps + t.capacity / kGroup);
    const std::uint64_t groups_mask = t.capacity / kGroup - 1;
    const auto h2 = static_cast<std::uint8_t>(hash & 0x7F);
    const std::uint64_t inline_key = inline_word(key);  // canonical: an inlinable key is stored inline
    std::uint64_t g = (hash >> 7) & groups_mask;
    for (std::uint64_t step = 1; step <= groups_mask + 1; ++step) {
        const std::uint8_t* grp = grps[g].ctrl;
        std::uint32_t m = match_byte(grp, h2);
        // Writers store the index before the ctrl byte; read them in the opposite order (x86 keeps loads
        // in order, this keeps the compiler from reordering them).
        __atomic_signal_fence(__ATOMIC_SEQ_CST);
        for (; m != 0; m &= m - 1) {
            const unsigned lane = static_cast<unsigned>(__builtin_ctz(m));
            const std::uint64_t slot = g * kGroup + lane;
            const std::uint32_t e = grps[g].index[lane];
            if (e >= t.used) continue;  // damage, or an entry published after our snapshot
            const EntrySlot& es = ent[e];
            // The value's record (when it has one) is read next if the key matches: start fetching it
            // now, so its cache miss overlaps the key record's instead of following it (a prefetch never
            // faults, so the word needs no check yet).
            if (!is_inline(es.value)) __builtin_prefetch(store_->region().at<const char>(es.value));
            if (inline_key != 0 ? es.key == inline_key : key_equals(es, key)) {
                if (pos != nullptr) *pos = slot;
                return e;
            }
        }
        if (match_empty(grp) != 0) break;
        g = (g + step) & groups_mask;
    }
    return kNotFound;
}

std::uint64_t HashTable::find(std::string_view key, std::uint64_t hash) const { return find_in(checked(), key, hash); }

void HashTable::verify_probe(const Snapshot& t, std::uint64_t hash) const {
    if (!store_->verifying()) return;
    const Group* grps = reinterpret_cast<const Group*>(t.h + 1);
    const EntrySlot* ent = entries_of(t);
    const std::uint64_t mask = t.capacity / kGroup - 1;
    const auto h2 = static_cast<std::uint8_t>(hash & 0x7F);
    // A miss read while another process writes may see a group or entry mid-update: it is a miss from
    // before that update. With no writer, a second look decides.
    auto damaged = [&] {
        if (store_->writer_active()) return false;
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        return true;
    };
    std::uint64_t g = (hash >> 7) & mask;
    for (std::uint64_t step = 1; step <= mask + 1; ++step) {
        if (grps[g].check != group_check(grps[g])) {
            if (!damaged()) return;
            if (grps[g].check != group_check(grps[g]))
                store_->throw_corrupt("index group " + std::to_string(g) +
                                      " fails its check (run verify(); reopen repairs after a crash)");
        }
        // Every candidate the probe compared must be an intact entry: a damaged key word (or a record key
        // whose bytes changed) compares unequal and would hide the key; an index at or past `used` means
        // the counter or the index is damaged.
        for (std::uint32_t m = match_byte(grps[g].ctrl, h2); m != 0; m &= m - 1) {
            const unsigned lane = static_cast<unsigned>(__builtin_ctz(m));
            const std::uint32_t e = grps[g].index[lane];
            const std::uint64_t used = __atomic_load_n(&t.h->used, __ATOMIC_ACQUIRE);
            const std::uint64_t kw = e < used ? __atomic_load_n(&ent[e].key, __ATOMIC_ACQUIRE) : 0;
            const bool bad = e >= used || kw == kTombWord || !store_->word_ok(kw);
            if (bad && damaged()) {
                store_->throw_corrupt("index slot " + std::to_string(g * kGroup + lane) + " points at entry " + std::to_string(e) +
                                      (e >= used ? " past the last one" : ", whose key word is damaged") +
                                      " (run verify(); reopen repairs after a crash)");
            }
            if (bad) return;
        }
        if (match_empty(grps[g].ctrl) != 0) return;
        g = (g + step) & mask;
    }
}

void HashTable::find_many(const Snapshot& t, std::span<const std::string_view> keys, std::span<std::uint64_t> out) const {
    // Three prefetching passes over each batch, then the ordinary lookup of every key: the passes only
    // start the cache misses of the whole batch at once (group, entry, then key and value records), the
    // lookups that follow find everything in cache. Prefetches never fault, and every address a pass
    // reads (a group, an entry below t.used) lies inside the snapshot checked() validated.
    constexpr std::size_t kBatch = 16;
    const std::uint64_t groups_mask = t.capacity / kGroup - 1;
    const Group* grps = reinterpret_cast<const Group*>(t.h + 1);
    const EntrySlot* ent = entries_of(t);
    const auto& region = store_->region();
    std::uint64_t hashes[kBatch];
    std::uint32_t cand[kBatch];  // entry index of the first candidate in the home group, or ~0u
    for (std::size_t base = 0; base < keys.size(); base += kBatch) {
        const std::size_t n = std::min(kBatch, keys.size() - base);
        for (std::size_t i = 0; i < n; ++i) {
            hashes[i] = hash64(keys[base + i].data(), keys[base + i].size());
            __builtin_prefetch(&grps[(hashes[i] >> 7) & groups_mask]);  // one cache line per group
        }
        for (std::size_t i = 0; i < n; ++i) {
            const Group& g = grps[(hashes[i] >> 7) & groups_mask];
            const std::uint32_t m = match_byte(g.ctrl, static_cast<std::uint8_t>(hashes[i] & 0x7F));
            cand[i] = m != 0 ? g.index[__builtin_ctz(m)] : ~0u;
            if (cand[i] < t.used) __builtin_prefetch(&ent[cand[i]]);
        }
        for (std::size_t i = 0; i < n; ++i) {
            if (cand[i] >= t.used) continue;
            const EntrySlot& e = ent[cand[i]];
            if (!is_inline(e.key)) __builtin_prefetch(region.at<const char>(e.key));
            if (!is_inline(e.value)) __builtin_prefetch(region.at<const char>(e.value));
        }
        for (std::size_t i = 0; i < n; ++i) out[base + i] = find_in(t, keys[base + i], hashes[i]);
    }
}

std::uint64_t HashTable::hash_word(const std::uint64_t* slot) const {
    WordBuf buf;
    const std::string_view k = store_->view(slot, buf);
    return hash64(k.data(), k.size());
}

bool HashTable::relocate_down() {
    const std::uint64_t old_off = root();
    const std::uint64_t bytes = table_bytes(header()->capacity);
    const std::uint64_t off = store_->arena().copy_below(old_off, bytes);
    if (off == 0) return false;
    store_->region().at<TableHeader>(off)->committed = 0;  // a new block holds no committed entries
    publish(off);  // the switch: one 8-byte store, as for a rebuild
    store_->arena().free(old_off, bytes);
    return true;
}

void HashTable::reserve(std::uint64_t n) {
    if (n > header()->entries_cap) rehash(n, true);
}

void HashTable::rehash(std::uint64_t min_live, bool exact) {
    const TableHeader* old = header();
    const std::uint64_t old_off = root();
    std::uint64_t cap = capacity_for(min_live);
    if (exact) {
        cap = kMinCapacity;
        while (entries_cap_of(cap) < min_live) cap *= 2;
    }
    const std::uint64_t off = build(cap, old_off);  // may grow the file: re-read pointers
    old = header();
    auto* h = store_->region().at<TableHeader>(off);
    auto* grp = reinterpret_cast<Group*>(h + 1);
    auto* ent = reinterpret_cast<EntrySlot*>(grp + cap / kGroup);
    const EntrySlot* src = entries();
    const std::uint64_t mask = cap / kGroup - 1;
    // Batches of 16: hash and prefetch every target group first, then insert, so the cache misses of
    // scattered inserts overlap (measured: rehash was a third of 1M-insert time without this).
    constexpr std::uint64_t kBatch = 16;
    std::uint64_t n = 0;
    std::uint64_t hv[kBatch];
    std::uint64_t at[kBatch];
    for (std::uint64_t i = 0; i < old->used;) {
        std::uint64_t m = 0;
        for (; i < old->used && m < kBatch; ++i) {
            if (src[i].key == kTombWord) continue;
            hv[m] = hash_word(&src[i].key);
            at[m] = i;
            __builtin_prefetch(&grp[(hv[m] >> 7) & mask], 1);
            ++m;
        }
        for (std::uint64_t j = 0; j < m; ++j) {
            ent[n] = src[at[j]];
            const std::uint64_t slot = free_slot(grp, mask, hv[j]);
            grp[slot / kGroup].index[slot % kGroup] = static_cast<std::uint32_t>(n);
            grp[slot / kGroup].ctrl[slot % kGroup] = static_cast<std::uint8_t>(hv[j] & 0x7F);
            ++n;
        }
    }
    for (std::uint64_t g = 0; g <= mask; ++g) seal(grp[g]);
    h->used = n;
    h->live = n;
    seal_counters(h);
    publish(off);  // the switch: one 8-byte store
    store_->arena().free(old_off, table_bytes(old->capacity));
}

std::pair<std::uint64_t, bool> HashTable::insert(std::string_view key, std::uint64_t hash, std::string_view value) {
    const std::uint64_t found = find(key, hash);
    if (found != kNotFound) return {found, false};
    return {insert_new(key, hash, value), true};
}

std::uint64_t HashTable::insert_new(std::string_view key, std::uint64_t hash, std::string_view value) {
    std::optional<VersionScope> vs;
    if (versioned()) {
        vs.emplace(*store_);
        if (vs->recording()) record_before(*store_, *this, key, std::nullopt);
    }
    if (header()->used == header()->entries_cap) rehash(header()->live);
    const std::uint64_t kw = store_->put(key);
    std::uint64_t vw;
    try {
        vw = store_->put(value);
    } catch (...) {
        store_->release(kw);
        throw;
    }
    TableHeader* h = header();
    Group* grp = groups();
    const std::uint64_t slot = free_slot(grp, h->capacity / kGroup - 1, hash);
    const std::uint64_t pos = h->used;
    EntrySlot* e = entries() + pos;
    // One store makes the key visible to lookups and iteration together (a lock-free reader of a writer
    // stopped anywhere in here sees the insert whole or not at all; tests/cpp/stepped_writer_test.cpp):
    // the entry and its index slot first, both invisible while they lie at or past `used` (lookups skip an
    // index at or past the `used` they read), then `used`. `live` and its check follow; size_checked()
    // counts the insert in that window. The entry may hold a trimmed tombstone a slow iterator can still
    // read: value first, then the key that makes the entry live.
    __atomic_store_n(&e->value, vw, __ATOMIC_RELEASE);
    __atomic_store_n(&e->key, kw, __ATOMIC_RELEASE);
    Group& g = grp[slot / kGroup];
    const unsigned lane = static_cast<unsigned>(slot % kGroup);
    const std::uint8_t old_ctrl = g.ctrl[lane];
    const std::uint32_t old_index = g.index[lane];
    g.index[lane] = static_cast<std::uint32_t>(pos);
    __atomic_store_n(&g.ctrl[lane], static_cast<std::uint8_t>(hash & 0x7F), __ATOMIC_RELEASE);
    update_check(g, lane, old_ctrl, static_cast<std::uint8_t>(hash & 0x7F), old_index, static_cast<std::uint32_t>(pos));
    __atomic_store_n(&h->used, pos + 1, __ATOMIC_RELEASE);  // visible to lookups and iteration
    h->live += 1;
    seal_counters(h);
    store_->bump_mutations();
    return pos;
}

void HashTable::link_index(std::uint64_t pos, std::uint64_t hash) noexcept {
    TableHeader* h = header();
    Group* grp = groups();
    const std::uint64_t slot = free_slot(grp, h->capacity / kGroup - 1, hash);
    Group& g = grp[slot / kGroup];
    const unsigned lane = static_cast<unsigned>(slot % kGroup);
    const std::uint8_t old_ctrl = g.ctrl[lane];
    const std::uint32_t old_index = g.index[lane];
    g.index[lane] = static_cast<std::uint32_t>(pos);
    __atomic_store_n(&g.ctrl[lane], static_cast<std::uint8_t>(hash & 0x7F), __ATOMIC_RELEASE);
    update_check(g, lane, old_ctrl, static_cast<std::uint8_t>(hash & 0x7F), old_index, static_cast<std::uint32_t>(pos));
}

void HashTable::assign_at(std::uint64_t pos, std::string_view value) {
    std::optional<VersionScope> vs;
    if (versioned()) {
        vs.emplace(*store_);
        if (vs->recording()) record_entry(*store_, *this, pos);
    }
    const std::uint64_t vw = store_->put(value);
    if (!is_inline(vw) && pos < header()->committed && !store_->region().is_volatile()) [[unlikely]] {
        // A committed entry must keep pointing at committed records until the next commit: a power loss
        // could keep this new word and lose the record it points to. Rebuild the table aside first (once per
        // commit: the copy has no committed entries), and write the new value there.
        try {
            WordBuf kb;
            const std::string key(store_->view(&entries()[pos].key, kb));
            rehash(header()->live);
            pos = find(key);
            if (pos == kNotFound) store_->throw_corrupt("an entry was lost while the table was rebuilt");
        } catch (...) {
            store_->release(vw);
            throw;
        }
    }
    EntrySlot* e = entries() + pos;
    const std::uint64_t old = e->value;
    __atomic_store_n(&e->value, vw, __ATOMIC_RELEASE);
    release_value(old);
}

bool HashTable::set(std::string_view key, std::uint64_t hash, std::string_view value) {
    // Unchecked on purpose: verifying the probed groups on every new key cost ~8% of insert time. A damaged
    // index can then add a second entry for a key; verify() reports it and repair() drops it.
    const std::uint64_t found = find_slot(key, hash, nullptr);
    if (found != kNotFound) {
        assign_at(found, value);
        return false;
    }
    insert_new(key, hash, value);
    return true;
}

bool HashTable::set(std::string_view key, std::string_view value) { return set(key, hash64(key.data(), key.size()), value); }

void HashTable::erase_at(std::uint64_t pos) {
    std::optional<VersionScope> vs;
    if (versioned()) {
        vs.emplace(*store_);
        if (vs->recording()) record_entry(*store_, *this, pos);
    }
    WordBuf buf;
    const std::string_view key = store_->view(&entries()[pos].key, buf);
    std::uint64_t slot = 0;
    const std::uint64_t found = find_slot(key, hash64(key.data(), key.size()), &slot);
    if (found != pos) store_->throw_corrupt("entry " + std::to_string(pos) + " is not in the index");
    TableHeader* h = header();
    // One store unpublishes the key from lookups and iteration together: its tombstone (a lookup that
    // still finds the index slot compares the key word and misses). `live` follows it; before it, the check
    // word announces the erased position, so size_checked() can tell on which side of the tombstone a
    // writer stopped in between is (erase_announcement).
    // (Under the lock the check is sealed when a write begins: XORing into it announces against the
    // counters as they are.)
    __atomic_store_n(&h->check, h->check ^ erase_announcement(pos), __ATOMIC_RELEASE);
    EntrySlot* e = entries() + pos;
    const EntrySlot old = *e;
    __atomic_store_n(&e->key, kTombWord, __ATOMIC_RELEASE);  // unpublished from lookups and iteration
    Group& g = groups()[slot / kGroup];
    const unsigned lane = static_cast<unsigned>(slot % kGroup);
    const std::uint8_t old_ctrl = g.ctrl[lane];
    __atomic_store_n(&g.ctrl[lane], kCtrlDeleted, __ATOMIC_RELEASE);
    update_check(g, lane, old_ctrl, kCtrlDeleted, 0, 0);
    h->live -= 1;
    while (h->used > 0 && entries()[h->used - 1].key == kTombWord) h->used -= 1;
    seal_counters(h);
    store_->bump_mutations();
    release_key(old.key);
    release_value(old.value);
}

bool HashTable::erase(std::string_view key, std::uint64_t hash) {
    const std::uint64_t pos = find(key, hash);
    if (pos == kNotFound) return false;
    erase_at(pos);
    return true;
}

void HashTable::clear() {
    std::optional<VersionScope> vs;
    if (versioned()) {
        vs.emplace(*store_);
        if (vs->recording())  // O(len), as clear() itself
            for (std::uint64_t i = 0; i < header()->used; ++i)
                if (entries()[i].key != kTombWord) record_entry(*store_, *this, i);
    }
    const std::uint64_t old_off = root();
    const TableHeader* old = header();
    const std::uint64_t old_used = old->used;
    const std::uint64_t old_cap = old->capacity;
    // Build an empty table aside and switch; then free the records of the old one.
    publish(build(kMinCapacity));
    store_->bump_mutations();
    const auto* ent = reinterpret_cast<const EntrySlot*>(store_->region().at<std::uint8_t>(old_off) + sizeof(TableHeader) +
                                                         old_cap / kGroup * sizeof(Group));
    for (std::uint64_t i = 0; i < old_used; ++i) {
        if (ent[i].key == kTombWord) continue;
        release_key(ent[i].key);
        release_value(ent[i].value);
    }
    store_->arena().free(old_off, table_bytes(old_cap));
}

std::uint64_t HashTable::last() const noexcept {
    const TableHeader* h = header();
    for (std::uint64_t i = h->used; i > 0; --i)
        if (entries()[i - 1].key != kTombWord) return i - 1;
    return kNotFound;
}

void HashTable::enumerate_at(const alloc::Arena::Visit& visit, int depth) const {
    if (depth > kMaxNesting) store_->throw_corrupt("nested tables deeper than " + std::to_string(kMaxNesting));
    if (depth > 0) check_root();
    const TableHeader* h = header();
    visit(root(), table_bytes(h->capacity));
    const EntrySlot* ent = entries();
    for (std::uint64_t i = 0; i < h->used; ++i) {
        if (ent[i].key == kTombWord) continue;
        std::uint64_t off, bytes;
        if (store_->word_block(ent[i].key, off, bytes)) visit(off, bytes);
        if (is_table_ref(ent[i].value)) {
            const HashTable c = child(ent[i].value);
            visit(c.cell(), sizeof(CellRecord));
            c.enumerate_at(visit, depth + 1);
        } else if (store_->word_block(ent[i].value, off, bytes)) {
            visit(off, bytes);
        }
    }
}

std::uint64_t HashTable::cell_id(const Store& store, std::uint64_t cell) {
    const auto& r = store.region();
    if (!r.in_bounds(cell, sizeof(CellRecord))) r.refresh();
    if (cell % 16 != 0 || !r.in_bounds(cell, sizeof(CellRecord))) return 0;
    return __atomic_load_n(&r.at<CellRecord>(cell)->id, __ATOMIC_ACQUIRE);
}

HashTable HashTable::child(std::uint64_t value_word) const {
    const std::uint64_t cell = table_ref_cell(value_word);
    if (!word_intact(value_word) || !is_table_ref(value_word))
        store_->throw_corrupt("nested table reference word " + std::to_string(value_word) + " fails its check byte");
    if (cell % 16 != 0 || !store_->region().in_bounds(cell, sizeof(CellRecord)))
        store_->throw_corrupt("nested table reference to offset " + std::to_string(cell) + " is out of bounds");
    return HashTable(store_, cell);
}

std::string HashTable::create_child() {
    const std::uint64_t cell = store_->arena().allocate(sizeof(CellRecord));
    auto* c = store_->region().at<CellRecord>(cell);
    c->table = 0;
    c->id = ++store_->region().live().next_id;
    try {
        HashTable(store_, cell).format();
    } catch (...) {
        store_->arena().free(cell, sizeof(CellRecord));
        throw;
    }
    std::string enc(7, '\0');
    enc[0] = static_cast<char>(codec::tag::kTableRef);
    std::memcpy(enc.data() + 1, &cell, 6);
    return enc;
}

void HashTable::release_key(std::uint64_t w) noexcept {
    if (deferred_ != nullptr) {
        if (!is_inline(w)) deferred_->push_back(w);
        return;
    }
    store_->release(w);
}

HashTable HashTable::begin_copy(std::uint64_t extra, std::vector<std::uint64_t>* deferred) {
    const std::uint64_t cell = store_->arena().allocate(sizeof(CellRecord));
    auto* c = store_->region().at<CellRecord>(cell);
    c->table = 0;
    c->id = 0;
    const std::uint64_t bytes = table_bytes(header()->capacity);
    std::uint64_t off;
    try {
        off = store_->arena().allocate(bytes);  // may grow the file: pointers re-derived below
    } catch (...) {
        store_->arena().free(cell, sizeof(CellRecord));
        throw;
    }
    std::memcpy(store_->region().at<std::uint8_t>(off), store_->region().at<std::uint8_t>(root()), bytes);
    auto* h = store_->region().at<TableHeader>(off);
    h->checksum = header_checksum(h, cell);  // the copy is the temporary cell's table until commit_copy()
    store_->region().at<CellRecord>(cell)->table = off;
    HashTable copy(store_, cell);
    copy.deferred_ = deferred;
    copy.unversioned_ = true;  // unpublished: commit_copy() records the switch
    try {
        copy.reserve(copy.size() + extra);  // a rebuild inside the copy frees only the copy's own block
    } catch (...) {
        abandon_copy(copy);
        throw;
    }
    return copy;
}

void HashTable::commit_copy(HashTable& copy) {
    std::optional<VersionScope> vs;
    if (versioned()) {
        vs.emplace(*store_);
        if (vs->recording()) {
            // The before-image of every key the copy changes (O(len), as the copy itself).
            for (std::uint64_t i = 0; i < header()->used; ++i) {
                if (entries()[i].key == kTombWord) continue;
                WordBuf kb;
                const std::string_view k = key_at(i, kb);
                const std::uint64_t q = copy.find(k);
                if (q == kNotFound || copy.entries()[q].value != entries()[i].value) record_entry(*store_, *this, i);
            }
            for (std::uint64_t i = 0; i < copy.header()->used; ++i) {
                if (copy.entries()[i].key == kTombWord) continue;
                WordBuf kb;
                const std::string k(copy.key_at(i, kb));
                if (find(k) == kNotFound) record_before(*store_, *this, k, std::nullopt);
            }
        }
    }
    const std::uint64_t old_off = root();
    const std::uint64_t old_cap = header()->capacity;
    TableHeader* ch = copy.header();
    ch->checksum = header_checksum(ch, cell_);  // becomes this cell's table (unpublished until the switch)
    publish(copy.root());  // the switch: readers see the old table or the new one, whole
    store_->bump_mutations();
    store_->arena().free(old_off, table_bytes(old_cap));
    store_->arena().free(copy.cell(), sizeof(CellRecord));
    std::vector<std::uint64_t>* deferred = copy.deferred_;
    copy.deferred_ = nullptr;
    if (deferred != nullptr) {
        for (const std::uint64_t w : *deferred) release_value(w);  // records and children the switch dropped
        deferred->clear();
    }
}

void HashTable::abandon_copy(HashTable& copy) noexcept {
    const std::uint64_t off = copy.root();
    if (off != 0) store_->arena().free(off, table_bytes(copy.header()->capacity));
    store_->arena().free(copy.cell(), sizeof(CellRecord));
    copy.deferred_ = nullptr;
}

void HashTable::release_value(std::uint64_t w) noexcept {
    if (deferred_ != nullptr) {
        if (!is_inline(w) || is_table_ref(w)) deferred_->push_back(w);
        return;
    }
    if (!is_table_ref(w)) {
        store_->release(w);
        return;
    }
    const std::uint64_t cell = table_ref_cell(w);
    if (!word_intact(w) || cell % 16 != 0 || !store_->region().in_bounds(cell, sizeof(CellRecord))) return;  // damaged: leak it
    // A nested table dropped while a snapshot is open may still be read at the snapshot's instant:
    // record_entry made room to retire it, and it is kept whole until the last snapshot closes
    // (containers/snapshot.hpp). One never published (built and replaced inside one update_many copy) has
    // no room made: freed.
    if (store_->snap_op.recording && retire_dropped(*store_, cell)) return;
    HashTable(store_, cell).destroy_at(1);
    store_->arena().free(cell, sizeof(CellRecord));
}

void HashTable::verify(bool arena) const {
    verify_at(0);
    if (arena) store_->arena().verify([this](const alloc::Arena::Visit& v) { enumerate(v); });
}

void HashTable::verify_at(int depth) const {
    if (depth > kMaxNesting) store_->throw_corrupt("nested tables deeper than " + std::to_string(kMaxNesting));
    check_root();
    // One snapshot throughout (a read-only handle verifies without the lock, while other processes may
    // switch tables): every index below stays inside the block checked() validated.
    const Snapshot t = checked();
    const TableHeader* h = t.h;
    const Group* grp = reinterpret_cast<const Group*>(t.h + 1);
    const EntrySlot* ent = entries_of(t);
    if (h->check != counters_of(h, t.used, h->live)) store_->throw_corrupt("table counters fail their check");
    std::uint64_t full = 0;
    for (std::uint64_t g = 0; g < t.capacity / kGroup; ++g)
        if (grp[g].check != group_check(grp[g])) store_->throw_corrupt("index group " + std::to_string(g) + " fails its check");
    for (std::uint64_t s = 0; s < t.capacity; ++s) {
        if (s % kGroup >= kLanes) continue;
        const std::uint8_t b = grp[s / kGroup].ctrl[s % kGroup];
        const std::uint32_t ix = grp[s / kGroup].index[s % kGroup];
        if (b == kCtrlEmpty || b == kCtrlDeleted) continue;
        if (b > 0x7F) store_->throw_corrupt("bad control byte at slot " + std::to_string(s));
        if (ix >= t.used || ent[ix].key == kTombWord)
            store_->throw_corrupt("index slot " + std::to_string(s) + " points at no entry");
        ++full;
    }
    std::uint64_t live = 0;
    for (std::uint64_t i = 0; i < t.used; ++i) {
        if (ent[i].key == kTombWord) continue;
        ++live;
        if (!store_->word_ok(ent[i].key) || !store_->word_ok(ent[i].value))
            store_->throw_corrupt("entry " + std::to_string(i) + " has a damaged key or value record");
        if (is_table_ref(ent[i].value)) child(ent[i].value).verify_at(depth + 1);
        WordBuf kb, vb;
        const std::string_view k = store_->view(&ent[i].key, kb);
        const std::string_view v = store_->view(&ent[i].value, vb);
        try {
            (void)codec::skip(k, 0);
            (void)codec::skip(v, 0);
        } catch (const Error&) {
            store_->throw_corrupt("entry " + std::to_string(i) + " holds a malformed encoding");
        }
        if (!canonical_key(ent[i].key, k))
            store_->throw_corrupt("entry " + std::to_string(i) + " has a key in a non-canonical encoding (lookups cannot find it)");
        std::uint64_t slot = 0;
        if (find_slot_in(t, k, hash64(k.data(), k.size()), &slot) != i ||
            grp[slot / kGroup].ctrl[slot % kGroup] != (hash64(k.data(), k.size()) & 0x7F))
            store_->throw_corrupt("entry " + std::to_string(i) + " is not findable through the index");
    }
    if (live != h->live || full != h->live)
        store_->throw_corrupt("live count " + std::to_string(h->live) + " disagrees with entries (" + std::to_string(live) +
                              ") or index (" + std::to_string(full) + ")");
}

void HashTable::recover() {
    if (cell_ == Store::kRootCell) recover_snapshots(*store_);
    recover_at(0);
    if (cell_ == Store::kRootCell) retire_orphaned_tables(*store_, *this);  // before the arena's rebuild
}

void HashTable::enumerate(const alloc::Arena::Visit& visit) const {
    enumerate_at(visit, 0);
    if (cell_ == Store::kRootCell) enumerate_versions(*store_, visit);
}

void HashTable::recover_at(int depth) {
    if (depth > kMaxNesting) store_->throw_corrupt("nested tables deeper than " + std::to_string(kMaxNesting));
    check_root();
    redo_log();  // a commit published before the writer died is applied whole
    // rehash() copies every non-tombstone entry and recounts: a half-inserted entry (written, not yet in
    // the index) is kept, a half-erased one (out of the index, not yet a tombstone) comes back.
    rehash(header()->used, true);
    const EntrySlot* ent = entries();
    for (std::uint64_t i = 0; i < header()->used; ++i)
        if (ent[i].key != kTombWord && is_table_ref(ent[i].value)) child(ent[i].value).recover_at(depth + 1);
}

void HashTable::destroy() { destroy_at(0); }

void HashTable::destroy_at(int depth) noexcept {
    if (depth > kMaxNesting) return;  // a cycle from damage: leak rather than loop
    const std::uint64_t off = root();
    try {
        check_root();
    } catch (...) {
        return;  // damaged: leak it (verify() reports it)
    }
    const TableHeader* h = header();
    const std::uint64_t cap = h->capacity;
    const std::uint64_t used = h->used;
    const EntrySlot* ent = entries();
    for (std::uint64_t i = 0; i < used; ++i) {
        if (ent[i].key == kTombWord) continue;
        store_->release(ent[i].key);
        if (is_table_ref(ent[i].value)) {
            const std::uint64_t cell = table_ref_cell(ent[i].value);
            if (cell % 16 == 0 && store_->region().in_bounds(cell, sizeof(CellRecord))) {
                HashTable(store_, cell).destroy_at(depth + 1);
                store_->arena().free(cell, sizeof(CellRecord));
            }
        } else {
            store_->release(ent[i].value);
        }
    }
    store_->arena().free(off, table_bytes(cap));
}

void HashTable::repair() {
    if (cell_ == Store::kRootCell) reset_snapshots(*store_);  // no process attached: no snapshot is open
    repair_at(0);
    store_->arena().rebuild([this](const alloc::Arena::Visit& v) { enumerate(v); });
}

void HashTable::repair_at(int depth) {
    if (depth > kMaxNesting) store_->throw_corrupt("nested tables deeper than " + std::to_string(kMaxNesting));
    check_root();
    redo_log();
    TableHeader* h = header();
    Group* grp = groups();
    EntrySlot* ent = entries();
    init_groups(grp, h->capacity);
    const std::uint64_t mask = h->capacity / kGroup - 1;
    std::uint64_t live = 0;
    for (std::uint64_t i = 0; i < h->used; ++i) {
        if (ent[i].key == kTombWord) continue;
        bool ok = store_->word_ok(ent[i].key) && store_->word_ok(ent[i].value);
        std::string_view k;
        WordBuf kb, vb;
        if (ok) {
            k = store_->view(&ent[i].key, kb);
            try {
                (void)codec::skip(k, 0);
                (void)codec::skip(store_->view(&ent[i].value, vb), 0);
            } catch (const Error&) {
                ok = false;
            }
        }
        // A key must be in its one canonical form, or lookups (which encode canonically) never find it.
        if (ok && !canonical_key(ent[i].key, k)) ok = false;
        const std::uint64_t hv = ok ? hash64(k.data(), k.size()) : 0;
        if (!ok) {
            ent[i].key = kTombWord;  // dropped; its records are reclaimed by the arena rebuild
            continue;
        }
        std::uint64_t dup_slot = 0;
        if (const std::uint64_t j = find_slot(k, hv, &dup_slot); j != kNotFound) {
            // A key twice: the later entry is the later write (an erase and re-insert whose erase was lost
            // with a power loss, or damage). Keep it, at the earlier one's index slot.
            ent[j].key = kTombWord;
            grp[dup_slot / kGroup].index[dup_slot % kGroup] = static_cast<std::uint32_t>(i);
            continue;
        }
        const std::uint64_t slot = free_slot(grp, mask, hv);
        grp[slot / kGroup].index[slot % kGroup] = static_cast<std::uint32_t>(i);
        grp[slot / kGroup].ctrl[slot % kGroup] = static_cast<std::uint8_t>(hv & 0x7F);
        ++live;
    }
    for (std::uint64_t g = 0; g <= mask; ++g) seal(grp[g]);
    h->live = live;
    seal_counters(h);
    // Nothing past `used` may look like an entry: a write lost in a power loss can have left one there,
    // and a later insert's `used` could then reach the disk without the entry that belongs to it.
    std::memset(ent + h->used, 0, 16 * (h->entries_cap - h->used));
    for (std::uint64_t i = 0; i < h->used; ++i) {
        if (ent[i].key == kTombWord || !is_table_ref(ent[i].value)) continue;
        try {
            child(ent[i].value).repair_at(depth + 1);
        } catch (const FormatError&) {
            ent[i].key = kTombWord;  // an unrepairable child is dropped with its entry (reclaimed below)
            h->live -= 1;
            seal_counters(h);
        }
    }
}

}  // namespace mmstore::containers
