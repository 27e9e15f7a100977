// tests/cpp/list_test.cpp -- mmstore::List (include/mmstore/list.hpp).
//
// A seeded differential test against std::vector<std::string> covers every mutation (push_back, set,
// insert, erase, pop_back, clear, reorder, splice) with reopen and verify() along the way; the rest pin
// index errors, use after close, wrong kind, compaction, crash recovery and view lifetimes.
#include "mmstore/list.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "mmstore/codec/value.hpp"
#include "mmstore/dict.hpp"
#include "mmstore/alloc/arena.hpp"
#include "mmstore/error.hpp"
#include "mmstore/storage/header.hpp"
#include "test_util.hpp"

namespace {

using mmstore::ErrorCode;
using mmstore::Dict;
using mmstore::List;
using mmstore::codec::Value;
using mmstore_test::random_bytes;
using mmstore_test::throws_error;
using mmstore_test::throws_format_error;
using mmstore_test::uniform;

std::string enc_bytes(std::string_view raw) { return mmstore::codec::encode(Value::bytes(raw)); }

void expect_same(const List& l, const std::vector<std::string>& model) {
    ASSERT_EQ(l.size(), model.size());
    for (std::size_t i = 0; i < model.size(); ++i) ASSERT_EQ(l.get(i), model[i]) << "index " << i;
}

// Elements of 0..6 raw bytes encode to <= 7 bytes and are inline words; longer ones are records.
std::string random_element(std::mt19937_64& rng) {
    return random_bytes(rng, rng() % 10 < 4 ? uniform(rng, 0, 6) : uniform(rng, 7, 60));
}

class ListTest : public ::testing::Test {
protected:
    mmstore_test::TempDir dir_;
    std::string path_ = dir_.file("l.mms");
};

TEST_F(ListTest, RandomOpsMatchStdVector) {
    std::mt19937_64 rng(mmstore_test::seed(0x1157));
    std::vector<std::string> model;
    auto l = std::make_unique<List>(path_);
    for (int op = 0; op < 5'000; ++op) {
        const std::uint64_t n = model.size();
        const auto r = rng() % 100;
        if (r < 30 || n == 0) {
            const std::string e = random_element(rng);
            l->push_back(e);
            model.push_back(e);
        } else if (r < 45) {
            const std::uint64_t i = rng() % n;
            const std::string e = random_element(rng);
            l->set(i, e);
            model[i] = e;
        } else if (r < 58) {
            // Positions past the end append, as Python's list.insert does.
            const std::uint64_t i = rng() % 8 == 0 ? n + rng() % 3 : rng() % (n + 1);
            const std::string e = random_element(rng);
            l->insert(i, Value::bytes(e));
            model.insert(model.begin() + static_cast<std::ptrdiff_t>(std::min(i, n)), e);
        } else if (r < 68) {
            const std::uint64_t i = rng() % n;
            l->erase(i);
            model.erase(model.begin() + static_cast<std::ptrdiff_t>(i));
        } else if (r < 75) {
            l->pop_back();
            model.pop_back();
        } else if (r < 80) {
            // A random subset of positions in random order.
            std::vector<std::uint64_t> order(n);
            std::iota(order.begin(), order.end(), 0);
            std::shuffle(order.begin(), order.end(), rng);
            order.resize(n - rng() % (n / 4 + 1));
            std::vector<std::string> next;
            for (auto p : order) next.push_back(model[p]);
            l->reorder(order);
            model = std::move(next);
        } else if (r < 88) {
            std::uint64_t start = rng() % (n + 1), stop = rng() % (n + 1);
            if (start > stop) std::swap(start, stop);
            std::vector<std::string> raw, encs;
            for (std::uint64_t k = rng() % 5; k > 0; --k) {
                raw.push_back(random_element(rng));
                encs.push_back(enc_bytes(raw.back()));
            }
            l->splice(start, stop, encs);
            model.erase(model.begin() + static_cast<std::ptrdiff_t>(start),
                        model.begin() + static_cast<std::ptrdiff_t>(stop));
            model.insert(model.begin() + static_cast<std::ptrdiff_t>(start), raw.begin(), raw.end());
        } else if (r < 99) {
            const std::uint64_t i = rng() % n;
            ASSERT_EQ(l->get(i), model[i]) << "op " << op;
        } else {
            l->clear();
            model.clear();
        }
        ASSERT_EQ(l->size(), model.size()) << "op " << op;
        if (op % 1'000 == 999) {
            ASSERT_NO_THROW(l->verify()) << "op " << op;
            expect_same(*l, model);
            l->close();
            l = std::make_unique<List>(path_);
            expect_same(*l, model);
        }
    }
    ASSERT_NO_THROW(l->verify());
    expect_same(*l, model);
}

TEST_F(ListTest, ReopenPreservesElementsAndOrder) {
    std::vector<std::string> model;
    {
        List l(path_);
        for (int i = 0; i < 3'000; ++i) {
            model.push_back(std::string(static_cast<std::size_t>(i % 40), 'x') + std::to_string(i));
            l.push_back(model.back());
        }
    }
    List l(path_);
    expect_same(l, model);
    EXPECT_NO_THROW(l.verify());
}

TEST_F(ListTest, TypedValuesRoundTrip) {
    const Value values[] = {
        Value::none(), Value::boolean(true), Value::integer(-5), Value::integer(std::int64_t{1} << 60),
        Value::real(0.25), Value::str("short"), Value::str(std::string(100, 's')),
        Value::sequence(Value::Type::kTuple, {Value::integer(1), Value::sequence(Value::Type::kList, {})}),
    };
    {
        List l(path_);
        for (const Value& v : values) l.push_back(v);
    }
    List l(path_);
    ASSERT_EQ(l.size(), std::size(values));
    for (std::size_t i = 0; i < std::size(values); ++i) {
        EXPECT_EQ(mmstore::codec::encode(l.get_value(i)), mmstore::codec::encode(values[i])) << i;
        EXPECT_EQ(l.get_encoded(i), mmstore::codec::encode(values[i])) << i;
    }
    // The bytes level refuses elements that are not bytes.
    EXPECT_TRUE(throws_error([&] { l.get(5); }, ErrorCode::kInvalidArgument));
}

TEST_F(ListTest, SpliceClampsStopToTheEndLikeSliceAssignment) {
    List l(path_);
    for (const char* e : {"a", "b", "c"}) l.push_back(e);
    l.splice(2, 100, {enc_bytes("X"), enc_bytes("Y")});  // a[2:100] = [X, Y]
    expect_same(l, {"a", "b", "X", "Y"});
    l.splice(1, 1, {enc_bytes("I")});  // a[1:1] = [I] inserts
    expect_same(l, {"a", "I", "b", "X", "Y"});
    l.splice(0, 5, {});  // del a[0:5]
    EXPECT_EQ(l.size(), 0u);
    EXPECT_NO_THROW(l.verify());
}

TEST_F(ListTest, SpliceWithStartAfterStopInsertsAtStart) {
    List l(path_);
    for (const char* e : {"a", "b", "X", "Y"}) l.push_back(e);
    l.splice(3, 1, {enc_bytes("Z")});
    expect_same(l, {"a", "b", "X", "Z", "Y"});
}

TEST_F(ListTest, BadIndexThrowsOutOfRangeAndChangesNothing) {
    List l(path_);
    EXPECT_THROW(l.pop_back(), std::out_of_range);
    EXPECT_THROW(l.get(0), std::out_of_range);
    for (const char* e : {"a", "bbbbbbbbbbbb", "c"}) l.push_back(e);
    EXPECT_THROW(l.get(3), std::out_of_range);
    EXPECT_THROW(l.get_value(3), std::out_of_range);
    EXPECT_THROW(l.get_encoded(~std::uint64_t{0}), std::out_of_range);
    EXPECT_THROW(l.set(3, std::string_view("x")), std::out_of_range);
    EXPECT_THROW(l.erase(3), std::out_of_range);
    EXPECT_THROW(l.reorder({0, 3}), std::out_of_range);
    EXPECT_TRUE(throws_error([&] { l.reorder({0, 0}); }, ErrorCode::kInvalidArgument));
    expect_same(l, {"a", "bbbbbbbbbbbb", "c"});
    EXPECT_NO_THROW(l.verify());
}

TEST_F(ListTest, UseAfterCloseThrowsClosed) {
    List l(path_);
    l.push_back("x");
    l.close();
    EXPECT_FALSE(l.is_open());
    EXPECT_TRUE(throws_error([&] { l.size(); }, ErrorCode::kClosed));
    EXPECT_TRUE(throws_error([&] { l.get(0); }, ErrorCode::kClosed));
    EXPECT_TRUE(throws_error([&] { l.get_value(0); }, ErrorCode::kClosed));
    EXPECT_TRUE(throws_error([&] { l.push_back("y"); }, ErrorCode::kClosed));
    EXPECT_TRUE(throws_error([&] { l.set(0, std::string_view("y")); }, ErrorCode::kClosed));
    EXPECT_TRUE(throws_error([&] { l.insert(0, Value::none()); }, ErrorCode::kClosed));
    EXPECT_TRUE(throws_error([&] { l.erase(0); }, ErrorCode::kClosed));
    EXPECT_TRUE(throws_error([&] { l.pop_back(); }, ErrorCode::kClosed));
    EXPECT_TRUE(throws_error([&] { l.clear(); }, ErrorCode::kClosed));
    EXPECT_TRUE(throws_error([&] { l.reorder({}); }, ErrorCode::kClosed));
    EXPECT_TRUE(throws_error([&] { l.splice(0, 0, {}); }, ErrorCode::kClosed));
    EXPECT_TRUE(throws_error([&] { l.verify(); }, ErrorCode::kClosed));
    EXPECT_TRUE(throws_error([&] { l.stats(); }, ErrorCode::kClosed));
    EXPECT_TRUE(throws_error([&] { l.compact(); }, ErrorCode::kClosed));
    EXPECT_NO_THROW(l.close());
}

TEST_F(ListTest, OpeningADictFileAsListThrowsWrongKind) {
    const std::string dict_path = dir_.file("d.mms");
    { mmstore::Dict d(dict_path); d.set("k", "v"); }
    EXPECT_TRUE(throws_format_error([&] { List l(dict_path); }, {ErrorCode::kWrongKind}));
    mmstore::Dict d(dict_path);
    EXPECT_EQ(d.get("k"), "v");
}

TEST_F(ListTest, CompactShrinksTheFileAndKeepsContent) {
    List l(path_);
    for (int i = 0; i < 20'000; ++i) l.push_back(std::string(200, static_cast<char>('a' + i % 26)) + std::to_string(i));
    std::vector<std::uint64_t> keep;
    std::vector<std::string> model;
    for (std::uint64_t i = 0; i < 20'000; i += 20) {
        keep.push_back(i);
        model.push_back(std::string(200, static_cast<char>('a' + i % 26)) + std::to_string(i));
    }
    l.reorder(keep);
    const auto before = l.stats().file_bytes;
    l.compact();
    const auto after = l.stats().file_bytes;
    EXPECT_LT(after, before / 4) << "before " << before << " after " << after;
    EXPECT_EQ(mmstore_test::file_size(path_), after);
    expect_same(l, model);
    EXPECT_NO_THROW(l.verify());
    l.push_back("still writable");
    l.close();
    EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir_.path()), {}), 1);  // no temporary left
    List again(path_);
    EXPECT_EQ(again.get(again.size() - 1), "still writable");
}

TEST_F(ListTest, ClosedFileShrinksToItsArrayAfterGrowth) {
    // Appends double the element array; the closed file holds the array once, not every smaller copy.
    // Inline elements (up to 7 encoded bytes) only: records carved between two growths sit above the
    // array and keep the freed arrays below as free space for later records (the next test).
    std::mt19937_64 rng(mmstore_test::seed(0x115D));
    std::vector<std::string> model;
    for (int round = 0; round < 3; ++round) {
        {
            List l(path_);
            for (int i = 0; i < 60'000; ++i) {
                model.push_back(random_bytes(rng, uniform(rng, 0, 6)));
                l.push_back(model.back());
            }
            if (round == 1) l.sync();  // the replaced arrays of a commit are freed late; the move waits for them
        }
        const std::uint64_t closed = std::filesystem::file_size(path_);
        List l(path_);
        const auto st = l.stats();
        EXPECT_EQ(st.arena_top, closed) << "round " << round;
        const std::uint64_t array = mmstore::alloc::block_size(64 + 8 * st.capacity);
        EXPECT_LE(closed, mmstore::storage::kDataStart + array + 128 * 1024) << "round " << round;
        ASSERT_EQ(l.size(), model.size());
        for (std::size_t i = 0; i < model.size(); i += 13) ASSERT_EQ(l.get(i), model[i]) << i;
        EXPECT_NO_THROW(l.verify());
    }
}

TEST_F(ListTest, MovingTheArrayAtCloseKeepsRecordElements) {
    std::mt19937_64 rng(mmstore_test::seed(0x115E));
    std::vector<std::string> model;
    for (int round = 0; round < 4; ++round) {
        {
            List l(path_);
            for (int i = 0; i < 20'000; ++i) {
                model.push_back(random_bytes(rng, uniform(rng, 0, rng() % 4 == 0 ? 60 : 6)));
                l.push_back(model.back());
                if (i % 9'000 == 0 && round % 2 == 1) l.sync();
            }
        }
        List l(path_);
        EXPECT_EQ(l.stats().arena_top, std::filesystem::file_size(path_)) << "round " << round;
        ASSERT_EQ(l.size(), model.size());
        for (std::size_t i = 0; i < model.size(); ++i) ASSERT_EQ(l.get(i), model[i]) << i;
        EXPECT_NO_THROW(l.verify());
    }
}

TEST_F(ListTest, AbandonedListReopensWithEveryElement) {
    std::vector<std::string> model;
    {
        List l(path_);
        for (int i = 0; i < 2'000; ++i) {
            model.push_back(std::string(static_cast<std::size_t>(i % 30), 'q'));
            l.push_back(model.back());
        }
        l.erase(10);
        model.erase(model.begin() + 10);
        l.abandon();
    }
    List l(path_);
    EXPECT_NO_THROW(l.verify());
    expect_same(l, model);
    l.push_back("more");  // the rebuilt arena is usable
    EXPECT_NO_THROW(l.verify());
}

TEST_F(ListTest, RecordElementViewSurvivesAppends) {
    List l(path_);
    l.push_back(std::string(50, 'R'));
    const std::string_view view = l.get(0);
    for (int i = 0; i < 2'000; ++i) l.push_back(std::string(120, 'x'));
    EXPECT_EQ(view, std::string(50, 'R'));
}


}  // namespace

namespace {

// push_back_encoded_many and reserve_more, against std::vector: batches of every size (empty, one, many;
// inline words and records), into lists of every size, with reopen and verify() along the way.
TEST_F(ListTest, PushBackManyMatchesRepeatedPushBack) {
    std::mt19937_64 rng(mmstore_test::seed(0x3a7e));
    auto l = std::make_unique<List>(path_);
    std::vector<std::string> model;
    for (int round = 0; round < 40; ++round) {
        const std::size_t n = round % 7 == 0 ? 0 : uniform(rng, 1, round % 5 == 0 ? 5000 : 40);
        std::vector<std::string> encs;
        for (std::size_t i = 0; i < n; ++i) {
            std::string raw = random_bytes(rng, uniform(rng, 0, 30));
            model.push_back(raw);
            encs.push_back(enc_bytes(raw));
        }
        std::vector<std::string_view> views(encs.begin(), encs.end());
        if (round % 3 == 0) l->reserve_more(n);
        l->push_back_encoded_many(views);
        expect_same(*l, model);
        if (round % 10 == 9) {
            l->verify();
            l->close();
            l = std::make_unique<List>(path_);
            expect_same(*l, model);
        }
    }
    l->verify();
    EXPECT_GE(l->stats().capacity, model.size());
}

}  // namespace

// A moved handle keeps working after its moved-from original is gone: the store's callbacks (before-commit
// stamping on sync(), recovery) belong to the heap objects the handle owns, not to the handle's address.
TEST_F(ListTest, MovedHandlesSyncAndCloseAfterTheOriginalIsGone) {
    const std::string dpath = (std::filesystem::path(path_).parent_path() / "moved.mmd").string();
    List l;
    Dict d;
    {
        List a(path_);
        Dict b(dpath);
        a.push_back(std::string_view("before"));
        b.set(std::string_view("k"), std::string_view("before"));
        l = std::move(a);
        d = std::move(b);
    }  // a and b are destroyed here
    l.push_back(std::string_view("after"));
    d.set(std::string_view("k2"), std::string_view("after"));
    l.sync();  // runs the before-commit callbacks
    d.sync();
    l.close();
    d.close();
    List l2(path_);
    ASSERT_EQ(l2.size(), 2u);
    EXPECT_EQ(l2.get(1), "after");
    l2.verify();
    Dict d2(dpath);
    EXPECT_EQ(d2.get(std::string_view("k2")).value_or(""), "after");
    d2.verify();
}
