// tests/cpp/shared_dict_test.cpp -- mmstore::SharedDict: names, creation, lifetime, atomic updates, change
// notification and fork, with real processes.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>

#include "test_util.hpp"
#include "mmstore/containers/hash_table.hpp"
#include "mmstore/shared_dict.hpp"

using mmstore::ErrorCode;
using mmstore::SharedDict;
using mmstore::SharedDictOptions;
using mmstore::Value;
using mmstore_test::throws_error;
using mmstore_test::throws_format_error;

using mmstore_test::KillOnExit;
using mmstore_test::spawn;
using mmstore_test::wait_exit;

namespace {

std::string unique_name(const char* tag) {
    static int n = 0;
    return std::string("cxxtest_") + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(++n);
}

// Removes the segment at the end of a test whatever happened.
struct Cleanup {
    std::string name;
    ~Cleanup() { ::unlink(SharedDict::segment_path(name).c_str()); }
};

SharedDictOptions with_create(mmstore::OpenOptions::Create c) {
    SharedDictOptions o;
    o.create = c;
    return o;
}

}  // namespace

TEST(SharedDictTest, InvalidNamesAreRefused) {
    for (const char* bad : {"a/b", "../x", ".hidden", "sp ace", "semi;colon", "uni\xc3\xa9"})
        EXPECT_TRUE(throws_error([&] { SharedDict d(bad); }, ErrorCode::kInvalidArgument)) << bad;
    EXPECT_TRUE(throws_error([&] { SharedDict d(std::string(201, 'a')); }, ErrorCode::kInvalidArgument));
}

TEST(SharedDictTest, CreateFlagsAndPrivateModeAndRandomNames) {
    const std::string name = unique_name("create");
    Cleanup c{name};
    EXPECT_TRUE(throws_error([&] { SharedDict d(name, with_create(mmstore::OpenOptions::Create::kNever)); }, ErrorCode::kNotFound));
    SharedDict d(name, with_create(mmstore::OpenOptions::Create::kAlways));
    EXPECT_TRUE(d.created());
    struct stat st {};
    ASSERT_EQ(::stat(SharedDict::segment_path(name).c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    EXPECT_TRUE(throws_error([&] { SharedDict e(name, with_create(mmstore::OpenOptions::Create::kAlways)); }, ErrorCode::kExists));
    SharedDict anon;
    Cleanup c2{anon.name()};
    EXPECT_FALSE(anon.name().empty());
    EXPECT_TRUE(anon.created());
    SharedDict again(anon.name(), with_create(mmstore::OpenOptions::Create::kNever));
    EXPECT_FALSE(again.created());
}

TEST(SharedDictTest, ForkedAndAttachedProcessesIncrementExactly) {
    const std::string name = unique_name("incr");
    Cleanup c{name};
    SharedDict d(name);
    const Value key = Value::str("n");
    constexpr int kProcs = 3, kEach = 5000;
    std::vector<pid_t> kids;
    for (int p = 0; p < kProcs; ++p)
        kids.push_back(spawn([&, p] {
            if (p == 0) {
                for (int i = 0; i < kEach; ++i) d.increment(key);  // the inherited handle reattaches
            } else {
                SharedDict mine(name);  // attached by name
                for (int i = 0; i < kEach; ++i) mine.increment(key);
            }
        }));
    for (pid_t k : kids) EXPECT_EQ(wait_exit(k), 0);
    EXPECT_EQ(d.get(key)->i, kProcs * kEach);
    d.verify();
}

TEST(SharedDictTest, SegmentOutlivesItsCreatorWhileAnotherHandleIsAttached) {
    const std::string name = unique_name("life");
    const std::string path = SharedDict::segment_path(name);
    Cleanup c{name};
    auto creator = std::make_unique<SharedDict>(name);  // auto_unlink by default
    creator->set("k", "v");
    SharedDict other(name);
    creator->close();
    creator.reset();
    EXPECT_TRUE(std::filesystem::exists(path)) << "vanished while `other` is attached";
    {
        SharedDict third(name, with_create(mmstore::OpenOptions::Create::kNever));
        EXPECT_EQ(third.get("k"), "v");
    }
    EXPECT_TRUE(std::filesystem::exists(path));
    other.close();
    EXPECT_FALSE(std::filesystem::exists(path)) << "the last handle to close removes an auto_unlink segment";
}

TEST(SharedDictTest, ListNamesSegmentsWithSizeCreatorAndUse) {
    const std::string name = unique_name("list");
    Cleanup c{name};
    {
        SharedDictOptions keep;
        keep.auto_unlink = false;
        SharedDict d(name, keep);
        bool seen = false;
        for (const auto& info : SharedDict::list())
            if (info.name == name) {
                seen = true;
                EXPECT_EQ(info.creator_pid, static_cast<std::uint32_t>(::getpid()));
                EXPECT_GT(info.size, 0u);
                EXPECT_TRUE(info.in_use);
            }
        EXPECT_TRUE(seen);
    }
    bool seen = false;
    for (const auto& info : SharedDict::list())
        if (info.name == name) {
            seen = true;
            EXPECT_FALSE(info.in_use);  // left behind: what cleanup after a crash looks for
        }
    EXPECT_TRUE(seen);
    SharedDict::unlink_by_name(name);
    EXPECT_TRUE(throws_error([&] { SharedDict::unlink_by_name(name); }, ErrorCode::kNotFound));
}

TEST(SharedDictTest, WaitForChangeWakesWhenAnotherProcessWrites) {
    const std::string name = unique_name("wait");
    Cleanup c{name};
    SharedDict d(name);
    EXPECT_FALSE(d.wait_for_change(10'000'000));  // nothing happens: times out
    const pid_t child = spawn([&] {
        SharedDict mine(name);
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        mine.set("ping", "1");
    });
    EXPECT_TRUE(d.wait_for_change(10'000'000'000));
    EXPECT_EQ(d.get("ping"), "1");
    EXPECT_EQ(wait_exit(child), 0);
}

TEST(SharedDictTest, UpdateManyAndCompareAndSet) {
    const std::string name = unique_name("batch");
    Cleanup c{name};
    SharedDict d(name);
    std::vector<std::pair<std::string, std::string>> pairs;
    for (int i = 0; i < 1000; ++i)
        pairs.emplace_back(mmstore::codec::encode(Value::integer(i)), mmstore::codec::encode(Value::str(std::to_string(i))));
    d.update_many_encoded(pairs);
    EXPECT_EQ(d.size(), 1000u);
    EXPECT_EQ(d.get(Value::integer(999))->data, "999");
    const std::string k = mmstore::codec::encode(Value::integer(7));
    EXPECT_FALSE(d.compare_and_set_encoded(k, mmstore::codec::encode(Value::str("nope")), mmstore::codec::encode(Value::str("x"))));
    EXPECT_TRUE(d.compare_and_set_encoded(k, mmstore::codec::encode(Value::str("7")), mmstore::codec::encode(Value::str("x"))));
    EXPECT_EQ(d.get(Value::integer(7))->data, "x");
    d.verify();
}

TEST(SharedDictTest, ATablePointerDamagedIntoNamingAnotherIntactTableRaisesInsteadOfReadingIt) {
    // Every table's header checksum binds it to the cell that publishes it (containers::cell_binding), so a
    // nested dict's pointer (or the root pointer) changed to name another, intact table -- whose structure
    // alone passes every check -- raises instead of answering with that table's keys. A damaged counter
    // is caught on the read path too. Without the binding, each read below returned the other table's data.
    const std::string name = unique_name("foreign");
    Cleanup c{name};
    SharedDict d(name);
    mmstore::NestedDict a = d.set_child(Value::str("a"));
    mmstore::NestedDict b = d.set_child(Value::str("b"));
    a.set(Value::str("x"), Value::integer(1));
    b.set(Value::str("x"), Value::integer(2));
    auto& region = d.store().region();
    auto cell_of = [&](const char* key) {
        const std::uint64_t pos = d.table().find(mmstore::codec::encode(Value::str(key)));
        return mmstore::containers::table_ref_cell(*d.table().value_word_ptr(pos));
    };
    auto* ca = region.at<mmstore::containers::CellRecord>(cell_of("a"));
    auto* cb = region.at<mmstore::containers::CellRecord>(cell_of("b"));
    const std::uint64_t a_table = ca->table;
    ca->table = cb->table;  // a's pointer names b's table
    EXPECT_TRUE(throws_format_error([&] { (void)a.get(Value::str("x")); }, {ErrorCode::kCorrupt}));
    EXPECT_TRUE(throws_format_error([&] { (void)a.size(); }, {ErrorCode::kCorrupt}));
    ca->table = a_table;
    EXPECT_EQ(a.get(Value::str("x"))->i, 1);
    std::uint64_t& root = region.live().root;
    const std::uint64_t root_table = root;
    root = cb->table;  // the root pointer names a nested table
    EXPECT_TRUE(throws_format_error([&] { (void)d.get(Value::str("a")); }, {ErrorCode::kCorrupt}));
    root = root_table;
    ca->table = root_table;  // a nested pointer names the root table
    EXPECT_TRUE(throws_format_error([&] { (void)a.get(Value::str("x")); }, {ErrorCode::kCorrupt}));
    ca->table = a_table;
    auto* ha = region.at<mmstore::containers::TableHeader>(a_table);
    ha->used = 0;  // a counter damaged after the store was opened: every entry hidden from iteration
    EXPECT_TRUE(throws_format_error([&] { (void)a.size(); }, {ErrorCode::kCorrupt}));
    EXPECT_TRUE(throws_format_error([&] { (void)a.get(Value::str("x")); }, {ErrorCode::kCorrupt}));
    ha->used = 1;
    EXPECT_EQ(a.get(Value::str("x"))->i, 1);
    EXPECT_EQ(b.get(Value::str("x"))->i, 2);
    d.verify();
}

TEST(SharedDictTest, NestedTablesAreLiveViewsAndReplacingOneFreesIt) {
    const std::string name = unique_name("nested");
    Cleanup c{name};
    SharedDict d(name);
    mmstore::NestedDict a = d.set_child(Value::str("a"));
    a.set(Value::str("b"), Value::integer(1));
    mmstore::NestedDict deep = a.set_child(Value::str("c"));
    deep.set(Value::str("d"), Value::str("x"));
    SharedDict other(name);  // another handle sees the same tables
    auto view = other.child(Value::str("a"));
    ASSERT_TRUE(view.has_value());
    EXPECT_EQ(view->get(Value::str("b"))->i, 1);
    EXPECT_EQ(view->child(Value::str("c"))->get(Value::str("d"))->data, "x");
    EXPECT_EQ(view->size(), 2u);
    EXPECT_FALSE(other.child(Value::str("missing")).has_value());
    d.verify();
    const std::uint64_t top = d.stats().arena_top;
    for (int i = 0; i < 500; ++i) {  // replacing frees the old child and everything under it
        mmstore::NestedDict fresh = d.set_child(Value::str("a"));
        fresh.set(Value::str("i"), Value::integer(i));
        fresh.set_child(Value::str("c")).set(Value::str("d"), Value::str(std::string(300, 'y')));
    }
    EXPECT_LE(d.stats().arena_top, top + 64 * 1024);
    EXPECT_TRUE(throws_error([&] { (void)view->get(Value::str("b")); }, ErrorCode::kNotFound));  // stale view
    EXPECT_EQ(other.child(Value::str("a"))->get(Value::str("i"))->i, 499);
    d.erase(Value::str("a"));
    d.verify();
}
