// List transactions on a Sequence: the write set (SequenceTxn) and the O(changes) commit by a published
// commit log (Sequence::commit_words, checked_log, redo_log). docs/design.md, "List transactions".
#include "mmstore/containers/sequence_txn.hpp"

#include "mmstore/containers/snapshot.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <unordered_set>

namespace mmstore::containers {

namespace {

std::uint64_t log_bytes(std::uint64_t slots) noexcept { return sizeof(SeqLogHeader) + slots * sizeof(SeqLogSlot); }

std::uint64_t log_checksum(const SeqLogHeader* lh) noexcept {
    const std::uint64_t head = hash64(lh, offsetof(SeqLogHeader, checksum));
    const std::uint64_t body = hash64(lh + 1, lh->slots * sizeof(SeqLogSlot));
    return head ^ (body * 0x9E3779B97F4A7C15ULL);
}

}  // namespace

// ---- Sequence: reading through a published log ----------------------------------------------------------

Sequence::View Sequence::checked_log(const SequenceHeader* h, std::uint64_t cap, std::uint64_t log) const {
    const auto& r = store_->region();
    if (!r.in_bounds(log, sizeof(SeqLogHeader))) r.refresh();
    if (log % 16 != 0 || !r.in_bounds(log, sizeof(SeqLogHeader))) store_->throw_corrupt("list commit log offset out of bounds");
    const auto* lh = r.at<const SeqLogHeader>(log);
    const std::uint64_t slots = __atomic_load_n(&lh->slots, __ATOMIC_RELAXED);
    const std::uint64_t count1 = __atomic_load_n(&lh->count1, __ATOMIC_RELAXED);
    if (__atomic_load_n(&lh->magic, __ATOMIC_RELAXED) != kSeqLogMagic || slots < 2 || (slots & (slots - 1)) != 0 ||
        slots > (std::uint64_t{1} << 34) || !r.in_bounds(log, log_bytes(slots)) || count1 > cap)
        store_->throw_corrupt("list commit log at offset " + std::to_string(log) + " is out of range");
    return {h, count1, lh, slots};
}

const std::uint64_t* Sequence::View::slot_logged(std::uint64_t i) const noexcept {
    const std::uint64_t slots = log_slots;  // validated by checked_log
    const auto* s = reinterpret_cast<const SeqLogSlot*>(log + 1);
    for (std::uint64_t k = seq_log_home(i, slots), n = 0; n < slots; k = (k + 1) & (slots - 1), ++n) {
        const std::uint64_t p = __atomic_load_n(&s[k].pos1, __ATOMIC_RELAXED);
        if (p == 0) break;
        if (p == i + 1) return &s[k].word;
    }
    return words() + i;
}

// ---- Sequence: commit -----------------------------------------------------------------------------------

void Sequence::commit_words(std::uint64_t n1, std::span<const std::pair<std::uint64_t, std::uint64_t>> overwrites,
                            std::span<const std::uint64_t> appends) {
    const std::uint64_t n0 = header()->count;
    if (n1 > n0 && appends.size() != n1 - n0) throw std::logic_error("commit_words: appends do not make n1");
    const std::uint64_t k = overwrites.size();
    // Make room, and keep the durability rules (docs/design.md "Durability", 4 and 5): a committed element
    // never gets a record written since the commit in place, and appends never land in committed slots.
    // Both are done by a block copy published with one store, which readers cannot tell from the old block.
    bool copy = false;
    if (!store_->region().is_volatile()) {
        const std::uint64_t committed = header()->committed;
        if (n1 > n0 && n0 < committed) copy = true;
        for (const auto& [pos, w] : overwrites)
            if (pos < committed && !is_inline(w)) copy = true;
    }
    if (n1 > header()->capacity) reserve(std::max(n1, header()->capacity * 2));  // a new block: none committed
    else if (copy) copy_on_write();

    // 1. Prepare, invisible: the log (may grow the file), then the appended words past `count`.
    std::uint64_t log = 0, slots = 2;
    if (k > 0) {
        while (slots < 2 * k) slots *= 2;
        log = store_->arena().allocate(log_bytes(slots));
        auto* lh = store_->region().at<SeqLogHeader>(log);
        auto* ls = reinterpret_cast<SeqLogSlot*>(lh + 1);
        std::memset(ls, 0, slots * sizeof(SeqLogSlot));
        for (const auto& [pos, w] : overwrites) {
            std::uint64_t s = seq_log_home(pos, slots);
            while (ls[s].pos1 != 0) s = (s + 1) & (slots - 1);
            ls[s] = SeqLogSlot{pos + 1, w};
        }
        *lh = SeqLogHeader{kSeqLogMagic, slots, k, n0, n1, {0, 0}, 0};
        lh->checksum = log_checksum(lh);
    }
    SequenceHeader* h = header();
    auto* words = reinterpret_cast<std::uint64_t*>(h + 1);
    for (std::uint64_t i = 0; i < appends.size(); ++i) __atomic_store_n(&words[n0 + i], appends[i], __ATOMIC_RELAXED);

    if (k == 0) {
        // 2'. Only the count changes below the old end: one store of it publishes the whole commit.
        __atomic_store_n(&h->count, n1, __ATOMIC_RELEASE);
        seal_counters(h);
    } else {
        // 2. Publish: one store. A lock-free read that began before it sees `reclaims` move and reads again.
        __atomic_store_n(&h->pending_log, log, __ATOMIC_RELEASE);
        store_->region().bump_reclaims();
        // 3. Apply in place; readers take these positions and the count from the log meanwhile.
        for (const auto& [pos, w] : overwrites) __atomic_store_n(&words[pos], w, __ATOMIC_RELEASE);
        __atomic_store_n(&h->count, n1, __ATOMIC_RELEASE);
        seal_counters(h);
        // 4. Retire: readers go back to the block, which now holds every change.
        __atomic_store_n(&h->pending_log, 0, __ATOMIC_RELEASE);
    }
    if (n1 < n0 || k > 0) store_->region().bump_reclaims();  // a reader still in the log or the dropped tail retries
    if (n1 < n0) std::memset(words + n1, 0, (n0 - n1) * elem_size_);  // rule 6: nothing stale past the end
    if (k > 0) store_->arena().free(log, log_bytes(slots));
}

void Sequence::redo_log() noexcept {
    SequenceHeader* h = header();
    const std::uint64_t log = h->pending_log;
    if (log == 0) return;
    const auto& r = store_->region();
    bool ok = log % 16 == 0 && r.in_bounds(log, sizeof(SeqLogHeader));
    const SeqLogHeader* lh = ok ? r.at<const SeqLogHeader>(log) : nullptr;
    ok = ok && lh->magic == kSeqLogMagic && lh->slots >= 2 && (lh->slots & (lh->slots - 1)) == 0 &&
         lh->slots <= (std::uint64_t{1} << 34) && r.in_bounds(log, log_bytes(lh->slots)) && lh->count1 <= h->capacity &&
         lh->checksum == log_checksum(lh);
    if (ok) {
        auto* words = reinterpret_cast<std::uint64_t*>(h + 1);
        const auto* ls = reinterpret_cast<const SeqLogSlot*>(lh + 1);
        for (std::uint64_t i = 0; i < lh->slots; ++i)
            if (ls[i].pos1 != 0 && ls[i].pos1 <= lh->count1) __atomic_store_n(&words[ls[i].pos1 - 1], ls[i].word, __ATOMIC_RELEASE);
        __atomic_store_n(&h->count, lh->count1, __ATOMIC_RELEASE);
        seal_counters(h);
    }
    // Count first, then the log word: a reader sees the log's view or the block's, both the same list. (A
    // damaged log is dropped; verify() reports what that leaves.) The old words and the log block are
    // unreachable now: the recovery's mark and sweep frees them.
    __atomic_store_n(&h->pending_log, 0, __ATOMIC_RELEASE);
    store_->region().bump_reclaims();
}

// ---- SequenceTxn ----------------------------------------------------------------------------------------

SequenceTxn::SequenceTxn(Sequence& seq, Store& store) : seq_(seq), store_(store) {
    base_n_ = seq_.size();
    prefix_ = base_n_;
    change_ = store_.change_count();
}

void SequenceTxn::check_base() const {
    if (store_.change_count() != change_ || seq_.size() != base_n_)
        throw_error(ErrorCode::kInvalidArgument, store_.path(),
                    "the list was changed outside its open transaction (write through the transaction object)");
}

const std::uint64_t* SequenceTxn::slot(std::uint64_t i) const {
    if (i < prefix_) {
        const auto it = over_.find(i);
        return it != over_.end() ? &it->second : reinterpret_cast<const std::uint64_t*>(seq_.at(i));
    }
    return &tail_[i - prefix_];
}

std::string_view SequenceTxn::get(std::uint64_t i, WordBuf& buf) const {
    check_base();
    return store_.view(slot(i), buf);
}

std::uint64_t SequenceTxn::put(std::string_view enc) {
    check_base();
    const std::uint64_t w = store_.put(enc);
    if (is_inline(w)) return w;  // nothing to free
    try {
        allocated_.push_back(w);
    } catch (...) {
        store_.release(w);
        throw;
    }
    return w;
}

void SequenceTxn::materialize(std::uint64_t i) {
    if (i >= prefix_) return;
    std::vector<std::uint64_t> moved;
    moved.reserve(prefix_ - i + tail_.size());
    for (std::uint64_t p = i; p < prefix_; ++p) {
        const auto it = over_.find(p);
        if (it != over_.end()) {
            moved.push_back(it->second);
            over_.erase(it);
        } else {
            moved.push_back(*reinterpret_cast<const std::uint64_t*>(seq_.at(p)));
        }
    }
    moved.insert(moved.end(), tail_.begin(), tail_.end());
    tail_ = std::move(moved);
    prefix_ = i;
}

void SequenceTxn::set(std::uint64_t i, std::string_view enc) {
    const std::uint64_t w = put(enc);
    if (i < prefix_) over_[i] = w;
    else tail_[i - prefix_] = w;
}

void SequenceTxn::push_back(std::string_view enc) {
    const std::uint64_t w = put(enc);
    tail_.push_back(w);  // if this throws, the record stays on allocated_ and is freed with the transaction
}

void SequenceTxn::insert(std::uint64_t i, std::string_view enc) {
    const std::uint64_t w = put(enc);
    materialize(i);
    tail_.insert(tail_.begin() + static_cast<std::ptrdiff_t>(i - prefix_), w);
}

void SequenceTxn::pop_back() {
    check_base();
    if (!tail_.empty()) {
        tail_.pop_back();
    } else if (prefix_ > 0) {
        --prefix_;
        over_.erase(prefix_);
    }
}

void SequenceTxn::erase(std::uint64_t i) {
    check_base();
    if (i + 1 == size()) {
        pop_back();
        return;
    }
    materialize(i);
    tail_.erase(tail_.begin() + static_cast<std::ptrdiff_t>(i - prefix_));
}

void SequenceTxn::splice(std::uint64_t start, std::uint64_t stop, std::span<const std::string_view> encs) {
    check_base();
    std::vector<std::uint64_t> ws;
    ws.reserve(encs.size());
    for (const std::string_view e : encs) ws.push_back(put(e));
    materialize(start);
    const auto b = tail_.begin() + static_cast<std::ptrdiff_t>(start - prefix_);
    const auto e = tail_.begin() + static_cast<std::ptrdiff_t>(stop - prefix_);
    tail_.insert(tail_.erase(b, e), ws.begin(), ws.end());
}

void SequenceTxn::clear() {
    check_base();
    prefix_ = 0;
    over_.clear();
    tail_.clear();
}

std::size_t SequenceTxn::savepoint() {
    saves_.push_back(Saved{prefix_, over_, tail_, allocated_.size()});
    return saves_.size() - 1;
}

void SequenceTxn::release_since(std::size_t n) noexcept {
    for (std::size_t i = n; i < allocated_.size(); ++i) store_.release(allocated_[i]);
    allocated_.resize(n);
}

void SequenceTxn::rollback_to(std::size_t mark) {
    if (mark >= saves_.size()) return;
    Saved& s = saves_[mark];
    prefix_ = s.prefix;
    over_ = std::move(s.over);
    tail_ = std::move(s.tail);
    release_since(s.allocated);
    saves_.resize(mark);
}

void SequenceTxn::release_savepoint(std::size_t mark) noexcept {
    if (mark < saves_.size()) saves_.resize(mark);
}

void SequenceTxn::commit() {
    if (!active_) return;
    check_base();
    const std::uint64_t n0 = base_n_;
    const std::uint64_t n1 = size();
    const auto* base = reinterpret_cast<const std::uint64_t*>(seq_.data());
    std::vector<std::pair<std::uint64_t, std::uint64_t>> overwrites;
    std::vector<std::uint64_t> appends;
    overwrites.reserve(over_.size());
    for (const auto& [pos, w] : over_)
        if (base[pos] != w) overwrites.emplace_back(pos, w);
    const std::uint64_t low = std::min(n0, n1);
    for (std::uint64_t p = prefix_; p < n1; ++p) {
        const std::uint64_t w = tail_[p - prefix_];
        if (p >= n0) appends.push_back(w);
        else if (p < low && base[p] != w) overwrites.emplace_back(p, w);
    }
    std::sort(overwrites.begin(), overwrites.end());
    // What the commit drops, to free once it is published: the old words it overwrites or cuts off, and the
    // records this transaction wrote that did not end up in the list -- except words the list still holds.
    std::unordered_set<std::uint64_t> kept;
    for (const auto& [pos, w] : over_)
        if (!is_inline(w)) kept.insert(w);
    for (const std::uint64_t w : tail_)
        if (!is_inline(w)) kept.insert(w);
    // The list's own words are retired while a snapshot is open (it may read them); the transaction's own
    // records were never visible, so they are freed.
    std::vector<std::uint64_t> dropped, unused;
    for (const auto& [pos, w] : overwrites)
        if (!is_inline(base[pos]) && !kept.count(base[pos])) dropped.push_back(base[pos]);
    for (std::uint64_t p = n1; p < n0; ++p)
        if (!is_inline(base[p]) && !kept.count(base[p])) dropped.push_back(base[p]);
    for (const std::uint64_t w : allocated_)
        if (!kept.count(w)) unused.push_back(w);
    std::sort(dropped.begin(), dropped.end());
    dropped.erase(std::unique(dropped.begin(), dropped.end()), dropped.end());

    VersionScope vs(store_);
    if (vs.recording()) {  // before-images first: O(changes)
        record_list(store_, seq_, 0, 0, dropped);
        for (const auto& [pos, w] : overwrites) record_list(store_, seq_, pos, pos + 1);
        if (n1 < n0) record_list(store_, seq_, n1, n0);
    }
    seq_.commit_words(n1, overwrites, appends);  // throws with nothing changed: still active
    for (const std::uint64_t w : dropped) release_word(store_, w);
    for (const std::uint64_t w : unused) store_.release(w);
    if (n1 != n0 || !overwrites.empty()) store_.bump_mutations();
    allocated_.clear();
    end();
}

void SequenceTxn::rollback() noexcept {
    if (!active_) return;
    release_since(0);
    end();
}

void SequenceTxn::end() noexcept {
    over_.clear();
    tail_.clear();
    saves_.clear();
    active_ = false;
}

}  // namespace mmstore::containers
