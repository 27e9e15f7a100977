// mmstore/list.hpp
//
// mmstore::List -- a persistent sequence of codec values in a file (the pyrsistence EMList idea, and the
// engine of the Python mmstore.List). Elements are 8-byte words in a Sequence: values of up to 7 encoded
// bytes inline, larger ones as records in the arena.
//
// Levels of API as in dict.hpp: bytes (push_back(std::string_view) stores a codec `bytes` value), typed
// (codec::Value) and encoded (*_encoded). Lifetimes: a returned std::string_view stays valid until the
// next call that modifies the List (appends included: short values live in the word array, which moves
// when it grows), or close().
// Errors: std::out_of_range for a bad index; otherwise as in dict.hpp.
// Thread safety: as Dict -- any number of reader threads per handle, one writer thread per handle. Process safety: many processes may open it read-write at once, as Dict (each write
// holds the store's process-shared lock; reads are lock-free and retried when they raced a writer).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mmstore/codec/value.hpp"
#include "mmstore/containers/sequence.hpp"
#include "mmstore/containers/sequence_txn.hpp"
#include "mmstore/containers/store.hpp"
#include "mmstore/dict.hpp"

namespace mmstore {

class List {
public:
    List() = default;
    explicit List(const std::string& path, const OpenOptions& options = {});
    List(List&&) noexcept = default;
    List& operator=(List&&) noexcept = default;
    ~List();

    std::uint64_t size() const;
    bool empty() const { return size() == 0; }

    // --- bytes level
    std::string_view get(std::uint64_t i) const;
    void push_back(std::string_view bytes);
    void set(std::uint64_t i, std::string_view bytes);
    // --- typed level
    Value get_value(std::uint64_t i) const;
    void push_back(const Value& v);
    void set(std::uint64_t i, const Value& v);
    void insert(std::uint64_t i, const Value& v);
    // --- encoded level
    std::string get_encoded(std::uint64_t i) const;  // a copy (short values have an implied tag)
    void push_back_encoded(std::string_view enc);
    // Appends every encoding of `encs` under one hold of the write lock, after making room for all of them
    // at once; waiters are woken once. Each element is published by itself (as push_back_encoded): a kill
    // leaves a prefix of them appended, and readers may see a prefix before the call returns.
    void push_back_encoded_many(std::span<const std::string_view> encs);
    void set_encoded(std::uint64_t i, std::string_view enc);
    void insert_encoded(std::uint64_t i, std::string_view enc);

    void erase(std::uint64_t i);
    void pop_back();
    void clear();
    // Rebuilds the list as old[order[0]], old[order[1]], ... (each old position at most once; positions
    // not listed are removed). Built aside and switched with one store: a kill leaves the old or new list.
    void reorder(const std::vector<std::uint64_t>& order);
    // Replaces elements [start, stop) with the encoded values `encs` (list slice assignment).
    void splice(std::uint64_t start, std::uint64_t stop, const std::vector<std::string>& encs);
    void reserve(std::uint64_t n);
    // Makes room for `extra` more elements than size(): the exact size when the list was small, at least
    // double the capacity otherwise (so that repeated calls stay amortized O(1) per element).
    void reserve_more(std::uint64_t extra);

    // --- transactions (docs/design.md, "List transactions")
    // Takes the write lock and returns a transaction on this List: its writes are private until commit(),
    // which makes all of them (length included) visible to every reader at one instant, in O(changes). A
    // Transaction destroyed without commit() rolls back. See List::Transaction below.
    class Transaction;
    Transaction transaction();
    // Opens a snapshot of this List: every read through it sees the list as of one instant (its opening),
    // in O(1), without the write lock; see List::Snapshot below.
    class Snapshot;
    Snapshot snapshot() const;

    const std::string& path() const;
    bool is_open() const noexcept { return store_ && store_->is_open(); }
    void sync();
    void close();
    void verify() const;
    void compact();
    Stats stats() const;
    void abandon() noexcept;
    containers::Store& store() const { return *store_; }
    containers::Sequence& sequence() const { return *seq_; }
    // The raw word of element i (bindings' fast path).
    const std::uint64_t* word_ptr(std::uint64_t i) const {
        return reinterpret_cast<const std::uint64_t*>(seq_->at(i));
    }

private:
    void open(const std::string& path, const OpenOptions& options);
    void check() const { store_->check_open(); }
    void check_write() const { store_->check_writable(); }
    void check_index(std::uint64_t i) const;
    void enumerate(const alloc::Arena::Visit& v) const;
    void repair();

    std::unique_ptr<containers::Store> store_;
    std::unique_ptr<containers::Sequence> seq_;
    OpenOptions options_;
};

// A transaction on a List. It holds the store's write lock from creation until commit(), rollback() or
// destruction, so other writers wait and lock-free readers go on reading the list as it was. Reads through
// it see its own writes. commit() publishes every change at one instant -- a reader sees the old length and
// old elements or the new length and new elements, never a mixture -- in O(changes), not O(size()); a
// process killed before or during commit() leaves all of the changes or none after the usual recovery.
// Destruction without commit() rolls back. Savepoints: savepoint() returns a mark, rollback_to(mark) undoes
// the writes made since (release_savepoint(mark) forgets the mark).
// Errors: std::out_of_range for a bad index; as List's writes otherwise; commit() that throws (a full disk)
// applied nothing and the transaction stays open. Writes through the List itself while its transaction is
// open make the transaction's next call raise InvalidArgument (they would shift its positions). Lifetimes:
// a string_view from get() is valid until the next write through the transaction. Thread safety: one
// thread, the one that created it (the lock is per thread).
class List::Transaction {
public:
    Transaction(Transaction&&) noexcept;
    Transaction& operator=(Transaction&&) = delete;
    ~Transaction();

    std::uint64_t size() const;
    std::string_view get_encoded(std::uint64_t i, containers::WordBuf& buf) const;
    Value get_value(std::uint64_t i) const;
    void set_encoded(std::uint64_t i, std::string_view enc);
    void set(std::uint64_t i, const Value& v);
    void push_back_encoded(std::string_view enc);
    void push_back(const Value& v);
    void insert_encoded(std::uint64_t i, std::string_view enc);  // i > size(): appends
    void insert(std::uint64_t i, const Value& v);
    void erase(std::uint64_t i);
    void pop_back();
    // Replaces elements [start, stop) (clamped to size(), as a Python slice) with `encs`.
    void splice(std::uint64_t start, std::uint64_t stop, std::span<const std::string_view> encs);
    void clear();

    std::size_t savepoint();
    void rollback_to(std::size_t mark);
    void release_savepoint(std::size_t mark);
    void commit();
    void rollback() noexcept;
    bool active() const noexcept;

    // For bindings: a transaction on `list` (takes the write lock).
    explicit Transaction(List& list);
    containers::SequenceTxn& txn() const { return *txn_; }

private:
    containers::SequenceTxn& live() const;
    void check_index(std::uint64_t i) const;
    void end() noexcept;
    containers::Store* store_;
    std::unique_ptr<containers::SequenceTxn> txn_;
    bool locked_ = false;
};

// A snapshot of a List: every read through it sees the list -- its length and every element -- as of one
// instant (its opening), whatever other handles, threads or processes write meanwhile (docs/design.md,
// "Snapshots of a List"). Opening is O(1) and takes no lock; reads take none either and never wait for a
// writer. While any snapshot of the store is open, each write other than an append first records a copy of
// each 64-element page it is about to change (the first time in each snapshot generation), so a write
// costs O(1) more, and a write that moves n elements (insert, erase, clear, ...) O(n) more, as the write
// itself; a record an element dropped is kept, not freed. Appends record nothing: a snapshot keeps the length
// it opened with and reads nothing past it. All of it is freed by the
// first write after the last snapshot closes, or after the process holding it died. Snapshots share the
// store's 64 reader slots with nothing else (Error kCapacity when all are open).
// Errors: std::out_of_range for an index at or past size(); Error(kClosed) after close() of the snapshot or
// of its List. Returned strings are copies. Thread safety: one thread at a time per Snapshot object; any
// number of snapshots in any threads. Lifetime: a Snapshot must not outlive its List object; List::close()
// closes it and List::compact() throws LockedError while one is open.
class List::Snapshot {
public:
    Snapshot(Snapshot&& other) noexcept;
    Snapshot& operator=(Snapshot&&) = delete;
    ~Snapshot();
    std::uint64_t size() const;
    std::string get_encoded(std::uint64_t i) const;
    Value get_value(std::uint64_t i) const;
    // The encodings of elements [begin, min(end, size())), read in one pass.
    std::vector<std::string> range_encoded(std::uint64_t begin, std::uint64_t end) const;
    // The same as raw words (inline values, or record offsets valid while this snapshot is open: a record a
    // write drops meanwhile is kept), for bindings that decode in place (Store::view).
    std::vector<std::uint64_t> range_words(std::uint64_t begin, std::uint64_t end) const;
    // The instant: the store's version counter when the snapshot opened.
    std::uint64_t version() const noexcept { return version_; }
    bool is_open() const noexcept;
    // Frees the reader slot now (the destructor does it otherwise). Idempotent.
    void close() noexcept;

private:
    friend class List;
    explicit Snapshot(const List& l);
    void check() const;
    containers::Store* store_;
    const containers::Sequence* seq_;
    unsigned slot_ = 0;
    std::uint64_t version_ = 0;
    std::uint64_t size_ = 0;  // the length at the instant, read as it opened
    bool open_ = false;
};

}  // namespace mmstore
