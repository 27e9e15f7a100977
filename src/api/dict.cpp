#include "mmstore/dict.hpp"

#include <unistd.h>

namespace mmstore {

namespace {

// Encodes a byte string as a codec `bytes` value into `buf` (no Value, no allocation for short input:
// the buffer is reused by the caller).
std::string_view as_bytes_value(std::string_view raw, std::string& buf) {
    buf.clear();
    if (raw.size() <= codec::tag::kShortMax) {
        buf.push_back(static_cast<char>(codec::tag::kShortBytes + raw.size()));
    } else {
        buf.push_back(static_cast<char>(codec::tag::kBytes));
        codec::append_u32(static_cast<std::uint32_t>(raw.size()), buf);
    }
    buf.append(raw);
    return buf;
}

// Per-thread scratch so that the bytes-level calls do not allocate.
std::string& scratch(int i) {
    thread_local std::string bufs[2];
    return bufs[i];
}

std::string_view payload(std::string_view enc, const std::string& path) {
    std::uint8_t fam = 0;
    std::string_view p;
    if (!codec::payload_view(enc, fam, p) || fam != codec::tag::kBytes)
        throw_error(ErrorCode::kInvalidArgument, path, "value is not a bytes value; use the typed API (codec::Value)");
    return p;
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
    if (store_->region().created() || (store_->root() == 0 && store_->region().writable())) {
        store_->arena().format();
        table_->format();
        store_->region().sync();
        return;
    }
    table_->check_root();
    if (store_->region().was_dirty() && store_->region().writable()) {
        table_->repair();
        store_->region().sync();
    }
}

std::optional<std::string> Dict::get_encoded(std::string_view key) const {
    check();
    const std::uint64_t pos = table_->find(key);
    if (pos == containers::kNotFound) return std::nullopt;
    containers::WordBuf buf;
    return std::string(table_->value_at(pos, buf));
}

namespace {
// The payload of a bytes value at `pos`, zero-copy: implied-tag inline words hold it in the slot itself.
std::string_view bytes_payload(const containers::HashTable& t, std::uint64_t pos, const std::string& path) {
    containers::WordBuf buf;
    const std::string_view enc = t.value_at(pos, buf);
    const std::string_view p = payload(enc, path);
    if (enc.data() == buf.bytes) {
        // Rebuilt in buf: point at the same bytes inside the slot (tag dropped, payload at offset 0).
        return {reinterpret_cast<const char*>(t.value_word_ptr(pos)), p.size()};
    }
    return p;
}
}  // namespace

bool Dict::set_encoded(std::string_view key, std::string_view value) {
    check_write();
    const bool added = table_->set(key, value);
    store_->after_mutation();
    return added;
}

bool Dict::erase_encoded(std::string_view key) {
    check_write();
    const bool erased = table_->erase(key, hash64(key.data(), key.size()));
    if (erased) store_->after_mutation();
    return erased;
}

std::optional<std::string_view> Dict::get(std::string_view key) const {
    check();
    const std::uint64_t pos = table_->find(as_bytes_value(key, scratch(0)));
    if (pos == containers::kNotFound) return std::nullopt;
    return bytes_payload(*table_, pos, path());
}

bool Dict::contains(std::string_view key) const {
    check();
    return table_->find(as_bytes_value(key, scratch(0))) != containers::kNotFound;
}

bool Dict::set(std::string_view key, std::string_view value) {
    return set_encoded(as_bytes_value(key, scratch(0)), as_bytes_value(value, scratch(1)));
}

bool Dict::erase(std::string_view key) { return erase_encoded(as_bytes_value(key, scratch(0))); }

void Dict::get_many(std::span<const std::string_view> keys, std::span<std::optional<std::string_view>> out) const {
    check();
    if (out.size() < keys.size()) throw_error(ErrorCode::kInvalidArgument, path(), "get_many: output span too small");
    // Encode all keys into one buffer, then probe in prefetching batches.
    std::string buf;
    std::vector<std::size_t> ends;
    ends.reserve(keys.size());
    std::string one;
    for (auto k : keys) {
        buf += as_bytes_value(k, one);
        ends.push_back(buf.size());
    }
    std::vector<std::string_view> enc(keys.size());
    for (std::size_t i = 0, start = 0; i < keys.size(); start = ends[i], ++i) enc[i] = std::string_view(buf).substr(start, ends[i] - start);
    std::vector<std::uint64_t> pos(keys.size());
    table_->find_many(enc, pos);
    for (std::size_t i = 0; i < keys.size(); ++i)
        out[i] = pos[i] == containers::kNotFound ? std::nullopt : std::optional(bytes_payload(*table_, pos[i], path()));
}

std::optional<Value> Dict::get(const Value& key) const {
    auto v = get_encoded(codec::encode(key));
    if (!v) return std::nullopt;
    return codec::decode(*v);
}

bool Dict::contains(const Value& key) const {
    check();
    return table_->find(codec::encode(key)) != containers::kNotFound;
}

bool Dict::set(const Value& key, const Value& value) { return set_encoded(codec::encode(key), codec::encode(value)); }

bool Dict::erase(const Value& key) { return erase_encoded(codec::encode(key)); }

std::uint64_t Dict::size() const {
    check();
    return table_->size();
}

void Dict::clear() {
    check_write();
    table_->clear();
    store_->after_mutation();
}

void Dict::for_each(const std::function<void(std::string_view, std::string_view)>& f) const {
    check();
    for (std::uint64_t i = 0; i < table_->end(); ++i)
        if (table_->occupied(i)) {
            containers::WordBuf kb, vb;
            f(table_->key_at(i, kb), table_->value_at(i, vb));
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
    if (store_) store_->close();
}

void Dict::abandon() noexcept {
    if (store_) store_->abandon();
}

void Dict::verify() const {
    check();
    table_->verify();
}

void Dict::compact() {
    check_write();
    const std::string path = store_->path();
    const std::string tmp = path + ".compact." + std::to_string(::getpid());
    os::remove_file(tmp);
    {
        OpenOptions o = options_;
        o.create = OpenOptions::Create::kAlways;
        o.durable = false;
        Dict out(tmp, o);
        out.table_->reserve(table_->size());
        for (std::uint64_t i = 0; i < table_->end(); ++i)
            if (table_->occupied(i)) {
                containers::WordBuf kb, vb;
                out.table_->set(table_->key_at(i, kb), table_->value_at(i, vb));
            }
        out.store_->region().shrink(out.store_->arena().trim());
        out.close();  // synced
    }
    os::rename_file(tmp, path);
    os::fsync_parent_dir(path);
    store_->close();
    OpenOptions o = options_;
    o.create = OpenOptions::Create::kNever;
    open(path, o);
}

Stats Dict::stats() const {
    check();
    const auto s = store_->stats();
    Stats out;
    out.entries = table_->size();
    out.file_bytes = s.file_bytes;
    out.allocated_bytes = s.allocated_bytes;
    out.arena_top = s.arena_top;
    out.free_bytes = s.free_bytes;
    out.capacity = table_->capacity();
    return out;
}

}  // namespace mmstore
