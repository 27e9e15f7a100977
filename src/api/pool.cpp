#include "mmstore/pool.hpp"

#include <cstdlib>

#include "mmstore/codec/value.hpp"

namespace mmstore {

using codec::Value;

namespace {

const Value* field(const Value& meta, std::string_view name) {
    for (std::size_t i = 0; i + 1 < meta.items.size(); i += 2)
        if (meta.items[i].type == Value::Type::kStr && meta.items[i].data == name) return &meta.items[i + 1];
    return nullptr;
}

std::string default_spill_dir() {
    const char* t = std::getenv("TMPDIR");
    return t != nullptr && *t != '\0' ? std::string(t) : std::string("/tmp");
}

}  // namespace

std::shared_ptr<const PoolObject> PoolObject::bytes_copy(std::span<const std::byte> data) {
    return owned(std::vector<std::byte>(data.begin(), data.end()));
}

std::shared_ptr<const PoolObject> PoolObject::owned(std::vector<std::byte> data, std::string dtype,
                                                    std::vector<std::uint64_t> shape) {
    std::shared_ptr<PoolObject> o(new PoolObject());
    o->owned_ = std::move(data);
    o->view_ = o->owned_;
    o->dtype_ = std::move(dtype);
    o->shape_ = std::move(shape);
    return o;
}

std::shared_ptr<const PoolObject> PoolObject::from_file(std::shared_ptr<const containers::SpillFile> file) {
    const std::string& path = file->path();
    const Value meta = codec::decode(file->meta());
    const Value* kind = meta.type == Value::Type::kDict ? field(meta, "kind") : nullptr;
    if (kind == nullptr || kind->type != Value::Type::kStr)
        throw_format(ErrorCode::kCorrupt, path, "spill metadata has no kind");
    std::shared_ptr<PoolObject> o(new PoolObject());
    if (kind->data == "ndarray") {
        const Value* dt = field(meta, "dtype");
        const Value* shape = field(meta, "shape");
        if (dt == nullptr || dt->type != Value::Type::kStr || shape == nullptr || shape->type != Value::Type::kList)
            throw_format(ErrorCode::kCorrupt, path, "ndarray spill metadata lacks dtype or shape");
        o->dtype_ = dt->data;
        for (const Value& d : shape->items) {
            if (d.type != Value::Type::kInt || d.i < 0) throw_format(ErrorCode::kCorrupt, path, "bad ndarray shape");
            o->shape_.push_back(static_cast<std::uint64_t>(d.i));
        }
    } else if (kind->data != "bytes") {
        throw_format(ErrorCode::kWrongKind, path,
                     "spill file holds a '" + kind->data + "' object, which only Python's mmstore can read");
    }
    if (file->buffer_count() != 1) throw_format(ErrorCode::kCorrupt, path, "spill file of bytes needs one buffer");
    o->view_ = file->buffer(0);
    o->file_ = std::move(file);
    return o;
}

std::string PoolObject::meta() const {
    Value m;
    m.type = Value::Type::kDict;
    if (dtype_.empty()) {
        m.items = {Value::str("kind"), Value::str("bytes")};
    } else {
        std::vector<Value> dims;
        for (auto d : shape_) dims.push_back(Value::integer(static_cast<std::int64_t>(d)));
        m.items = {Value::str("kind"), Value::str("ndarray"), Value::str("dtype"), Value::str(dtype_),
                   Value::str("shape"), Value::sequence(Value::Type::kList, std::move(dims))};
    }
    return codec::encode(m);
}

Pool::Pool(PoolOptions options) : opt_(std::move(options)) {
    if (opt_.spill_dir.empty()) opt_.spill_dir = default_spill_dir();
    dir_ = containers::SpillDir::create(opt_.spill_dir);
}

Pool::~Pool() { close(); }

void Pool::close() {
    std::lock_guard lock(mu_);
    if (closed_) return;
    closed_ = true;
    entries_.clear();
    order_.clear();
    dir_.close();
}

void Pool::check_open() const {
    if (closed_) throw_error(ErrorCode::kClosed, opt_.spill_dir, "the pool is closed");
}

Pool::Entry& Pool::entry(PoolRef ref, const char* what) {
    check_open();
    auto it = entries_.find(ref.id);
    if (it == entries_.end())
        throw_error(ErrorCode::kNotFound, dir_.path(), std::string(what) + ": no object " + std::to_string(ref.id) + " in this pool");
    return it->second;
}

std::string Pool::file_of(std::uint64_t id) const { return dir_.file(std::to_string(id) + ".spill"); }

void Pool::write(std::uint64_t id, Entry& e) {
    if (e.disk_size != 0) return;
    const std::string meta = e.ram->meta();
    const std::span<const std::byte> bufs[1] = {e.ram->bytes()};
    e.disk_size = containers::write_spill_file(file_of(id), meta, bufs);
    ++stats_.spills;
}

void Pool::drop_ram(Entry& e) {
    if (!e.ram) return;
    e.ram.reset();
    order_.erase(e.pos);
    stats_.ram_bytes -= e.size;
    released_ += e.size;
}

void Pool::trim() noexcept {
    // os::trim_heap explains why; batched so that pools of small objects do not pay a call per eviction.
    if (released_ >= kTrimAfter) {
        released_ = 0;
        os::trim_heap();
    }
}

void Pool::make_room(std::uint64_t need) {
    while (stats_.ram_bytes + need > opt_.max_memory && !order_.empty()) {
        const std::uint64_t victim = opt_.policy == PoolPolicy::kLru ? order_.front() : order_.back();
        Entry& e = entries_.at(victim);
        try {
            write(victim, e);  // throws kDiskFull with the victim still cached
        } catch (...) {
            trim();
            throw;
        }
        drop_ram(e);
    }
    trim();
}

PoolRef Pool::put_object(std::shared_ptr<const PoolObject> obj) {
    std::lock_guard lock(mu_);
    check_open();
    const std::uint64_t id = next_id_;
    Entry e;
    e.size = obj->size();
    e.ram = std::move(obj);
    if (e.size > opt_.max_memory) {
        write(id, e);  // too large to cache: straight to disk
        e.ram.reset();
    } else {
        make_room(e.size);
        order_.push_back(id);
        e.pos = std::prev(order_.end());
        stats_.ram_bytes += e.size;
    }
    entries_.emplace(id, std::move(e));
    ++next_id_;
    return PoolRef{id};
}

std::shared_ptr<const PoolObject> Pool::get(PoolRef ref) {
    std::lock_guard lock(mu_);
    check_open();
    auto it = entries_.find(ref.id);
    if (it == entries_.end()) return nullptr;
    Entry& e = it->second;
    if (e.ram) {
        ++stats_.hits;
        order_.splice(order_.end(), order_, e.pos);
        return e.ram;
    }
    ++stats_.misses;
    auto obj = PoolObject::from_file(containers::SpillFile::open(file_of(ref.id)));
    ++stats_.restores;
    if (e.size <= opt_.max_memory) {
        try {
            make_room(e.size);
        } catch (const Error&) {
            return obj;  // could not make room (disk full): serve it mapped, uncached
        }
        e.ram = obj;
        order_.push_back(ref.id);
        e.pos = std::prev(order_.end());
        stats_.ram_bytes += e.size;
    }
    return obj;
}

bool Pool::contains(PoolRef ref) const {
    std::lock_guard lock(mu_);
    return !closed_ && entries_.count(ref.id) != 0;
}

bool Pool::erase(PoolRef ref) {
    std::lock_guard lock(mu_);
    check_open();
    auto it = entries_.find(ref.id);
    if (it == entries_.end()) return false;
    drop_ram(it->second);
    if (it->second.disk_size != 0) os::remove_file(file_of(ref.id));
    entries_.erase(it);
    return true;
}

void Pool::move_to_disk(PoolRef ref) {
    std::lock_guard lock(mu_);
    Entry& e = entry(ref, "move_to_disk");
    if (e.ram) write(ref.id, e);
    drop_ram(e);
    trim();
}

void Pool::copy_to_disk(PoolRef ref) {
    std::lock_guard lock(mu_);
    Entry& e = entry(ref, "copy_to_disk");
    if (e.ram) write(ref.id, e);
}

void Pool::save(PoolRef ref, const std::string& path) {
    std::shared_ptr<const PoolObject> obj;
    {
        std::lock_guard lock(mu_);
        Entry& e = entry(ref, "save");
        obj = e.ram ? e.ram : PoolObject::from_file(containers::SpillFile::open(file_of(ref.id)));
    }
    // Outside the lock: the object is immutable and kept alive by `obj`.
    const std::span<const std::byte> bufs[1] = {obj->bytes()};
    containers::write_spill_file(path, obj->meta(), bufs, containers::SpillWriteOptions{true, true, 0600});
}

std::shared_ptr<const PoolObject> Pool::load(const std::string& path, bool verify) {
    return PoolObject::from_file(containers::SpillFile::open(path, verify));
}

PoolStats Pool::stats() const {
    std::lock_guard lock(mu_);
    PoolStats s = stats_;
    s.count = entries_.size();
    s.ram_count = order_.size();
    s.disk_bytes = 0;
    s.disk_count = 0;
    for (const auto& [id, e] : entries_) {
        s.disk_bytes += e.disk_size;
        s.disk_count += e.disk_size != 0;
    }
    return s;
}

}  // namespace mmstore
