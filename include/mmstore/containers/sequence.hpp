// mmstore/containers/sequence.hpp
//
// Sequence: a growable array of fixed-size elements in one arena block -- the engine under List (8-byte
// words: inline values or record offsets) and Vector<T> (trivially copyable T stored directly).
//
// Block layout (docs/format.md, "List"):  SequenceHeader (64 B) then capacity x elem_size bytes.
//
// Crash safety: push_back writes the element, then publishes it with one 8-byte store of `count`.
// Anything that moves elements (insert/erase in the middle, reorder, growth) builds a new block aside and
// switches the root with one store, so a kill never shows a half-shifted array. Element writes of 8 bytes
// or less are single stores; wider Vector<T> elements written in place can be torn by a kill (documented in
// vector.hpp). Views into the block stay valid until the next call that reallocates (growth, insert,
// erase, reorder, clear) -- like std::vector.
// Thread safety: none; writers hold the store's write lock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>
#include <span>
#include <vector>

#include "mmstore/containers/store.hpp"

namespace mmstore::containers {

struct SequenceHeader {
    std::uint64_t count;      // elements in use; published last
    std::uint64_t capacity;   // elements the block holds; immutable
    std::uint64_t elem_size;  // bytes per element; immutable
    // Elements [0, committed) belong to the newest commit: stamped with `count` by each commit while this
    // is the root (stamp_commit), 0 in a block built since. A write there that a power loss could tear from
    // its context -- a record written since the commit, or an append into a position popped since -- first
    // copies the block (docs/design.md, "Durability").
    std::uint64_t committed;
    // counters_check(count, capacity, elem_size, 0) (containers/word.hpp), re-sealed by every writer after
    // it changes count; readers verify it in checked(), so a damaged count (a list that looks shorter, or
    // longer) raises instead of being believed.
    std::uint64_t check;
    // Offset of a List transaction's commit log (SeqLogHeader) while the commit is applied, else 0
    // (docs/design.md, "List transactions"). Written by the committing writer; readers that find it set
    // take the count from the log and each position the log holds from the log.
    std::uint64_t pending_log;
    std::uint64_t reserved;
    std::uint64_t checksum;   // XXH3-64 of {capacity, elem_size}
};
static_assert(sizeof(SequenceHeader) == 64);
static_assert(offsetof(SequenceHeader, pending_log) == 40);

// The commit log of a List transaction (docs/format.md §5.1): a small open-addressing map position -> new
// word for the positions below min(count0, count1) that the commit overwrites, and the count after it.
// Appended elements are not in it: they are written past `count` in the block before the log is published.
struct SeqLogHeader {
    std::uint64_t magic;     // kSeqLogMagic
    std::uint64_t slots;     // a power of two >= 2 * items
    std::uint64_t items;     // overwritten positions
    std::uint64_t count0;    // count before the commit
    std::uint64_t count1;    // count after the commit (<= the block's capacity)
    std::uint64_t reserved[2];
    std::uint64_t checksum;  // XXH3-64 of the 56 bytes before it, combined with that of the slots (format.md §5.1)
};
static_assert(sizeof(SeqLogHeader) == 64);
struct SeqLogSlot {
    std::uint64_t pos1;  // position + 1; 0 = empty slot
    std::uint64_t word;  // the position's new word
};
static_assert(sizeof(SeqLogSlot) == 16);
inline constexpr std::uint64_t kSeqLogMagic = 0x474F4C5145534D4DULL;  // "MMSEQLOG"
// The log slot where position `pos` starts its probe.
inline std::uint64_t seq_log_home(std::uint64_t pos, std::uint64_t slots) noexcept {
    return ((pos + 1) * 0x9E3779B97F4A7C15ULL >> 20) & (slots - 1);
}

// Writers, after changing count.
inline void seal_counters(SequenceHeader* h) noexcept {
    __atomic_store_n(&h->check, counters_check(h->count, h->capacity, h->elem_size, 0), __ATOMIC_RELEASE);
}

class Sequence {
public:
    Sequence(Store* store, std::uint64_t elem_size) noexcept : store_(store), elem_size_(elem_size) {}

    void format();
    // Validates the root block header (cheap); throws FormatError. Not the counters: a writer killed
    // between its stores of count and check leaves them apart until repair re-seals them.
    void check_root() const;
    // Throws FormatError when count fails SequenceHeader::check (verify(): the store is not mid-write).
    void check_counters() const;
    std::uint64_t size() const noexcept { return header()->count; }
    std::uint64_t capacity() const noexcept { return header()->capacity; }
    std::uint8_t* data() const noexcept { return reinterpret_cast<std::uint8_t*>(header() + 1); }
    std::uint8_t* at(std::uint64_t i) const noexcept { return data() + i * elem_size_; }
    // One validated snapshot of the block for lock-free readers: the block, its count (the log's while a
    // transaction's commit is pending) and that log. slot(i), for i < count, is where element i's word is:
    // in the log when it holds position i, else in the block.
    struct View {
        const SequenceHeader* h;
        std::uint64_t count;
        const SeqLogHeader* log;  // nullptr unless a commit is being applied
        std::uint64_t log_slots;  // the log's slot count, validated against the mapping (the log may be
                                  // freed and reused under a reader, which then retries: never re-read it)
        const std::uint64_t* words() const noexcept { return reinterpret_cast<const std::uint64_t*>(h + 1); }
        const std::uint64_t* slot(std::uint64_t i) const noexcept {
            if (log == nullptr) [[likely]] return words() + i;
            return slot_logged(i);
        }
        const std::uint64_t* slot_logged(std::uint64_t i) const noexcept;
    };
    // For lock-free readers (8-byte elements): element i loaded from one validated snapshot of the block
    // (root loaded once; capacity, count and bounds checked), or nullopt when i >= count. Throws
    // FormatError when the block is out of range (a block another process is freeing; readers retry).
    std::optional<std::uint64_t> word_checked(std::uint64_t i) const {
        const std::uint64_t* p = word_ptr_checked(i);
        if (p == nullptr) return std::nullopt;
        return __atomic_load_n(p, __ATOMIC_ACQUIRE);
    }
    // The slot of element i in one validated snapshot, or nullptr when i >= count.
    const std::uint64_t* word_ptr_checked(std::uint64_t i) const {
        const View v = checked();
        return i < v.count ? v.slot(i) : nullptr;
    }
    std::uint64_t size_checked() const { return checked().count; }
    // The current block and its count, validated against the mapping (mapped further first when another
    // process published a block in space this handle has not mapped yet).
    View checked() const {
        const auto& r = store_->region();
        const std::uint64_t off = store_->root();
        if (!r.in_bounds(off, sizeof(SequenceHeader))) r.refresh();
        if (off % 16 != 0 || !r.in_bounds(off, sizeof(SequenceHeader))) store_->throw_corrupt("list block out of bounds");
        const auto* h = r.at<const SequenceHeader>(off);
        // The log word before the count: a reader that finds it 0 after a commit retired its log then also
        // finds the count that commit stored (the count is stored before the log word is cleared). Loaded
        // the other way round, an old count could pair with the new elements.
        const std::uint64_t log = __atomic_load_n(&h->pending_log, __ATOMIC_ACQUIRE);
        const std::uint64_t cap = __atomic_load_n(&h->capacity, __ATOMIC_RELAXED);
        const std::uint64_t count = __atomic_load_n(&h->count, __ATOMIC_ACQUIRE);
        const bool sane = count <= cap && cap <= (std::uint64_t{1} << 40);
        if (sane && !r.in_bounds(off, sizeof(SequenceHeader) + cap * elem_size_)) r.refresh();
        if (!sane || !r.in_bounds(off, sizeof(SequenceHeader) + cap * elem_size_))
            store_->throw_corrupt("list block at offset " + std::to_string(off) + " is out of range");
        if (log != 0) [[unlikely]] return checked_log(h, cap, log);
        if (store_->verifying() && __atomic_load_n(&h->check, __ATOMIC_RELAXED) != counters_check(count, cap, elem_size_, 0))
            [[unlikely]] return {h, checked_slow(h, cap), nullptr, 0};
        return {h, count, nullptr, 0};
    }
    // checked() while a commit log is published: the log validated, the count is its count1.
    View checked_log(const SequenceHeader* h, std::uint64_t cap, std::uint64_t log) const;
    // checked() when the count fails its check: trusted while a writer is active, else FormatError.
    std::uint64_t checked_slow(const SequenceHeader* h, std::uint64_t cap) const;


    // Appends one element (copied from `elem`).
    void push_back(const void* elem);
    // push_back for 8-byte elements (List words), inline: the hot path of appends.
    void push_back_word(std::uint64_t w) {
        SequenceHeader* h = header();
        if (h->count == h->capacity || h->count < h->committed) [[unlikely]] h = make_room_for_push();
        reinterpret_cast<std::uint64_t*>(h + 1)[h->count] = w;
        __atomic_store_n(&h->count, h->count + 1, __ATOMIC_RELEASE);  // publish
        seal_counters(h);
    }
    void pop_back() noexcept;
    // Called before each commit of a file-backed store: elements [0, count) become committed.
    void stamp_commit() noexcept { header()->committed = header()->count; }
    std::uint64_t committed() const noexcept { return header()->committed; }
    // Moves the elements to a new block (same capacity), which has no committed elements.
    void copy_on_write();
    // List transactions (sequence_txn.cpp). Holding the write lock: makes the list `n1` elements long, with
    // `overwrites` (position < min(size(), n1), new word) and `appends` (the words of positions
    // [size(), n1) when n1 > size()), all visible to lock-free readers at one instant. O(changes), plus a
    // block copy when the block must grow (as an append) or the durability rules require it. Releases no
    // word: the caller frees what the commit dropped, after it returns. Throws (a full disk) with nothing
    // changed.
    void commit_words(std::uint64_t n1, std::span<const std::pair<std::uint64_t, std::uint64_t>> overwrites,
                      std::span<const std::uint64_t> appends);
    // Recovery and repair, before anything else: applies a published commit log again (idempotent).
    void redo_log() noexcept;
    // Grows or shrinks to `n` elements; new ones are zero-filled.
    void resize(std::uint64_t n);
    // Repair only (no reader attached): ends the sequence at `n` <= size() and zeroes every element slot
    // from there to the capacity, so nothing a lost write left there can be taken for an element later.
    void truncate(std::uint64_t n) noexcept;
    void reserve(std::uint64_t n);
    // As HashTable::relocate_down: moves the block down into free space when it ends the arena.
    bool relocate_down();
    // Replaces the whole contents with `n` elements from `src` (built aside, one switch).
    void assign(const void* src, std::uint64_t n, std::uint64_t min_capacity = 0);
    std::uint64_t bytes_of(std::uint64_t capacity) const noexcept { return sizeof(SequenceHeader) + capacity * elem_size_; }
    std::uint64_t root_bytes() const noexcept { return bytes_of(header()->capacity); }

private:
    SequenceHeader* header() const noexcept { return store_->region().at<SequenceHeader>(store_->root()); }
    // Allocates and initializes an empty block; placed as the replacement of the root block (Arena::
    // allocate_replacement), which every caller frees once the new block is published.
    std::uint64_t build(std::uint64_t capacity);
    void grow_for_push();                          // doubles the capacity
    // The slow path of both push_backs: grows a full block, or copies one whose next slot is committed
    // (SequenceHeader::committed). Returns the (possibly new) header.
    SequenceHeader* make_room_for_push();

    Store* store_;
    std::uint64_t elem_size_;
};

}  // namespace mmstore::containers
