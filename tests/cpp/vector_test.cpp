// tests/cpp/vector_test.cpp -- mmstore::Vector<T> (include/mmstore/vector.hpp).
//
// A struct element exercises the typed surface (span, iterators, resize, the type check at open); a seeded
// differential test against std::vector<std::uint64_t> covers the mutations with reopen along the way.
#include "mmstore/vector.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <numeric>
#include <random>
#include <stdexcept>
#include <vector>

#include "mmstore/dict.hpp"
#include "mmstore/error.hpp"
#include "test_util.hpp"

namespace {

using mmstore::ErrorCode;
using mmstore::OpenOptions;
using mmstore::Vector;
using mmstore_test::throws_error;
using mmstore_test::throws_format_error;

struct Rec {
    std::int32_t a;
    double b;
};
static_assert(sizeof(Rec) == 16);

constexpr std::uint64_t kRecTag = 0x5245'4331;  // "REC1"

class VectorTest : public ::testing::Test {
protected:
    mmstore_test::TempDir dir_;
    std::string path_ = dir_.file("v.mms");
};

TEST_F(VectorTest, StructElementsSupportPushBackSpanAndIterators) {
    Vector<Rec> v(path_, {}, kRecTag);
    EXPECT_TRUE(v.empty());
    for (int i = 0; i < 1'000; ++i) v.push_back({i, i * 0.5});
    ASSERT_EQ(v.size(), 1'000u);
    EXPECT_GE(v.capacity(), v.size());
    const std::span<Rec> s = v.span();
    ASSERT_EQ(s.size(), 1'000u);
    for (int i = 0; i < 1'000; ++i) {
        EXPECT_EQ(s[i].a, i);
        EXPECT_EQ(v[i].b, i * 0.5);
    }
    std::int64_t sum = 0;
    for (const Rec& r : v) sum += r.a;
    EXPECT_EQ(sum, 999 * 1'000 / 2);
    EXPECT_EQ(v.end() - v.begin(), 1'000);
    v[7].b = -1.0;  // written in place through the mapping
    v.at(8).a = 80;
    EXPECT_EQ(v.data()[7].b, -1.0);
    EXPECT_EQ(v[8].a, 80);
    EXPECT_THROW(v.at(1'000), std::out_of_range);
    EXPECT_NO_THROW(v.verify());
}

TEST_F(VectorTest, ResizeZeroFillsNewElementsEvenAfterShrinking) {
    Vector<Rec> v(path_, {}, kRecTag);
    for (int i = 0; i < 100; ++i) v.push_back({i + 1, 1.0});
    v.resize(10);
    ASSERT_EQ(v.size(), 10u);
    EXPECT_EQ(v[9].a, 10);
    v.resize(5'000);  // beyond capacity: reallocates
    ASSERT_EQ(v.size(), 5'000u);
    for (std::size_t i = 10; i < 5'000; ++i) {
        ASSERT_EQ(v[i].a, 0) << i;  // not the old 11..100
        ASSERT_EQ(v[i].b, 0.0) << i;
    }
    EXPECT_EQ(v[3].a, 4);
    v.clear();
    EXPECT_TRUE(v.empty());
    v.resize(3);
    EXPECT_EQ(v[0].a, 0);
    EXPECT_NO_THROW(v.verify());
}

TEST_F(VectorTest, ReopenPreservesElements) {
    {
        Vector<Rec> v(path_, {}, kRecTag);
        for (int i = 0; i < 10'000; ++i) v.push_back({-i, i / 3.0});
    }
    Vector<Rec> v(path_, {}, kRecTag);
    ASSERT_EQ(v.size(), 10'000u);
    for (int i = 0; i < 10'000; ++i) {
        ASSERT_EQ(v[i].a, -i);
        ASSERT_EQ(v[i].b, i / 3.0);
    }
    EXPECT_NO_THROW(v.verify());
}

TEST_F(VectorTest, TypeTagOrElementSizeMismatchThrowsWrongKind) {
    { Vector<Rec> v(path_, {}, kRecTag); v.push_back({1, 2.0}); }
    EXPECT_TRUE(throws_format_error([&] { Vector<Rec> v(path_, {}, kRecTag + 1); }, {ErrorCode::kWrongKind}));
    EXPECT_TRUE(throws_format_error([&] { Vector<Rec> v(path_); }, {ErrorCode::kWrongKind}));
    // Same tag, different element size.
    EXPECT_TRUE(throws_format_error([&] { Vector<std::uint64_t> v(path_, {}, kRecTag); }, {ErrorCode::kWrongKind}));
    EXPECT_TRUE(throws_format_error([&] { mmstore::Dict d(path_); }, {ErrorCode::kWrongKind}));
    Vector<Rec> v(path_, {}, kRecTag);  // untouched by the refused opens
    ASSERT_EQ(v.size(), 1u);
    EXPECT_EQ(v[0].a, 1);
}

TEST_F(VectorTest, OpeningADictFileAsVectorThrowsWrongKind) {
    const std::string dict_path = dir_.file("d.mms");
    { mmstore::Dict d(dict_path); }
    EXPECT_TRUE(throws_format_error([&] { Vector<Rec> v(dict_path, {}, kRecTag); }, {ErrorCode::kWrongKind}));
}

TEST_F(VectorTest, RandomOpsMatchStdVector) {
    std::mt19937_64 rng(mmstore_test::seed(0x7EC));
    std::vector<std::uint64_t> model;
    auto v = std::make_unique<Vector<std::uint64_t>>(path_);
    auto expect_same = [&] {
        ASSERT_EQ(v->size(), model.size());
        ASSERT_TRUE(std::equal(model.begin(), model.end(), v->begin(), v->end()));
    };
    for (int op = 0; op < 20'000; ++op) {
        const auto r = rng() % 100;
        if (r < 50 || model.empty()) {
            const std::uint64_t x = rng();
            v->push_back(x);
            model.push_back(x);
        } else if (r < 70) {
            const std::size_t i = rng() % model.size();
            const std::uint64_t x = rng();
            (*v)[i] = x;
            model[i] = x;
        } else if (r < 80) {
            v->pop_back();
            model.pop_back();
        } else if (r < 85) {
            const std::size_t n = rng() % (2 * model.size() + 10);
            v->resize(n);
            model.resize(n);
        } else if (r < 87) {
            v->reserve(model.size() + rng() % 100);
            EXPECT_GE(v->capacity(), model.size());
        } else if (r < 99) {
            const std::size_t i = rng() % model.size();
            ASSERT_EQ(v->at(i), model[i]) << "op " << op;
        } else if (rng() % 4 == 0) {
            v->clear();
            model.clear();
        }
        ASSERT_EQ(v->size(), model.size()) << "op " << op;
        if (op % 4'000 == 3'999) {
            expect_same();
            ASSERT_NO_THROW(v->verify());
            v->close();
            v = std::make_unique<Vector<std::uint64_t>>(path_);
            expect_same();
        }
    }
    expect_same();
    EXPECT_NO_THROW(v->verify());
}

TEST_F(VectorTest, PopBackOnEmptyThrowsOutOfRange) {
    Vector<std::uint64_t> v(path_);
    EXPECT_THROW(v.pop_back(), std::out_of_range);
    v.push_back(1);
    v.pop_back();
    EXPECT_TRUE(v.empty());
}

TEST_F(VectorTest, UseAfterCloseThrowsClosed) {
    Vector<std::uint64_t> v(path_);
    v.push_back(1);
    v.close();
    EXPECT_FALSE(v.is_open());
    EXPECT_TRUE(throws_error([&] { v.size(); }, ErrorCode::kClosed));
    EXPECT_TRUE(throws_error([&] { v.data(); }, ErrorCode::kClosed));
    EXPECT_TRUE(throws_error([&] { v.push_back(2); }, ErrorCode::kClosed));
    EXPECT_TRUE(throws_error([&] { v.resize(4); }, ErrorCode::kClosed));
    EXPECT_TRUE(throws_error([&] { v.pop_back(); }, ErrorCode::kClosed));
    EXPECT_TRUE(throws_error([&] { v.verify(); }, ErrorCode::kClosed));
    EXPECT_TRUE(throws_error([&] { v.stats(); }, ErrorCode::kClosed));
}

TEST_F(VectorTest, WriterThatExitsWithoutClosingLeavesARecoverableFile) {
    { Vector<std::uint64_t> v(path_); v.push_back(0); }
    const int status = mmstore_test::run_in_child([&] {
        Vector<std::uint64_t> v(path_);
        for (std::uint64_t i = 1; i < 50'000; ++i) v.push_back(i * i);
        return 0;  // _exit without the destructor: the file stays dirty
    });
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << mmstore_test::describe_status(status);
    Vector<std::uint64_t> v(path_);
    EXPECT_NO_THROW(v.verify());
    ASSERT_EQ(v.size(), 50'000u);
    for (std::uint64_t i = 0; i < 50'000; ++i) ASSERT_EQ(v[i], i * i);
    v.push_back(7);  // the rebuilt arena is usable
    EXPECT_NO_THROW(v.verify());
}

}  // namespace
