// mmstore/alloc/arena.hpp
//
// Arena: the allocator inside a Region (DESIGN.md layer 3). It hands out 16-byte-aligned 64-bit offsets,
// never pointers, so persistent data is valid at any address and in any process. Callers remember the size
// of what they allocated (every record knows its own length), so blocks carry no allocator header.
//
// Layout of the free space (all state lives in LiveHeader::arena, see ArenaState):
//   * small blocks (16..512 B, 16-byte steps) and medium blocks (768..3840 B, 256-byte steps) have one
//     exact-size LIFO free list per size class; a miss carves from the current 64 KiB chunk.
//   * large blocks (page multiples) sit in lists by floor(log2(pages)); first fit within the class, then
//     any block of a larger class, splitting the remainder off. Freed large blocks of >= 1 MiB have their
//     pages (all but the first, which holds the list link) returned to the filesystem with PUNCH_HOLE and
//     are re-reserved (fallocate) before reuse so that a full disk raises instead of SIGBUS.
//   * a freed large block is merged with free large neighbours found by a bounded scan of the large lists,
//     and a block that ends at `top` lowers `top` instead of entering a list.
//   * `top` is the end of the used part; the file grows when top passes its end.
//   * Density (docs/design.md, "File density"): a table or array that grows allocates its replacement with
//     allocate_replacement(), which places the new block so that, once the old block is freed, the free
//     space just below the new block is at least as large as it (leaving a gap above the old block when
//     needed). The container can then move its block down into that space (allocate_below(), Store's
//     relocation at close), after which the old place ends the arena and `top` falls back: the last
//     handle to close cuts the file to `top`. Without the gap, a doubling block never fits the space its
//     predecessors freed (1 + 2 + ... + 2^(k-1) < 2^k), and the file stayed twice the final table.
// Free-list links read from the file are bounds-checked before they are followed (FormatError otherwise).
// A free block holds {next offset, size} in its first 16 bytes.
//
// Crash safety: every state change is a single 8-byte store, so a kill at any instruction leaves lists that
// are well-formed but may leak blocks that were being moved. Stores opened after an unclean shutdown call
// rebuild(), which recomputes all free space from the blocks the container reports as reachable (a mark and
// sweep over a bitmap of 16-byte granules, file_size/128 bytes of temporary memory).
//
// Deferred frees (power-loss safety, docs/design.md "Durability"): a block that belongs to the newest
// committed state -- it lies below the committed `top` and outside the chunk that was still uncarved at the
// commit -- is not reused before the next commit: free() parks it on this handle's pending list, and the
// store releases the list right after its next commit (Store::commit). Otherwise a power loss could bring
// back the committed state with some of its blocks already overwritten by later data. Blocks allocated
// since the last commit are freed at once. The pending list lives in process memory (16 B a block; the
// store commits on its own when it reaches kMaxPending blocks, keeping anonymous memory bounded). A handle
// killed with a pending list leaks those blocks until the next repair reclaims them; a mark and sweep by
// any process (rebuild) bumps LiveHeader::arena_epoch, and a pending list from an older epoch is dropped.
// Shared-memory segments have nothing to make durable and free at once.
//
// Thread safety: none; callers hold the store's write lock. Lookups never touch the arena.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "mmstore/storage/region.hpp"

namespace mmstore::alloc {

inline constexpr int kSmallClasses = 32;    // 16..512 in 16-byte steps
inline constexpr int kMediumClasses = 13;   // 768..3840 in 256-byte steps
inline constexpr int kLargeClasses = 28;    // floor(log2(pages)) = 0..27 (the last class holds everything larger)
inline constexpr int kNumClasses = kSmallClasses + kMediumClasses + kLargeClasses;
inline constexpr std::uint64_t kChunkSize = 64 * 1024;
inline constexpr std::uint64_t kPunchThreshold = 1 << 20;

// Persistent arena state, stored in LiveHeader::arena. Written only by the write-lock holder.
struct ArenaState {
    std::uint64_t top;         // end of the used part of the file; page-aligned, >= kDataStart
    std::uint64_t chunk_cur;   // next free byte of the carving chunk (== chunk_end when none)
    std::uint64_t chunk_end;   // end of the carving chunk
    std::uint64_t free_bytes;  // bytes on free lists (statistic; recomputed by rebuild())
    std::uint64_t heads[kNumClasses];  // free-list heads, 0 = empty
    std::uint64_t reserved[3];
};
static_assert(sizeof(ArenaState) == 640);
static_assert(sizeof(ArenaState) <= sizeof(storage::LiveHeader::arena));

// Size actually occupied by an allocation of `bytes` (what free() must be given back).
std::uint64_t block_size(std::uint64_t bytes) noexcept;

class Arena {
public:
    explicit Arena(storage::Region* region) noexcept : region_(region) {}

    // Initializes the state of a freshly created store.
    void format();
    // Returns the offset of a block of at least `bytes` (16-aligned; page-aligned when >= 4096). The block's
    // contents are unspecified. Throws kDiskFull/kCapacity when the file cannot grow; then nothing changed.
    std::uint64_t allocate(std::uint64_t bytes);
    // As allocate(bytes), for the block that will replace the live block (old_offset, old_bytes) once it is
    // published (a growing table or array). When the old block ends the arena and no free block fits, the
    // new one goes at top, or higher: far enough above the free run that ends at old_offset that this run
    // plus the old block, once freed, can hold the new block (the gap in between is put on the free lists).
    std::uint64_t allocate_replacement(std::uint64_t bytes, std::uint64_t old_offset, std::uint64_t old_bytes);
    // A free block of at least `bytes` (>= 4096) lying below `limit`, taken off the free lists; 0 when there
    // is none (nothing changes then). For moving a live block at `limit` down.
    std::uint64_t allocate_below(std::uint64_t bytes, std::uint64_t limit);
    // The first step of moving the live block (offset, bytes) down: when it ends the arena and a free block
    // below holds it, copies it there (Region::copy) and returns the copy's offset (the caller publishes the
    // copy, then frees `offset`); else 0, nothing changed. Throws kDiskFull when a
    // punched block cannot be re-reserved (then nothing changed either).
    std::uint64_t copy_below(std::uint64_t offset, std::uint64_t bytes);
    // True when the block (offset, bytes) ends the arena: freeing it lowers top.
    bool ends_arena(std::uint64_t offset, std::uint64_t bytes) const noexcept {
        const ArenaState& s = state();
        return offset + block_size(bytes) == s.top && (s.chunk_end != s.top || s.chunk_cur == s.chunk_end);
    }
    // Returns a block obtained from allocate(bytes) with the same `bytes`: at once, or at the next commit
    // when the block is part of the committed state (see "Deferred frees" above).
    void free(std::uint64_t offset, std::uint64_t bytes) noexcept;
    // Frees the blocks parked by free() (call right after a commit, holding the write lock).
    void release_pending() noexcept;
    // Forgets the pending list without freeing (a new open; or the blocks were reclaimed otherwise).
    void drop_pending() noexcept { pending_.clear(); }
    std::size_t pending_count() const noexcept { return pending_.size(); }
    // Parked blocks at which the store commits by itself: 65536 x 16 B = 1 MiB of process memory.
    static constexpr std::size_t kMaxPending = 65536;
    // True when the block at `offset` is part of the newest committed state (free() would defer it).
    bool committed_block(std::uint64_t offset) const noexcept;

    using Visit = std::function<void(std::uint64_t offset, std::uint64_t bytes)>;
    // Enumerates every reachable block (offset, bytes as passed to allocate) by calling the visitor.
    using Enumerate = std::function<void(const Visit&)>;
    // Recomputes every free list from reachability. Throws FormatError if two reachable blocks overlap or
    // one lies outside the file.
    void rebuild(const Enumerate& reachable);
    // Checks that free lists are well-formed and disjoint from every reachable block; throws FormatError.
    void verify(const Enumerate& reachable) const;

    // Gives the unused tail of the carving chunk back when it ends at top, and returns the new top (used by
    // compaction before the file is cut to its minimal size).
    std::uint64_t trim() noexcept;

    std::uint64_t free_bytes() const noexcept { return state().free_bytes; }
    std::uint64_t top() const noexcept { return state().top; }

private:
    ArenaState& state() const noexcept {
        return *reinterpret_cast<ArenaState*>(region_->live().arena);
    }
    void free_now(std::uint64_t offset, std::uint64_t bytes) noexcept;
    std::uint64_t take_large(std::uint64_t size, std::uint64_t limit = ~std::uint64_t{0});
    std::uint64_t take_from_top(std::uint64_t size);
    std::uint64_t free_run_below(std::uint64_t offset) const noexcept;
    void push(int cls, std::uint64_t offset, std::uint64_t size) noexcept;
    // Any 16-aligned range. Whole pages of 1 MiB or more are punched past their first page (the free
    // block's header) unless `punched` says they already are: the rest of a split free block is, and
    // punching it again on every split evicted the pages the previous split had just faulted in.
    void free_range(std::uint64_t offset, std::uint64_t size, bool punched = false) noexcept;
    void refill_chunk();
    void coalesce(std::uint64_t& offset, std::uint64_t& size) noexcept;
    bool link_ok(std::uint64_t off) const noexcept;
    [[noreturn]] void bad_link(std::uint64_t off) const;

    storage::Region* region_;
    struct Pending {
        std::uint64_t offset;
        std::uint64_t bytes;
    };
    std::vector<Pending> pending_;
    std::uint64_t pending_epoch_ = 0;  // LiveHeader::arena_epoch when the first pending block was parked
};

}  // namespace mmstore::alloc
