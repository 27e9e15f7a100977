// Tests of mmstore::Pool (include/mmstore/pool.hpp): a seeded random differential test against a map
// model under a tiny memory limit, policies, zero-copy restores, save/load, disk full.
#include <filesystem>
#include <map>
#include <random>

#include "mmstore/pool.hpp"
#include "test_util.hpp"

using mmstore::ErrorCode;
using mmstore::Pool;
using mmstore::PoolOptions;
using mmstore::PoolPolicy;
using mmstore::PoolRef;
using namespace mmstore_test;

namespace {

std::vector<std::byte> blob(std::size_t n, int fill) { return std::vector<std::byte>(n, std::byte(fill)); }

std::string str(std::span<const std::byte> b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }

}  // namespace

TEST(Pool, RandomOperationsMatchAMapModelWithinTheMemoryLimit) {
    for (PoolPolicy policy : {PoolPolicy::kLru, PoolPolicy::kMru}) {
        TempDir t;
        Pool pool(PoolOptions{1000, t.path(), policy});
        std::map<std::uint64_t, std::string> model;
        std::mt19937_64 rng(seed(42));
        for (int step = 0; step < 3000; ++step) {
            const auto op = uniform(rng, 0, 9);
            if (op < 3 || model.empty()) {
                const std::string v = random_bytes(rng, uniform(rng, 0, 1500));
                const PoolRef r = pool.put(std::span(reinterpret_cast<const std::byte*>(v.data()), v.size()));
                model[r.id] = v;
            } else {
                auto it = model.begin();
                std::advance(it, uniform(rng, 0, model.size() - 1));
                const PoolRef r{it->first};
                if (op < 6) {
                    auto o = pool.get(r);
                    ASSERT_TRUE(o);
                    ASSERT_EQ(str(o->bytes()), it->second);
                } else if (op == 6) {
                    ASSERT_TRUE(pool.erase(r));
                    model.erase(it);
                } else if (op == 7) {
                    pool.move_to_disk(r);
                } else {
                    pool.copy_to_disk(r);
                }
            }
            const auto s = pool.stats();
            ASSERT_LE(s.ram_bytes, 1000u) << "step " << step;
            ASSERT_EQ(s.count, model.size());
        }
        for (auto& [id, v] : model) ASSERT_EQ(str(pool.get(PoolRef{id})->bytes()), v);
        EXPECT_GT(pool.stats().spills, 0u);
        EXPECT_GT(pool.stats().restores, 0u);
    }
}

TEST(Pool, LruSpillsTheOldestAndMruTheNewest) {
    TempDir t;
    for (PoolPolicy policy : {PoolPolicy::kLru, PoolPolicy::kMru}) {
        Pool pool(PoolOptions{300, t.path(), policy});
        const PoolRef a = pool.put(blob(100, 1)), b = pool.put(blob(100, 2)), c = pool.put(blob(100, 3));
        pool.get(a);  // a is now the most recently used
        pool.put(blob(100, 4));
        const PoolRef victim = policy == PoolPolicy::kLru ? b : a;
        const PoolRef kept = policy == PoolPolicy::kLru ? a : b;
        EXPECT_EQ(pool.stats().spills, 1u);
        const auto before = pool.stats().misses;
        pool.get(kept);
        EXPECT_EQ(pool.stats().misses, before);
        pool.get(victim);
        EXPECT_EQ(pool.stats().misses, before + 1);
        (void)c;
    }
}

TEST(Pool, RestoredObjectIsAMappedViewAndSurvivesDelete) {
    TempDir t;
    Pool pool(PoolOptions{1 << 20, t.path()});
    std::vector<double> v(1000);
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<double>(i) * 0.5;
    const PoolRef r = pool.put_array<double>(v, {10, 100});
    pool.move_to_disk(r);
    EXPECT_EQ(pool.stats().ram_bytes, 0u);
    auto o = pool.get(r);
    EXPECT_TRUE(o->mapped());
    EXPECT_EQ(o->dtype(), "<f8");
    EXPECT_EQ(o->shape(), (std::vector<std::uint64_t>{10, 100}));
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(o->bytes().data()) % 4096, 0u);
    EXPECT_TRUE(throws_error([&] { o->as<float>(); }, ErrorCode::kInvalidArgument));
    pool.erase(r);
    pool.close();
    auto span = o->as<double>();
    EXPECT_EQ(std::vector<double>(span.begin(), span.end()), v);
}

TEST(Pool, ObjectLargerThanTheLimitGoesStraightToDiskAndIsNeverCached) {
    TempDir t;
    Pool pool(PoolOptions{100, t.path()});
    const PoolRef small = pool.put(blob(50, 1));
    const PoolRef big = pool.put(blob(500, 2));
    auto s = pool.stats();
    EXPECT_EQ(s.ram_bytes, 50u);
    EXPECT_EQ(s.disk_count, 1u);
    EXPECT_EQ(pool.get(big)->size(), 500u);
    EXPECT_EQ(pool.stats().ram_bytes, 50u);
    EXPECT_TRUE(pool.get(small));
}

TEST(Pool, SaveWritesAStandaloneFileThatLoadReads) {
    TempDir t;
    std::string path = t.file("saved.mms");
    {
        Pool pool(PoolOptions{1 << 20, t.path()});
        const std::int32_t data[] = {1, -2, 3};
        const PoolRef r = pool.put_array<std::int32_t>(data);
        pool.save(r, path);
    }
    auto o = Pool::load(path);
    EXPECT_EQ(o->dtype(), "<i4");
    EXPECT_EQ(o->as<std::int32_t>()[1], -2);
    std::string raw = read_file(path);
    raw[4096] ^= 1;
    write_file(path, raw);
    EXPECT_TRUE(throws_format_error([&] { Pool::load(path); }, {ErrorCode::kCorrupt}));
}

TEST(Pool, DiskFullKeepsTheObjectInMemory) {
    TempDir t;
    Pool pool(PoolOptions{1000, t.path()});
    const PoolRef r = pool.put(blob(600, 7));
    mmstore::os::inject_write_failures(ENOSPC, 1);
    EXPECT_TRUE(throws_error([&] { pool.move_to_disk(r); }, ErrorCode::kDiskFull));
    mmstore::os::inject_write_failures(ENOSPC, 1);
    EXPECT_TRUE(throws_error([&] { pool.put(blob(600, 8)); }, ErrorCode::kDiskFull));
    const auto s = pool.stats();
    EXPECT_EQ(s.count, 1u);
    EXPECT_EQ(s.ram_bytes, 600u);
    EXPECT_EQ(s.disk_count, 0u);
    EXPECT_EQ(str(pool.get(r)->bytes()), std::string(600, '\x07'));
}

TEST(Pool, UnknownRefsAndClosedPool) {
    TempDir t;
    Pool pool(PoolOptions{1000, t.path()});
    EXPECT_EQ(pool.get(PoolRef{99}), nullptr);
    EXPECT_FALSE(pool.erase(PoolRef{99}));
    EXPECT_TRUE(throws_error([&] { pool.move_to_disk(PoolRef{99}); }, ErrorCode::kNotFound));
    const std::string dir = pool.directory();
    pool.close();
    EXPECT_FALSE(std::filesystem::exists(dir));
    EXPECT_TRUE(throws_error([&] { pool.put(blob(1, 1)); }, ErrorCode::kClosed));
}
