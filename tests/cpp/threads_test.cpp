// tests/cpp/threads_test.cpp -- many reader threads on one handle (dict.hpp, list.hpp, shared_dict.hpp,
// records.hpp: "Thread safety"), while a writer thread changes the store through its own handle: every read
// returns the value the key or index really has, and the readers map the growth the writer publishes
// (RecordArray and Mapping: a rebuild renamed over the path leaves an open handle reading the file it
// opened). Readers run until the writer is done and each did a minimum of reads (no timing). Run under
// TSan by scripts/sanitize.sh cpp.
#include <gtest/gtest.h>

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "mmstore/codec/value.hpp"
#include "mmstore/containers/hash_table.hpp"
#include "mmstore/dict.hpp"
#include "mmstore/list.hpp"
#include "mmstore/records.hpp"
#include "mmstore/shared_dict.hpp"
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

// Every reader thread keeps reading until the writer is done and it has made this many reads itself.
constexpr long kMinReadsPerThread = 300;

std::string bytes_key(int i) { return "bk" + std::to_string(i); }

TEST(SharedDictThreads, ReaderThreadsShareOneHandleWhileAnotherHandleWrites) {
    const std::string name = "cxxthreads_" + std::to_string(::getpid());
    struct Cleanup {
        std::string name;
        ~Cleanup() { ::unlink(mmstore::SharedDict::segment_path(name).c_str()); }
    } cleanup{name};
    mmstore::SharedDict owner(name);
    for (int i = 0; i < kFixed; ++i) {
        owner.set(Value::integer(i), Value::str(fixed_value(i)));
        owner.set(std::string_view(bytes_key(i)), std::string_view(fixed_value(i)));
    }
    owner.set_child(Value::str("child")).set(Value::integer(7), Value::str("seven"));
    mmstore::SharedDictOptions attach;
    attach.create = mmstore::OpenOptions::Create::kNever;
    mmstore::SharedDict reader(name, attach);
    std::atomic<bool> stop{false};
    std::atomic<long> wrong{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kReaders; ++t) {
        threads.emplace_back([&, t] {
            std::mt19937 rng(static_cast<unsigned>(mmstore_test::seed(0x5D1C + t)));
            std::vector<std::string> keys(8);
            std::vector<std::string_view> views(8);
            std::vector<std::optional<std::string_view>> out(8);
            for (long n = 0; !stop.load(std::memory_order_relaxed) || n < kMinReadsPerThread; ++n) {
                const int i = static_cast<int>(rng() % kFixed);
                const auto v = reader.get(Value::integer(i));
                if (!v || !(*v == Value::str(fixed_value(i)))) wrong.fetch_add(1);
                if (!reader.contains(Value::integer(i))) wrong.fetch_add(1);
                // get_many's views are zero-copy: copy them before another handle's write may reuse the
                // space (dict.hpp), and check that nothing changed meanwhile.
                for (int j = 0; j < 8; ++j) views[j] = keys[j] = bytes_key(static_cast<int>(rng() % kFixed));
                reader.get_many(views, out);
                for (int j = 0; j < 8; ++j)
                    if (!out[j] || std::string(*out[j]) != fixed_value(std::stoi(keys[j].substr(2)))) wrong.fetch_add(1);
                if (reader.size() < static_cast<std::uint64_t>(2 * kFixed + 1)) wrong.fetch_add(1);
                if (n % 16 == 0) {
                    const auto c = reader.child(Value::str("child"));
                    const auto seven = c ? c->get(Value::integer(7)) : std::nullopt;
                    if (!seven || !(*seven == Value::str("seven"))) wrong.fetch_add(1);
                }
            }
        });
    }
    {
        // The writer's own handle: growth of the segment, rehashes, and whole-table switches (update_many).
        mmstore::SharedDict writer(name, attach);
        for (int i = 0; i < 40'000; ++i) {
            writer.set(Value::integer(kFixed + i), Value::integer(i));
            if (i % 4'000 == 0) {
                std::vector<std::pair<std::string, std::string>> pairs;
                for (int j = 0; j < 50; ++j)
                    pairs.emplace_back(mmstore::codec::encode(Value::str("batch" + std::to_string(j))),
                                       mmstore::codec::encode(Value::integer(i)));
                writer.update_many_encoded(pairs);
            }
        }
        writer.increment(Value::str("counter"));
    }
    stop = true;
    for (auto& th : threads) th.join();
    EXPECT_EQ(wrong.load(), 0);
    EXPECT_EQ(reader.get(Value::str("counter"))->i, 1);
}

mmstore::SchemaPtr record_schema() {
    return std::make_shared<const mmstore::Schema>(
        "Rec", std::vector<mmstore::FieldSpec>{{"a", mmstore::FieldType::kInt64, nullptr}, {"s", mmstore::FieldType::kStr, nullptr}});
}

// Version `gen` of the records: record i is {i * 10 + gen, fixed_value(i + gen)}.
std::vector<Value> record_values(int i, int gen) {
    return {Value::integer(i * 10 + gen), Value::str(fixed_value(i + gen))};
}

bool record_is(const mmstore::RecordView& r, int i, int gen) {
    return r.get_int(0) == i * 10 + gen && r.get(1) == Value::str(fixed_value(i + gen));
}

TEST(RecordThreads, ReaderThreadsShareOneArrayAndMappingWhileTheirFilesAreRebuilt) {
    mmstore_test::TempDir dir;
    const std::string array_path = dir.file("a.mms");
    const std::string map_path = dir.file("m.mms");
    auto build = [&](int gen) {
        mmstore::RecordArrayBuilder a(array_path, record_schema());
        mmstore::MappingBuilder m(map_path, record_schema());
        for (int i = 0; i < kFixed; ++i) {
            a.add(record_values(i, gen));
            m.add(Value::integer(i), record_values(i, gen));
        }
        a.finish();
        m.finish();
    };
    build(0);
    const mmstore::RecordArray array = mmstore::RecordArray::open(array_path);
    const mmstore::Mapping mapping = mmstore::Mapping::open(map_path);
    std::atomic<bool> stop{false};
    std::atomic<long> wrong{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kReaders; ++t) {
        threads.emplace_back([&, t] {
            std::mt19937 rng(static_cast<unsigned>(mmstore_test::seed(0x2EC0 + t)));
            for (long n = 0; !stop.load(std::memory_order_relaxed) || n < kMinReadsPerThread; ++n) {
                const int i = static_cast<int>(rng() % kFixed);
                if (array.size() != static_cast<std::uint64_t>(kFixed) || !record_is(array.at(i), i, 0)) wrong.fetch_add(1);
                const auto [first, last] = mapping.find(Value::integer(i));
                if (last != first + 1 || !record_is(mapping.value(first), i, 0)) wrong.fetch_add(1);
                if (n % 64 == 0) {
                    const auto col = array.column(0);  // the int column, zero-copy
                    std::int64_t a0 = 0;
                    std::memcpy(&a0, col.data() + 8 * static_cast<std::size_t>(i), 8);
                    if (a0 != i * 10) wrong.fetch_add(1);
                }
            }
        });
    }
    for (int gen = 1; gen <= 3; ++gen) build(gen);  // each rebuild is renamed over the open files' paths
    stop = true;
    for (auto& th : threads) th.join();
    EXPECT_EQ(wrong.load(), 0);
    // A handle opened now reads the last build.
    EXPECT_TRUE(record_is(mmstore::RecordArray::open(array_path).at(5), 5, 3));
    const mmstore::Mapping fresh = mmstore::Mapping::open(map_path);
    EXPECT_TRUE(record_is(fresh.value(fresh.find(Value::integer(5)).first), 5, 3));
}

// A lock-free reader may check a record while a writer frees its block: the block's first word then becomes a
// free-list link, whose low half, read as the record's length, points far past the mapping. Store reads a
// record header once (load_record_header) and uses only that copy: a length read a second time could differ
// from the one it bounds-checked, and hashing or copying that many bytes faulted (a SharedDict reader died
// with SIGSEGV once in CI). Here a thread flips the header between the real one and such a link as fast as it
// can, while this thread checks the record: every check returns the record as it is or raises FormatError.
TEST(RecordReadThreads, ARecordHeaderChangingUnderAReaderIsReadOnce) {
    mmstore_test::TempDir dir;
    mmstore::Dict d(dir.file("header.mms"));
    const std::string text(3000, 'r');
    d.set(Value::str("k"), Value::str(text));
    auto& store = d.store();
    const std::uint64_t pos = d.table().find(mmstore::codec::encode(Value::str("k")));
    ASSERT_NE(pos, mmstore::containers::kNotFound);
    const std::uint64_t w = *d.table().value_word_ptr(pos);
    ASSERT_FALSE(mmstore::containers::is_inline(w));
    auto* header = store.region().at<std::uint64_t>(mmstore::containers::record_offset(w));
    const std::uint64_t real = __atomic_load_n(header, __ATOMIC_RELAXED);
    const std::uint64_t link = 0x7FFFFFF0;  // a free-list link: 2 GiB as a length, check 0
    ASSERT_GT(link, store.region().size());
    const std::string expected(store.view_record(w));

    std::atomic<bool> stop{false};
    std::thread flipper([&] {
        while (!stop.load(std::memory_order_relaxed)) {
            __atomic_store_n(header, link, __ATOMIC_RELAXED);
            __atomic_store_n(header, real, __ATOMIC_RELAXED);
        }
    });
    long intact = 0, raised = 0, wrong = 0;
    for (long i = 0; i < 20'000'000 && (i < 200'000 || intact < 1000 || raised < 1000); ++i) {
        try {
            const std::string_view v = store.view_record(w);
            if (v.size() == expected.size() && v == expected) ++intact;
            else ++wrong;
        } catch (const mmstore::FormatError&) {
            ++raised;
        }
        if (store.word_ok(w)) ++intact;
    }
    stop = true;
    flipper.join();
    __atomic_store_n(header, real, __ATOMIC_RELAXED);
    EXPECT_EQ(wrong, 0);
    EXPECT_GE(intact, 1000);
    EXPECT_GE(raised, 1000) << "the reader never saw the link (the race was not exercised)";
    const auto got = d.get(Value::str("k"));
    EXPECT_TRUE(got && *got == Value::str(text));
}

// A lock-free read trusts nothing it saw until the read validates, errors included. A reader of a bytes
// value whose slot a writer reused meanwhile can decode a value of another type; Dict::get's "not a bytes
// value" check then threw InvalidArgument out of Store::read, which retried only FormatErrors (a SharedDict
// reader thread terminated with it once). Deterministic: the read's first attempt sees a writer free memory
// (the reclaim counter moves) and raises; Store::read must retry it. An undisturbed read's error is real.
TEST(StoreRead, AnErrorFromARacedReadIsRetriedNotRaised) {
    mmstore_test::TempDir dir;
    mmstore::Dict d(dir.file("racederror.mms"));
    auto& store = d.store();
    int attempts = 0;
    const int got = store.read([&] {
        if (++attempts == 1) {
            store.region().bump_reclaims();  // what a writer freeing a block does while this read runs
            mmstore::throw_error(mmstore::ErrorCode::kInvalidArgument, store.path(), "value is not a bytes value");
        }
        return 7;
    });
    EXPECT_EQ(got, 7);
    EXPECT_EQ(attempts, 2) << "the raced attempt's error was not retried";
    EXPECT_THROW(store.read([&]() -> int {
                     mmstore::throw_error(mmstore::ErrorCode::kInvalidArgument, store.path(), "a real error");
                 }),
                 mmstore::Error);
}

}  // namespace
