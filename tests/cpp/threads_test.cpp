// tests/cpp/threads_test.cpp -- many reader threads on one handle (dict.hpp, list.hpp: "Thread safety"),
// while a writer thread grows the store through its own handle: every read returns the value the key or
// index really has, and the readers map the growth the writer publishes. Run under TSan by
// scripts/sanitize.sh cpp.
#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "mmstore/dict.hpp"
#include "mmstore/list.hpp"
#include "test_util.hpp"

namespace {

using mmstore::Value;

constexpr int kFixed = 2000;
constexpr int kReaders = 4;
// The writer writes kGrow elements, then goes on (up to kMaxGrow) until the readers have done kMinReads
// reads while it wrote: on a loaded machine they may not be scheduled before a fixed-size writer ends (CI
// once saw 0 reads), and then the test would prove nothing about concurrent growth.
constexpr int kGrow = 150'000;
constexpr int kMaxGrow = 2'000'000;
constexpr long kMinReads = 1000;

std::string fixed_value(int i) { return "value-" + std::to_string(i) + std::string(static_cast<std::size_t>(i % 40), 'x'); }

TEST(DictThreads, ReaderThreadsShareOneHandleWhileAWriterGrowsTheStore) {
    mmstore_test::TempDir dir;
    const std::string path = dir.file("threads.mms");
    {
        mmstore::Dict d(path);
        for (int i = 0; i < kFixed; ++i) d.set(Value::integer(i), Value::str(fixed_value(i)));
    }
    mmstore::Dict reader(path);
    std::atomic<bool> stop{false};
    std::atomic<long> reads{0}, wrong{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kReaders; ++t) {
        threads.emplace_back([&, t] {
            std::mt19937 rng(static_cast<unsigned>(mmstore_test::seed(0x7EAD + t)));
            while (!stop.load(std::memory_order_relaxed)) {
                const int i = static_cast<int>(rng() % kFixed);
                const auto v = reader.get(Value::integer(i));
                if (!v || !(*v == Value::str(fixed_value(i)))) wrong.fetch_add(1);
                reads.fetch_add(1, std::memory_order_relaxed);
            }
        });
    }
    int n = 0;
    {
        mmstore::Dict writer(path);  // the writer's own handle: rehashes and file growth the readers must map
        while (n < kGrow || (reads.load(std::memory_order_relaxed) < kMinReads && n < kMaxGrow)) {
            writer.set(Value::integer(kFixed + n), Value::integer(kFixed + n));
            ++n;
        }
    }
    const long during = reads.load();
    stop = true;
    for (auto& th : threads) th.join();
    EXPECT_EQ(wrong.load(), 0);
    EXPECT_GE(during, kMinReads) << "the readers did not run while " << n << " keys were written";
    EXPECT_EQ(reader.size(), static_cast<std::uint64_t>(kFixed + n));
}

TEST(ListThreads, ReaderThreadsShareOneHandleWhileAWriterAppends) {
    mmstore_test::TempDir dir;
    const std::string path = dir.file("threads.mml");
    {
        mmstore::List l(path);
        for (int i = 0; i < kFixed; ++i) l.push_back(Value::str(fixed_value(i)));
    }
    mmstore::List reader(path);
    std::atomic<bool> stop{false};
    std::atomic<long> reads{0}, wrong{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kReaders; ++t) {
        threads.emplace_back([&, t] {
            std::mt19937 rng(static_cast<unsigned>(mmstore_test::seed(0x11A7 + t)));
            while (!stop.load(std::memory_order_relaxed)) {
                const int i = static_cast<int>(rng() % kFixed);
                if (!(reader.get_value(static_cast<std::uint64_t>(i)) == Value::str(fixed_value(i)))) wrong.fetch_add(1);
                reads.fetch_add(1, std::memory_order_relaxed);
            }
        });
    }
    int n = 0;
    {
        mmstore::List writer(path);
        while (n < kGrow || (reads.load(std::memory_order_relaxed) < kMinReads && n < kMaxGrow)) {
            writer.push_back(Value::integer(n));
            ++n;
        }
    }
    const long during = reads.load();
    stop = true;
    for (auto& th : threads) th.join();
    EXPECT_EQ(wrong.load(), 0);
    EXPECT_GE(during, kMinReads) << "the readers did not run while " << n << " elements were appended";
    EXPECT_EQ(reader.size(), static_cast<std::uint64_t>(kFixed + n));
}

}  // namespace
