// mmstore/containers/sequence_txn.hpp
//
// SequenceTxn: the write set of a transaction on a List's Sequence, the engine behind List::Transaction and
// Python's `with l.transaction() as t:` (docs/design.md, "List transactions").
//
// The list as the transaction sees it is  base[0, prefix) with `over` applied, followed by `tail`:
// overwrites of positions below `prefix` go to a map, appends to the tail, pops shorten the tail then the
// prefix. An insert, delete or slice assignment in the middle first moves base[i, prefix) into the tail
// ("materializes" it: 8 bytes of process memory per element moved, as the List's own insert copies its words).
// New values are written into the store at once (Store::put) but referenced by nothing published: readers
// never see them, rollback frees them, and a process killed meanwhile leaks them to the recovery's mark and
// sweep. commit() computes the net change -- positions whose word differs, the new length -- and hands it to
// Sequence::commit_words, which publishes it at one instant for every lock-free reader in O(changes).
//
// Savepoints copy the write set (O(changes so far) each). Writes to the List made outside the transaction
// while it is open (through the List handle itself, under the same recursive lock) would shift the positions
// it holds: every operation checks the store's change counter and raises InvalidArgument if it moved.
//
// Thread and process safety: none of its own; the caller holds the store's write lock from construction to
// commit() or rollback(), and uses one thread at a time.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "mmstore/containers/sequence.hpp"

namespace mmstore::containers {

class SequenceTxn {
public:
    // The caller holds the write lock of `store`.
    SequenceTxn(Sequence& seq, Store& store);
    SequenceTxn(const SequenceTxn&) = delete;
    SequenceTxn& operator=(const SequenceTxn&) = delete;
    ~SequenceTxn() { rollback(); }

    bool active() const noexcept { return active_; }
    std::uint64_t size() const noexcept { return prefix_ + tail_.size(); }
    // Element i (< size()) as the transaction sees it: the encoding, valid until the next write through
    // the transaction (or `buf` dies).
    std::string_view get(std::uint64_t i, WordBuf& buf) const;
    // Writes; indices are checked by the caller (i < size(); insert: i <= size(); start <= stop <= size()).
    void set(std::uint64_t i, std::string_view enc);
    void push_back(std::string_view enc);
    void insert(std::uint64_t i, std::string_view enc);
    void erase(std::uint64_t i);
    void pop_back();  // no-op when empty
    void splice(std::uint64_t start, std::uint64_t stop, std::span<const std::string_view> encs);
    void clear();

    // Savepoints: savepoint() returns a mark; rollback_to(mark) undoes every write since it and drops it and
    // later marks; release_savepoint(mark) keeps the writes and drops the mark (and later ones).
    std::size_t savepoint();
    void rollback_to(std::size_t mark);
    void release_savepoint(std::size_t mark) noexcept;

    // Publishes the net change (Sequence::commit_words) and ends the transaction; then frees what the commit
    // dropped. The caller then calls Store::after_mutation(). On an exception nothing was applied and the
    // transaction is still active.
    void commit();
    // Frees every value the transaction wrote; ends it. Idempotent.
    void rollback() noexcept;

private:
    struct Saved {
        std::uint64_t prefix;
        std::unordered_map<std::uint64_t, std::uint64_t> over;
        std::vector<std::uint64_t> tail;
        std::size_t allocated;
    };
    void check_base() const;
    const std::uint64_t* slot(std::uint64_t i) const;
    std::uint64_t put(std::string_view enc);
    void materialize(std::uint64_t i);
    void release_since(std::size_t n) noexcept;
    void end() noexcept;

    Sequence& seq_;
    Store& store_;
    std::uint64_t base_n_ = 0;    // the list's length when the transaction began
    std::uint32_t change_ = 0;    // Store::change_count() then
    std::uint64_t prefix_ = 0;    // base elements [0, prefix_) lead the transaction's list
    std::unordered_map<std::uint64_t, std::uint64_t> over_;  // position < prefix_ -> new word
    std::vector<std::uint64_t> tail_;                         // the elements after the prefix
    std::vector<std::uint64_t> allocated_;                    // every record word put by this transaction, in order
    std::vector<Saved> saves_;
    bool active_ = true;
};

}  // namespace mmstore::containers
