#include "mmstore/alloc/arena.hpp"

#include <bit>
#include <cstring>
#include <string>
#include <vector>

#include "mmstore/error.hpp"
#include "mmstore/os/file.hpp"

namespace mmstore::alloc {

namespace {

using storage::kDataStart;
using storage::kPageSize;

struct FreeBlock {
    std::uint64_t next;
    std::uint64_t size;
};

constexpr std::uint64_t round_up(std::uint64_t v, std::uint64_t to) { return (v + to - 1) / to * to; }

int large_class(std::uint64_t size) noexcept {
    const int lg = std::bit_width(size / kPageSize) - 1;
    return kSmallClasses + kMediumClasses + (lg < kLargeClasses ? lg : kLargeClasses - 1);
}

// Class of a block whose size is exactly a class size (small/medium) or a page multiple (large).
int class_of(std::uint64_t size) noexcept {
    if (size <= 512) return static_cast<int>(size / 16) - 1;
    if (size <= 3840 && size % 256 == 0 && size >= 768) return kSmallClasses + static_cast<int>(size / 256) - 3;
    return large_class(size);
}

}  // namespace

std::uint64_t block_size(std::uint64_t bytes) noexcept {
    if (bytes <= 512) return bytes <= 16 ? 16 : round_up(bytes, 16);
    if (bytes <= 3840) return std::max<std::uint64_t>(768, round_up(bytes, 256));
    return round_up(bytes, kPageSize);
}

void Arena::format() {
    ArenaState& s = state();
    std::memset(&s, 0, sizeof s);
    s.top = kDataStart;
    s.chunk_cur = s.chunk_end = kDataStart;
}

void Arena::push(int cls, std::uint64_t offset, std::uint64_t size) noexcept {
    ArenaState& s = state();
    auto* b = region_->at<FreeBlock>(offset);
    b->next = s.heads[cls];
    b->size = size;
    s.heads[cls] = offset;  // publish
    s.free_bytes += size;
}

void Arena::free_range(std::uint64_t offset, std::uint64_t size, bool punched) noexcept {
    // Splits an arbitrary 16-aligned range into class-sized blocks: whole pages as one large block, the
    // unaligned ends as small/medium pieces.
    while (size > 0) {
        const std::uint64_t page_start = round_up(offset, kPageSize);
        if (offset == page_start && size >= kPageSize) {
            const std::uint64_t big = size / kPageSize * kPageSize;
            if (big >= kPunchThreshold && !punched) region_->punch_hole(offset + kPageSize, big - kPageSize);
            push(large_class(big), offset, big);
            offset += big;
            size -= big;
            continue;
        }
        std::uint64_t piece = std::min<std::uint64_t>(size, offset < page_start ? page_start - offset : size);
        // Largest exact class size that fits the piece.
        std::uint64_t cls_size;
        if (piece >= 768) cls_size = piece / 256 * 256;
        else cls_size = std::min<std::uint64_t>(piece, 512) / 16 * 16;
        if (cls_size > 512 && cls_size < 768) cls_size = 512;
        push(class_of(cls_size), offset, cls_size);
        offset += cls_size;
        size -= cls_size;
    }
}

std::uint64_t Arena::take_from_top(std::uint64_t size) {
    ArenaState& s = state();
    const std::uint64_t off = s.top;
    if (off + size > region_->size()) region_->grow(off + size);
    else region_->reserve_blocks(off, size);  // space below the file end may have been punched when freed
    s.top = off + size;  // publish
    // Fresh pages are not pre-faulted here: containers write large new blocks with Region::fill (pwrite),
    // cheaper than faulting them in (docs/design.md, "Fresh blocks are written with pwrite").
    return off;
}

bool Arena::link_ok(std::uint64_t off) const noexcept {
    return off == 0 || (off >= kDataStart && off % 16 == 0 && off <= state().top && state().top - off >= 16);
}

void Arena::bad_link(std::uint64_t off) const {
    throw_format(ErrorCode::kCorrupt, region_->path(),
                 "corrupt: free-list link to offset " + std::to_string(off) + " lies outside the arena (run verify())");
}

std::uint64_t Arena::take_large(std::uint64_t size, std::uint64_t limit) {
    ArenaState& s = state();
    const int first = large_class(size);
    for (int cls = first; cls < kNumClasses; ++cls) {
        std::uint64_t* link = &s.heads[cls];
        int scanned = 0;
        while (*link != 0 && scanned++ < 64) {
            const std::uint64_t off = *link;
            if (!link_ok(off) || off % kPageSize != 0) bad_link(off);
            auto* b = region_->at<FreeBlock>(off);
            const std::uint64_t have = b->size;
            if (have < kPageSize || have % kPageSize != 0 || have > s.top - off || !link_ok(b->next)) bad_link(off);
            // Free blocks never overlap live ones, so a block starting below `limit` lies wholly below it.
            if (have >= size && off < limit) {
                region_->reserve_blocks(off, size);  // may have been punched; a full disk throws here
                *link = b->next;                     // unlink: one 8-byte store
                s.free_bytes -= have;
                // The rest was punched when the block was freed (free_range punches every free block of
                // 1 MiB or more past its header page, which lies in the part taken here). Its new header
                // page is then a hole: zero it whole first (Region::zero), not by a fault.
                if (have > size) {
                    const bool punched = have >= kPunchThreshold;
                    if (punched) region_->zero(off + size, kPageSize);
                    free_range(off + size, have - size, punched);
                }
                return off;
            }
            link = &b->next;
        }
    }
    return 0;
}

void Arena::refill_chunk() {
    ArenaState& s = state();
    const std::uint64_t rest = s.chunk_end - s.chunk_cur;
    std::uint64_t off = take_large(kChunkSize);
    if (off == 0) off = take_from_top(kChunkSize);
    // Records are then written into the chunk through the mapping, a few bytes at a time: a hole (fresh top
    // space, or a punched free block) would be faulted in by readahead and zero-filled, which cost a fifth
    // of a 10M-key str->str Dict's inserts; written whole first, its pages are in the page cache.
    region_->zero(off, kChunkSize);
    if (rest >= 16) free_range(s.chunk_cur, rest);
    s.chunk_end = s.chunk_cur = off;  // empty first: a kill here leaks, never double-hands
    s.chunk_end = off + kChunkSize;
}

std::uint64_t Arena::allocate(std::uint64_t bytes) {
    const std::uint64_t size = block_size(bytes);
    ArenaState& s = state();
    if (size >= kPageSize) {
        const std::uint64_t off = take_large(size);
        return off != 0 ? off : take_from_top(size);
    }
    const int cls = class_of(size);
    if (const std::uint64_t off = s.heads[cls]; off != 0) {
        auto* b = region_->at<FreeBlock>(off);
        if (!link_ok(off) || !link_ok(b->next)) bad_link(off);
        s.heads[cls] = b->next;
        s.free_bytes -= size;
        return off;
    }
    if (s.chunk_end - s.chunk_cur < size) refill_chunk();
    const std::uint64_t off = s.chunk_cur;
    s.chunk_cur = off + size;
    return off;
}

std::uint64_t Arena::free_run_below(std::uint64_t offset) const noexcept {
    // Start of the free large block that ends at `offset` (`offset` itself when there is none). Coalescing
    // keeps a run of freed large blocks as one block, so one block is all there is to find. Bounded like
    // coalesce(): a miss only costs density, never correctness.
    constexpr int kScan = 1024;
    const ArenaState& s = state();
    int budget = kScan;
    for (int cls = kSmallClasses + kMediumClasses; cls < kNumClasses; ++cls) {
        std::uint64_t off = s.heads[cls];
        while (off != 0 && budget-- > 0) {
            if (!link_ok(off)) return offset;
            const auto* b = region_->at<const FreeBlock>(off);
            if (b->size > s.top - off || !link_ok(b->next)) return offset;
            if (off + b->size == offset) return off;
            off = b->next;
        }
    }
    return offset;
}

std::uint64_t Arena::allocate_replacement(std::uint64_t bytes, std::uint64_t old_offset, std::uint64_t old_bytes) {
    const std::uint64_t size = block_size(bytes);
    if (size < kPageSize || !ends_arena(old_offset, old_bytes)) return allocate(bytes);
    if (const std::uint64_t off = take_large(size); off != 0) return off;
    // Place the new block at `run + size` or at top, whichever is higher: once the old block is freed, the
    // free space below the new block -- the run, the old block and the gap -- then holds the new block,
    // and a later move down (allocate_below) lets top fall back to the end of the moved block.
    ArenaState& s = state();
    const std::uint64_t run = free_run_below(old_offset);
    const std::uint64_t gap = std::max(s.top, run + size) - s.top;
    const std::uint64_t off = take_from_top(gap + size);
    if (gap > 0) free_range(off, gap);  // a kill before this leaks the gap until the next repair
    return off + gap;
}

std::uint64_t Arena::allocate_below(std::uint64_t bytes, std::uint64_t limit) {
    const std::uint64_t size = block_size(bytes);
    if (size < kPageSize) return 0;
    const std::uint64_t off = take_large(size, limit);
    return off;
}

std::uint64_t Arena::copy_below(std::uint64_t offset, std::uint64_t bytes) {
    if (!ends_arena(offset, bytes)) return 0;
    const std::uint64_t off = allocate_below(bytes, offset);
    if (off != 0) region_->copy(off, offset, bytes);
    return off;
}

void Arena::coalesce(std::uint64_t& offset, std::uint64_t& size) noexcept {
    // Large free blocks have no boundary tags, so neighbours are found by scanning the large lists, at most
    // kCoalesceScan nodes per free. Without merging, mixed-size large values fragmented the file without
    // bound (tests/cpp/dict_test.cpp, OverwritingLargeValuesReusesDiskSpace).
    constexpr int kCoalesceScan = 1024;
    ArenaState& s = state();
    int budget = kCoalesceScan;
    bool merged = true;
    while (merged && budget > 0) {
        merged = false;
        for (int cls = kSmallClasses + kMediumClasses; cls < kNumClasses && !merged && budget > 0; ++cls) {
            std::uint64_t* link = &s.heads[cls];
            while (*link != 0 && budget-- > 0) {
                const std::uint64_t off = *link;
                if (!link_ok(off)) return;  // damaged list: stop merging; verify() reports it
                const auto* b = region_->at<const FreeBlock>(off);
                if (b->size > s.top - off || !link_ok(b->next)) return;
                if (off + b->size == offset || offset + size == off) {
                    *link = b->next;  // unlink the neighbour: one store (a kill here leaks it until rebuild)
                    s.free_bytes -= b->size;
                    offset = std::min(offset, off);
                    size += b->size;
                    merged = true;
                    break;
                }
                link = &region_->at<FreeBlock>(off)->next;
            }
        }
    }
}

std::uint64_t Arena::trim() noexcept {
    ArenaState& s = state();
    if (s.chunk_end == s.top) {
        const std::uint64_t new_top = round_up(s.chunk_cur, kPageSize);
        if (new_top > s.chunk_cur) free_range(s.chunk_cur, new_top - s.chunk_cur);
        s.chunk_cur = s.chunk_end = new_top;  // empty chunk first, then lower top
        s.top = new_top;
    }
    return s.top;
}

bool Arena::committed_block(std::uint64_t offset) const noexcept {
    if (region_->is_volatile()) return false;
    const auto& c = *reinterpret_cast<const ArenaState*>(region_->committed().arena);
    if (offset >= c.top) return false;                                 // allocated from top since the commit
    if (offset >= c.chunk_cur && offset < c.chunk_end) return false;  // carved since the commit
    return true;
}

void Arena::free(std::uint64_t offset, std::uint64_t bytes) noexcept {
    if (committed_block(offset)) {
        try {
            if (pending_.empty()) pending_epoch_ = region_->live().arena_epoch;
            pending_.push_back({offset, bytes});
        } catch (...) {
            // Out of memory: leak the block (the next repair reclaims it) rather than risk the commit.
        }
        return;
    }
    free_now(offset, bytes);
}

void Arena::release_pending() noexcept {
    if (pending_.empty()) return;
    if (pending_epoch_ == region_->live().arena_epoch)
        for (const Pending& p : pending_) free_now(p.offset, p.bytes);
    pending_.clear();
}

void Arena::free_now(std::uint64_t offset, std::uint64_t bytes) noexcept {
    region_->bump_reclaims();  // before the block's first byte changes: lock-free readers retry
    std::uint64_t size = block_size(bytes);
    if (size >= kPageSize) {
        coalesce(offset, size);
        ArenaState& s = state();
        if (offset + size == s.top && (s.chunk_end != s.top || s.chunk_cur == s.chunk_end)) {
            // The block ends the arena: give it back to the bump area. An empty chunk at top moves down
            // with it, a store at a time (each intermediate state leaves the chunk inside free space).
            if (s.chunk_end == s.top) {
                s.chunk_cur = offset;
                s.chunk_end = offset;
            }
            s.top = offset;
            if (size >= kPunchThreshold) region_->punch_hole(offset, size);
            return;
        }
        if (size >= kPunchThreshold) region_->punch_hole(offset + kPageSize, size - kPageSize);
        push(large_class(size), offset, size);
    } else {
        push(class_of(size), offset, size);
    }
}

namespace {

// One bit per 16-byte granule of [kDataStart, end).
class GranuleMap {
public:
    explicit GranuleMap(std::uint64_t end) : bits_((end - kDataStart) / 16 / 64 + 1, 0) {}
    // Marks [off, off+size); false when any granule was already marked.
    bool mark(std::uint64_t off, std::uint64_t size) {
        bool clean = true;
        for (std::uint64_t g = (off - kDataStart) / 16, e = (off + size - kDataStart) / 16; g < e; ++g) {
            std::uint64_t& w = bits_[g / 64];
            const std::uint64_t bit = std::uint64_t{1} << (g % 64);
            clean &= (w & bit) == 0;
            w |= bit;
        }
        return clean;
    }
    bool test(std::uint64_t g) const { return (bits_[g / 64] >> (g % 64)) & 1; }

private:
    std::vector<std::uint64_t> bits_;
};

}  // namespace

void Arena::rebuild(const Enumerate& reachable) {
    region_->bump_reclaims();
    // Every handle's pending frees are about to be recomputed as free space: they must not be freed again.
    __atomic_store_n(&region_->live().arena_epoch, region_->live().arena_epoch + 1, __ATOMIC_RELEASE);
    pending_.clear();
    const std::uint64_t end = region_->size();
    GranuleMap map(end);
    std::uint64_t top = kDataStart;
    reachable([&](std::uint64_t off, std::uint64_t bytes) {
        const std::uint64_t size = block_size(bytes);
        if (off < kDataStart || off % 16 != 0 || off > end || size > end - off)
            throw_format(ErrorCode::kCorrupt, region_->path(),
                         "corrupt: block at offset " + std::to_string(off) + " lies outside the file");
        if (!map.mark(off, size))
            throw_format(ErrorCode::kCorrupt, region_->path(),
                         "corrupt: block at offset " + std::to_string(off) + " overlaps another block");
        top = std::max(top, off + size);
    });
    ArenaState& s = state();
    std::memset(&s, 0, sizeof s);
    s.top = round_up(top, kPageSize);
    s.chunk_cur = s.chunk_end = s.top;
    const std::uint64_t granules = (s.top - kDataStart) / 16;
    std::uint64_t g = 0;
    while (g < granules) {
        if (map.test(g)) {
            ++g;
            continue;
        }
        std::uint64_t e = g;
        while (e < granules && !map.test(e)) ++e;
        free_range(kDataStart + g * 16, (e - g) * 16);
        g = e;
    }
}

void Arena::verify(const Enumerate& reachable) const {
    const std::uint64_t end = region_->size();
    const std::string& path = region_->path();
    const ArenaState& s = state();
    if (s.top < kDataStart || s.top > end || s.top % kPageSize != 0 || s.chunk_cur > s.chunk_end || s.chunk_end > s.top ||
        (s.chunk_cur < kDataStart && s.chunk_cur != s.chunk_end))
        throw_format(ErrorCode::kCorrupt, path, "corrupt arena state (top or chunk out of bounds)");
    GranuleMap map(end);
    reachable([&](std::uint64_t off, std::uint64_t bytes) {
        const std::uint64_t size = block_size(bytes);
        if (off < kDataStart || off % 16 != 0 || off + size > s.top)
            throw_format(ErrorCode::kCorrupt, path, "block at offset " + std::to_string(off) + " lies outside the arena");
        if (!map.mark(off, size))
            throw_format(ErrorCode::kCorrupt, path, "block at offset " + std::to_string(off) + " overlaps another block");
    });
    if (s.chunk_end > s.chunk_cur && !map.mark(s.chunk_cur, s.chunk_end - s.chunk_cur))
        throw_format(ErrorCode::kCorrupt, path, "carving chunk overlaps a live block");
    std::uint64_t total = 0;
    for (int cls = 0; cls < kNumClasses; ++cls) {
        std::uint64_t off = s.heads[cls];
        std::uint64_t guard = 0;
        while (off != 0) {
            if (off < kDataStart || off % 16 != 0 || off + 16 > s.top || ++guard > end / 16)
                throw_format(ErrorCode::kCorrupt, path, "free list " + std::to_string(cls) + " is broken at offset " +
                                                            std::to_string(off));
            const auto* b = region_->at<const FreeBlock>(off);
            if (b->size < 16 || b->size > s.top - off || class_of(b->size) != cls)
                throw_format(ErrorCode::kCorrupt, path, "free block at offset " + std::to_string(off) + " has a bad size");
            if (!map.mark(off, b->size))
                throw_format(ErrorCode::kCorrupt, path, "free block at offset " + std::to_string(off) +
                                                            " overlaps a live block or another free block");
            total += b->size;
            off = b->next;
        }
    }
    if (total != s.free_bytes)
        throw_format(ErrorCode::kCorrupt, path, "free byte count " + std::to_string(s.free_bytes) +
                                                    " disagrees with the free lists (" + std::to_string(total) + ")");
}

}  // namespace mmstore::alloc
