// tests/cpp/alloc/arena_test.cpp -- alloc::Arena (include/mmstore/alloc/arena.hpp), driven directly on a
// Region. The model is a std::map of live blocks: allocations must never overlap a live block, verify() must
// accept every state the allocator reaches, rebuild() must account for every byte below top, and freed
// blocks must be reused instead of growing the file.
#include "mmstore/alloc/arena.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <random>
#include <vector>

#include "../test_util.hpp"
#include "mmstore/error.hpp"
#include "mmstore/storage/region.hpp"

namespace {

using mmstore::ErrorCode;
using mmstore::alloc::Arena;
using mmstore::alloc::block_size;
using mmstore::storage::kDataStart;
using mmstore::storage::kPageSize;
using mmstore_test::throws_format_error;
using mmstore_test::uniform;

class ArenaTest : public ::testing::Test {
protected:
    void SetUp() override {
        region_.open(dir_.file("arena.mms"), mmstore::storage::StoreKind::kDict, {});
        arena_.format();
    }

    // Allocates, checks placement against the live set, and stamps the block so that an overlapping
    // writer would be noticed at free time.
    std::uint64_t alloc(std::uint64_t bytes) {
        const std::uint64_t off = arena_.allocate(bytes);
        const std::uint64_t size = block_size(bytes);
        EXPECT_EQ(off % 16, 0u);
        if (size >= kPageSize) EXPECT_EQ(off % kPageSize, 0u) << "large block not page-aligned";
        EXPECT_GE(off, kDataStart);
        EXPECT_LE(off + size, arena_.top());
        EXPECT_LE(arena_.top(), region_.size());
        auto next = live_.lower_bound(off);
        if (next != live_.end()) EXPECT_LE(off + size, next->first) << "overlaps the block at " << next->first;
        if (next != live_.begin()) {
            auto prev = std::prev(next);
            EXPECT_LE(prev->first + block_size(prev->second), off) << "overlaps the block at " << prev->first;
        }
        live_[off] = bytes;
        stamp(off, bytes);
        return off;
    }

    void release(std::uint64_t off) {
        const std::uint64_t bytes = live_.at(off);
        check_stamp(off, bytes);
        live_.erase(off);
        arena_.free(off, bytes);
    }

    // The first and last 8 bytes of the usable part hold the offset (just the first when they would overlap).
    void stamp(std::uint64_t off, std::uint64_t bytes) {
        if (bytes < 16) return;
        std::memcpy(region_.at<char>(off), &off, 8);
        std::memcpy(region_.at<char>(off + bytes - 8), &off, 8);
    }
    void check_stamp(std::uint64_t off, std::uint64_t bytes) {
        if (bytes < 16) return;
        std::uint64_t a, b;
        std::memcpy(&a, region_.at<char>(off), 8);
        std::memcpy(&b, region_.at<char>(off + bytes - 8), 8);
        EXPECT_EQ(a, off) << "block at " << off << " was overwritten";
        EXPECT_EQ(b, off) << "block at " << off << " was overwritten";
    }

    Arena::Enumerate live_set() const {
        return [this](const Arena::Visit& v) {
            for (const auto& [off, bytes] : live_) v(off, bytes);
        };
    }

    std::uint64_t live_block_bytes() const {
        std::uint64_t total = 0;
        for (const auto& [off, bytes] : live_) total += block_size(bytes);
        return total;
    }

    // Mostly small records, some medium, some multi-page, a few of >= 1 MiB (hole-punched when freed).
    static std::uint64_t random_request(std::mt19937_64& rng) {
        const auto r = rng() % 1000;
        if (r < 700) return uniform(rng, 0, 512);
        if (r < 900) return uniform(rng, 513, 4095);
        if (r < 995) return uniform(rng, 4096, 200'000);
        return uniform(rng, 1 << 20, 3 << 20);
    }

    mmstore_test::TempDir dir_;
    mmstore::storage::Region region_;
    Arena arena_{&region_};
    std::map<std::uint64_t, std::uint64_t> live_;  // offset -> bytes requested
};

TEST(BlockSize, RoundsToTheSizeClasses) {
    const std::pair<std::uint64_t, std::uint64_t> cases[] = {
        {0, 16},      {1, 16},      {16, 16},     {17, 32},     {500, 512},   {512, 512},    {513, 768},
        {768, 768},   {769, 1024},  {3840, 3840}, {3841, 4096}, {4096, 4096}, {4097, 8192},  {65536, 65536},
    };
    for (auto [bytes, size] : cases) EXPECT_EQ(block_size(bytes), size) << bytes;
}

TEST_F(ArenaTest, RandomAllocAndFreeNeverHandOutOverlappingBlocks) {
    std::mt19937_64 rng(mmstore_test::seed(0xA11C));
    for (int op = 0; op < 20'000; ++op) {
        if (live_.empty() || rng() % 100 < 55) {
            alloc(random_request(rng));
        } else {
            auto it = live_.begin();
            std::advance(it, static_cast<long>(rng() % std::min<std::size_t>(live_.size(), 64)));
            if (rng() % 2) it = std::prev(live_.end());
            release(it->first);
        }
        if (HasFailure()) FAIL() << "op " << op;
        if (op % 2'000 == 1'999) {
            ASSERT_NO_THROW(arena_.verify(live_set())) << "op " << op;
            // Free lists, live blocks and the carving chunk never exceed the used arena.
            EXPECT_LE(arena_.free_bytes() + live_block_bytes(), arena_.top() - kDataStart);
        }
    }
    for (const auto& [off, bytes] : live_) check_stamp(off, bytes);
    ASSERT_NO_THROW(arena_.verify(live_set()));
}

TEST_F(ArenaTest, RebuildFromTheLiveSetAccountsForEveryByte) {
    std::mt19937_64 rng(mmstore_test::seed(0xB1D));
    for (int op = 0; op < 5'000; ++op) {
        if (live_.empty() || rng() % 100 < 60) alloc(random_request(rng));
        else release(std::next(live_.begin(), static_cast<long>(rng() % live_.size()))->first);
    }
    ASSERT_FALSE(live_.empty());
    // As after a crash: free lists are recomputed from what the container can reach.
    arena_.rebuild(live_set());
    ASSERT_NO_THROW(arena_.verify(live_set()));
    EXPECT_EQ(arena_.free_bytes() + live_block_bytes(), arena_.top() - kDataStart);
    for (const auto& [off, bytes] : live_) check_stamp(off, bytes);
    // Every byte on the rebuilt free lists is usable: allocate and free more without overlap.
    for (int op = 0; op < 3'000; ++op) {
        if (rng() % 100 < 60) alloc(random_request(rng));
        else release(std::next(live_.begin(), static_cast<long>(rng() % live_.size()))->first);
        if (HasFailure()) FAIL() << "op " << op << " after rebuild";
    }
    ASSERT_NO_THROW(arena_.verify(live_set()));
}

TEST_F(ArenaTest, RebuildWithNothingLiveFreesEverything) {
    for (int i = 0; i < 100; ++i) alloc(100 + i * 37);
    live_.clear();
    arena_.rebuild(live_set());
    EXPECT_EQ(arena_.top(), kDataStart);
    EXPECT_EQ(arena_.free_bytes(), 0u);
    EXPECT_NO_THROW(arena_.verify(live_set()));
}

TEST_F(ArenaTest, FreedSmallAndMediumBlocksAreReusedSoTopStopsGrowing) {
    std::mt19937_64 rng(3);
    std::vector<std::uint64_t> sizes;
    for (int i = 0; i < 300; ++i) sizes.push_back(uniform(rng, 0, 4095));
    std::uint64_t top_after_first = 0;
    for (int round = 0; round < 50; ++round) {
        std::vector<std::uint64_t> offs;
        for (auto s : sizes) offs.push_back(alloc(s));
        for (auto off : offs) release(off);
        if (round == 0) top_after_first = arena_.top();
        ASSERT_EQ(arena_.top(), top_after_first) << "round " << round;
    }
    EXPECT_NO_THROW(arena_.verify(live_set()));
}

TEST_F(ArenaTest, FreedLargeBlocksOfOneSizeAreReusedSoTopStopsGrowing) {
    std::uint64_t top_after_first = 0;
    for (int round = 0; round < 50; ++round) {
        std::vector<std::uint64_t> offs;
        for (int i = 0; i < 20; ++i) offs.push_back(alloc(50'000));
        for (auto off : offs) release(off);
        if (round == 0) top_after_first = arena_.top();
        ASSERT_EQ(arena_.top(), top_after_first) << "round " << round;
    }
}

TEST_F(ArenaTest, FreedLargeBlocksOfMixedSizesAreReusedSoTopStopsGrowing) {
    std::mt19937_64 rng(3);
    std::vector<std::uint64_t> sizes;
    for (int i = 0; i < 40; ++i) sizes.push_back(uniform(rng, 4096, 300'000));
    std::uint64_t top_after_first = 0;
    for (int round = 0; round < 50; ++round) {
        std::vector<std::uint64_t> offs;
        for (auto s : sizes) offs.push_back(alloc(s));
        for (auto off : offs) release(off);
        if (round == 0) top_after_first = arena_.top();
    }
    EXPECT_LE(arena_.top(), 2 * top_after_first) << "after round 1: " << top_after_first;
    EXPECT_NO_THROW(arena_.verify(live_set()));
}

TEST_F(ArenaTest, FreeThenAllocateOfTheSameSizeReturnsTheSameBlock) {
    for (std::uint64_t bytes : {1u, 100u, 512u, 700u, 3000u, 5000u, 100'000u}) {
        const std::uint64_t a = alloc(bytes);
        release(a);
        EXPECT_EQ(alloc(bytes), a) << bytes;
    }
}

TEST_F(ArenaTest, FreedHugeBlockIsReusedAfterHolePunching) {
    const std::uint64_t a = alloc(4 << 20);
    const std::uint64_t guard = alloc(64);
    const std::uint64_t top = arena_.top();
    release(a);
    EXPECT_GE(arena_.free_bytes(), std::uint64_t{4} << 20);
    // Split reuse: two 1 MiB pieces come out of the punched 4 MiB block, writable, without growing top.
    const std::uint64_t b = alloc(1 << 20);
    const std::uint64_t c = alloc(1 << 20);
    EXPECT_EQ(arena_.top(), top);
    std::memset(region_.at<char>(b), 0x5A, 1 << 20);
    std::memset(region_.at<char>(c), 0xA5, 1 << 20);
    check_stamp(guard, 64);
    EXPECT_NO_THROW(arena_.verify(live_set()));
}

TEST_F(ArenaTest, VerifyRejectsOverlappingLiveBlocks) {
    const std::uint64_t a = alloc(256);
    alloc(256);
    auto overlapping = [&](const Arena::Visit& v) {
        v(a, 256);
        v(a + 128, 256);
    };
    EXPECT_TRUE(throws_format_error([&] { arena_.verify(overlapping); }, {ErrorCode::kCorrupt}));
    EXPECT_TRUE(throws_format_error([&] { arena_.rebuild(overlapping); }, {ErrorCode::kCorrupt}));
}

TEST_F(ArenaTest, VerifyRejectsALiveBlockThatIsAlsoFree) {
    const std::uint64_t a = alloc(256);
    const std::uint64_t b = alloc(256);
    release(b);
    auto claims_freed = [&](const Arena::Visit& v) {
        v(a, 256);
        v(b, 256);
    };
    EXPECT_TRUE(throws_format_error([&] { arena_.verify(claims_freed); }, {ErrorCode::kCorrupt}));
}

TEST_F(ArenaTest, VerifyAndRebuildRejectBlocksOutsideTheFile) {
    alloc(100);
    auto outside = [&](const Arena::Visit& v) { v(region_.size() + 4096, 64); };
    auto header = [&](const Arena::Visit& v) { v(kPageSize, 64); };  // inside the header pages
    auto misaligned = [&](const Arena::Visit& v) { v(kDataStart + 8, 64); };
    for (const Arena::Enumerate& e : {Arena::Enumerate(outside), Arena::Enumerate(header), Arena::Enumerate(misaligned)}) {
        EXPECT_TRUE(throws_format_error([&] { arena_.verify(e); }, {ErrorCode::kCorrupt}));
        EXPECT_TRUE(throws_format_error([&] { arena_.rebuild(e); }, {ErrorCode::kCorrupt}));
    }
}

TEST_F(ArenaTest, VerifyDetectsACorruptFreeListLink) {
    const std::uint64_t a = alloc(64);
    const std::uint64_t b = alloc(64);
    release(a);
    release(b);  // list: b -> a
    const std::uint64_t wild = std::uint64_t{1} << 39;
    std::memcpy(region_.at<char>(b), &wild, 8);
    EXPECT_TRUE(throws_format_error([&] { arena_.verify(live_set()); }, {ErrorCode::kCorrupt}));
}

TEST_F(ArenaTest, CorruptFreeListLinkIsRejectedNotFollowed) {
    const std::uint64_t a = alloc(64);
    const std::uint64_t b = alloc(64);
    release(a);
    release(b);
    const std::uint64_t wild = std::uint64_t{1} << 39;
    std::memcpy(region_.at<char>(b), &wild, 8);
    const int status = mmstore_test::run_in_child([&] {
        const std::uint64_t first = arena_.allocate(64);  // b itself
        const std::uint64_t second = arena_.allocate(64);  // must not be the wild link
        if (second + 64 > region_.size()) return 2;
        std::memset(region_.at<char>(second), 0, 64);
        return first == b ? 0 : 3;
    });
    EXPECT_TRUE(WIFEXITED(status) && (WEXITSTATUS(status) == 100 || WEXITSTATUS(status) == 0))
        << mmstore_test::describe_status(status) << " (100 = FormatError, 2 = wild offset handed out)";
}

// Deferred frees (power-loss safety): a block of the committed state is reused only after the next commit.
TEST_F(ArenaTest, CommittedBlockIsNotReusedBeforeTheNextCommit) {
    const std::uint64_t a = alloc(100);
    alloc(100);
    region_.sync();  // a is now part of the committed state
    EXPECT_TRUE(arena_.committed_block(a));
    release(a);
    EXPECT_EQ(arena_.pending_count(), 1u);
    const std::uint64_t b = alloc(100);
    EXPECT_NE(b, a) << "a committed block was reused before the next commit";
    check_stamp(b, 100);
    region_.sync();
    arena_.release_pending();
    EXPECT_EQ(arena_.pending_count(), 0u);
    EXPECT_EQ(alloc(100), a) << "after the commit the block is free (LIFO small class)";
    arena_.verify(live_set());
}

TEST_F(ArenaTest, BlockAllocatedSinceTheCommitIsFreedAtOnce) {
    alloc(100);
    region_.sync();
    const std::uint64_t c = alloc(100);  // carved since the commit
    EXPECT_FALSE(arena_.committed_block(c));
    release(c);
    EXPECT_EQ(arena_.pending_count(), 0u);
    EXPECT_EQ(alloc(100), c);
    const std::uint64_t big = alloc(200'000);  // from top, above the committed top
    EXPECT_FALSE(arena_.committed_block(big));
}

TEST_F(ArenaTest, RebuildDropsPendingFreesInsteadOfFreeingThemTwice) {
    const std::uint64_t a = alloc(300);
    alloc(300);
    region_.sync();
    release(a);
    ASSERT_EQ(arena_.pending_count(), 1u);
    arena_.rebuild(live_set());  // a is free space now (what repair after a dead writer does)
    EXPECT_EQ(arena_.pending_count(), 0u);
    arena_.release_pending();
    arena_.verify(live_set());  // a is on one free list once
    EXPECT_EQ(alloc(300), a);
    EXPECT_NE(alloc(300), a);
}

TEST_F(ArenaTest, PendingListOfAnotherHandleFromBeforeARebuildIsDropped) {
    const std::uint64_t a = alloc(300);
    alloc(300);
    region_.sync();
    release(a);  // parked by this handle
    // Another process's recovery sweeps the arena: the epoch moves on.
    region_.live().arena_epoch += 1;
    Arena other{&region_};
    other.rebuild(live_set());
    arena_.release_pending();  // must not push a onto a free list a second time
    arena_.verify(live_set());
}

TEST_F(ArenaTest, TrimGivesBackTheUnusedChunkTail) {
    alloc(100);  // carves from a fresh 64 KiB chunk at top
    const std::uint64_t before = arena_.top();
    const std::uint64_t after = arena_.trim();
    EXPECT_EQ(after, arena_.top());
    EXPECT_LT(after, before);
    EXPECT_EQ(after % kPageSize, 0u);
    EXPECT_NO_THROW(arena_.verify(live_set()));
    alloc(100);  // still usable after trimming
    EXPECT_NO_THROW(arena_.verify(live_set()));
}

// Density: a block that doubles (a table or array) is replaced by allocate_replacement(); once the old block
// is freed, allocate_below() must find room under the new block (its move down), so that freeing the new
// block's old place lowers top to the end of the moved block. Other allocations come and go in between, as
// records do; the model checks that nothing ever overlaps.
TEST_F(ArenaTest, GrowingBlockCanAlwaysMoveDownAfterItsReplacement) {
    std::mt19937_64 rng(mmstore_test::seed(0xDE75));
    for (int trial = 0; trial < 6; ++trial) {
        std::uint64_t bytes = uniform(rng, 4096, 40'000);
        std::uint64_t table = alloc(bytes);
        int moves = 0, eligible = 0;
        for (int growth = 0; growth < 9; ++growth) {
            // Some records between growths (they may sit above the table: then no move is possible).
            const int records = trial % 2 == 0 ? 0 : static_cast<int>(rng() % 20);
            for (int i = 0; i < records; ++i) alloc(random_request(rng));
            for (int i = 0; i < records / 2 && live_.size() > 1; ++i) {
                auto it = std::next(live_.begin(), static_cast<long>(rng() % live_.size()));
                if (it->first != table) release(it->first);
            }
            const bool at_end = arena_.ends_arena(table, bytes);
            const std::uint64_t grown = bytes * 2;
            const std::uint64_t next = arena_.allocate_replacement(grown, table, bytes);
            ASSERT_NE(next, 0u);
            EXPECT_EQ(next % kPageSize, 0u);
            // Placement check as alloc() does, then adopt the block into the model.
            auto after = live_.lower_bound(next);
            if (after != live_.end()) ASSERT_LE(next + block_size(grown), after->first);
            if (after != live_.begin()) ASSERT_LE(std::prev(after)->first + block_size(std::prev(after)->second), next);
            live_[next] = grown;
            stamp(next, grown);
            release(table);
            table = next;
            bytes = grown;
            ASSERT_NO_THROW(arena_.verify(live_set())) << "trial " << trial << " growth " << growth;
            if (!at_end) continue;
            ++eligible;
            if (records > 0 && !arena_.ends_arena(table, bytes)) continue;  // a record was put above it
            // The space freed below the new block holds it: move it down, as close() does.
            const std::uint64_t low = arena_.allocate_below(bytes, table);
            ASSERT_NE(low, 0u) << "no room below the grown block, trial " << trial << " growth " << growth;
            ASSERT_LT(low + block_size(bytes), table + 1);
            live_[low] = bytes;
            stamp(low, bytes);
            release(table);
            table = low;
            ++moves;
            EXPECT_GE(arena_.top(), table + block_size(bytes));
            if (records == 0) EXPECT_EQ(arena_.top(), table + block_size(bytes)) << "top did not fall back";
            ASSERT_NO_THROW(arena_.verify(live_set()));
        }
        if (trial % 2 == 0) EXPECT_EQ(moves, eligible) << "trial " << trial;
        if (trial % 2 == 0) EXPECT_GE(eligible, 8) << "trial " << trial << ": the growing block seldom ended the arena";
        for (const auto& [off, b] : live_) check_stamp(off, b);
        while (!live_.empty()) release(live_.begin()->first);
    }
}

TEST_F(ArenaTest, AllocateBelowNeverReturnsABlockAtOrAboveTheLimit) {
    const std::uint64_t a = alloc(100'000);
    const std::uint64_t b = alloc(100'000);
    alloc(64);
    release(a);
    EXPECT_EQ(arena_.allocate_below(100'000, a), 0u) << "the only free block starts at the limit";
    const std::uint64_t top = arena_.top();
    EXPECT_EQ(arena_.allocate_below(200'000, b), 0u) << "too small";
    EXPECT_EQ(arena_.top(), top) << "a failed allocate_below changed the arena";
    const std::uint64_t c = arena_.allocate_below(50'000, b);
    EXPECT_EQ(c, a);
    live_[c] = 50'000;
    EXPECT_NO_THROW(arena_.verify(live_set()));
}

}  // namespace
