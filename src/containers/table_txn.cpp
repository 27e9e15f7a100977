// Transactions on a HashTable: the write set (TableTxn) and the O(k) commit by a published commit log
// (HashTable::commit_batch, find_in_log, redo_log). docs/design.md, "Transactions and snapshots".
#include "mmstore/containers/table_txn.hpp"
#include "mmstore/containers/snapshot.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <span>
#include <utility>

namespace mmstore::containers {

namespace {

std::uint64_t log_checksum(const CommitLogHeader* lh) noexcept { return hash64(lh, offsetof(CommitLogHeader, checksum)); }

std::uint64_t log_bytes(std::uint64_t slots) noexcept { return sizeof(CommitLogHeader) + slots * sizeof(CommitLogSlot); }

}  // namespace

// ---- HashTable: reading through a published log ---------------------------------------------------------

std::uint64_t HashTable::find_in_log(const Snapshot& t, std::uint64_t log, std::string_view key, std::uint64_t hash) const {
    const auto& r = store_->region();
    if (!r.in_bounds(log, sizeof(CommitLogHeader))) r.refresh();
    if (log % 16 != 0 || !r.in_bounds(log, sizeof(CommitLogHeader))) store_->throw_corrupt("commit log offset out of bounds");
    const auto* lh = r.at<const CommitLogHeader>(log);
    const std::uint64_t slots = __atomic_load_n(&lh->slots, __ATOMIC_RELAXED);
    if (slots == 0 || (slots & (slots - 1)) != 0 || slots > (std::uint64_t{1} << 34) || !r.in_bounds(log, log_bytes(slots)))
        store_->throw_corrupt("commit log at offset " + std::to_string(log) + " is out of range");
    const auto* s = reinterpret_cast<const CommitLogSlot*>(lh + 1);
    const EntrySlot* ent = entries_of(t);
    const std::uint64_t cap = entries_cap_of(t.capacity);
    const std::uint64_t inline_key = inline_word(key);
    for (std::uint64_t i = hash & (slots - 1), n = 0; n < slots; i = (i + 1) & (slots - 1), ++n) {
        const std::uint32_t e = s[i].entry;
        if (e == kLogEmpty) return kNotInLog;
        if (s[i].hash != hash) continue;
        if (e >= cap) store_->throw_corrupt("commit log entry out of range");
        const EntrySlot& es = ent[e];
        const std::uint64_t kw = __atomic_load_n(&es.key, __ATOMIC_ACQUIRE);
        if (inline_key != 0 ? kw == inline_key : (!is_inline(kw) && key_equals(es, key)))
            return __atomic_load_n(&es.value, __ATOMIC_ACQUIRE) == kTombWord ? kNotFound : e;
    }
    return kNotInLog;
}

std::uint64_t HashTable::size_checked() const {
    const Snapshot t = checked();
    const std::uint64_t log = __atomic_load_n(&t.h->pending_log, __ATOMIC_ACQUIRE);
    if (log == 0) [[likely]] {
        // The check first, then the counters: x86 keeps stores and loads in order, so the counters read
        // are at least as new as the state the check seals or announces (a writer stores the seal last).
        const TableHeader* h = t.h;
        const std::uint64_t check = __atomic_load_n(&h->check, __ATOMIC_ACQUIRE);
        const std::uint64_t used = __atomic_load_n(&h->used, __ATOMIC_ACQUIRE);
        const std::uint64_t live = __atomic_load_n(&h->live, __ATOMIC_ACQUIRE);
        const std::uint64_t ecap = entries_cap_of(t.capacity);
        const std::uint64_t sealed = counters_check(t.capacity, ecap, used, live);
        if (check == sealed) [[likely]] return live;
        // An insert between its store of `used` (the key is visible) and of `live`.
        if (used > 0 && check == counters_check(t.capacity, ecap, used - 1, live)) return live + 1;
        // An erase that announced its entry and has not yet stored `live`: the key is gone once its
        // tombstone is stored.
        if (const std::uint64_t a = check ^ sealed; (a & ~kErasePosMask) == kEraseTag) {
            const std::uint64_t pos = a & kErasePosMask;
            if (pos < std::min(used, ecap) && live > 0 &&
                __atomic_load_n(&entries_of(t)[pos].key, __ATOMIC_ACQUIRE) == kTombWord)
                return live - 1;
        }
        return live;  // sealed since, or counters a writer is still changing: as checked() trusted them
    }
    const auto& r = store_->region();
    if (log % 16 != 0 || !r.in_bounds(log, sizeof(CommitLogHeader))) store_->throw_corrupt("commit log offset out of bounds");
    return r.at<const CommitLogHeader>(log)->live;
}

// ---- HashTable: commit ----------------------------------------------------------------------------------

bool HashTable::commit_batch(std::span<const BatchWrite> writes) {
    struct Item {
        std::uint64_t hash;
        std::uint64_t q;   // current position (kNotFound: insert)
        std::uint64_t kw;  // key word of the new entry
        std::uint64_t vw;  // value word, kTombWord to erase
        std::size_t w;     // index into writes
    };
    // Up to 8 writes (a small transaction) resolve into a stack array, more into a vector.
    std::array<Item, 8> small;
    std::vector<Item> big;
    if (writes.size() > small.size()) big.resize(writes.size());
    Item* const buf = writes.size() > small.size() ? big.data() : small.data();
    std::span<Item> items;
    auto resolve = [&] {
        // Inserts first, in write order: they take the positions [used, used + inserts) they keep. The
        // others are gathered from the back of buf, then moved down behind the inserts in write order.
        std::size_t ins = 0, back = writes.size();
        for (std::size_t i = 0; i < writes.size(); ++i) {
            const std::uint64_t q = find_slot(writes[i].key, writes[i].hash, nullptr);
            if (q == kNotFound && !writes[i].value) continue;  // erasing an absent key
            buf[q == kNotFound ? ins++ : --back] = Item{writes[i].hash, q, 0, 0, i};
        }
        std::reverse(buf + back, buf + writes.size());
        std::move(buf + back, buf + writes.size(), buf + ins);
        items = std::span<Item>(buf, ins + (writes.size() - back));
    };
    resolve();
    if (items.empty()) return false;
    std::optional<VersionScope> vs;
    if (versioned()) {
        vs.emplace(*store_);
        if (vs->recording())  // before-images first: O(writes)
            for (const Item& it : items) {
                if (it.q == kNotFound) {
                    record_before(*store_, *this, writes[it.w].key, std::nullopt);
                } else {
                    record_entry(*store_, *this, it.q);
                }
            }
    }
    const std::uint64_t n = items.size();
    bool rebuild = header()->used + n > header()->entries_cap;
    if (!rebuild && !store_->region().is_volatile()) {
        // Rule 4 of "Durability": a committed entry never gets a record written after the commit in place.
        for (const Item& it : items)
            if (it.q != kNotFound && it.q < header()->committed && writes[it.w].value && inline_word(*writes[it.w].value) == 0)
                rebuild = true;
    }
    if (rebuild) {
        rehash(header()->live + n);  // published with one store like any rebuild; readers see no difference
        resolve();
    }
    const std::uint64_t inserts = static_cast<std::uint64_t>(
        std::count_if(items.begin(), items.end(), [](const Item& it) { return it.q == kNotFound; }));

    // 1. Prepare, invisible: records, then the log (allocations may grow the file: no pointers kept). The
    // log goes into the entries past the copies when they have room (no allocation, and cache lines the
    // commit writes anyway: with two processes committing in turn, the arena's free-list lines were the
    // misses), else into an arena block.
    std::uint64_t log = 0;
    std::uint64_t slots = 2;
    while (slots < 2 * n) slots *= 2;
    const std::uint64_t log_entries = log_bytes(slots) / sizeof(EntrySlot);
    bool log_in_table = false;
    try {
        for (Item& it : items) {
            const BatchWrite& w = writes[it.w];
            it.kw = it.q == kNotFound ? store_->put(w.key) : entries()[it.q].key;
            it.vw = w.value ? store_->put(*w.value) : kTombWord;
        }
        log_in_table = header()->used + n + log_entries <= header()->entries_cap;
        log = log_in_table ? entry_offset(header()->used + n) : store_->arena().allocate(log_bytes(slots));
    } catch (...) {
        for (const Item& it : items) {
            if (it.q == kNotFound && it.kw != 0) store_->release(it.kw);
            if (it.vw != 0 && it.vw != kTombWord) store_->release(it.vw);  // records only: children stay the caller's
        }
        throw;
    }
    TableHeader* h = header();
    const std::uint64_t used0 = h->used;
    EntrySlot* ent = entries();
    auto* lh = store_->region().at<CommitLogHeader>(log);
    auto* ls = reinterpret_cast<CommitLogSlot*>(lh + 1);
    for (std::uint64_t i = 0; i < slots; ++i) ls[i] = CommitLogSlot{0, kLogEmpty, 0};
    std::int64_t live = static_cast<std::int64_t>(h->live);
    for (std::uint64_t i = 0; i < n; ++i) {
        const Item& it = items[i];
        EntrySlot* e = ent + used0 + i;
        __atomic_store_n(&e->value, it.vw, __ATOMIC_RELEASE);
        __atomic_store_n(&e->key, it.kw, __ATOMIC_RELEASE);
        std::uint64_t s = it.hash & (slots - 1);
        while (ls[s].entry != kLogEmpty) s = (s + 1) & (slots - 1);
        ls[s] = CommitLogSlot{it.hash, static_cast<std::uint32_t>(used0 + i),
                              it.q == kNotFound ? 0u : static_cast<std::uint32_t>(it.q + 1)};
        if (it.q == kNotFound) ++live;
        else if (it.vw == kTombWord) --live;
    }
    *lh = CommitLogHeader{kCommitLogMagic, slots, n, used0, inserts, static_cast<std::uint64_t>(live), 0, 0};
    lh->checksum = log_checksum(lh);

    // 2. Publish: from this store on, every reader sees the whole commit.
    __atomic_store_n(&h->pending_log, log, __ATOMIC_RELEASE);
    // Consistent reads revalidate; this is also the change waiters wait for (the caller passes counted=true).
    // A plain store, not a locked add: only the write lock's holder changes the counter, and x86 keeps
    // stores in order, so no apply store below becomes visible before it. A locked add here waited for the
    // lock's cache line, which the waiter spinning on the lock keeps taking shared (perf: 30% of the
    // commit's time in two processes). The full barrier that orders it before the `waiters` load of
    // after_mutation() is the one in bump_reclaims() below.
    std::uint32_t* change = &store_->region().lock_slot()->change;
    __atomic_store_n(change, __atomic_load_n(change, __ATOMIC_RELAXED) + 1, __ATOMIC_RELEASE);

    // 3. Apply in place; readers answer these keys from the log meanwhile.
    try {
        __atomic_store_n(&h->used, used0 + inserts, __ATOMIC_RELEASE);
        for (std::uint64_t i = 0; i < inserts; ++i) {
            link_index(used0 + i, items[i].hash);
            h->live += 1;
        }
        seal_counters(h);
        for (std::uint64_t i = inserts; i < n; ++i) {
            const Item& it = items[i];
            if (it.vw == kTombWord) {
                erase_at(it.q);
            } else {
                EntrySlot* e = entries() + it.q;
                const std::uint64_t old = e->value;
                __atomic_store_n(&e->value, it.vw, __ATOMIC_RELEASE);
                release_value(old);
            }
        }
    } catch (...) {
        // Only damage gets here (an entry missing from the index): finish from the log and re-index.
        recover();
        throw;
    }
    // As plain writes do: only a change of the key set counts (iterators check it), and erase_at() counted
    // the erases; overwrites do not count.
    if (inserts != 0) store_->bump_mutations();

    // 4. Retire the log: readers go back to the table, which now holds every change.
    __atomic_store_n(&h->pending_log, 0, __ATOMIC_RELEASE);
    store_->region().bump_reclaims();  // a reader still probing the log reads again
    const std::uint64_t top = std::max(header()->used, used0 + inserts);
    const std::uint64_t end = used0 + n + (log_in_table ? log_entries : 0);  // the copies, and the log if there
    if (end > top) std::memset(entries() + top, 0, sizeof(EntrySlot) * (end - top));  // rule 6
    if (!log_in_table) store_->arena().free(log, log_bytes(slots));
    return true;
}

void HashTable::redo_log() noexcept {
    TableHeader* h = header();
    const std::uint64_t log = h->pending_log;
    if (log == 0) return;
    h->pending_log = 0;
    const auto& r = store_->region();
    if (log % 16 != 0 || !r.in_bounds(log, sizeof(CommitLogHeader))) return;  // damaged: dropped (verify reports the rest)
    const auto* lh = r.at<const CommitLogHeader>(log);
    if (lh->magic != kCommitLogMagic || lh->checksum != log_checksum(lh) || lh->slots == 0 ||
        (lh->slots & (lh->slots - 1)) != 0 || !r.in_bounds(log, log_bytes(lh->slots)) ||
        lh->used0 + lh->items > h->entries_cap || lh->inserts > lh->items)
        return;
    EntrySlot* ent = entries();
    const auto* ls = reinterpret_cast<const CommitLogSlot*>(lh + 1);
    if (h->used < lh->used0 + lh->inserts) h->used = lh->used0 + lh->inserts;
    seal_counters(h);  // the re-index of the recovery that follows recounts `live` and seals again
    for (std::uint64_t i = 0; i < lh->slots; ++i) {
        if (ls[i].entry == kLogEmpty || ls[i].old == 0) continue;  // an insert: counted by `used` above
        const std::uint64_t e = ls[i].entry;
        const std::uint64_t q = ls[i].old - 1;
        if (e >= h->entries_cap || q >= h->used || ent[q].key != ent[e].key) continue;  // already erased
        if (ent[e].value == kTombWord) ent[q].key = kTombWord;
        else ent[q].value = ent[e].value;  // the old record is reclaimed by the recovery's mark and sweep
    }
    const std::uint64_t top = std::max(h->used, lh->used0 + lh->inserts);
    std::uint64_t end = lh->used0 + lh->items;
    // A log in the table's own entries (past the copies) is zeroed with them; a log block is unreachable
    // now, and the recovery's mark and sweep frees it.
    const std::uint64_t log_entries = log_bytes(lh->slots) / sizeof(EntrySlot);
    if (log == entry_offset(end) && end + log_entries <= h->entries_cap) end += log_entries;
    if (end > top) std::memset(ent + top, 0, sizeof(EntrySlot) * (end - top));
}

// ---- TableTxn -------------------------------------------------------------------------------------------

void TableTxn::begin() {
    base_size_ = size_ = table_.size();
    active_ = true;
}

namespace {
// The calling thread's last freed TableTxn block (operator new/delete), freed at thread exit. (A TableTxn
// freed by a thread-exit destructor that runs after this one leaks its block: one block, once.)
struct SpareBlock {
    void* p = nullptr;
    ~SpareBlock() { ::operator delete(p); }
};
thread_local SpareBlock t_spare;
}  // namespace

void* TableTxn::operator new(std::size_t bytes) {
    if (bytes == sizeof(TableTxn) && t_spare.p != nullptr) return std::exchange(t_spare.p, nullptr);
    return ::operator new(bytes);
}

void TableTxn::operator delete(void* p, std::size_t bytes) noexcept {
    if (bytes == sizeof(TableTxn) && t_spare.p == nullptr) {
        t_spare.p = p;
        return;
    }
    ::operator delete(p);
}

// ---- the write set: inline, then a map ----

TableTxn::Slot* TableTxn::find(std::string_view key) noexcept {
    return const_cast<Slot*>(static_cast<const TableTxn*>(this)->find(key));
}

const TableTxn::Slot* TableTxn::find(std::string_view key) const noexcept {
    if (spilled_) {
        const auto it = map_.find(std::string(key));  // C++20 heterogeneous lookup needs a transparent hash
        return it == map_.end() ? nullptr : &it->second;
    }
    for (std::size_t i = 0; i < n_inline_; ++i)
        if (inline_[i].key == key) return &inline_[i].slot;
    return nullptr;
}

TableTxn::Slot* TableTxn::insert(std::string_view key, Slot slot) {
    if (!spilled_ && n_inline_ < kInline) {
        inline_[n_inline_].key.assign(key);
        inline_[n_inline_].slot = std::move(slot);
        return &inline_[n_inline_++].slot;
    }
    if (!spilled_) {
        // The (kInline + 1)-th key: the write set moves into the map for the rest of the transaction. Copied,
        // not moved, so that an exception (bad_alloc) leaves the inline set whole.
        std::unordered_map<std::string, Slot> m;
        m.reserve(2 * kInline);
        for (std::size_t i = 0; i < n_inline_; ++i) m.emplace(inline_[i].key, inline_[i].slot);
        m.emplace(std::string(key), std::move(slot));
        map_ = std::move(m);
        for (std::size_t i = 0; i < n_inline_; ++i) inline_[i].slot.value.reset();
        n_inline_ = 0;
        spilled_ = true;
        return &map_.find(std::string(key))->second;
    }
    return &map_.emplace(std::string(key), std::move(slot)).first->second;
}

void TableTxn::remove(std::string_view key) noexcept {
    if (spilled_) {
        map_.erase(std::string(key));
        return;
    }
    for (std::size_t i = 0; i < n_inline_; ++i) {
        if (inline_[i].key != key) continue;
        if (i + 1 != n_inline_) std::swap(inline_[i], inline_[n_inline_ - 1]);  // order lives in Slot::order
        --n_inline_;
        inline_[n_inline_].slot.value.reset();
        return;
    }
}

void TableTxn::clear_writes() noexcept {
    for (std::size_t i = 0; i < n_inline_; ++i) inline_[i].slot.value.reset();
    n_inline_ = 0;
    map_.clear();
    spilled_ = false;
    journal_.clear();
    journaling_ = false;
    size_ = base_size_;
    unknown_ = 0;
}

void TableTxn::journal(std::string_view key, const Slot* before) {
    if (!journaling_) return;
    journal_.push_back(Undo{std::string(key), before ? std::optional<Slot>(*before) : std::nullopt});
}

std::uint64_t TableTxn::size() const {
    if (unknown_ > 0) resolve_unknown();
    return size_;
}

void TableTxn::resolve_unknown() const {
    for_each([&](const std::string& k, const Slot& s) {
        if (s.in_table != InTable::kUnknown) return;
        s.in_table = table_.find(k, s.hash) != kNotFound ? InTable::kYes : InTable::kNo;
        size_ += contribution(s);
    });
    unknown_ = 0;
}

void TableTxn::recount() noexcept {
    size_ = base_size_;
    unknown_ = 0;
    for_each([&](const std::string&, const Slot& s) {
        if (s.in_table == InTable::kUnknown) ++unknown_;
        else size_ += contribution(s);
    });
}

// ---- reads and writes ----

TableTxn::Own TableTxn::own(std::string_view key, std::string* value) const {
    const Slot* s = find(key);
    if (s == nullptr) return Own::kNone;
    if (!s->value) return Own::kErased;
    if (value) *value = *s->value;
    return Own::kSet;
}

std::optional<std::string> TableTxn::get(std::string_view key) const {
    std::string v;
    switch (own(key, &v)) {
        case Own::kSet: return v;
        case Own::kErased: return std::nullopt;
        case Own::kNone: break;
    }
    const std::uint64_t pos = table_.find(key);
    if (pos == kNotFound) return std::nullopt;
    WordBuf buf;
    return std::string(table_.value_at(pos, buf));
}

bool TableTxn::present(std::string_view key) const {
    switch (own(key)) {
        case Own::kSet: return true;
        case Own::kErased: return false;
        case Own::kNone: break;
    }
    return table_.find(key) != kNotFound;
}

bool TableTxn::contains(std::string_view key) const { return present(key); }

bool TableTxn::set(std::string_view key, std::string_view value) {
    // One write-set lookup and at most one table lookup.
    const std::uint64_t hash = hash64(key.data(), key.size());
    Slot* s = find(key);
    const bool was = s != nullptr ? s->value.has_value() : table_.find(key, hash) != kNotFound;
    write(key, hash, value, s, was ? InTable::kYes : InTable::kNo);
    return !was;
}

void TableTxn::put(std::string_view key, std::uint64_t hash, std::string_view value) {
    write(key, hash, value, find(key), InTable::kUnknown);
}

void TableTxn::write(std::string_view key, std::uint64_t hash, std::optional<std::string_view> value, Slot* s,
                     InTable fresh_in_table) {
    journal(key, s);
    if (s == nullptr) {
        try {
            s = insert(key, Slot{value ? std::optional<std::string>(std::in_place, *value) : std::nullopt,
                                 next_order_++, hash, fresh_in_table});
        } catch (...) {
            if (journaling_) journal_.pop_back();
            throw;
        }
        if (fresh_in_table == InTable::kUnknown) ++unknown_;
        else size_ += contribution(*s);
        return;
    }
    const bool known = s->in_table != InTable::kUnknown;
    if (known) size_ -= contribution(*s);
    if (value) s->value.emplace(*value);
    else s->value.reset();
    if (known) size_ += contribution(*s);
}

bool TableTxn::erase(std::string_view key) {
    if (!present(key)) return false;
    write(key, hash64(key.data(), key.size()), std::nullopt, find(key), InTable::kYes);
    return true;
}

void TableTxn::clear() {
    std::vector<std::string> keys;
    for (std::uint64_t i = 0; i < table_.end(); ++i) {
        if (!table_.occupied(i)) continue;
        WordBuf kb;
        keys.emplace_back(table_.key_at(i, kb));
    }
    resolve_unknown();
    for_each([&](const std::string& k, const Slot& s) {
        if (s.value && s.in_table == InTable::kNo) keys.push_back(k);
    });
    for (const std::string& k : keys) erase(k);
}

std::vector<std::pair<std::string, std::optional<std::string>>> TableTxn::writes() const {
    std::vector<std::pair<const std::string*, const Slot*>> by;
    by.reserve(count());
    for_each([&](const std::string& k, const Slot& s) { by.emplace_back(&k, &s); });
    std::sort(by.begin(), by.end(), [](const auto& a, const auto& b) { return a.second->order < b.second->order; });
    std::vector<std::pair<std::string, std::optional<std::string>>> out;
    out.reserve(by.size());
    for (const auto& [k, s] : by) out.emplace_back(*k, s->value);
    return out;
}

void TableTxn::adopt_child(std::string_view ref) { children_.push_back(inline_word(ref)); }

void TableTxn::rollback_to(std::size_t mark) {
    while (journal_.size() > mark) {
        Undo& u = journal_.back();
        if (u.before) {
            if (Slot* s = find(u.key)) *s = std::move(*u.before);
            else insert(u.key, std::move(*u.before));  // not reached: a journaled key keeps its slot
        } else {
            remove(u.key);
        }
        journal_.pop_back();
    }
    recount();
}

void TableTxn::destroy_unreferenced_children(bool all) noexcept {
    for (const std::uint64_t w : children_) {
        bool used = false;
        if (!all)
            for_each([&](const std::string&, const Slot& s) {
                if (s.value && inline_word(*s.value) == w) used = true;
            });
        if (used) continue;
        try {
            HashTable c = table_.child(w);
            c.destroy();
            table_.store()->arena().free(c.cell(), sizeof(CellRecord));
        } catch (...) {
            // a damaged reference: leak it (the next mark and sweep reclaims it)
        }
    }
    children_.clear();
}

bool TableTxn::commit() {
    if (!active_) return false;
    // Up to kInline writes are handed over from the stack; more from a vector.
    std::array<HashTable::BatchWrite, kInline> small;
    std::vector<HashTable::BatchWrite> big;
    const std::size_t n = count();
    if (n > kInline) big.reserve(n);
    std::size_t i = 0;
    for_each([&](const std::string& k, const Slot& s) {
        HashTable::BatchWrite w{k, s.hash,
                                s.value ? std::optional<std::string_view>(*s.value) : std::nullopt};
        if (n > kInline) big.push_back(w);
        else small[i++] = w;
    });
    const bool changed = table_.commit_batch(n > kInline ? std::span<const HashTable::BatchWrite>(big)
                                                         : std::span<const HashTable::BatchWrite>(small.data(), n));
    destroy_unreferenced_children(false);
    clear_writes();
    active_ = false;
    return changed;
}

void TableTxn::rollback() noexcept {
    if (!active_) return;
    destroy_unreferenced_children(true);
    clear_writes();
    active_ = false;
}

}  // namespace mmstore::containers
