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
// Thread and process safety: none of its own; the caller holds the store's write lock from construction
// to commit() or rollback(), and uses one thread at a time.
#pragma once

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
    std::size_t savepoint() const noexcept { return journal_.size(); }
    void rollback_to(std::size_t mark);

    // Applies the write set (HashTable::commit_batch) and ends the transaction. The caller then calls
    // Store::after_mutation(). On an exception nothing was applied and the transaction is still active.
    void commit();
    // Drops every write and every adopted child; ends the transaction. Idempotent.
    void rollback() noexcept;

private:
    struct Slot {
        std::optional<std::string> value;  // nullopt: erased
        std::size_t order;                 // position of the first write of this key
        bool in_table;                     // the key was in the table when first written
    };
    struct Undo {
        std::string key;
        std::optional<Slot> before;  // nullopt: the key had no write before
        std::uint64_t size_before;
    };
    bool present(std::string_view key) const;
    void record(const std::string& key);
    void destroy_unreferenced_children(bool all) noexcept;

    HashTable table_;
    std::unordered_map<std::string, Slot> slots_;
    std::vector<Undo> journal_;
    std::vector<std::uint64_t> children_;  // adopted table-reference words
    std::size_t next_order_ = 0;
    std::uint64_t size_ = 0;
    bool active_ = true;
};

}  // namespace mmstore::containers
