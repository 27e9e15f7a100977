#include "mmstore/containers/store.hpp"

namespace mmstore::containers {

void Store::open(const std::string& path, storage::StoreKind kind, const storage::OpenOptions& options) {
    region_.open(path, kind, options);
    closed_path_ = path;
    fork_gen_ = os::fork_generation();
    durable_ = options.durable;
    if (region_.created()) arena_.format();
}

std::uint64_t Store::put_record(std::string_view bytes) {
    if (bytes.size() > 0xFFFFFFF0u)
        throw_error(ErrorCode::kCapacity, path(), "value of " + std::to_string(bytes.size()) + " bytes exceeds the 4 GiB record limit");
    const std::uint64_t off = arena_.allocate(sizeof(RecordHeader) + bytes.size());
    auto* rec = region_.at<RecordHeader>(off);
    rec->len = static_cast<std::uint32_t>(bytes.size());
    rec->check = static_cast<std::uint32_t>(hash64(bytes.data(), bytes.size()));
    std::memcpy(rec + 1, bytes.data(), bytes.size());
    return off;
}

void Store::release(std::uint64_t word) noexcept {
    if (is_inline(word) || word == kTombWord || word == 0) return;  // inline words own nothing
    if (word % 16 != 0 || !region_.in_bounds(word, sizeof(RecordHeader))) return;
    const auto* rec = region_.at<RecordHeader>(word);
    // A damaged length must not put a bogus block on a free list: leak it instead (verify() reports the
    // record; the arena rebuild after a dirty open reclaims whatever is really free).
    if (!region_.in_bounds(word + sizeof(RecordHeader), rec->len)) return;
    arena_.free(word, sizeof(RecordHeader) + rec->len);
}

std::string_view Store::record_unchecked(std::uint64_t w) const noexcept {
    if (!region_.in_bounds(w, sizeof(RecordHeader))) return {};
    const auto* rec = region_.at<const RecordHeader>(w);
    if (!region_.in_bounds(w + sizeof(RecordHeader), rec->len)) return {};
    return {reinterpret_cast<const char*>(rec + 1), rec->len};
}

std::string_view Store::view_record(std::uint64_t w) const {
    if (w % 16 != 0 || !region_.in_bounds(w, sizeof(RecordHeader)))
        throw_corrupt("record offset " + std::to_string(w) + " out of bounds");
    const auto* rec = region_.at<const RecordHeader>(w);
    if (!region_.in_bounds(w + sizeof(RecordHeader), rec->len))
        throw_corrupt("record at offset " + std::to_string(w) + " has length " + std::to_string(rec->len) + " past the end");
    // Reads check the checksum of records up to kReadCheckMax bytes (a bounded cost, ~100 ns); larger
    // records are served zero-copy in O(1) and checked by verify() (and repair), not on every read.
    if (rec->len <= kReadCheckMax && static_cast<std::uint32_t>(hash64(rec + 1, rec->len)) != rec->check)
        throw_corrupt("record at offset " + std::to_string(w) + " fails its checksum");
    return {reinterpret_cast<const char*>(rec + 1), rec->len};
}

bool Store::word_ok(std::uint64_t word) const noexcept {
    if (is_inline(word)) return inline_len(word) <= kInlineMax && inline_kind(word) <= InlineKind::kInt;
    if (word % 16 != 0 || !region_.in_bounds(word, sizeof(RecordHeader))) return false;
    const auto* rec = region_.at<const RecordHeader>(word);
    if (!region_.in_bounds(word + sizeof(RecordHeader), rec->len)) return false;
    return static_cast<std::uint32_t>(hash64(rec + 1, rec->len)) == rec->check;
}

bool Store::word_block(std::uint64_t word, std::uint64_t& off, std::uint64_t& bytes) const noexcept {
    if (is_inline(word)) return false;
    off = word;
    bytes = sizeof(RecordHeader) + region_.at<const RecordHeader>(word)->len;
    return true;
}

StoreStats Store::stats() const {
    check_open();
    StoreStats s;
    s.file_bytes = region_.size();
    s.allocated_bytes = region_.allocated_bytes();
    s.arena_top = arena_.top();
    s.free_bytes = arena_.free_bytes();
    return s;
}

void Store::throw_corrupt(const std::string& what) const { throw_format(ErrorCode::kCorrupt, path(), "corrupt: " + what); }
void Store::throw_closed() const { throw_error(ErrorCode::kClosed, closed_path_, "operation on a closed store"); }
void Store::throw_forked() const {
    throw_error(ErrorCode::kForked, closed_path_, "handle was opened before fork(); open the store again in this process");
}
void Store::throw_readonly() const {
    throw_error(ErrorCode::kReadOnly, path(), "store is open read-only; open it without readonly=True to write");
}

}  // namespace mmstore::containers
