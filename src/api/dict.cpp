#include "mmstore/dict.hpp"

#include "compact.hpp"
#include "mmstore/containers/snapshot.hpp"

#include <unistd.h>

#include <cstring>
#include <optional>

namespace mmstore {

namespace {

// A byte string encoded as a codec `bytes` value. Short ones (<= 15 bytes) are assembled in registers and
// written with two 8-byte stores: a tag-byte store followed by a memcpy made the hash's first loads miss
// store forwarding, which cost a third of a lookup (bench/cpp, perf).
struct BytesValue {
    alignas(8) char small[16];
    std::string big;
    std::string_view sv;

    explicit BytesValue(std::string_view raw) {
        const std::size_t n = raw.size();
        const auto* p = reinterpret_cast<const unsigned char*>(raw.data());
        const std::uint64_t tag = codec::tag::kShortBytes + n;
        if (n <= 7) {
            const std::uint64_t lo = (containers::pack7(p, n) << 8) | tag;
            std::memcpy(small, &lo, 8);
            sv = std::string_view(small, n + 1);
        } else if (n <= 15) {
            std::uint64_t first, last;
            std::memcpy(&first, p, 8);
            std::memcpy(&last, p + n - 8, 8);
            const std::uint64_t lo = (first << 8) | tag;
            const std::uint64_t hi = last >> (8 * (15 - n));
            std::memcpy(small, &lo, 8);
            std::memcpy(small + 8, &hi, 8);
            sv = std::string_view(small, n + 1);
        } else {
            if (n <= codec::tag::kShortMax) {
                big.push_back(static_cast<char>(tag));
            } else {
                big.push_back(static_cast<char>(codec::tag::kBytes));
                codec::append_u32(static_cast<std::uint32_t>(n), big);
            }
            big.append(raw);
            sv = big;
        }
    }
};

[[noreturn]] void throw_not_bytes(const std::string& path) {
    throw_error(ErrorCode::kInvalidArgument, path, "value is not a bytes value; use the typed API (codec::Value)");
}

}  // namespace

Dict::Dict(const std::string& path, const OpenOptions& options) { open(path, options); }

Dict::~Dict() {
    if (is_open()) {
        try {
            close();
        } catch (...) {
            abandon();
        }
    }
}

void Dict::open(const std::string& path, const OpenOptions& options) {
    options_ = options;
    store_ = std::make_unique<containers::Store>();
    store_->open(path, storage::StoreKind::kDict, options);
    table_ = std::make_unique<containers::HashTable>(store_.get());
    // The callbacks capture the heap objects, not `this`: a Dict may be moved (its Store and table stay put).
    containers::Store* store = store_.get();
    containers::HashTable* table = table_.get();
    store_->set_on_reattach([table] { table->check_root(); });
    store_->set_recovery([store, table] {
        table->recover();
        store->arena().rebuild([table](const alloc::Arena::Visit& v) { table->enumerate(v); });
    });
    store_->set_relocation([table] { return table->relocate_down(); });
    if (!options.volatile_memory) store_->region().set_before_commit([table] { table->stamp_commit(); });
    containers::attach_root(
        *store_, [&] { table_->format(); }, [&] { table_->check_root(); }, [&] { table_->repair(); });
}

std::optional<std::string> Dict::get_encoded(std::string_view key) const {
    return store_->read([&]() -> std::optional<std::string> {
        const auto t = table_->checked();  // lookup and value from one table: others may switch tables
        const std::uint64_t pos = table_->find_in(t, key);
        if (pos == containers::kNotFound) return std::nullopt;
        containers::WordBuf buf;
        return std::string(store_->view(&containers::HashTable::entries_of(t)[pos].value, buf));
    });
}

namespace {
// The payload of the bytes value in `slot`, zero-copy: implied-tag inline words hold it in the slot itself.
// Never a null data() (a lookup's miss is the null view).
std::string_view bytes_payload(const containers::Store& store, const std::uint64_t* slot) {
    containers::WordBuf buf;
    const std::string_view enc = store.view(slot, buf);
    std::uint8_t fam = 0;
    std::string_view p;
    if (!codec::payload_view(enc, fam, p) || fam != codec::tag::kBytes) [[unlikely]] throw_not_bytes(store.path());
    if (enc.data() == buf.bytes) {
        // Rebuilt in buf: point at the same bytes inside the slot (tag dropped, payload at offset 0).
        return {reinterpret_cast<const char*>(slot), p.size()};
    }
    return p;
}
}  // namespace

bool Dict::set_encoded(std::string_view key, std::string_view value) {
    containers::Store::WriteGuard g(*store_);
    const bool added = table_->set(key, value);
    store_->after_mutation();
    return added;
}

bool Dict::erase_encoded(std::string_view key) {
    containers::Store::WriteGuard g(*store_);
    const bool erased = table_->erase(key, hash64(key.data(), key.size()));
    if (erased) store_->after_mutation();
    return erased;
}

std::optional<std::string_view> Dict::get(std::string_view key) const {
    const BytesValue k(key);
    const std::uint64_t hash = hash64(k.sv.data(), k.sv.size());  // once, outside the retry loop
    // The read returns a plain view (null data: a miss), built in registers: returning the optional from
    // the lambda stored it in two halves and a flag byte and reloaded it whole, two store-forwarding
    // stalls that cost about a fifth of an in-cache lookup (perf, bench/cpp).
    const std::string_view v = store_->read([&]() -> std::string_view {
        const auto t = table_->checked();
        const std::uint64_t pos = table_->find_in(t, k.sv, hash);
        if (pos == containers::kNotFound) return {};
        return bytes_payload(*store_, &containers::HashTable::entries_of(t)[pos].value);
    });
    if (v.data() == nullptr) return std::nullopt;
    return v;
}

bool Dict::contains(std::string_view key) const {
    const BytesValue k(key);
    return store_->read([&] { return table_->find(k.sv) != containers::kNotFound; });
}

void Dict::lock() { check_write(); store_->lock_write(); }
bool Dict::try_lock(std::int64_t timeout_ns) { check_write(); return store_->try_lock_write(timeout_ns); }
void Dict::unlock() { store_->unlock_write(); }

bool Dict::set(std::string_view key, std::string_view value) {
    return set_encoded(BytesValue(key).sv, BytesValue(value).sv);
}

bool Dict::erase(std::string_view key) { return erase_encoded(BytesValue(key).sv); }

void Dict::get_many(std::span<const std::string_view> keys, std::span<std::optional<std::string_view>> out) const {
    check();
    if (out.size() < keys.size()) throw_error(ErrorCode::kInvalidArgument, path(), "get_many: output span too small");
    // Encode all keys into one buffer, then probe in prefetching batches.
    std::string buf;
    std::vector<std::size_t> ends;
    ends.reserve(keys.size());
    for (auto k : keys) {
        buf += BytesValue(k).sv;
        ends.push_back(buf.size());
    }
    std::vector<std::string_view> enc(keys.size());
    for (std::size_t i = 0, start = 0; i < keys.size(); start = ends[i], ++i) enc[i] = std::string_view(buf).substr(start, ends[i] - start);
    std::vector<std::uint64_t> pos(keys.size());
    // One validated table snapshot for the whole batch (lock-free: retried if a writer freed what we read).
    store_->read([&] {
        const auto t = table_->checked();
        table_->find_many(t, enc, pos);
        const containers::EntrySlot* ent = containers::HashTable::entries_of(t);
        for (std::size_t i = 0; i < keys.size(); ++i)
            out[i] = pos[i] == containers::kNotFound ? std::nullopt
                                                     : std::optional(bytes_payload(*store_, &ent[pos[i]].value));
        return 0;
    });
}

std::optional<Value> Dict::get(const Value& key) const {
    auto v = get_encoded(codec::encode(key));
    if (!v) return std::nullopt;
    return codec::decode(*v);
}

bool Dict::contains(const Value& key) const {
    const std::string k = codec::encode(key);
    return store_->read([&] { return table_->find(k) != containers::kNotFound; });
}

bool Dict::set(const Value& key, const Value& value) { return set_encoded(codec::encode(key), codec::encode(value)); }

bool Dict::erase(const Value& key) { return erase_encoded(codec::encode(key)); }

std::uint64_t Dict::size() const { return store_->read([&] { return table_->size_checked(); }); }

void Dict::clear() {
    containers::Store::WriteGuard g(*store_);
    table_->clear();
    store_->after_mutation();
}

void Dict::for_each(const std::function<void(std::string_view, std::string_view)>& f) const {
    check();
    // A writable handle holds the lock for a consistent pass; a read-only one cannot take it (its mapping
    // is read-only) and sees other processes' concurrent changes as they happen.
    std::optional<containers::Store::WriteGuard> g;
    if (store_->region().writable()) g.emplace(*store_);
    const auto t = table_->checked();  // one table throughout
    const containers::EntrySlot* ent = containers::HashTable::entries_of(t);
    for (std::uint64_t i = 0; i < t.used; ++i)
        if (ent[i].key != containers::kTombWord) {
            containers::WordBuf kb, vb;
            f(store_->view(&ent[i].key, kb), store_->view(&ent[i].value, vb));
        }
}

const std::string& Dict::path() const {
    static const std::string empty;
    return store_ ? store_->path() : empty;
}

void Dict::sync() {
    check();
    store_->sync();
}

void Dict::close() {
    if (store_ && store_->is_open()) containers::close_snapshots_of(*store_, reinterpret_cast<std::uintptr_t>(store_.get()));
    if (store_) store_->close();
}

void Dict::abandon() noexcept {
    if (store_) store_->abandon();
}

void Dict::verify() const {
    check();
    if (store_->region().writable()) {
        containers::Store::WriteGuard g(*store_);  // a consistent picture: no writer mid-operation
        table_->verify();
        return;
    }
    // A read-only mapping cannot take the lock: verify the table optimistically (again if a writer freed
    // what we read). The arena's free lists change on every allocation, so they are checked only while no
    // writer is active, and a failure counts only if no write happened meanwhile (then it is real damage,
    // e.g. a bogus block on a free list, which makes every later write fail).
    store_->read([&] {
        table_->verify(false);
        return 0;
    });
    store_->verify_arena_unlocked([this](const alloc::Arena::Visit& v) { table_->enumerate(v); });
}

void Dict::compact() {
    check_write();
    const std::string path = store_->path();
    // compact() replaces this handle's store object, which the snapshots of the handle read through.
    if (containers::has_snapshots_of(*store_, reinterpret_cast<std::uintptr_t>(store_.get())))
        throw LockedError(path, "compact() while a snapshot of this handle is open; close it first", 0);
    if (!store_->region().claim_exclusive())
        throw LockedError(path, "compact() replaces the file, so it needs the store to itself; other handles have it open",
                          store_->lock_holder_pid());
    try {
        detail::rewrite_compacted<Dict>(path, options_, [this](Dict& out) {
            out.table_->reserve(table_->size());
            for (std::uint64_t i = 0; i < table_->end(); ++i) {
                if (!table_->occupied(i)) continue;
                containers::WordBuf kb, vb;
                out.table_->set(table_->key_at(i, kb), table_->value_at(i, vb));
            }
        });
    } catch (...) {
        store_->region().release_gate();
        throw;
    }
    store_->close();
    OpenOptions o = options_;
    o.create = OpenOptions::Create::kNever;
    open(path, o);
}

Stats Dict::stats() const {
    const auto [live, cap] = store_->read([&] {
        const auto t = table_->checked();
        return std::pair(t.h->live, containers::entries_cap_of(t.capacity));
    });
    return detail::make_stats(*store_, live, cap);
}

}  // namespace mmstore
