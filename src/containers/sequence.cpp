#include "mmstore/containers/sequence.hpp"

#include <cstring>
#include <string>

namespace mmstore::containers {

namespace {
std::uint64_t header_checksum(const SequenceHeader* h) { return hash64(&h->capacity, 16); }
constexpr std::uint64_t kMinCapacity = 8;
}  // namespace

std::uint64_t Sequence::build(std::uint64_t capacity) {
    const std::uint64_t root = store_->root();
    const std::uint64_t off = root == 0 ? store_->arena().allocate(bytes_of(capacity))
                                        : store_->arena().allocate_replacement(bytes_of(capacity), root, root_bytes());
    auto* h = store_->region().at<SequenceHeader>(off);
    std::memset(h, 0, sizeof *h);
    h->capacity = capacity;
    h->elem_size = elem_size_;
    h->checksum = header_checksum(h);
    seal_counters(h);
    // Unwritten elements are zero (for a List, an invalid word), never what the block held before: after a
    // power loss, `count` may reach the disk before the elements it counts. (Region::fill: a large block's
    // fresh pages are written whole with pwrite, not faulted in zeroed.)
    const std::uint8_t zero = 0;
    store_->region().fill(off + sizeof(SequenceHeader), capacity * elem_size_, &zero, 1);
    return off;
}

void Sequence::copy_on_write() {
    const SequenceHeader* h = header();
    assign(h + 1, h->count, h->capacity);
}

void Sequence::format() { store_->publish_root(build(kMinCapacity)); }

void Sequence::check_root() const {
    const std::uint64_t off = store_->root();
    const auto& r = store_->region();
    if (off == 0 || off % 16 != 0 || !r.in_bounds(off, sizeof(SequenceHeader)))
        store_->throw_corrupt("sequence root offset " + std::to_string(off) + " is out of bounds");
    const auto* h = r.at<const SequenceHeader>(off);  // not header(): the root may have moved since `off`
    if (h->checksum != header_checksum(h) || h->elem_size != elem_size_ || h->capacity > (std::uint64_t{1} << 40))
        store_->throw_corrupt("sequence header at offset " + std::to_string(off) + " fails its checksum");
    if (!r.in_bounds(off, bytes_of(h->capacity)))
        store_->throw_corrupt("sequence at offset " + std::to_string(off) + " extends past the end of the file");
    if (h->count > h->capacity)
        store_->throw_corrupt("sequence count " + std::to_string(h->count) + " exceeds its capacity");
}

void Sequence::check_counters() const {
    const SequenceHeader* h = header();
    if (h->check == counters_check(h->count, h->capacity, h->elem_size, 0)) return;
    if (store_->writer_active() && !store_->lock_held_by_me()) return;  // another process mid-write
    store_->throw_corrupt("sequence count " + std::to_string(h->count) + " fails its check");
}

std::uint64_t Sequence::checked_slow(const SequenceHeader* h, std::uint64_t cap) const {
    // A writer (another process or thread) between its stores of count and check, or damage: while another
    // holds the lock its count is trusted, bounded by the capacity checked() validated (re-read nothing
    // else: the block may be freed and reused meanwhile); otherwise a second look after it left decides.
    for (int attempt = 0; attempt < 2; ++attempt) {
        if (store_->writer_active() && !store_->lock_held_by_me())
            return std::min(__atomic_load_n(&h->count, __ATOMIC_ACQUIRE), cap);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        const std::uint64_t count = __atomic_load_n(&h->count, __ATOMIC_ACQUIRE);
        if (count <= cap && __atomic_load_n(&h->check, __ATOMIC_RELAXED) == counters_check(count, cap, elem_size_, 0))
            return count;
    }
    store_->throw_corrupt("sequence count " + std::to_string(__atomic_load_n(&h->count, __ATOMIC_RELAXED)) +
                          " fails its check");
}

void Sequence::reserve(std::uint64_t n) {
    if (n <= header()->capacity) return;
    const std::uint64_t old_off = store_->root();
    const std::uint64_t old_bytes = root_bytes();
    const std::uint64_t count = header()->count;
    const std::uint64_t off = build(n);
    auto* h = store_->region().at<SequenceHeader>(off);
    // build() zeroed the whole block, this half included, before the copy writes it again. Measured
    // (bench/prof_loops.py int append, alternated with the build before, 2026-12-05): zeroing only the
    // tail made appends 25-50% slower (the copy then faults fresh pages in through the mapping's slow
    // zero-fill path, Region::fill), and copying the half with Region::copy (pwrite) 15% slower.
    std::memcpy(h + 1, data(), count * elem_size_);
    h->count = count;
    seal_counters(h);
    store_->publish_root(off);
    store_->arena().free(old_off, old_bytes);
}

bool Sequence::relocate_down() {
    const std::uint64_t old_off = store_->root();
    const std::uint64_t bytes = root_bytes();
    const std::uint64_t off = store_->arena().copy_below(old_off, bytes);
    if (off == 0) return false;
    store_->region().at<SequenceHeader>(off)->committed = 0;  // a new block holds no committed elements
    store_->publish_root(off);
    store_->arena().free(old_off, bytes);
    return true;
}

SequenceHeader* Sequence::make_room_for_push() {
    if (header()->count == header()->capacity) grow_for_push();
    else copy_on_write();
    return header();
}

void Sequence::grow_for_push() { reserve(std::max(kMinCapacity, header()->capacity * 2)); }

void Sequence::push_back(const void* elem) {
    SequenceHeader* h = header();
    if (h->count == h->capacity || h->count < h->committed) h = make_room_for_push();
    std::memcpy(data() + h->count * elem_size_, elem, elem_size_);
    __atomic_store_n(&h->count, h->count + 1, __ATOMIC_RELEASE);  // publish
    seal_counters(h);
}

void Sequence::pop_back() noexcept {
    SequenceHeader* h = header();
    if (h->count == 0) return;
    __atomic_store_n(&h->count, h->count - 1, __ATOMIC_RELEASE);
    seal_counters(h);
    // Zero the element: a later append may land here without the count it goes with (power loss), and
    // must then read as nothing rather than as the popped value. A reader that counted it retries.
    store_->region().bump_reclaims();
    std::memset(data() + (h->count) * elem_size_, 0, elem_size_);
}

void Sequence::truncate(std::uint64_t n) noexcept {
    SequenceHeader* h = header();
    if (n < h->count) h->count = n;
    seal_counters(h);
    std::memset(data() + h->count * elem_size_, 0, (h->capacity - h->count) * elem_size_);
}

void Sequence::resize(std::uint64_t n) {
    SequenceHeader* h = header();
    if (n > h->capacity) {
        reserve(std::max(n, h->capacity * 2));
        h = header();
    }
    if (n > h->count) std::memset(data() + h->count * elem_size_, 0, (n - h->count) * elem_size_);
    __atomic_store_n(&h->count, n, __ATOMIC_RELEASE);
    seal_counters(h);
}

void Sequence::assign(const void* src, std::uint64_t n, std::uint64_t min_capacity) {
    const std::uint64_t old_off = store_->root();
    const std::uint64_t old_bytes = root_bytes();
    std::uint64_t cap = kMinCapacity;
    while (cap < n || cap < min_capacity) cap *= 2;
    const std::uint64_t off = build(cap);
    auto* h = store_->region().at<SequenceHeader>(off);
    if (n > 0) std::memcpy(h + 1, src, n * elem_size_);
    h->count = n;
    seal_counters(h);
    store_->publish_root(off);
    store_->arena().free(old_off, old_bytes);
}

}  // namespace mmstore::containers
