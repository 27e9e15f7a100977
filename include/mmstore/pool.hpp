// mmstore/pool.hpp
//
// mmstore::Pool: a memory-limited object pool of byte buffers and typed arrays that spills to disk (the C++
// face of mmstore.Pool; DESIGN.md "Spilling object pool"). Objects live in RAM until the bytes in RAM would
// exceed max_memory; then the least (LRU) or most (MRU) recently used objects are written to spill files
// (containers/spill_store.hpp) and their RAM released. get() of a spilled object maps its file read-only --
// no copy, whatever its size -- and caches the mapped object again as most recently used.
//
// Accounting: an object counts its exact byte size. An object larger than max_memory goes straight to disk
// on put and is never cached: get() returns it mapped without counting it, so ram_bytes <= max_memory
// holds after every call. A restored object stays on disk too (its file is clean), so evicting it again
// writes nothing.
//
// Files: every pool owns a private directory in spill_dir (SpillDir); close() or the destructor removes it,
// and the next pool created in the same spill_dir removes the directories of pools whose process died.
// save() writes a standalone spill file (fsync'ed, data checksummed) that load() reads back, also from
// Python (mmstore.load) and the reverse for bytes and arrays.
//
// Errors: put/move/copy/save throw mmstore::Error kDiskFull when the disk is full; the pool is then
// unchanged except for objects already spilled successfully, and nothing is lost. Unknown refs: get()
// returns nullptr, erase() false, the others throw Error kNotFound.
//
// Thread safety: every method is thread-safe (one internal mutex; spill writes happen under it).
// Lifetime: a PoolObject returned by get()/load() keeps its bytes alive -- including the file mapping --
// until its last shared_ptr is released, whatever happens to the pool or the file meanwhile.
#pragma once

#include <cstdint>
#include <cstring>
#include <list>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "mmstore/containers/spill_store.hpp"
#include "mmstore/error.hpp"

namespace mmstore {

enum class PoolPolicy : std::uint8_t { kLru, kMru };

struct PoolOptions {
    std::uint64_t max_memory = std::uint64_t{2} << 30;
    std::string spill_dir;  // "" = $TMPDIR or /tmp
    PoolPolicy policy = PoolPolicy::kLru;
};

struct PoolRef {
    std::uint64_t id = 0;
    friend bool operator==(PoolRef, PoolRef) = default;
};

struct PoolStats {
    std::uint64_t ram_bytes = 0;   // sum of the sizes of objects cached in RAM (<= max_memory)
    std::uint64_t disk_bytes = 0;  // bytes of this pool's spill files
    std::uint64_t count = 0;       // objects in the pool
    std::uint64_t ram_count = 0;   // of which cached in RAM
    std::uint64_t disk_count = 0;  // of which with a spill file (an object can be in both)
    std::uint64_t hits = 0;        // get() answered from RAM
    std::uint64_t misses = 0;      // get() that had to map a spill file
    std::uint64_t spills = 0;      // spill files written
    std::uint64_t restores = 0;    // spill files mapped back by get()
};

// numpy's dtype.str for the arithmetic types (little-endian hosts: what Python's mmstore.load produces).
template <class T>
constexpr std::string_view dtype_of() {
    static_assert(std::is_arithmetic_v<T>, "typed pool arrays hold arithmetic types");
    if constexpr (std::is_same_v<T, bool>) return "|b1";
    else if constexpr (std::is_floating_point_v<T>) return sizeof(T) == 4 ? "<f4" : sizeof(T) == 8 ? "<f8" : "<f16";
    else if constexpr (std::is_signed_v<T>)
        return sizeof(T) == 1 ? "|i1" : sizeof(T) == 2 ? "<i2" : sizeof(T) == 4 ? "<i4" : "<i8";
    else return sizeof(T) == 1 ? "|u1" : sizeof(T) == 2 ? "<u2" : sizeof(T) == 4 ? "<u4" : "<u8";
}

// An immutable object of the pool: raw bytes, or an n-d array (dtype non-empty) in C order.
class PoolObject {
public:
    static std::shared_ptr<const PoolObject> bytes_copy(std::span<const std::byte> data);
    static std::shared_ptr<const PoolObject> owned(std::vector<std::byte> data, std::string dtype = {},
                                                   std::vector<std::uint64_t> shape = {});
    // Reads a spill file written by a Pool (or Python's Pool for bytes and arrays). FormatError kWrongKind
    // for a Python-only object (a pickle).
    static std::shared_ptr<const PoolObject> from_file(std::shared_ptr<const containers::SpillFile> file);

    std::span<const std::byte> bytes() const noexcept { return view_; }
    std::uint64_t size() const noexcept { return view_.size(); }
    const std::string& dtype() const noexcept { return dtype_; }  // "" for raw bytes
    const std::vector<std::uint64_t>& shape() const noexcept { return shape_; }
    bool mapped() const noexcept { return file_ != nullptr; }  // a view of a spill file mapping
    // The codec-encoded metadata written to spill files ({"kind": "bytes"} or "ndarray" with dtype, shape).
    std::string meta() const;

    template <class T>
    std::span<const T> as() const {
        if (dtype_ != dtype_of<T>())
            throw_error(ErrorCode::kInvalidArgument, "", "pool object has dtype '" + dtype_ + "', not '" +
                                                             std::string(dtype_of<T>()) + "'");
        return {reinterpret_cast<const T*>(view_.data()), view_.size() / sizeof(T)};
    }

private:
    PoolObject() = default;
    std::vector<std::byte> owned_;
    std::shared_ptr<const containers::SpillFile> file_;
    std::span<const std::byte> view_;
    std::string dtype_;
    std::vector<std::uint64_t> shape_;
};

class Pool {
public:
    explicit Pool(PoolOptions options = {});
    ~Pool();
    Pool(const Pool&) = delete;
    Pool& operator=(const Pool&) = delete;

    PoolRef put(std::span<const std::byte> data) { return put_object(PoolObject::bytes_copy(data)); }
    PoolRef put(std::vector<std::byte>&& data) { return put_object(PoolObject::owned(std::move(data))); }
    // A typed array in C order; shape defaults to {data.size()}.
    template <class T>
    PoolRef put_array(std::span<const T> data, std::vector<std::uint64_t> shape = {}) {
        if (shape.empty()) shape.push_back(data.size());
        std::uint64_t n = 1;
        for (auto d : shape) n *= d;
        if (n != data.size()) throw_error(ErrorCode::kInvalidArgument, "", "shape does not match the element count");
        std::vector<std::byte> bytes(data.size_bytes());
        if (!bytes.empty()) std::memcpy(bytes.data(), data.data(), bytes.size());
        return put_object(PoolObject::owned(std::move(bytes), std::string(dtype_of<T>()), std::move(shape)));
    }
    PoolRef put_object(std::shared_ptr<const PoolObject> obj);

    std::shared_ptr<const PoolObject> get(PoolRef ref);
    bool contains(PoolRef ref) const;
    bool erase(PoolRef ref);
    void move_to_disk(PoolRef ref);
    void copy_to_disk(PoolRef ref);
    void save(PoolRef ref, const std::string& path);
    static std::shared_ptr<const PoolObject> load(const std::string& path, bool verify = true);

    PoolStats stats() const;
    std::uint64_t max_memory() const noexcept { return opt_.max_memory; }
    const std::string& directory() const noexcept { return dir_.path(); }
    // Removes every object and the pool's directory; later calls throw Error kClosed. Idempotent.
    void close();

private:
    struct Entry {
        std::shared_ptr<const PoolObject> ram;  // null when only on disk
        std::uint64_t size = 0;
        std::uint64_t disk_size = 0;            // 0 when no spill file
        std::list<std::uint64_t>::iterator pos; // in order_ while ram is set
    };
    Entry& entry(PoolRef ref, const char* what);
    std::string file_of(std::uint64_t id) const;
    void write(std::uint64_t id, Entry& e);  // ensures a spill file
    void drop_ram(Entry& e);
    void make_room(std::uint64_t need);
    void trim() noexcept;
    void check_open() const;

    static constexpr std::uint64_t kTrimAfter = std::uint64_t{4} << 20;  // bytes released between heap trims

    PoolOptions opt_;
    containers::SpillDir dir_;
    mutable std::mutex mu_;
    std::unordered_map<std::uint64_t, Entry> entries_;
    std::list<std::uint64_t> order_;  // RAM-cached ids, least recently used first
    std::uint64_t next_id_ = 1;
    std::uint64_t released_ = 0;  // bytes released since the last os::trim_heap
    PoolStats stats_;
    bool closed_ = false;
};

}  // namespace mmstore
