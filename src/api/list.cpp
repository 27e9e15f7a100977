#include "mmstore/list.hpp"

#include <algorithm>
#include <optional>

#include "compact.hpp"
#include "mmstore/containers/snapshot.hpp"

#include <unistd.h>

#include <stdexcept>
#include <unordered_set>

namespace mmstore {

using containers::Sequence;

List::List(const std::string& path, const OpenOptions& options) { open(path, options); }

List::~List() {
    if (is_open()) {
        try {
            close();
        } catch (...) {
            abandon();
        }
    }
}

namespace {

// The store's callbacks (recovery, before-commit) capture the heap objects a List owns, never the List
// itself: a moved-from List leaves them behind, and a callback holding `this` would then run on it.
void enumerate_blocks(const containers::Store& store, const Sequence& seq, const alloc::Arena::Visit& v) {
    v(store.root(), seq.root_bytes());
    containers::enumerate_versions(store, v);  // the snapshots' chains and retired records
    const auto* w = reinterpret_cast<const std::uint64_t*>(seq.data());
    for (std::uint64_t i = 0, n = seq.size(); i < n; ++i) {
        std::uint64_t off, bytes;
        if (store.word_block(w[i], off, bytes)) v(off, bytes);
    }
}

// `attached`: other processes may be attached (a writer died holding the lock), and their snapshots are
// kept; otherwise (an unclean shutdown, no process attached) no snapshot is open and they are forgotten.
void repair_list(containers::Store& store, Sequence& seq, bool attached) {
    if (attached) containers::recover_snapshots(store);
    else containers::reset_snapshots(store);
    seq.redo_log();  // a transaction killed after publishing its commit log: applied whole
    const auto* w = reinterpret_cast<const std::uint64_t*>(seq.data());
    for (std::uint64_t i = 0, n = seq.size(); i < n; ++i) {
        if (store.word_ok(w[i])) continue;
        // After a power loss (rolled back to the last commit) the elements appended since may have reached
        // the disk without their records, or the count without its elements: the list is the committed
        // part plus a prefix of what was appended since, so it ends at the first element that did not
        // survive. Without a power loss, such an element is damage, which repair must not paper over.
        if (!store.region().rolled_back())
            store.throw_corrupt("element " + std::to_string(i) + " has a damaged record (cannot repair a list in place)");
        seq.truncate(i);
        break;
    }
    seq.truncate(seq.size());
    if (attached) containers::retire_orphaned_words(store, seq);  // before the rebuild, which would free them
    store.arena().rebuild([&store, &seq](const alloc::Arena::Visit& v) { enumerate_blocks(store, seq, v); });
}

}  // namespace

void List::open(const std::string& path, const OpenOptions& options) {
    options_ = options;
    store_ = std::make_unique<containers::Store>();
    store_->open(path, storage::StoreKind::kList, options);
    seq_ = std::make_unique<Sequence>(store_.get(), 8);
    // List mutations build aside and switch, so the open-time repair (an arena rebuild) is reader-safe.
    containers::Store* store = store_.get();
    Sequence* seq = seq_.get();
    store_->set_recovery([store, seq] { repair_list(*store, *seq, true); });
    store_->set_relocation([seq] { return seq->relocate_down(); });
    if (!options.volatile_memory) store_->region().set_before_commit([seq] { seq->stamp_commit(); });
    containers::attach_root(*store_, [&] { seq_->format(); }, [&] { seq_->check_root(); }, [&] { repair(); });
}

void List::check_index(std::uint64_t i) const {
    if (i >= seq_->size())
        throw std::out_of_range("list index " + std::to_string(i) + " out of range (size " + std::to_string(seq_->size()) + ")");
}

std::uint64_t List::size() const { return store_->read([&] { return seq_->size_checked(); }); }

std::string List::get_encoded(std::uint64_t i) const {
    // Past the end of a snapshot that read() then validated means past the end at that instant: out of
    // range. (Re-reading the live count instead, as this once did, could find the index in range after a
    // writer grew the list and go on with no element: a null dereference, found by threads_test under TSan.)
    std::optional<std::string> got = store_->read([&]() -> std::optional<std::string> {
        const std::uint64_t* slot = seq_->word_ptr_checked(i);
        if (slot == nullptr) return std::nullopt;
        containers::WordBuf buf;
        return std::string(store_->view(slot, buf));
    });
    if (!got) throw std::out_of_range("list index " + std::to_string(i) + " out of range");
    return *std::move(got);
}

void List::push_back_encoded(std::string_view enc) {
    containers::Store::WriteGuard g(*store_);
    // No VersionScope: an append changes nothing a snapshot reads (containers/snapshot.hpp, Lists).
    containers::reclaim_versions(*store_);
    const std::uint64_t w = store_->put(enc);
    try {
        seq_->push_back_word(w);
    } catch (...) {
        store_->release(w);
        throw;
    }
    store_->bump_mutations();
    store_->after_mutation();
}

void List::push_back_encoded_many(std::span<const std::string_view> encs) {
    if (encs.empty()) return;
    containers::Store::WriteGuard g(*store_);
    containers::reclaim_versions(*store_);  // appends run in no VersionScope (push_back_encoded)
    reserve_more(encs.size());  // room for the whole batch in one growth
    std::size_t done = 0;
    try {
        for (; done < encs.size(); ++done) {
            const std::uint64_t w = store_->put(encs[done]);
            try {
                seq_->push_back_word(w);
            } catch (...) {
                store_->release(w);
                throw;
            }
        }
    } catch (...) {
        if (done > 0) {
            store_->bump_mutations();
            store_->after_mutation();
        }
        throw;
    }
    store_->bump_mutations();
    store_->after_mutation();
}

void List::set_encoded(std::uint64_t i, std::string_view enc) {
    containers::Store::WriteGuard g(*store_);
    check_index(i);
    containers::VersionScope vs(*store_);
    if (vs.recording()) {
        const std::uint64_t cur = *reinterpret_cast<const std::uint64_t*>(seq_->at(i));
        containers::record_list(*store_, *seq_, i, i + 1, {&cur, 1});
    }
    const std::uint64_t w = store_->put(enc);
    if (!containers::is_inline(w) && i < seq_->committed() && !store_->region().is_volatile()) {
        // A committed element must keep pointing at committed records until the next commit (a power loss
        // could keep the new word and lose its record): write into a copy of the block instead.
        try {
            seq_->copy_on_write();
        } catch (...) {
            store_->release(w);
            throw;
        }
    }
    auto* slot = reinterpret_cast<std::uint64_t*>(seq_->at(i));
    const std::uint64_t old = *slot;
    __atomic_store_n(slot, w, __ATOMIC_RELEASE);
    containers::release_word(*store_, old);
    store_->after_mutation();
}

void List::insert_encoded(std::uint64_t i, std::string_view enc) {
    containers::Store::WriteGuard g(*store_);
    const std::uint64_t n = seq_->size();
    if (i >= n) {
        push_back_encoded(enc);
        return;
    }
    containers::VersionScope vs(*store_);
    if (vs.recording()) containers::record_list(*store_, *seq_, i, n);
    const std::uint64_t w = store_->put(enc);
    std::vector<std::uint64_t> words;
    try {
        words.reserve(n + 1);
        const auto* src = reinterpret_cast<const std::uint64_t*>(seq_->data());
        words.insert(words.end(), src, src + i);
        words.push_back(w);
        words.insert(words.end(), src + i, src + n);
        seq_->assign(words.data(), words.size(), seq_->capacity());
    } catch (...) {
        store_->release(w);
        throw;
    }
    store_->bump_mutations();
    store_->after_mutation();
}

void List::erase(std::uint64_t i) {
    containers::Store::WriteGuard g(*store_);
    check_index(i);
    const std::uint64_t n = seq_->size();
    const auto* src = reinterpret_cast<const std::uint64_t*>(seq_->data());
    const std::uint64_t old = src[i];
    containers::VersionScope vs(*store_);
    if (vs.recording()) containers::record_list(*store_, *seq_, i, n, {&old, 1});
    if (i + 1 == n) {
        seq_->pop_back();
    } else {
        std::vector<std::uint64_t> words;
        words.reserve(n - 1);
        words.insert(words.end(), src, src + i);
        words.insert(words.end(), src + i + 1, src + n);
        seq_->assign(words.data(), words.size(), seq_->capacity());
    }
    containers::release_word(*store_, old);
    store_->bump_mutations();
    store_->after_mutation();
}

void List::pop_back() {
    containers::Store::WriteGuard g(*store_);
    if (seq_->size() == 0) throw std::out_of_range("pop from empty list");
    erase(seq_->size() - 1);
}

void List::clear() {
    containers::Store::WriteGuard g(*store_);
    const std::uint64_t n = seq_->size();
    std::vector<std::uint64_t> old(reinterpret_cast<const std::uint64_t*>(seq_->data()),
                                   reinterpret_cast<const std::uint64_t*>(seq_->data()) + n);
    containers::VersionScope vs(*store_);
    if (vs.recording()) containers::record_list(*store_, *seq_, 0, n, old);  // O(len), as clear() itself
    seq_->assign(nullptr, 0);
    for (auto w : old) containers::release_word(*store_, w);
    store_->bump_mutations();
    store_->after_mutation();
}

void List::reorder(const std::vector<std::uint64_t>& order) {
    containers::Store::WriteGuard g(*store_);
    const std::uint64_t n = seq_->size();
    const auto* src = reinterpret_cast<const std::uint64_t*>(seq_->data());
    std::vector<std::uint8_t> kept(n, 0);
    std::vector<std::uint64_t> words;
    words.reserve(order.size());
    for (auto p : order) {
        if (p >= n) throw std::out_of_range("reorder: position " + std::to_string(p) + " out of range");
        if (kept[p]) throw_error(ErrorCode::kInvalidArgument, path(), "reorder: position listed twice");
        kept[p] = 1;
        words.push_back(src[p]);
    }
    std::vector<std::uint64_t> dropped;
    for (std::uint64_t p = 0; p < n; ++p)
        if (!kept[p]) dropped.push_back(src[p]);
    containers::VersionScope vs(*store_);
    if (vs.recording()) containers::record_list(*store_, *seq_, 0, n, dropped);
    seq_->assign(words.data(), words.size());
    for (auto w : dropped) containers::release_word(*store_, w);
    store_->bump_mutations();
    store_->after_mutation();
}

void List::splice(std::uint64_t start, std::uint64_t stop, const std::vector<std::string>& encs) {
    containers::Store::WriteGuard g(*store_);
    const std::uint64_t n = seq_->size();
    // Python semantics: a[3:1] = x inserts at 3.
    start = std::min(start, n);
    stop = std::max(start, std::min(stop, n));
    containers::VersionScope vs(*store_);
    if (vs.recording()) {
        const auto* src = reinterpret_cast<const std::uint64_t*>(seq_->data());
        containers::record_list(*store_, *seq_, start, n, {src + start, src + stop});
    }
    std::vector<std::uint64_t> fresh;
    fresh.reserve(encs.size());
    try {
        for (const auto& e : encs) fresh.push_back(store_->put(e));
        const auto* src = reinterpret_cast<const std::uint64_t*>(seq_->data());
        std::vector<std::uint64_t> words;
        words.reserve(n - (stop - start) + fresh.size());
        words.insert(words.end(), src, src + start);
        words.insert(words.end(), fresh.begin(), fresh.end());
        words.insert(words.end(), src + stop, src + n);
        std::vector<std::uint64_t> dropped(src + start, src + stop);
        seq_->assign(words.data(), words.size());
        fresh.clear();
        for (auto w : dropped) containers::release_word(*store_, w);
    } catch (...) {
        for (auto w : fresh) store_->release(w);
        throw;
    }
    store_->bump_mutations();
    store_->after_mutation();
}

void List::reserve(std::uint64_t n) {
    containers::Store::WriteGuard g(*store_);
    seq_->reserve(n);
}

void List::reserve_more(std::uint64_t extra) {
    containers::Store::WriteGuard g(*store_);
    const std::uint64_t need = seq_->size() + extra;
    if (need > seq_->capacity()) seq_->reserve(std::max(need, seq_->capacity() * 2));
}

std::string_view List::get(std::uint64_t i) const {
    const std::uint64_t* slot = store_->read([&] { return seq_->word_ptr_checked(i); });
    if (slot == nullptr) throw std::out_of_range("list index " + std::to_string(i) + " out of range");  // as get_encoded
    containers::WordBuf buf;
    const std::string_view enc = store_->view(slot, buf);
    std::uint8_t fam = 0;
    std::string_view p;
    if (!codec::payload_view(enc, fam, p) || fam != codec::tag::kBytes)
        throw_error(ErrorCode::kInvalidArgument, path(), "element is not a bytes value; use get_value()");
    // Implied-tag inline words hold the payload at the start of the slot itself: stay zero-copy.
    if (enc.data() == buf.bytes) return {reinterpret_cast<const char*>(slot), p.size()};
    return p;
}

void List::push_back(std::string_view bytes) { push_back_encoded(codec::encode(Value::bytes(bytes))); }
void List::set(std::uint64_t i, std::string_view bytes) { set_encoded(i, codec::encode(Value::bytes(bytes))); }
Value List::get_value(std::uint64_t i) const { return codec::decode(get_encoded(i)); }
void List::push_back(const Value& v) { push_back_encoded(codec::encode(v)); }
void List::set(std::uint64_t i, const Value& v) { set_encoded(i, codec::encode(v)); }
void List::insert(std::uint64_t i, const Value& v) { insert_encoded(i, codec::encode(v)); }

const std::string& List::path() const {
    static const std::string empty;
    return store_ ? store_->path() : empty;
}

void List::sync() {
    check();
    store_->sync();
}

void List::close() {
    if (store_ && store_->is_open()) containers::close_snapshots_of(*store_, reinterpret_cast<std::uintptr_t>(store_.get()));
    if (store_) store_->close();
}

void List::abandon() noexcept {
    if (store_) store_->abandon();
}

void List::enumerate(const alloc::Arena::Visit& v) const { enumerate_blocks(*store_, *seq_, v); }

void List::verify() const {
    check();
    auto elements = [&] {
        seq_->check_root();
        seq_->check_counters();
        const auto v = seq_->checked();  // one block throughout (and a commit log, read-only handles only)
        for (std::uint64_t i = 0; i < v.count; ++i) {
            const std::uint64_t* w = v.slot(i);
            if (!store_->word_ok(*w)) store_->throw_corrupt("element " + std::to_string(i) + " has a damaged record");
            try {
                containers::WordBuf buf;
                (void)codec::skip(store_->view(w, buf), 0);
            } catch (const Error&) {
                store_->throw_corrupt("element " + std::to_string(i) + " holds a malformed encoding");
            }
        }
        return 0;
    };
    if (!store_->region().writable()) {
        store_->read(elements);  // a read-only mapping cannot lock: again if a writer freed what we read
        store_->verify_arena_unlocked([this](const alloc::Arena::Visit& v) { enumerate(v); });
        return;
    }
    containers::Store::WriteGuard g(*store_);  // a consistent picture: no writer mid-operation
    elements();
    store_->arena().verify([this](const alloc::Arena::Visit& v) { enumerate(v); });
}

void List::repair() { repair_list(*store_, *seq_, false); }

void List::compact() {
    check_write();
    const std::string path = store_->path();
    // compact() replaces this handle's store object, which the snapshots of the handle read through.
    if (containers::has_snapshots_of(*store_, reinterpret_cast<std::uintptr_t>(store_.get())))
        throw LockedError(path, "compact() while a snapshot of this handle is open; close it first", 0);
    if (!store_->region().claim_exclusive())
        throw LockedError(path, "compact() replaces the file, so it needs the store to itself; other handles have it open",
                          store_->lock_holder_pid());
    try {
        detail::rewrite_compacted<List>(path, options_, [this](List& out) {
            const std::uint64_t n = seq_->size();
            out.seq_->reserve(n);
            for (std::uint64_t i = 0; i < n; ++i) {
                containers::WordBuf buf;
                const std::uint64_t w = out.store_->put(store_->view(word_ptr(i), buf));
                out.seq_->push_back(&w);
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

Stats List::stats() const {
    const auto [n, cap] = store_->read([&] {
        const auto v = seq_->checked();
        return std::pair(v.count, v.h->capacity);
    });
    return detail::make_stats(*store_, n, cap);
}

}  // namespace mmstore
