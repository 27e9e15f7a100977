// mmstore/containers/table_txn.hpp
//
// TableTxn: the write set of a transaction on one HashTable (Dict, SharedDict, a nested table), the engine
// behind Dict::Transaction and Python's `with d.transaction() as t:` (docs/design.md, "Transactions and
// snapshots").
//
// Writes go to process memory, not to the store: the table is untouched until commit(), which hands the net
// changes to HashTable::commit_batch (every reader sees them at one instant; O(changes)). Rolling back is
// dropping the write set. Reads through the transaction see its own writes first, then the table, which
// nobody else can change meanwhile because the caller holds the store's write lock for the transaction's
// whole life. Savepoints (nested transactions) are marks in an undo journal.
//
// Values may be table references (SharedDict's nested dicts) created for this transaction by
// HashTable::create_child(): adopt_child() hands them over, and the transaction destroys every adopted child
// that does not end up stored (rollback, or overwritten before commit).
//
// Memory: a transaction of up to kInline distinct keys (and kInline journal entries) keeps its write set and
// undo journal in arrays inside the object and commits without a heap allocation of its own (keys and
// values longer than std::string's inline buffer still allocate); the next write spills the write set into
// an unordered_map (the journal into a vector) for the rest of the transaction. Savepoints work across the
// spill: the journal names keys, not positions.
//
// Thread and process safety: none of its own; the caller holds the store's write lock from construction
// to commit() or rollback(), and uses one thread at a time.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "mmstore/containers/hash_table.hpp"

namespace mmstore::containers {

class TableTxn {
public:
    // The caller holds the write lock of table's store.
    explicit TableTxn(const HashTable& table);
    TableTxn(const TableTxn&) = delete;
    TableTxn& operator=(const TableTxn&) = delete;
    ~TableTxn() { rollback(); }

    // Dict::Transaction allocates one TableTxn per transaction; with the inline arrays it is ~1.7 KiB, past
    // glibc's per-thread cache (1032 bytes), so each thread keeps its last freed block for the next one.
    static void* operator new(std::size_t bytes);
    static void operator delete(void* p, std::size_t bytes) noexcept;

    HashTable& table() noexcept { return table_; }
    bool active() const noexcept { return active_; }

    // What this transaction wrote for `key` (an encoding): kNone (not written: ask the table), kSet (value in
    // *value when not null) or kErased.
    enum class Own { kNone, kSet, kErased };
    Own own(std::string_view key, std::string* value = nullptr) const;
    // The key's value as the transaction sees it (own writes, then the table); nullopt when absent.
    std::optional<std::string> get(std::string_view key) const;
    bool contains(std::string_view key) const;
    // Returns true when the key was new (as dict assignment sees it).
    bool set(std::string_view key, std::string_view value);
    // Returns false when the key was absent.
    bool erase(std::string_view key);
    // Erases every key the transaction sees (O(size): it records one erase per key).
    void clear();
    std::uint64_t size() const noexcept { return size_; }
    // The transaction's own changes in the order they were first made: (key, value or nullopt = erased).
    std::vector<std::pair<std::string, std::optional<std::string>>> writes() const;

    // Takes ownership of a table reference value created (unpublished) for this transaction.
    void adopt_child(std::string_view ref);

    // Savepoints: savepoint() returns a mark; rollback_to(mark) undoes every write since it.
    std::size_t savepoint() const noexcept { return n_journal_ + journal_more_.size(); }
    void rollback_to(std::size_t mark);

    // Applies the write set (HashTable::commit_batch) and ends the transaction. The caller then calls
    // Store::after_mutation(). On an exception nothing was applied and the transaction is still active.
    void commit();
    // Drops every write and every adopted child; ends the transaction. Idempotent.
    void rollback() noexcept;

    // Writes kept inline before the write set spills into the map (and journal entries before the journal
    // spills into a vector). 8: a transfer or a small read-modify-write touches 1-4 keys; each inline slot
    // costs ~100 bytes of the (heap-allocated, per transaction) TableTxn, so 8 + 8 keep it under 2 KiB.
    static constexpr std::size_t kInline = 8;

private:
    struct Slot {
        std::optional<std::string> value;  // nullopt: erased
        std::size_t order;                 // position of the first write of this key
        bool in_table;                     // the key was in the table when first written
    };
    struct KeyedSlot {
        std::string key;
        Slot slot;
    };
    struct Undo {
        std::string key;
        std::optional<Slot> before;  // nullopt: the key had no write before
        std::uint64_t size_before;
    };
    bool present(std::string_view key) const;
    void destroy_unreferenced_children(bool all) noexcept;

    // The write set: inline_[0, n_inline_) until spilled_, then map_ (inline_ unused) until the end.
    Slot* find(std::string_view key) noexcept;
    const Slot* find(std::string_view key) const noexcept;
    void insert(std::string_view key, Slot slot);  // the key has no slot
    void remove(std::string_view key) noexcept;     // the key has a slot
    std::size_t count() const noexcept { return spilled_ ? map_.size() : n_inline_; }
    template <class F>
    void for_each(F&& f) const {
        if (spilled_) {
            for (const auto& [k, s] : map_) f(k, s);
        } else {
            for (std::size_t i = 0; i < n_inline_; ++i) f(inline_[i].key, inline_[i].slot);
        }
    }
    void clear_writes() noexcept;
    // The journal: journal_inline_[0, n_journal_), then journal_more_.
    void push_undo(Undo u);
    Undo& last_undo() noexcept { return journal_more_.empty() ? journal_inline_[n_journal_ - 1] : journal_more_.back(); }
    void pop_undo() noexcept;

    HashTable table_;
    std::array<KeyedSlot, kInline> inline_;
    std::size_t n_inline_ = 0;
    bool spilled_ = false;
    std::unordered_map<std::string, Slot> map_;
    std::array<Undo, kInline> journal_inline_;
    std::size_t n_journal_ = 0;
    std::vector<Undo> journal_more_;
    std::vector<std::uint64_t> children_;  // adopted table-reference words
    std::size_t next_order_ = 0;
    std::uint64_t size_ = 0;
    bool active_ = true;
};

}  // namespace mmstore::containers
