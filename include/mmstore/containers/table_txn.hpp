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
// Memory: a transaction of up to kInline distinct keys keeps its write set in an array inside the object and
// commits without a heap allocation of its own (keys and values longer than std::string's inline buffer
// still allocate); the next write spills the write set into an unordered_map for the rest of the
// transaction. The undo journal is kept only from the first savepoint() on: a full rollback drops the
// write set and needs none, and rollback_to(mark) undoes only what was written after its mark. Savepoints
// work across the spill: the journal names keys, not positions.
//
// Whether a written key was in the table (for size()) is looked up when the write is made by set() and
// erase(), which report it; put(), the write of a caller that needs no answer, leaves it to be looked up
// by the first size() or clear() that needs it, or by the commit, which looks every key up anyway: a
// read-modify-write through the transaction then costs two table lookups (the read's and the commit's),
// not three.
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
    // Not begun (active() is false) until begin(), which the caller calls holding the write lock of the
    // table's store (and keeps holding until commit() or rollback()).
    explicit TableTxn(const HashTable& table) : table_(table) {}
    void begin();
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
    // set() without the answer (and without the table lookup it costs); `hash` is hash64 of `key`.
    void put(std::string_view key, std::uint64_t hash, std::string_view value);
    // Returns false when the key was absent.
    bool erase(std::string_view key);
    // Erases every key the transaction sees (O(size): it records one erase per key).
    void clear();
    // O(1), except after put()s of keys not yet looked up: one table lookup per such key, once.
    std::uint64_t size() const;
    // The transaction's own changes in the order they were first made: (key, value or nullopt = erased).
    std::vector<std::pair<std::string, std::optional<std::string>>> writes() const;

    // Takes ownership of a table reference value created (unpublished) for this transaction.
    void adopt_child(std::string_view ref);

    // Savepoints: savepoint() returns a mark; rollback_to(mark) undoes every write since it.
    std::size_t savepoint() noexcept {
        journaling_ = true;
        return journal_.size();
    }
    void rollback_to(std::size_t mark);

    // Applies the write set (HashTable::commit_batch) and ends the transaction. Returns whether the table
    // changed; if so, the caller then calls Store::after_mutation(). On an exception nothing was applied
    // and the transaction is still active.
    bool commit();
    // Drops every write and every adopted child; ends the transaction. Idempotent.
    void rollback() noexcept;

    // Writes kept inline before the write set spills into the map. 8: a transfer or a small read-modify-write
    // touches 1-4 keys; each inline slot costs ~80 bytes of the (heap-allocated, per transaction) TableTxn.
    static constexpr std::size_t kInline = 8;

private:
    enum class InTable : std::uint8_t { kNo, kYes, kUnknown };  // kUnknown: put() has not looked it up
    struct Slot {
        std::optional<std::string> value;  // nullopt: erased
        std::size_t order;                 // position of the first write of this key
        std::uint64_t hash;                // hash64 of the key
        mutable InTable in_table;          // the key was in the table when first written (size() resolves)
    };
    struct KeyedSlot {
        std::string key;
        Slot slot;
    };
    struct Undo {
        std::string key;
        std::optional<Slot> before;  // nullopt: the key had no write before
    };
    bool present(std::string_view key) const;
    // What the slot adds to the table's size: +1 for a new key, -1 for an erased one (known in_table only).
    static std::int64_t contribution(const Slot& s) noexcept {
        return (s.value ? 1 : 0) - (s.in_table == InTable::kYes ? 1 : 0);
    }
    // Looks up every kUnknown slot's key in the table and counts it into size_.
    void resolve_unknown() const;
    // Recomputes size_ and unknown_ from the write set (after a rollback_to).
    void recount() noexcept;
    void destroy_unreferenced_children(bool all) noexcept;

    // The write set: inline_[0, n_inline_) until spilled_, then map_ (inline_ unused) until the end.
    Slot* find(std::string_view key) noexcept;
    const Slot* find(std::string_view key) const noexcept;
    Slot* insert(std::string_view key, Slot slot);  // the key has no slot
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
    // Journals the key's slot before a write, once a savepoint was taken.
    void journal(std::string_view key, const Slot* before);
    // Writes `value` (nullopt: erased) for `key`, whose slot is `s` (nullptr: none yet, then one is made
    // with `fresh_in_table`).
    void write(std::string_view key, std::uint64_t hash, std::optional<std::string_view> value, Slot* s,
               InTable fresh_in_table);

    HashTable table_;
    std::array<KeyedSlot, kInline> inline_;
    std::size_t n_inline_ = 0;
    bool spilled_ = false;
    std::unordered_map<std::string, Slot> map_;
    std::vector<Undo> journal_;  // from the first savepoint() on (journaling_)
    bool journaling_ = false;
    std::vector<std::uint64_t> children_;  // adopted table-reference words
    std::size_t next_order_ = 0;
    std::uint64_t base_size_ = 0;      // the table's size at the start
    mutable std::uint64_t size_ = 0;   // base_size_ + the contributions of the slots with a known in_table
    mutable std::size_t unknown_ = 0;  // slots with in_table kUnknown
    bool active_ = false;
};

}  // namespace mmstore::containers
