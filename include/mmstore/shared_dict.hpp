// mmstore/shared_dict.hpp
//
// mmstore::SharedDict -- a live dict in shared memory that any process on the machine attaches by name
// (the UltraDict idea, without a manager process or its races). It is mmstore::Dict -- the same engine
// and API -- over a segment in /dev/shm ("/dev/shm/mmstore.<name>", what shm_open(3) uses on Linux)
// instead of a file, plus what sharing needs:
//   * lock()/try_lock()/unlock(): the store's process-shared, robust, recursive mutex (dict.hpp). A holder
//     that dies is detected by the next acquirer, which repairs the table before anything else runs.
//   * increment(), compare_and_set(), update_many(): read-modify-write steps under one hold of the lock.
//     update_many() is atomic for lock-free readers too, without making them wait: it modifies a copy of
//     the table and switches to it with one store (HashTable::begin_copy), O(size of the dict).
//   * wait_for_change(): sleeps on a futex until another handle writes.
//   * reattach after fork(): a handle used in a child reopens the segment there (no ForkedHandleError).
//
// Lifetime (docs/design.md, "Segment lifetime"): the name exists until unlink()/unlink_by_name(), or
// until the last attached handle closes when any handle that closed had auto_unlink (the creator's
// default). A segment therefore never vanishes while a handle is still attached to it. Processes killed
// with the segment attached leave it behind: list() names such segments (in_use == false) for cleanup.
//
// Names: 1..200 characters of [A-Za-z0-9_.-], not starting with '.'; anything else is kInvalidArgument.
// Segments are created with mode 0600 unless `mode` says otherwise.
// Thread safety: as Dict. Any number of threads may read one handle at once (get, contains, get_many,
// get_encoded, size, child() and NestedDict::get/size/child, wait_for_change), also while other handles --
// in this process or others -- write, grow the segment or switch tables (update_many): the lock-free reads
// of dict.hpp (tests/cpp/threads_test.cpp, under TSan). Writes through one handle (set, increment,
// update_many, NestedDict::set, ...) take one thread at a time, and not while that handle's readers run:
// give a writer thread its own handle (attach by name). close() must not race with any other use.
// Process safety: any number of processes.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mmstore/dict.hpp"

namespace mmstore {

struct SharedDictOptions {
    OpenOptions::Create create = OpenOptions::Create::kIfMissing;
    unsigned mode = 0600;
    std::optional<bool> auto_unlink;  // default: true for the handle that created the segment
    std::uint64_t size_hint = 0;      // keys to make room for at creation
    bool verify = true;               // checked reads (OpenOptions::verify; docs/design.md, "Checked reads")
};

struct SharedSegmentInfo {
    std::string name;
    std::uint64_t size = 0;       // bytes of the segment
    std::uint32_t creator_pid = 0;
    bool in_use = false;          // some handle has it open right now
};

class SharedDict;

// A live view of a nested table: a SharedDict value stored as a child table in the same segment (Python
// `SharedDict(recurse=True)` stores dict values this way; C++ creates one with set_child()). Reads are
// lock-free like the dict's; writes take the dict's lock. When the entry holding the table is replaced
// or erased, every call on the view throws Error(kNotFound). Lifetime: valid while its SharedDict is open.
class NestedDict {
public:
    std::optional<Value> get(const Value& key) const;
    bool contains(const Value& key) const { return get(key).has_value(); }
    bool set(const Value& key, const Value& value);  // true when the key is new
    bool erase(const Value& key);
    std::uint64_t size() const;
    // The nested table under `key` of this one (nullopt when the key is absent or not a table).
    std::optional<NestedDict> child(const Value& key) const;
    // Replaces the value under `key` with a new, empty nested table and returns its view.
    NestedDict set_child(const Value& key);

private:
    friend class SharedDict;
    NestedDict(SharedDict* owner, std::uint64_t cell, std::uint64_t id) : owner_(owner), cell_(cell), id_(id) {}
    containers::HashTable table() const;  // throws kNotFound when the view is stale
    SharedDict* owner_;
    std::uint64_t cell_;
    std::uint64_t id_;
};

class SharedDict : public Dict {
public:
    // Attaches to (or creates) the segment `name`; an empty name creates one with a random name.
    explicit SharedDict(std::string name = {}, const SharedDictOptions& options = {});
    SharedDict(SharedDict&&) noexcept = default;
    SharedDict& operator=(SharedDict&&) noexcept = default;
    ~SharedDict();

    const std::string& name() const noexcept { return name_; }
    bool created() const noexcept { return created_; }

    // d[key] = d.get(key, 0) + delta for an integer value (encoded as a codec int); returns the new value.
    // Throws kInvalidArgument when the stored value is not an integer.
    std::int64_t increment(const Value& key, std::int64_t delta = 1);
    // Stores `value` when key's current encoded value equals `expected` (both canonical encodings).
    bool compare_and_set_encoded(std::string_view key, std::string_view expected, std::string_view value);
    // Every (encoded key, encoded value) pair in one atomic step, also for lock-free readers.
    void update_many_encoded(const std::vector<std::pair<std::string, std::string>>& pairs);
    // The nested table under `key` (nullopt when absent or not a table), and a fresh empty one stored there.
    std::optional<NestedDict> child(const Value& key);
    NestedDict set_child(const Value& key);

    // Blocks until another handle writes (true) or timeout_ns passes (false; < 0 waits forever).
    bool wait_for_change(std::int64_t timeout_ns = -1) const;

    // Removes the name now; attached handles keep working until they close.
    void unlink();
    // Sync-free close; with auto_unlink, the last handle to close removes the segment.
    void close();

    static std::string segment_path(std::string_view name);
    static void unlink_by_name(std::string_view name);
    static std::vector<SharedSegmentInfo> list();

private:
    friend class NestedDict;
    // View of the table-reference value under encoded `key` of `table`, read lock-free.
    std::optional<NestedDict> child_of(const containers::HashTable& table, const std::string& key);
    NestedDict set_child_of(containers::HashTable& table, const std::string& key);

    std::string name_;
    bool created_ = false;
    bool auto_unlink_ = false;
};

}  // namespace mmstore
