// Dict::Snapshot (dict.hpp) over containers/snapshot.hpp.
#include "mmstore/containers/snapshot.hpp"

#include <stdexcept>

#include "mmstore/dict.hpp"
#include "mmstore/list.hpp"

namespace mmstore {

namespace {
// The id of a handle's store object, tagging its snapshots so that close() frees them.
std::uint64_t handle_tag(const containers::Store* s) noexcept { return reinterpret_cast<std::uintptr_t>(s); }
}  // namespace

Dict::Snapshot Dict::snapshot() const {
    check();
    return Snapshot(*this);
}

Dict::Snapshot::Snapshot(const Dict& d)
    : store_(d.store_.get()), slot_(std::make_shared<Slot>(Slot{d.store_.get()})), table_(*d.table_) {
    slot_->index = containers::open_snapshot(*store_, handle_tag(store_), slot_->version);
    slot_->open = true;
    version_ = slot_->version;
    owner_ = true;
    open_ = true;
}

Dict::Snapshot::Snapshot(std::shared_ptr<Slot> slot, const containers::HashTable& table)
    : store_(slot->store), slot_(std::move(slot)), table_(table), version_(slot_->version), open_(true) {}

Dict::Snapshot::Snapshot(Snapshot&& o) noexcept
    : store_(o.store_), slot_(std::move(o.slot_)), table_(o.table_), version_(o.version_), owner_(o.owner_),
      open_(o.open_), items_(std::move(o.items_)) {
    o.open_ = false;
    o.owner_ = false;
}

Dict::Snapshot::~Snapshot() { close(); }

bool Dict::Snapshot::is_open() const noexcept { return open_ && slot_->open && store_->is_open(); }

void Dict::Snapshot::close() noexcept {
    // A closed Dict freed its handle's slots already (Dict::close).
    if (open_ && owner_ && slot_->open && store_->is_open()) containers::close_snapshot(*store_, slot_->index);
    if (open_ && owner_) slot_->open = false;
    open_ = false;
    items_.reset();
}

void Dict::Snapshot::check() const {
    if (!open_ || !slot_->open) throw_error(ErrorCode::kClosed, store_->path(), "the snapshot is closed");
    store_->check_open();
}

Dict::Snapshot Dict::Snapshot::nested(std::string_view encoded_value) const {
    check();
    const std::uint64_t w = containers::inline_word(encoded_value);
    if (w == 0 || !containers::is_table_ref(w))
        throw_error(ErrorCode::kInvalidArgument, store_->path(), "the value is not a nested dict");
    return Snapshot(slot_, table_.child(w));
}

std::optional<std::string> Dict::Snapshot::get_encoded(std::string_view key) const {
    check();
    return containers::read_at(*store_, table_, version_, key, hash64(key.data(), key.size()));
}

std::optional<Value> Dict::Snapshot::get(const Value& key) const {
    auto v = get_encoded(codec::encode(key));
    if (!v) return std::nullopt;
    return codec::decode(*v);
}

const std::vector<std::pair<std::string, std::string>>& Dict::Snapshot::items() const {
    check();
    if (!items_) {
        std::vector<std::pair<std::string, std::string>> out;
        containers::items_at(*store_, table_, version_,
                             [&](std::string&& k, std::string&& v) { out.emplace_back(std::move(k), std::move(v)); });
        items_ = std::move(out);
    }
    return *items_;
}

std::uint64_t Dict::Snapshot::size() const { return items().size(); }

void Dict::Snapshot::for_each(const std::function<void(std::string_view, std::string_view)>& f) const {
    for (const auto& [k, v] : items()) f(k, v);
}

// ---- List::Snapshot --------------------------------------------------------------------------------------

List::Snapshot List::snapshot() const {
    check();
    return Snapshot(*this);
}

List::Snapshot::Snapshot(const List& l) : store_(l.store_.get()), seq_(l.seq_.get()) {
    slot_ = containers::open_list_snapshot(*store_, *seq_, handle_tag(store_), version_, size_);
    open_ = true;
}

List::Snapshot::Snapshot(Snapshot&& o) noexcept
    : store_(o.store_), seq_(o.seq_), slot_(o.slot_), version_(o.version_), size_(o.size_), open_(o.open_) {
    o.open_ = false;
}

List::Snapshot::~Snapshot() { close(); }

bool List::Snapshot::is_open() const noexcept { return open_ && store_->is_open(); }

void List::Snapshot::close() noexcept {
    if (open_ && store_->is_open()) containers::close_snapshot(*store_, slot_);  // List::close freed it otherwise
    open_ = false;
}

void List::Snapshot::check() const {
    if (!open_) throw_error(ErrorCode::kClosed, store_->path(), "the snapshot is closed");
    store_->check_open();
}

std::uint64_t List::Snapshot::size() const {
    check();
    return size_;
}

std::string List::Snapshot::get_encoded(std::uint64_t i) const {
    check();
    return containers::list_read_at(*store_, *seq_, version_, size_, i);
}

std::vector<std::uint64_t> List::Snapshot::range_words(std::uint64_t begin, std::uint64_t end) const {
    check();
    std::vector<std::uint64_t> out;
    containers::list_words_at(*store_, *seq_, version_, size_, begin, end, out);
    return out;
}

Value List::Snapshot::get_value(std::uint64_t i) const { return codec::decode(get_encoded(i)); }

std::vector<std::string> List::Snapshot::range_encoded(std::uint64_t begin, std::uint64_t end) const {
    check();
    std::vector<std::string> out;
    containers::list_range_at(*store_, *seq_, version_, size_, begin, end, out);
    return out;
}

}  // namespace mmstore
