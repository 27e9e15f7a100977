// mmstore::Dict::Transaction (dict.hpp): the write lock plus a containers::TableTxn write set.
#include "mmstore/dict.hpp"

namespace mmstore {

Dict::Transaction Dict::transaction() { return Transaction(*store_, *table_); }

Dict::Transaction::Transaction(containers::Store& store, const containers::HashTable& table) : store_(&store) {
    store.check_writable();
    // The write set is process memory: made before the lock is taken, so that the lock is held no longer
    // than the transaction needs it (two processes committing in turn wait for each other's lock).
    auto txn = std::make_unique<containers::TableTxn>(table);
    store.lock_write_then([&] { table.prefetch_commit_hint(); });
    locked_ = true;
    try {
        table.prefetch_commit_lines();
        table.check_root();
        txn->begin();
    } catch (...) {
        store.unlock_write();
        locked_ = false;
        throw;
    }
    txn_ = std::move(txn);
}

Dict::Transaction::Transaction(Transaction&& o) noexcept : store_(o.store_), txn_(std::move(o.txn_)), locked_(o.locked_) {
    o.locked_ = false;
}

Dict::Transaction::~Transaction() { rollback(); }

void Dict::Transaction::end() noexcept {
    if (locked_) {
        locked_ = false;
        store_->unlock_write();
    }
}

bool Dict::Transaction::active() const noexcept { return txn_ && txn_->active(); }

namespace {
[[noreturn]] void throw_ended() {
    throw_error(ErrorCode::kInvalidArgument, "", "transaction already committed or rolled back");
}
}  // namespace

std::optional<std::string> Dict::Transaction::get_encoded(std::string_view key) const {
    if (!active()) throw_ended();
    store_->check_open();
    return txn_->get(key);
}

bool Dict::Transaction::contains_encoded(std::string_view key) const {
    if (!active()) throw_ended();
    store_->check_open();
    return txn_->contains(key);
}

bool Dict::Transaction::set_encoded(std::string_view key, std::string_view value) {
    if (!active()) throw_ended();
    store_->check_open();
    return txn_->set(key, value);
}

bool Dict::Transaction::erase_encoded(std::string_view key) {
    if (!active()) throw_ended();
    store_->check_open();
    return txn_->erase(key);
}

std::optional<Value> Dict::Transaction::get(const Value& key) const {
    auto v = get_encoded(codec::encode(key));
    if (!v) return std::nullopt;
    return codec::decode(*v);
}

bool Dict::Transaction::contains(const Value& key) const { return contains_encoded(codec::encode(key)); }
bool Dict::Transaction::set(const Value& key, const Value& value) { return set_encoded(codec::encode(key), codec::encode(value)); }
bool Dict::Transaction::erase(const Value& key) { return erase_encoded(codec::encode(key)); }

std::uint64_t Dict::Transaction::size() const {
    if (!active()) throw_ended();
    return txn_->size();
}

std::vector<std::pair<std::string, std::optional<std::string>>> Dict::Transaction::changes() const {
    if (!active()) throw_ended();
    return txn_->writes();
}

std::size_t Dict::Transaction::savepoint() const {
    if (!active()) throw_ended();
    return txn_->savepoint();
}

void Dict::Transaction::rollback_to(std::size_t mark) {
    if (!active()) throw_ended();
    txn_->rollback_to(mark);
}

void Dict::Transaction::commit() {
    if (!active()) throw_ended();
    store_->check_open();
    // Throws with nothing applied (still active) or applies all; commit_batch bumped the change counter.
    if (txn_->commit()) store_->after_mutation(/*counted=*/true);
    end();
}

void Dict::Transaction::rollback() noexcept {
    if (txn_) txn_->rollback();
    end();
}

}  // namespace mmstore
