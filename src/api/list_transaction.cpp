// mmstore::List::Transaction (list.hpp): the write lock plus a containers::SequenceTxn write set.
#include <algorithm>
#include <stdexcept>

#include "mmstore/list.hpp"

namespace mmstore {

List::Transaction List::transaction() { return Transaction(*this); }

List::Transaction::Transaction(List& list) : store_(&list.store()) {
    store_->check_writable();
    store_->lock_write();
    locked_ = true;
    try {
        list.sequence().check_root();
        txn_ = std::make_unique<containers::SequenceTxn>(list.sequence(), *store_);
    } catch (...) {
        store_->unlock_write();
        locked_ = false;
        throw;
    }
}

List::Transaction::Transaction(Transaction&& o) noexcept : store_(o.store_), txn_(std::move(o.txn_)), locked_(o.locked_) {
    o.locked_ = false;
}

List::Transaction::~Transaction() { rollback(); }

void List::Transaction::end() noexcept {
    if (locked_) {
        locked_ = false;
        store_->unlock_write();
    }
}

bool List::Transaction::active() const noexcept { return txn_ && txn_->active(); }

containers::SequenceTxn& List::Transaction::live() const {
    if (!active()) throw_error(ErrorCode::kInvalidArgument, "", "transaction already committed or rolled back");
    store_->check_open();
    return *txn_;
}

void List::Transaction::check_index(std::uint64_t i) const {
    const std::uint64_t n = live().size();
    if (i >= n) throw std::out_of_range("list index " + std::to_string(i) + " out of range (size " + std::to_string(n) + ")");
}

std::uint64_t List::Transaction::size() const { return live().size(); }

std::string_view List::Transaction::get_encoded(std::uint64_t i, containers::WordBuf& buf) const {
    check_index(i);
    return txn_->get(i, buf);
}

Value List::Transaction::get_value(std::uint64_t i) const {
    containers::WordBuf buf;
    return codec::decode(get_encoded(i, buf));
}

void List::Transaction::set_encoded(std::uint64_t i, std::string_view enc) {
    check_index(i);
    txn_->set(i, enc);
}

void List::Transaction::push_back_encoded(std::string_view enc) { live().push_back(enc); }

void List::Transaction::insert_encoded(std::uint64_t i, std::string_view enc) {
    containers::SequenceTxn& t = live();
    if (i >= t.size()) t.push_back(enc);
    else t.insert(i, enc);
}

void List::Transaction::erase(std::uint64_t i) {
    check_index(i);
    txn_->erase(i);
}

void List::Transaction::pop_back() {
    if (live().size() == 0) throw std::out_of_range("pop from empty list");
    txn_->pop_back();
}

void List::Transaction::splice(std::uint64_t start, std::uint64_t stop, std::span<const std::string_view> encs) {
    containers::SequenceTxn& t = live();
    start = std::min(start, t.size());
    stop = std::max(start, std::min(stop, t.size()));
    t.splice(start, stop, encs);
}

void List::Transaction::clear() { live().clear(); }

void List::Transaction::set(std::uint64_t i, const Value& v) { set_encoded(i, codec::encode(v)); }
void List::Transaction::push_back(const Value& v) { push_back_encoded(codec::encode(v)); }
void List::Transaction::insert(std::uint64_t i, const Value& v) { insert_encoded(i, codec::encode(v)); }

std::size_t List::Transaction::savepoint() { return live().savepoint(); }
void List::Transaction::rollback_to(std::size_t mark) { live().rollback_to(mark); }
void List::Transaction::release_savepoint(std::size_t mark) { live().release_savepoint(mark); }

void List::Transaction::commit() {
    containers::SequenceTxn& t = live();
    t.commit();  // throws with nothing applied (still active) or applies all
    store_->after_mutation();
    end();
}

void List::Transaction::rollback() noexcept {
    if (txn_) txn_->rollback();
    end();
}

}  // namespace mmstore
