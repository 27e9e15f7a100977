#include "mmstore/shared_dict.hpp"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <random>

#include "mmstore/storage/header.hpp"

namespace mmstore {

namespace {

constexpr const char* kShmDir = "/dev/shm/";
constexpr std::string_view kPrefix = "mmstore.";

std::string random_name() {
    static const char* digits = "0123456789abcdef";
    std::random_device rd;
    std::string n = "sd_";
    for (int i = 0; i < 16; ++i) n += digits[rd() % 16];
    return n;
}

OpenOptions segment_options(const SharedDictOptions& o) {
    OpenOptions open;
    open.create = o.create;
    open.mode = o.mode;
    open.volatile_memory = true;
    open.reattach_after_fork = true;
    open.verify = o.verify;
    // A segment's pages are memory: reserve address space generously (growth never moves the base).
    return open;
}

}  // namespace

std::string SharedDict::segment_path(std::string_view name) {
    bool ok = !name.empty() && name.size() <= 200 && name[0] != '.';
    for (char c : name)
        ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
                    c == '.');
    if (!ok)
        throw_error(ErrorCode::kInvalidArgument, std::string(name),
                    "invalid SharedDict name: use 1-200 characters of letters, digits, '_', '-' and '.', not starting with '.'");
    return std::string(kShmDir) + std::string(kPrefix) + std::string(name);
}

SharedDict::SharedDict(std::string name, const SharedDictOptions& options)
    : Dict(segment_path(name.empty() ? (name = random_name()) : name), segment_options(options)), name_(std::move(name)) {
    created_ = store().region().created();
    auto_unlink_ = options.auto_unlink.value_or(created_);
    if (created_ && options.size_hint > 0) {
        containers::Store::WriteGuard g(store());
        table().reserve(options.size_hint);
    }
}

SharedDict::~SharedDict() {
    if (is_open()) {
        try {
            close();
        } catch (...) {
            abandon();
        }
    }
}

std::int64_t SharedDict::increment(const Value& key, std::int64_t delta) {
    const std::string k = codec::encode(key);
    containers::Store::WriteGuard g(store());
    const std::uint64_t pos = table().find(k);
    std::int64_t now = delta;
    if (pos != containers::kNotFound) {
        containers::WordBuf buf;
        const Value old = codec::decode(table().value_at(pos, buf));
        if (old.type != Value::Type::kInt)
            throw_error(ErrorCode::kInvalidArgument, path(), "increment: the stored value is not an integer");
        if (__builtin_add_overflow(old.i, delta, &now))
            throw_error(ErrorCode::kInvalidArgument, path(), "increment: the result does not fit 64 bits");
        table().assign_at(pos, codec::encode(Value::integer(now)));
    } else {
        table().set(k, codec::encode(Value::integer(now)));
    }
    store().after_mutation();
    return now;
}

bool SharedDict::compare_and_set_encoded(std::string_view key, std::string_view expected, std::string_view value) {
    containers::Store::WriteGuard g(store());
    const std::uint64_t pos = table().find(key);
    if (pos == containers::kNotFound) return false;
    containers::WordBuf buf;
    if (table().value_at(pos, buf) != expected) return false;
    table().assign_at(pos, value);
    store().after_mutation();
    return true;
}

void SharedDict::update_many_encoded(const std::vector<std::pair<std::string, std::string>>& pairs) {
    containers::Store::WriteGuard g(store());
    std::vector<std::uint64_t> deferred;
    containers::HashTable copy = table().begin_copy(pairs.size(), &deferred);
    try {
        for (const auto& [k, v] : pairs) copy.set(k, v);
    } catch (...) {
        table().abandon_copy(copy);
        throw;
    }
    table().commit_copy(copy);
    store().after_mutation();
}

namespace {
std::uint64_t cell_id(const containers::Store& store, std::uint64_t cell) { return containers::HashTable::cell_id(store, cell); }
}  // namespace

std::optional<NestedDict> SharedDict::child_of(const containers::HashTable& table, const std::string& key) {
    return store().read([&]() -> std::optional<NestedDict> {
        const auto t = table.checked();
        const std::uint64_t pos = table.find_in(t, key);
        if (pos == containers::kNotFound) return std::nullopt;
        const std::uint64_t* slot = &containers::HashTable::entries_of(t)[pos].value;
        const std::uint64_t w = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
        store().check_word(w, slot);
        if (!containers::is_table_ref(w)) return std::nullopt;
        const std::uint64_t cell = containers::table_ref_cell(w);
        return NestedDict(this, cell, cell_id(store(), cell));
    });
}

NestedDict SharedDict::set_child_of(containers::HashTable& table, const std::string& key) {
    // Lock held by the caller.
    const std::string ref = table.create_child();
    try {
        table.set(key, ref);
    } catch (...) {
        containers::HashTable c = table.child(containers::inline_word(ref));
        c.destroy();
        store().arena().free(c.cell(), sizeof(containers::CellRecord));
        throw;
    }
    store().after_mutation();
    const std::uint64_t cell = containers::table_ref_cell(containers::inline_word(ref));
    return NestedDict(this, cell, cell_id(store(), cell));
}

std::optional<NestedDict> SharedDict::child(const Value& key) { return child_of(table(), codec::encode(key)); }

NestedDict SharedDict::set_child(const Value& key) {
    containers::Store::WriteGuard g(store());
    return set_child_of(table(), codec::encode(key));
}

containers::HashTable NestedDict::table() const {
    containers::Store& store = owner_->store();
    store.check_open();
    if (cell_id(store, cell_) != id_)
        throw_error(ErrorCode::kNotFound, owner_->path(), "nested table no longer exists: its entry was replaced or erased");
    return containers::HashTable(&store, cell_);  // readers take checked() snapshots of it
}

std::optional<Value> NestedDict::get(const Value& key) const {
    const std::string k = codec::encode(key);
    const auto enc = owner_->store().read([&]() -> std::optional<std::string> {
        const containers::HashTable table_ = table();
        const auto t = table_.checked();
        const std::uint64_t pos = table_.find_in(t, k);
        if (pos == containers::kNotFound) return std::nullopt;
        containers::WordBuf buf;
        return std::string(owner_->store().view(&containers::HashTable::entries_of(t)[pos].value, buf));
    });
    if (!enc) return std::nullopt;
    return codec::decode(*enc);
}

bool NestedDict::set(const Value& key, const Value& value) {
    const std::string k = codec::encode(key), v = codec::encode(value);
    containers::Store::WriteGuard g(owner_->store());
    containers::HashTable t = table();
    t.check_root();
    const bool added = t.set(k, v);
    owner_->store().after_mutation();
    return added;
}

bool NestedDict::erase(const Value& key) {
    const std::string k = codec::encode(key);
    containers::Store::WriteGuard g(owner_->store());
    containers::HashTable t = table();
    t.check_root();
    const bool erased = t.erase(k, hash64(k.data(), k.size()));
    if (erased) owner_->store().after_mutation();
    return erased;
}

std::uint64_t NestedDict::size() const {
    return owner_->store().read([&] { return table().size_checked(); });
}

std::optional<NestedDict> NestedDict::child(const Value& key) const {
    return owner_->store().read([&] { return owner_->child_of(table(), codec::encode(key)); });
}

NestedDict NestedDict::set_child(const Value& key) {
    containers::Store::WriteGuard g(owner_->store());
    containers::HashTable t = table();
    t.check_root();
    return owner_->set_child_of(t, codec::encode(key));
}

bool SharedDict::wait_for_change(std::int64_t timeout_ns) const {
    store().check_open();
    return store().wait_for_change(store().change_count(), timeout_ns);
}

void SharedDict::unlink() {
    store().check_open();
    os::remove_file(path());
}

void SharedDict::close() {
    if (!is_open()) return;
    if (auto_unlink_ && store().usable() && store().region().writable())
        __atomic_store_n(&store().region().live().unlink_on_last_close, 1, __ATOMIC_RELEASE);  // no lock needed
    Dict::close();
}

void SharedDict::unlink_by_name(std::string_view name) {
    const std::string p = segment_path(name);
    if (::unlink(p.c_str()) != 0) {
        if (errno == ENOENT) throw_error(ErrorCode::kNotFound, p, "no SharedDict named '" + std::string(name) + "'", errno);
        throw_error(ErrorCode::kIo, p, "cannot unlink", errno);
    }
}

std::vector<SharedSegmentInfo> SharedDict::list() {
    std::vector<SharedSegmentInfo> out;
    DIR* d = ::opendir(kShmDir);
    if (d == nullptr) return out;
    while (dirent* e = ::readdir(d)) {
        const std::string_view n(e->d_name);
        if (n.substr(0, kPrefix.size()) != kPrefix) continue;
        SharedSegmentInfo info;
        info.name = std::string(n.substr(kPrefix.size()));
        const std::string p = std::string(kShmDir) + std::string(n);
        try {
            os::File f = os::File::open(p, false, false, false, 0);
            info.size = f.size();
            storage::FileHeader h{};
            if (f.pread(&h, sizeof h, 0) == sizeof h) info.creator_pid = h.creator_pid;
            info.in_use = storage::Region::in_use(p);
        } catch (const Error&) {
            continue;  // removed meanwhile, or not ours to read
        }
        out.push_back(std::move(info));
    }
    ::closedir(d);
    return out;
}

}  // namespace mmstore
