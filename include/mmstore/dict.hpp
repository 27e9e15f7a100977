// mmstore/dict.hpp
//
// mmstore::Dict -- a persistent hash map in a file (the pyrsistence EMDict idea, and the engine of the
// Python mmstore.Dict). Open is instant: no load step, the file is mapped and used in place. Keys and values
// live in the file; anonymous memory stays O(1) in the number of entries.
//
// Three levels of API over the same table:
//   * bytes:   get/set/erase(std::string_view) store byte strings as codec `bytes` values, so Python
//              sees them as b"..." keys and values. get() returns a zero-copy view.
//   * typed:   get/set/erase(const codec::Value&) for any codec value (str, int, tuple, ...), the way to
//              read and write what Python stores.
//   * encoded: *_encoded() take and return canonical codec encodings.
//
// Lifetimes (as LMDB's "valid until a subsequent update"): a returned std::string_view points into the
// mapping and stays valid until the next call that modifies the Dict (set, erase, clear, compact), or
// close(). Short values live inside the table's own slots, which move when the table grows, so any write
// may move them; copy what you keep.
// Errors: Error(kClosed) after close(); FormatError on a damaged file; Error(kDiskFull) when the file
// cannot grow (the operation then had no effect). Iteration order is insertion order.
// Opening: a path containing a NUL byte throws Error(kInvalidArgument) before the filesystem is touched
// (every path parameter of mmstore does, os::check_path); a FIFO, directory or other non-regular file
// throws FormatError(kForeign) at once, as does an existing empty file (a new store is built under no
// name and linked into place complete, so an empty file is never one of mmstore's). compact() through a
// symbolic link rewrites the file the link points at; a failed compact() leaves no copy behind.
// Thread safety: any number of threads may read one Dict at once (get, get_encoded, contains, get_many,
// size: the lock-free reads), also while other handles -- in this process or others -- write (tests/cpp/threads_test.cpp, under
// TSan). Writes through one handle take one thread at a time, and not while that handle's readers run: give
// a writer thread its own handle. for_each() and verify() may also run from many threads, but on a writable
// handle they hold the write lock for their pass (a consistent picture), so they run one at a time and
// block writers meanwhile. close() must not race with any other use. Process safety: any number of processes
// may open the file, read-write or read-only. Each write takes the store's process-shared robust mutex
// for its duration (lock()/unlock() group several); reads take no lock and retry when a concurrent writer
// freed what they read, so a returned copy is always a value the key really had. A string_view returned
// by get() can be overwritten by another process's write at any time: hold lock() while using it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mmstore/codec/value.hpp"
#include "mmstore/containers/hash_table.hpp"
#include "mmstore/containers/store.hpp"
#include "mmstore/containers/table_txn.hpp"
#include "mmstore/storage/region.hpp"

namespace mmstore {

using storage::OpenOptions;
using codec::Value;

struct Stats {
    std::uint64_t entries = 0;
    std::uint64_t file_bytes = 0;       // size of the mapped file
    std::uint64_t allocated_bytes = 0;  // disk blocks in use (holes from freed space excluded)
    std::uint64_t arena_top = 0;
    std::uint64_t free_bytes = 0;       // reusable bytes on the arena's free lists
    std::uint64_t capacity = 0;         // entries before the next rebuild (Dict) or element capacity (List/Vector)
};

namespace detail {
inline Stats make_stats(const containers::Store& store, std::uint64_t entries, std::uint64_t capacity) {
    const containers::StoreStats s = store.stats();
    return Stats{entries, s.file_bytes, s.allocated_bytes, s.arena_top, s.free_bytes, capacity};
}
}  // namespace detail

class Dict {
public:
    Dict() = default;
    explicit Dict(const std::string& path, const OpenOptions& options = {});
    Dict(Dict&&) noexcept = default;
    Dict& operator=(Dict&&) noexcept = default;
    ~Dict();

    // --- bytes level
    std::optional<std::string_view> get(std::string_view key) const;
    bool contains(std::string_view key) const;
    bool set(std::string_view key, std::string_view value);  // true when the key is new
    bool erase(std::string_view key);
    // Batched get: out[i] = get(keys[i]). Prefetches the index for 16 keys at a time.
    void get_many(std::span<const std::string_view> keys, std::span<std::optional<std::string_view>> out) const;

    // --- typed level
    std::optional<Value> get(const Value& key) const;
    bool contains(const Value& key) const;
    bool set(const Value& key, const Value& value);
    bool erase(const Value& key);

    // --- encoded level
    // Returns a copy: short values live inside their slot with an implied tag (docs/format.md).
    std::optional<std::string> get_encoded(std::string_view key) const;
    bool set_encoded(std::string_view key, std::string_view value);
    bool erase_encoded(std::string_view key);

    std::uint64_t size() const;
    bool empty() const { return size() == 0; }
    void clear();
    // Calls f(encoded key, encoded value) for each entry in insertion order; the views are valid during the
    // call only; f must not modify the Dict.
    void for_each(const std::function<void(std::string_view, std::string_view)>& f) const;

    // The store's write lock: process-shared, robust (a dead holder is recovered by the next acquirer),
    // recursive per thread. Every write takes it on its own; hold it to group several atomically.
    void lock();
    // Waits at most timeout_ns (0: try once; < 0: forever); false when another holder kept it.
    bool try_lock(std::int64_t timeout_ns);
    void unlock();

    // --- transactions (docs/design.md, "Transactions and snapshots")
    // Takes the write lock and returns a transaction on this Dict (or SharedDict): its writes are private
    // until commit(), which makes all of them visible to every reader at one instant, in O(writes). A
    // Transaction destroyed without commit() rolls back. See Dict::Transaction below.
    class Transaction;
    Transaction transaction();
    // A read-only view of this Dict (or SharedDict's main table) as of the instant it opens, in O(1) and
    // without the write lock; see Dict::Snapshot below.
    class Snapshot;
    Snapshot snapshot() const;

    const std::string& path() const;
    bool is_open() const noexcept { return store_ && store_->is_open(); }
    void sync();
    void close();
    // Checks every invariant of the file (header, index, records, encodings, free lists); throws FormatError.
    // A read-only handle cannot take the lock, so it checks everything but the free lists.
    void verify() const;
    // Rewrites the store into a fresh file at its minimal size and atomically replaces the original.
    // Throws LockedError while other handles have the store open.
    void compact();
    Stats stats() const;

    // For bindings and tests: the engine underneath. Valid while open.
    containers::HashTable& table() const { return *table_; }
    containers::Store& store() const { return *store_; }
    // Unclean close: unmaps without syncing or clearing the dirty flag (simulates a crash in tests).
    void abandon() noexcept;

private:
    void open(const std::string& path, const OpenOptions& options);
    void check() const { store_->check_open(); }
    void check_write() const { store_->check_writable(); }

    std::unique_ptr<containers::Store> store_;
    std::unique_ptr<containers::HashTable> table_;
    OpenOptions options_;
};

// A transaction on one table of a store (a Dict's, a SharedDict's, or a nested dict's). It holds the store's
// write lock from creation until commit(), rollback() or destruction, so other writers wait and lock-free
// readers go on reading the state before it. Reads through it see its own writes. commit() publishes every
// change at one instant (a reader sees all of them or none) in O(changes), never O(size of the dict); a
// process killed before or during commit() leaves all of them or none after the usual recovery.
// Destruction without commit() rolls back: the store was never touched. Savepoints: savepoint() returns a
// mark, rollback_to(mark) undoes the writes made since.
// Errors: as Dict's writes; commit() that throws (a full disk) applied nothing and the transaction stays
// open. Thread safety: one thread, the one that created it (the lock is per thread). Plain writes through
// the Dict while its transaction is open go straight to the store, outside the transaction.
class Dict::Transaction {
public:
    Transaction(Transaction&&) noexcept;
    Transaction& operator=(Transaction&&) = delete;
    ~Transaction();

    std::optional<std::string> get_encoded(std::string_view key) const;
    bool contains_encoded(std::string_view key) const;
    bool set_encoded(std::string_view key, std::string_view value);  // true when the key was new
    bool erase_encoded(std::string_view key);                         // false when it was absent
    std::optional<Value> get(const Value& key) const;
    bool contains(const Value& key) const;
    bool set(const Value& key, const Value& value);
    bool erase(const Value& key);
    std::uint64_t size() const;
    // Own changes in the order first made: (encoded key, encoded value, or nullopt when erased).
    std::vector<std::pair<std::string, std::optional<std::string>>> changes() const;

    std::size_t savepoint() const;
    void rollback_to(std::size_t mark);
    void commit();
    void rollback() noexcept;
    bool active() const noexcept;

    // For bindings and nested tables: a transaction on `table` of `store` (takes the write lock).
    Transaction(containers::Store& store, const containers::HashTable& table);
    containers::TableTxn& txn() const { return *txn_; }

private:
    void end() noexcept;
    containers::Store* store_;
    std::unique_ptr<containers::TableTxn> txn_;
    bool locked_ = false;
};

// A snapshot: every read through it sees the Dict as of one instant (its opening), whatever other handles,
// threads or processes write meanwhile (docs/design.md, "Transactions and snapshots"). Opening is O(1) and
// takes no lock; reads take none either and never wait for a writer (a writer stopped by SIGSTOP stops no
// snapshot). While any snapshot of the store is open, each write first records the before-image of what
// it changes (O(1) per write); the records are freed by the first write after the last snapshot closes,
// or after the process holding it died. At most 64 snapshots per store are open at once (Error kCapacity).
// get_encoded()/contains_encoded() cost a lookup in the live table plus one in the version table;
// size() and for_each() collect the snapshot's items once (O(len), in process memory) and reuse them.
// Returned strings are copies. Errors: Error(kClosed) after close() of the snapshot or of its Dict.
// Thread safety: one thread at a time per Snapshot object; any number of snapshots in any threads.
// Lifetime: a Snapshot must not outlive its Dict object; Dict::close() closes it (reads then throw
// kClosed) and Dict::compact() throws LockedError while one is open.
// Nested dicts of a SharedDict are versioned too: a value that references one (a codec::tag::kTableRef
// encoding) opens with nested() as a view of that dict at the same instant, also after the dict was replaced
// or deleted in the store (it is kept until the last snapshot that can see it closes).
class Dict::Snapshot {
public:
    Snapshot(Snapshot&& other) noexcept;
    Snapshot& operator=(Snapshot&&) = delete;
    ~Snapshot();
    // The nested dict referenced by `encoded_value` (a value read through this snapshot) at this snapshot's
    // instant: a view sharing its reader slot, open while the snapshot is (its own close() detaches only the
    // view). Error(kInvalidArgument) when the value is not a nested dict reference.
    Snapshot nested(std::string_view encoded_value) const;
    std::optional<std::string> get_encoded(std::string_view key) const;
    bool contains_encoded(std::string_view key) const { return get_encoded(key).has_value(); }
    std::optional<Value> get(const Value& key) const;
    std::uint64_t size() const;
    // f(encoded key, encoded value) for each item of the instant, in unspecified order.
    void for_each(const std::function<void(std::string_view, std::string_view)>& f) const;
    // The items of the instant (encoded key, encoded value), in the order for_each() gives them: collected
    // once, kept by this object until it is closed or destroyed (for a step-by-step walk, such as the Python
    // iterator's: copy what you keep across anything that may close it).
    const std::vector<std::pair<std::string, std::string>>& items() const;
    // The instant: the store's version counter when the snapshot opened.
    std::uint64_t version() const noexcept { return version_; }
    bool is_open() const noexcept;
    // Frees the reader slot now (the destructor does it otherwise). Idempotent.
    void close() noexcept;

private:
    friend class Dict;
    // The reader slot, shared by a snapshot and its nested views; the snapshot that opened it frees it.
    struct Slot {
        containers::Store* store;
        unsigned index = 0;
        std::uint64_t version = 0;
        bool open = false;
    };
    Snapshot(const Dict& d);
    Snapshot(std::shared_ptr<Slot> slot, const containers::HashTable& table);
    void check() const;
    containers::Store* store_;
    std::shared_ptr<Slot> slot_;
    containers::HashTable table_;
    std::uint64_t version_ = 0;
    bool owner_ = false;  // opened the slot (not a nested view)
    bool open_ = false;   // this object (a moved-from or closed one is not)
    mutable std::optional<std::vector<std::pair<std::string, std::string>>> items_;
};

}  // namespace mmstore
