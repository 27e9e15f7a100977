// tests/cpp/dict_test.cpp -- mmstore::Dict (include/mmstore/dict.hpp).
//
// A seeded differential test against std::map (plus an insertion-order model) carries most of the weight;
// the rest pin one behaviour each: reopen, typed keys, get_many, compaction, space reuse, errors on closed,
// locked, wrong-kind, truncated, foreign and newer-version files, and recovery after a writer dies.
#include "mmstore/dict.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <list>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <unordered_map>
#include <string>
#include <vector>

#include "mmstore/codec/value.hpp"
#include "mmstore/error.hpp"
#include "mmstore/list.hpp"
#include "mmstore/alloc/arena.hpp"
#include "mmstore/storage/checksum.hpp"
#include "mmstore/storage/header.hpp"
#include "mmstore/vector.hpp"
#include "test_util.hpp"

namespace {

using mmstore::Dict;
using mmstore::ErrorCode;
using mmstore::FormatError;
using mmstore::OpenOptions;
using mmstore::codec::Value;
using mmstore_test::random_bytes;
using mmstore_test::throws_error;
using mmstore_test::throws_format_error;
using mmstore_test::uniform;

// std::map plus the order Dict promises for iteration: an overwrite keeps a key's place, an erase removes
// it, a re-insert appends it.
class OrderedModel {
public:
    bool set(const std::string& k, const std::string& v) {
        auto [it, added] = map_.insert_or_assign(k, v);
        if (added) where_[k] = order_.insert(order_.end(), k);
        return added;
    }
    bool erase(const std::string& k) {
        if (map_.erase(k) == 0) return false;
        order_.erase(where_.at(k));
        where_.erase(k);
        return true;
    }
    void clear() {
        map_.clear();
        order_.clear();
        where_.clear();
    }
    const std::map<std::string, std::string>& map() const { return map_; }
    std::vector<std::pair<std::string, std::string>> in_order() const {
        std::vector<std::pair<std::string, std::string>> out;
        for (const auto& k : order_) out.emplace_back(k, map_.at(k));
        return out;
    }

private:
    std::map<std::string, std::string> map_;
    std::list<std::string> order_;
    std::map<std::string, std::list<std::string>::iterator> where_;
};

// Every entry as (raw key bytes, raw value bytes), in iteration order. Entries must be bytes values.
std::vector<std::pair<std::string, std::string>> dump(const Dict& d) {
    std::vector<std::pair<std::string, std::string>> out;
    d.for_each([&](std::string_view k, std::string_view v) {
        const Value kv = mmstore::codec::decode(k);
        const Value vv = mmstore::codec::decode(v);
        EXPECT_EQ(kv.type, Value::Type::kBytes);
        EXPECT_EQ(vv.type, Value::Type::kBytes);
        out.emplace_back(kv.data, vv.data);
    });
    return out;
}

void expect_same(const Dict& d, const OrderedModel& model) {
    ASSERT_EQ(d.size(), model.map().size());
    EXPECT_EQ(dump(d), model.in_order());
    for (const auto& [k, v] : model.map()) {
        const auto got = d.get(k);
        ASSERT_TRUE(got.has_value()) << "missing key of length " << k.size();
        ASSERT_EQ(*got, v);
    }
}

std::string value_for(std::uint64_t i, std::size_t len) {
    std::string s = std::to_string(i) + ":";
    while (s.size() < len) s += static_cast<char>('a' + (i + s.size()) % 26);
    s.resize(len);
    return s;
}

class DictTest : public ::testing::Test {
protected:
    mmstore_test::TempDir dir_;
    std::string path_ = dir_.file("d.mms");
};

// --- the model

TEST_F(DictTest, RandomOpsMatchStdMapIncludingGrowthAndReopen) {
    std::mt19937_64 rng(mmstore_test::seed(0xD1C7'2024));
    // Keys of every length 0..40: encodings of up to 7 bytes (key length <= 6) are inline words, the rest
    // records. 3000 distinct keys chosen from at random keep ~2000 live, forcing several rehashes.
    std::set<std::string> unique;
    while (unique.size() < 3000) unique.insert(random_bytes(rng, uniform(rng, 0, 40)));
    const std::vector<std::string> pool(unique.begin(), unique.end());

    OrderedModel model;
    auto d = std::make_unique<Dict>(path_);
    std::uint64_t max_capacity = 0;
    for (int op = 0; op < 20'000; ++op) {
        const std::string& k = pool[rng() % pool.size()];
        const auto r = rng() % 100;
        if (r < 45) {
            const std::size_t len = rng() % 10 < 3 ? uniform(rng, 0, 6) : uniform(rng, 7, 80);
            const std::string v = random_bytes(rng, len);
            ASSERT_EQ(d->set(k, v), model.set(k, v)) << "op " << op;
        } else if (r < 65) {
            ASSERT_EQ(d->erase(k), model.erase(k)) << "op " << op;
        } else if (r < 85) {
            const auto got = d->get(k);
            const auto it = model.map().find(k);
            ASSERT_EQ(got.has_value(), it != model.map().end()) << "op " << op;
            if (got) ASSERT_EQ(*got, it->second) << "op " << op;
        } else {
            ASSERT_EQ(d->contains(k), model.map().count(k) == 1) << "op " << op;
        }
        ASSERT_EQ(d->size(), model.map().size()) << "op " << op;
        max_capacity = std::max(max_capacity, d->stats().capacity);
        if (op == 7'000 || op == 14'000) {
            d->clear();
            model.clear();
            ASSERT_EQ(d->size(), 0u);
        }
        if (op % 2'500 == 2'499) {
            ASSERT_NO_THROW(d->verify()) << "op " << op;
            expect_same(*d, model);
            d->close();
            d = std::make_unique<Dict>(path_);
            expect_same(*d, model);
        }
    }
    EXPECT_GE(max_capacity, 2048u) << "the table never grew: the test lost its point";
    ASSERT_NO_THROW(d->verify());
    expect_same(*d, model);
}

TEST_F(DictTest, ReopenPreservesEntriesAndInsertionOrderAfterErasures) {
    OrderedModel model;
    {
        Dict d(path_);
        for (int i = 0; i < 5'000; ++i) {
            const std::string k = "key" + std::to_string(i);
            d.set(k, value_for(i, i % 50));
            model.set(k, value_for(i, i % 50));
        }
        for (int i = 0; i < 5'000; i += 3) {
            d.erase("key" + std::to_string(i));
            model.erase("key" + std::to_string(i));
        }
        for (int i = 0; i < 5'000; i += 7) {  // overwrites keep their place, re-inserts go to the end
            const std::string k = "key" + std::to_string(i);
            d.set(k, "again");
            model.set(k, "again");
        }
    }
    Dict d(path_);
    expect_same(d, model);
    EXPECT_NO_THROW(d.verify());
}

TEST_F(DictTest, KeysAroundTheInlineLimitAreDistinct) {
    // Bytes keys of length 5, 6 (encoded 6 and 7 bytes: inline) and 7, 8 (records), all prefixes of each other.
    const std::string base = "abcdefgh";
    Dict d(path_);
    for (std::size_t n = 0; n <= base.size(); ++n) d.set(base.substr(0, n), "v" + std::to_string(n));
    ASSERT_EQ(d.size(), base.size() + 1);
    for (std::size_t n = 0; n <= base.size(); ++n) EXPECT_EQ(d.get(base.substr(0, n)), "v" + std::to_string(n));
    ASSERT_TRUE(d.erase(base.substr(0, 6)));
    EXPECT_FALSE(d.contains(base.substr(0, 6)));
    EXPECT_TRUE(d.contains(base.substr(0, 7)));
    EXPECT_TRUE(d.contains(base.substr(0, 5)));
}

// --- API levels

TEST_F(DictTest, TypedKeysOfDifferentTypesAreDifferentKeys) {
    Dict d(path_);
    const Value keys[] = {
        Value::str("1"), Value::integer(1), Value::real(1.0), Value::boolean(true), Value::bytes("1"),
        Value::sequence(Value::Type::kTuple, {Value::integer(1), Value::str("a")}),
        Value::sequence(Value::Type::kTuple, {Value::integer(1), Value::str(std::string(40, 'a'))}),
        Value::integer(-1), Value::integer(std::int64_t{1} << 50), Value::str(std::string(100, 'k')),
    };
    for (std::size_t i = 0; i < std::size(keys); ++i)
        EXPECT_TRUE(d.set(keys[i], Value::integer(static_cast<std::int64_t>(i) * 1000)));
    ASSERT_EQ(d.size(), std::size(keys));
    for (std::size_t i = 0; i < std::size(keys); ++i) {
        EXPECT_TRUE(d.contains(keys[i]));
        const auto v = d.get(keys[i]);
        ASSERT_TRUE(v.has_value());
        ASSERT_EQ(v->type, Value::Type::kInt);
        EXPECT_EQ(v->i, static_cast<std::int64_t>(i) * 1000);
    }
    EXPECT_FALSE(d.contains(Value::str("2")));
    EXPECT_FALSE(d.get(Value::integer(2)).has_value());
    // The bytes API is the typed API with bytes values.
    EXPECT_TRUE(d.contains(std::string_view("1")));
    EXPECT_TRUE(d.erase(Value::integer(1)));
    EXPECT_FALSE(d.contains(Value::integer(1)));
    EXPECT_TRUE(d.contains(Value::str("1")));
    EXPECT_FALSE(d.set(Value::str("1"), Value::str("over")));  // overwrite: not new
    EXPECT_EQ(d.get(Value::str("1"))->data, "over");
    EXPECT_NO_THROW(d.verify());
}

TEST_F(DictTest, TypedValuesRoundTripThroughTheFile) {
    const Value nested = Value::sequence(
        Value::Type::kDict, {Value::str("list"), Value::sequence(Value::Type::kList, {Value::real(2.5), Value::none()}),
                             Value::str("big"), Value::bytes(std::string(5000, 'b'))});
    {
        Dict d(path_);
        d.set(Value::str("nested"), nested);
        d.set(Value::integer(7), Value::boolean(false));
    }
    Dict d(path_);
    EXPECT_EQ(mmstore::codec::encode(*d.get(Value::str("nested"))), mmstore::codec::encode(nested));
    EXPECT_FALSE(d.get(Value::integer(7))->b);
}

TEST_F(DictTest, BytesGetOfANonBytesValueThrowsInvalidArgument) {
    Dict d(path_);
    d.set(Value::bytes("k"), Value::str("text"));
    EXPECT_TRUE(throws_error([&] { d.get(std::string_view("k")); }, ErrorCode::kInvalidArgument));
}

TEST_F(DictTest, EncodedLevelUsesTheCanonicalEncodingAsKey) {
    Dict d(path_);
    const std::string k = mmstore::codec::encode(Value::str("name"));
    const std::string v = mmstore::codec::encode(Value::integer(42));
    EXPECT_TRUE(d.set_encoded(k, v));
    EXPECT_EQ(d.get_encoded(k), v);
    EXPECT_EQ(d.get(Value::str("name"))->i, 42);
    EXPECT_TRUE(d.erase_encoded(k));
    EXPECT_FALSE(d.get_encoded(k).has_value());
}

TEST_F(DictTest, GetManyEqualsGetForHitsAndMisses) {
    Dict d(path_);
    std::mt19937_64 rng(31);
    std::vector<std::string> stored, queries;
    for (int i = 0; i < 1'000; ++i) {
        stored.push_back(random_bytes(rng, uniform(rng, 0, 30)));
        d.set(stored.back(), value_for(i, uniform(rng, 0, 40)));
    }
    for (int i = 0; i < 2'503; ++i)  // not a multiple of the 16-key batch
        queries.push_back(i % 3 == 0 ? random_bytes(rng, uniform(rng, 0, 30)) : stored[rng() % stored.size()]);
    std::vector<std::string_view> views(queries.begin(), queries.end());
    std::vector<std::optional<std::string_view>> out(views.size());
    d.get_many(views, out);
    int hits = 0, misses = 0;
    for (std::size_t i = 0; i < views.size(); ++i) {
        ASSERT_EQ(out[i], d.get(views[i])) << i;
        (out[i] ? hits : misses)++;
    }
    EXPECT_GT(hits, 1'000);
    EXPECT_GT(misses, 100);
    std::vector<std::optional<std::string_view>> small(3);
    EXPECT_TRUE(throws_error([&] { d.get_many(views, small); }, ErrorCode::kInvalidArgument));
}

// get_many (hash, prefetch groups, entries and records, then resolve) against std::unordered_map, through
// seeded random sets, overwrites and erases that grow and rebuild the table: every batch answers what the
// model holds, for hits and misses, keys inline (<= 6 bytes) and in records, batch sizes around the
// 16-key stride of the prefetch passes.
TEST_F(DictTest, GetManyMatchesUnorderedMapThroughRandomChanges) {
    Dict d(path_);
    std::unordered_map<std::string, std::string> model;
    std::mt19937_64 rng(mmstore_test::seed(0x6E7A));
    std::vector<std::string> universe;
    for (int i = 0; i < 6'000; ++i) universe.push_back(random_bytes(rng, uniform(rng, 0, 24)));
    std::vector<std::string_view> batch;
    std::vector<std::optional<std::string_view>> out;
    for (int round = 0; round < 60; ++round) {
        const int writes = static_cast<int>(uniform(rng, 0, 800));
        for (int w = 0; w < writes; ++w) {
            const std::string& k = universe[rng() % universe.size()];
            if (uniform(rng, 0, 3) == 0) {
                EXPECT_EQ(d.erase(k), model.erase(k) == 1);
            } else {
                const std::string v = value_for(rng(), uniform(rng, 0, 40));
                d.set(k, v);
                model[k] = v;
            }
        }
        batch.clear();
        const std::size_t n = uniform(rng, 0, 70);
        for (std::size_t i = 0; i < n; ++i) batch.push_back(universe[rng() % universe.size()]);
        out.assign(n, std::nullopt);
        d.get_many(batch, out);
        for (std::size_t i = 0; i < n; ++i) {
            const auto it = model.find(std::string(batch[i]));
            if (it == model.end()) {
                ASSERT_FALSE(out[i].has_value()) << "round " << round << " key " << i;
            } else {
                ASSERT_TRUE(out[i].has_value()) << "round " << round << " key " << i;
                ASSERT_EQ(*out[i], it->second) << "round " << round << " key " << i;
            }
        }
    }
    ASSERT_EQ(d.size(), model.size());
}

// --- mutation

TEST_F(DictTest, EraseKeepsOtherKeysFindable) {
    Dict d(path_);
    std::vector<std::string> keys;
    for (int i = 0; i < 800; ++i) {
        keys.push_back(i % 2 ? "k" + std::to_string(i) : std::string(20 + i % 17, 'x') + std::to_string(i));
        d.set(keys.back(), value_for(i, i % 30));
    }
    std::mt19937_64 rng(17);
    std::shuffle(keys.begin(), keys.end(), rng);
    for (std::size_t e = 0; e < keys.size(); ++e) {
        ASSERT_TRUE(d.erase(keys[e]));
        ASSERT_FALSE(d.contains(keys[e]));
        ASSERT_FALSE(d.erase(keys[e]));
        for (std::size_t j = e + 1; j < keys.size(); ++j) ASSERT_TRUE(d.contains(keys[j])) << "after erasing " << e;
    }
    EXPECT_EQ(d.size(), 0u);
    EXPECT_NO_THROW(d.verify());
}

TEST_F(DictTest, OverwriteWithDifferentSizesKeepsTheLatestValue) {
    Dict d(path_);
    d.set("neighbour", "stays");
    // Inline (<= 6 raw bytes), small/medium records, a multi-page block and a >= 1 MiB block (hole-punched
    // when freed), in both directions.
    const std::size_t sizes[] = {0, 1, 6, 7, 8, 100, 512, 3000, 5000, 70'000, 3, (1u << 20) + 5, 2, 200'000, 6, 0};
    bool first = true;
    for (std::size_t n : sizes) {
        const std::string v(n, static_cast<char>('a' + n % 26));
        EXPECT_EQ(d.set("k", v), first) << "size " << n;  // only the first set adds the key
        first = false;
        const auto got = d.get("k");
        ASSERT_TRUE(got.has_value());
        ASSERT_EQ(*got, v) << "size " << n;
        ASSERT_NO_THROW(d.verify()) << "size " << n;
    }
    EXPECT_EQ(d.size(), 2u);
    EXPECT_EQ(d.get("neighbour"), "stays");
}

TEST_F(DictTest, ClearEmptiesTheDictAndKeepsItUsable) {
    {
        Dict d(path_);
        for (int i = 0; i < 3'000; ++i) d.set("k" + std::to_string(i), value_for(i, 20));
        d.clear();
        EXPECT_EQ(d.size(), 0u);
        EXPECT_TRUE(dump(d).empty());
        EXPECT_FALSE(d.contains("k1"));
        EXPECT_NO_THROW(d.verify());
        d.set("after", "clear");
    }
    Dict d(path_);
    EXPECT_EQ(d.size(), 1u);
    EXPECT_EQ(d.get("after"), "clear");
}

TEST_F(DictTest, VerifyAcceptsTheFileAfterRandomTypedOps) {
    Dict d(path_);
    std::mt19937_64 rng(5);
    for (int op = 0; op < 5'000; ++op) {
        const Value k = rng() % 2 ? Value::integer(static_cast<std::int64_t>(rng() % 700))
                                  : Value::str(std::string(rng() % 30, 's') + std::to_string(rng() % 50));
        switch (rng() % 3) {
            case 0:
            case 1: d.set(k, Value::bytes(random_bytes(rng, uniform(rng, 0, 300)))); break;
            case 2: d.erase(k); break;
        }
    }
    EXPECT_NO_THROW(d.verify());
}

// --- views

TEST_F(DictTest, RecordValueViewSurvivesGrowthOfTheTable) {
    Dict d(path_);
    d.set("k", std::string(100, 'R'));
    const std::string_view view = *d.get("k");
    for (int i = 0; i < 5'000; ++i) d.set("other" + std::to_string(i), std::string(100, 'x'));
    EXPECT_EQ(view, std::string(100, 'R'));
}


// --- compaction and space

TEST_F(DictTest, CompactShrinksTheFileAndKeepsContentAndOrder) {
    Dict d(path_);
    OrderedModel model;
    for (int i = 0; i < 20'000; ++i) {
        const std::string k = "key" + std::to_string(i);
        d.set(k, value_for(i, 200));
        model.set(k, value_for(i, 200));
    }
    for (int i = 0; i < 20'000; ++i) {
        if (i % 20 == 0) continue;  // keep 5%
        d.erase("key" + std::to_string(i));
        model.erase("key" + std::to_string(i));
    }
    const auto before = d.stats().file_bytes;
    d.compact();
    const auto after = d.stats().file_bytes;
    EXPECT_LT(after, before / 4) << "before " << before << " after " << after;
    EXPECT_EQ(mmstore_test::file_size(path_), after);
    expect_same(d, model);
    EXPECT_NO_THROW(d.verify());
    // Still writable, and no temporary file left behind.
    d.set("new", "entry");
    model.set("new", "entry");
    d.close();
    EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir_.path()), {}), 1);
    Dict again(path_);
    expect_same(again, model);
}

TEST_F(DictTest, OverwritingValuesReusesDiskSpace) {
    Dict d(path_);
    std::mt19937_64 rng(2);
    std::uint64_t after_round2 = 0;
    for (int round = 1; round <= 20; ++round) {
        for (int k = 0; k < 2'000; ++k) d.set("key" + std::to_string(k), random_bytes(rng, uniform(rng, 8, 200)));
        if (round == 2) after_round2 = d.stats().file_bytes;
    }
    const auto final_bytes = d.stats().file_bytes;
    EXPECT_LE(final_bytes, 2 * after_round2) << "round 2: " << after_round2 << " round 20: " << final_bytes;
    EXPECT_EQ(d.size(), 2'000u);
    EXPECT_NO_THROW(d.verify());
}

TEST_F(DictTest, OverwritingLargeValuesReusesDiskSpace) {
    Dict d(path_);
    std::mt19937_64 rng(1);
    std::uint64_t after_round5 = 0;
    for (int round = 1; round <= 40; ++round) {
        for (int k = 0; k < 50; ++k) d.set("key" + std::to_string(k), std::string(4'096 + rng() % 200'000, 'v'));
        if (round == 5) after_round5 = d.stats().file_bytes;
    }
    EXPECT_LE(d.stats().file_bytes, 2 * after_round5) << "round 5: " << after_round5;
    EXPECT_NO_THROW(d.verify());
}

// --- density: the closed file is as long as what it holds (docs/design.md, "File density")

// Bytes of the table block of a Dict whose stats() report `entries_cap` (format.md §4).
std::uint64_t table_block_bytes(std::uint64_t entries_cap) {
    const std::uint64_t cap = entries_cap * 32 / 21;
    return mmstore::alloc::block_size(64 + cap / 16 * 64 + 16 * entries_cap);
}

TEST_F(DictTest, ClosedFileShrinksToItsTableAfterGrowth) {
    constexpr int kKeys = 100'000;
    // Keys and values short enough to be inline words (at most 6 payload bytes): the table is the only block.
    std::uint64_t open_bytes = 0;
    {
        Dict d(path_);
        for (int i = 0; i < kKeys; ++i) d.set(std::to_string(i), "v" + std::to_string(i % 977));
        open_bytes = d.stats().file_bytes;
    }
    const std::uint64_t closed = std::filesystem::file_size(path_);
    Dict d(path_);
    const auto st = d.stats();
    EXPECT_EQ(st.arena_top, closed) << "the file was not cut at the arena's end";
    // Header pages, the table, and the first small tables' 64 KiB chunk; before, the file also carried
    // the space of every smaller table (about the table's size again).
    EXPECT_LE(closed, mmstore::storage::kDataStart + table_block_bytes(st.capacity) + 128 * 1024)
        << "open: " << open_bytes;
    EXPECT_LT(closed, open_bytes * 2 / 3);
    ASSERT_EQ(d.size(), static_cast<std::uint64_t>(kKeys));
    for (int i = 0; i < kKeys; i += 7) ASSERT_EQ(d.get(std::to_string(i)), "v" + std::to_string(i % 977)) << i;
    EXPECT_NO_THROW(d.verify());
    // Growing again after the move works and closes dense again.
    for (int i = kKeys; i < 3 * kKeys; ++i) d.set(std::to_string(i), "v");
    d.close();
    Dict again(path_);
    EXPECT_EQ(again.size(), static_cast<std::uint64_t>(3 * kKeys));
    EXPECT_LE(std::filesystem::file_size(path_),
              mmstore::storage::kDataStart + table_block_bytes(again.stats().capacity) + 128 * 1024);
    EXPECT_NO_THROW(again.verify());
}

TEST_F(DictTest, SyncedTableIsMovedDownAtCloseAndKeepsEveryEntry) {
    // sync() between growths: the replaced tables belong to a commit, so their frees are deferred; the
    // move at close must still land in free space only (verify() checks the arena) and keep every entry.
    std::mt19937_64 rng(mmstore_test::seed(0x5EC));
    OrderedModel model;
    {
        Dict d(path_);
        for (int i = 0; i < 60'000; ++i) {
            const std::string k = "k" + std::to_string(rng() % 90'000);
            const std::string v = random_bytes(rng, uniform(rng, 0, 30));  // inline and record values
            ASSERT_EQ(d.set(k, v), model.set(k, v));
            if (i % 7'000 == 0) d.sync();
        }
    }
    Dict d(path_);
    expect_same(d, model);
    EXPECT_NO_THROW(d.verify());
    EXPECT_EQ(d.stats().arena_top, std::filesystem::file_size(path_));
}

TEST_F(DictTest, OnlyTheLastHandleToCloseCutsTheFile) {
    Dict first(path_);
    first.set("first", "1");
    std::uint64_t grown = 0;
    {
        Dict second(path_);
        for (int i = 0; i < 50'000; ++i) second.set("k" + std::to_string(i), std::to_string(i));
        grown = std::filesystem::file_size(path_);
    }  // not last: may move the table down, must not cut the file `first` still maps
    EXPECT_EQ(std::filesystem::file_size(path_), grown);
    EXPECT_EQ(first.size(), 50'001u);
    EXPECT_EQ(first.get("k49999"), "49999");
    EXPECT_NO_THROW(first.verify());
    first.set("after", "2");
    first.close();
    EXPECT_LT(std::filesystem::file_size(path_), grown);
    Dict again(path_);
    EXPECT_EQ(again.size(), 50'002u);
    EXPECT_EQ(again.get("k123"), "123");
    EXPECT_NO_THROW(again.verify());
}

// --- errors

TEST_F(DictTest, UseAfterCloseThrowsClosed) {
    Dict d(path_);
    d.set("k", "v");
    d.close();
    EXPECT_FALSE(d.is_open());
    EXPECT_TRUE(throws_error([&] { d.get("k"); }, ErrorCode::kClosed));
    EXPECT_TRUE(throws_error([&] { d.get(Value::str("k")); }, ErrorCode::kClosed));
    EXPECT_TRUE(throws_error([&] { d.set("k", "v2"); }, ErrorCode::kClosed));
    EXPECT_TRUE(throws_error([&] { d.set(Value::str("k"), Value::none()); }, ErrorCode::kClosed));
    EXPECT_TRUE(throws_error([&] { d.erase("k"); }, ErrorCode::kClosed));
    EXPECT_TRUE(throws_error([&] { d.contains("k"); }, ErrorCode::kClosed));
    EXPECT_TRUE(throws_error([&] { d.size(); }, ErrorCode::kClosed));
    EXPECT_TRUE(throws_error([&] { d.clear(); }, ErrorCode::kClosed));
    EXPECT_TRUE(throws_error([&] { d.for_each([](std::string_view, std::string_view) {}); }, ErrorCode::kClosed));
    EXPECT_TRUE(throws_error([&] { d.verify(); }, ErrorCode::kClosed));
    EXPECT_TRUE(throws_error([&] { d.stats(); }, ErrorCode::kClosed));
    EXPECT_TRUE(throws_error([&] { d.sync(); }, ErrorCode::kClosed));
    EXPECT_TRUE(throws_error([&] { d.compact(); }, ErrorCode::kClosed));
    std::vector<std::string_view> keys = {"k"};
    std::vector<std::optional<std::string_view>> out(1);
    EXPECT_TRUE(throws_error([&] { d.get_many(keys, out); }, ErrorCode::kClosed));
    EXPECT_NO_THROW(d.close());  // closing twice is harmless
}

TEST_F(DictTest, OpeningAListOrVectorFileAsDictThrowsWrongKind) {
    const std::string list_path = dir_.file("l.mms");
    const std::string vec_path = dir_.file("v.mms");
    { mmstore::List l(list_path); l.push_back("x"); }
    { mmstore::Vector<std::uint64_t> v(vec_path); v.push_back(1); }
    EXPECT_TRUE(throws_format_error([&] { Dict d(list_path); }, {ErrorCode::kWrongKind}));
    EXPECT_TRUE(throws_format_error([&] { Dict d(vec_path); }, {ErrorCode::kWrongKind}));
    mmstore::List l(list_path);  // the refused open did not damage the file
    EXPECT_EQ(l.get(0), "x");
}

TEST_F(DictTest, TwoWritableHandlesShareTheFileAndSeeEachOthersGrowth) {
    Dict first(path_);
    Dict second(path_);
    first.set("k", "v");
    EXPECT_EQ(second.get("k"), "v");
    // Enough to grow the file several times through `second`; `first` maps the growth on its next call.
    for (int i = 0; i < 20000; ++i) second.set("key" + std::to_string(i), std::string(40, 'x'));
    EXPECT_EQ(first.size(), 20001u);
    EXPECT_EQ(first.get("key19999"), std::string(40, 'x'));
    first.erase("k");
    EXPECT_FALSE(second.get("k").has_value());
    first.verify();
    second.close();
    first.close();
    Dict again(path_);
    EXPECT_EQ(again.size(), 20000u);
    again.verify();
}

TEST_F(DictTest, CompactIsRefusedWhileAnotherHandleHasTheStoreOpen) {
    Dict first(path_);
    first.set("k", "v");
    {
        Dict second(path_);
        try {
            first.compact();
            FAIL() << "compact() replaced a file another handle maps";
        } catch (const mmstore::LockedError& e) {
            EXPECT_EQ(e.code(), ErrorCode::kLocked);
            EXPECT_EQ(e.path(), path_);
        }
        EXPECT_EQ(second.get("k"), "v");
    }
    first.compact();  // alone again
    EXPECT_EQ(first.get("k"), "v");
}

TEST_F(DictTest, ReadOnlyOpenersShareTheFileWithWritersAndCannotWrite) {
    { Dict d(path_); d.set("k", "v"); }
    OpenOptions ro;
    ro.readonly = true;
    Dict a(path_, ro);
    Dict b(path_, ro);
    EXPECT_EQ(a.get("k"), "v");
    EXPECT_EQ(b.get("k"), "v");
    EXPECT_TRUE(throws_error([&] { a.set("k", "w"); }, ErrorCode::kReadOnly));
    Dict writer(path_);
    writer.set("k", "w");
    for (int i = 0; i < 5000; ++i) writer.set(std::to_string(i), std::to_string(i));
    EXPECT_EQ(a.get("k"), "w");
    EXPECT_EQ(b.get("4999"), "4999");
}

TEST_F(DictTest, CreateOptionsAreHonoured) {
    OpenOptions never;
    never.create = OpenOptions::Create::kNever;
    EXPECT_TRUE(throws_error([&] { Dict d(path_, never); }, ErrorCode::kNotFound));
    EXPECT_FALSE(std::filesystem::exists(path_));
    OpenOptions always;
    always.create = OpenOptions::Create::kAlways;
    { Dict d(path_, always); d.set("k", "v"); }
    EXPECT_TRUE(throws_error([&] { Dict d(path_, always); }, ErrorCode::kExists));
    Dict d(path_, never);
    EXPECT_EQ(d.get("k"), "v");
    EXPECT_EQ(std::filesystem::status(path_).permissions() & std::filesystem::perms::all,
              std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);  // 0600 by default
}

TEST_F(DictTest, TruncatedFileIsRejectedAtEveryPageBoundary) {
    {
        Dict d(path_);
        for (int i = 0; i < 3'000; ++i) d.set("key" + std::to_string(i), value_for(i, 100));
    }
    const std::uint64_t size = mmstore_test::file_size(path_);
    ASSERT_GE(size, 40 * 4096u);
    const std::string copy = dir_.file("cut.mms");
    std::filesystem::copy_file(path_, copy);
    OpenOptions ro;
    ro.readonly = true;
    // Cut from the end towards the start; a refused open leaves the file as it was.
    for (std::uint64_t k = size / 4096 - 1; k >= 1; --k) {
        std::filesystem::resize_file(copy, k * 4096);
        EXPECT_TRUE(throws_format_error([&] { Dict d(copy); }, {ErrorCode::kTruncated, ErrorCode::kCorrupt}))
            << "cut at page " << k;
        EXPECT_TRUE(throws_format_error([&] { Dict d(copy, ro); }, {ErrorCode::kTruncated, ErrorCode::kCorrupt}))
            << "read-only, cut at page " << k;
        ASSERT_EQ(mmstore_test::file_size(copy), k * 4096);
    }
    // Shorter than one page, but with the magic: still truncated, not foreign.
    for (std::uint64_t n : {8u, 63u, 64u, 1000u}) {
        std::filesystem::resize_file(copy, n);
        EXPECT_TRUE(throws_format_error([&] { Dict d(copy); }, {ErrorCode::kTruncated, ErrorCode::kCorrupt})) << n;
    }
    Dict whole(path_);  // the original is untouched
    EXPECT_EQ(whole.size(), 3'000u);
}

TEST_F(DictTest, EmptyExistingFileIsForeignEvenWhenCreationIsAllowed) {
    // mmstore builds a new store aside and links it into place complete, so an empty file at the path is
    // never one of its own half-created stores: it belongs to someone else and is left alone.
    mmstore_test::write_file(path_, "");
    OpenOptions never;
    never.create = OpenOptions::Create::kNever;
    OpenOptions always;
    always.create = OpenOptions::Create::kAlways;
    EXPECT_TRUE(throws_format_error([&] { Dict d(path_, never); }, {ErrorCode::kForeign}));
    EXPECT_TRUE(throws_format_error([&] { Dict d(path_); }, {ErrorCode::kForeign}));
    EXPECT_THROW(Dict d(path_, always), mmstore::Error);
    EXPECT_EQ(mmstore_test::file_size(path_), 0u);
}

TEST_F(DictTest, ForeignFileIsRejected) {
    std::mt19937_64 rng(8);
    for (std::size_t n : {1u, 7u, 64u, 100u, 5'000u, 20'000u, 100'000u}) {
        mmstore_test::write_file(path_, random_bytes(rng, n));
        EXPECT_TRUE(throws_format_error([&] { Dict d(path_); }, {ErrorCode::kForeign})) << n << " random bytes";
        EXPECT_EQ(mmstore_test::file_size(path_), n) << "the foreign file was modified";
    }
    std::string text;
    while (text.size() < 50'000) text += "Lorem ipsum dolor sit amet, consectetur adipiscing elit.\n";
    mmstore_test::write_file(path_, text);
    EXPECT_TRUE(throws_format_error([&] { Dict d(path_); }, {ErrorCode::kForeign}));
    mmstore_test::write_file(path_, "{\"json\": true}\n");
    EXPECT_TRUE(throws_format_error([&] { Dict d(path_); }, {ErrorCode::kForeign}));
    EXPECT_EQ(mmstore_test::read_file(path_), "{\"json\": true}\n");
}

// Rewrites the 64-byte FileHeader of `path` through `patch`, then recomputes its checksum (XXH3-64 of
// bytes [0, 56), stored at offset 56) unless told not to.
template <class F>
void patch_header(const std::string& path, F patch, bool fix_checksum = true) {
    std::string bytes = mmstore_test::read_file(path);
    ASSERT_GE(bytes.size(), 64u);
    patch(bytes);
    if (fix_checksum) {
        const std::uint64_t sum = mmstore::hash64(bytes.data(), 56);
        std::memcpy(bytes.data() + 56, &sum, 8);
    }
    mmstore_test::write_file(path, bytes);
}

TEST_F(DictTest, NewerFormatVersionIsRejected) {
    { Dict d(path_); d.set("k", "v"); }
    patch_header(path_, [](std::string& b) {
        const std::uint32_t version = 99;
        std::memcpy(b.data() + 8, &version, 4);
    });
    EXPECT_TRUE(throws_format_error([&] { Dict d(path_); }, {ErrorCode::kVersion}));
    OpenOptions ro;
    ro.readonly = true;
    EXPECT_TRUE(throws_format_error([&] { Dict d(path_, ro); }, {ErrorCode::kVersion}));
}

TEST_F(DictTest, DamagedHeaderChecksumIsRejectedAsCorrupt) {
    { Dict d(path_); d.set("k", "v"); }
    patch_header(path_, [](std::string& b) { b[8] ^= 0x01; }, /*fix_checksum=*/false);
    EXPECT_TRUE(throws_format_error([&] { Dict d(path_); }, {ErrorCode::kCorrupt}));
}

TEST_F(DictTest, ForeignByteOrderIsRejectedAsVersion) {
    { Dict d(path_); }
    patch_header(path_, [](std::string& b) {
        const std::uint32_t swapped = 0x04030201u;  // byte_order at offset 16
        std::memcpy(b.data() + 16, &swapped, 4);
    });
    EXPECT_TRUE(throws_format_error([&] { Dict d(path_); }, {ErrorCode::kVersion}));
}

TEST_F(DictTest, GrowthPastTheReservationThrowsCapacityAndChangesNothing) {
    OpenOptions small;
    small.reserve = 1 << 20;  // the file may not grow past 1 MiB while this handle is open
    OrderedModel model;
    {
        Dict d(path_, small);
        int i = 0;
        try {
            for (;; ++i) {
                const std::string k = "key" + std::to_string(i);
                d.set(k, value_for(i, 1'000));
                model.set(k, value_for(i, 1'000));
                ASSERT_LT(i, 10'000) << "the reservation was not enforced";
            }
        } catch (const mmstore::Error& e) {
            ASSERT_EQ(e.code(), ErrorCode::kCapacity) << e.what();
        }
        EXPECT_GT(i, 100);
        EXPECT_FALSE(d.contains("key" + std::to_string(i)));  // the failed set left no trace
        EXPECT_NO_THROW(d.verify());
        expect_same(d, model);
        EXPECT_TRUE(d.erase("key0"));  // still usable where no new space is needed
        model.erase("key0");
        EXPECT_FALSE(d.set("key1", "v"));  // an inline value replaces a record
        model.set("key1", "v");
    }
    Dict d(path_);  // reopened with the default reservation it grows again
    expect_same(d, model);
    for (int i = 0; i < 2'000; ++i) d.set("more" + std::to_string(i), value_for(i, 1'000));
    EXPECT_NO_THROW(d.verify());
}

TEST_F(DictTest, DurableDictKeepsEveryMutation) {
    OpenOptions durable;
    durable.durable = true;
    {
        Dict d(path_, durable);
        for (int i = 0; i < 20; ++i) d.set("k" + std::to_string(i), value_for(i, i * 10));
        d.erase("k3");
        d.abandon();
    }
    Dict d(path_);
    EXPECT_NO_THROW(d.verify());
    EXPECT_EQ(d.size(), 19u);
    EXPECT_EQ(d.get("k19"), value_for(19, 190));
}

TEST_F(DictTest, HandleOpenedBeforeForkRefusesUseInTheChild) {
    Dict d(path_);
    d.set("k", "v");
    const int status = mmstore_test::run_in_child([&] {
        try {
            (void)d.get("k");
        } catch (const mmstore::Error& e) {
            return e.code() == ErrorCode::kForked ? 0 : 1;
        }
        return 2;  // used without complaint
    });
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << mmstore_test::describe_status(status);
    EXPECT_EQ(d.get("k"), "v");  // the parent's handle is unaffected
}

// --- damaged data (DESIGN.md contract 5: a FormatError, never a crash, never garbage)

// The size word (LiveHeader.file_size) damaged while a handle has the store open. Each case runs in a
// child with an alarm: before the fix, a read that met damage counted a smaller size word as "another
// process grew the store" and retried forever, and a larger one was mapped past the end of the file.
TEST_F(DictTest, ADamagedSizeWordNeitherMakesReadsRetryForeverNorMapsPastTheEndOfTheFile) {
    { Dict d(path_); d.set(Value::str("k"), Value::str(std::string(100, 'v'))); }
    for (const std::int64_t delta : {-4096, 1 << 20}) {
        const int status = mmstore_test::run_in_child([&] {
            ::alarm(30);  // a read that retries forever ends the child by SIGALRM: a failure
            Dict d(path_);
            (void)d.get(Value::str("k"));
            d.store().region().live().file_size += static_cast<std::uint64_t>(delta);
            if (delta < 0) {  // and a damaged value word: the read raises, and must not be taken for a race
                const std::uint64_t pos = d.table().find(mmstore::codec::encode(Value::str("k")));
                if (pos >= d.table().end()) return 3;
                *const_cast<std::uint64_t*>(d.table().value_word_ptr(pos)) ^= std::uint64_t{1} << 48;
            }
            try {
                (void)d.get(Value::str("k"));
            } catch (const FormatError& e) {
                return e.code() == (delta < 0 ? ErrorCode::kCorrupt : ErrorCode::kTruncated) ? 0 : 1;
            }
            return 2;  // read without complaint
        });
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "delta " << delta << ": "
                                                                   << mmstore_test::describe_status(status);
        mmstore_test::write_file(path_, "");  // the child damaged the file: start the next case afresh
        std::filesystem::remove(path_);
        { Dict d(path_); d.set(Value::str("k"), Value::str(std::string(100, 'v'))); }
    }
}

// A closed store with live records, inline words, erased entries and non-empty free lists.
void build_damage_target(const std::string& path) {
    Dict d(path);
    for (int i = 0; i < 300; ++i) d.set("key" + std::to_string(i), std::string(static_cast<std::size_t>(i % 7 ? 100 : 3), 'a'));
    for (int i = 0; i < 300; i += 11) d.erase("key" + std::to_string(i));
}

// Reads everything a reader can reach; FormatError is fine, anything else fails the child.
int read_everything(const Dict& d) {
    for (int i = 0; i < 300; ++i) {
        try {
            (void)d.get_encoded(mmstore::codec::encode(Value::bytes("key" + std::to_string(i))));
        } catch (const FormatError&) {
        }
    }
    try {
        d.for_each([](std::string_view k, std::string_view v) { (void)mmstore::codec::decode(k); (void)mmstore::codec::decode(v); });
    } catch (const FormatError&) {
    }
    try {
        d.verify();
    } catch (const FormatError&) {
    }
    return 0;
}

TEST_F(DictTest, RandomDamageSeenByAReaderRaisesFormatErrorNeverACrash) {
    build_damage_target(path_);
    const std::string original = mmstore_test::read_file(path_);
    const std::string copy = dir_.file("damaged.mms");
    std::mt19937_64 rng(0xBAD);
    int refused_at_open = 0;
    for (int trial = 0; trial < 150; ++trial) {
        std::string bytes = original;
        for (int k = 1 + static_cast<int>(rng() % 8); k > 0; --k) {
            // Three quarters of the hits in the arena, the rest anywhere (headers, commit slots).
            const std::size_t lo = rng() % 4 ? mmstore::storage::kDataStart : 0;
            bytes[lo + rng() % (bytes.size() - lo)] ^= static_cast<char>(1 + rng() % 255);
        }
        // Every tenth trial also hits the checksummed FileHeader, so the refusal path is always exercised.
        if (trial % 10 == 0) bytes[rng() % sizeof(mmstore::storage::FileHeader)] ^= static_cast<char>(1 + rng() % 255);
        mmstore_test::write_file(copy, bytes);
        const int status = mmstore_test::run_in_child([&] {
            OpenOptions ro;
            ro.readonly = true;
            Dict d(copy, ro);
            return read_everything(d);
        });
        ASSERT_TRUE(WIFEXITED(status) && (WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == 100))
            << "trial " << trial << ": " << mmstore_test::describe_status(status);
        refused_at_open += WEXITSTATUS(status) == 100;
    }
    EXPECT_GT(refused_at_open, 0);
}

// Offset of the free-list heads in the file: LiveHeader::arena holds an alloc::ArenaState.
constexpr std::size_t kArenaStateAt = mmstore::storage::kLiveHeaderOffset + offsetof(mmstore::storage::LiveHeader, arena);

TEST_F(DictTest, DamagedFreeListLinkRaisesFormatErrorNotACrash) {
    build_damage_target(path_);
    std::string bytes = mmstore_test::read_file(path_);
    mmstore::alloc::ArenaState state;
    std::memcpy(&state, bytes.data() + kArenaStateAt, sizeof state);
    int damaged = 0;
    for (std::uint64_t head : state.heads) {
        if (head == 0) continue;
        const std::uint64_t wild = std::uint64_t{1} << 39;  // far past the end of the file
        std::memcpy(bytes.data() + head, &wild, 8);
        ++damaged;
    }
    ASSERT_GT(damaged, 0) << "no free list to damage";
    mmstore_test::write_file(path_, bytes);
    const int status = mmstore_test::run_in_child([&] {
        Dict d(path_);
        for (int i = 0; i < 300; ++i) d.set("new" + std::to_string(i), std::string(static_cast<std::size_t>(i % 2 ? 100 : 5000), 'b'));
        d.verify();
        return 0;
    });
    EXPECT_TRUE(WIFEXITED(status) && (WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == 100))
        << mmstore_test::describe_status(status);
}

TEST_F(DictTest, DamagedRecordLengthRaisesFormatErrorNotACrash) {
    build_damage_target(path_);
    std::string bytes = mmstore_test::read_file(path_);
    // The record of a 100-byte value: {u32 len, u32 check} then the encoding 11 64 00 00 00 'a' x 100.
    const std::string payload = mmstore::codec::encode(Value::bytes(std::string(100, 'a')));
    const std::size_t at = bytes.find(payload, mmstore::storage::kDataStart);
    ASSERT_NE(at, std::string::npos);
    const std::uint32_t bogus = 0x7FFF'FFF0;
    std::memcpy(bytes.data() + at - 8, &bogus, 4);
    mmstore_test::write_file(path_, bytes);
    const int status = mmstore_test::run_in_child([&] {
        Dict d(path_);
        for (int i = 0; i < 300; ++i) d.set("key" + std::to_string(i), std::string(100, 'b'));  // frees the old records
        for (int i = 0; i < 100; ++i) d.set("big" + std::to_string(i), std::string(100'000, 'c'));
        d.verify();
        return 0;
    });
    EXPECT_TRUE(WIFEXITED(status) && (WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == 100))
        << mmstore_test::describe_status(status);
}

// --- crash recovery
void write_keys(Dict& d, int from, int to) {
    for (int i = from; i < to; ++i) {
        d.set("key" + std::to_string(i), value_for(i, i % 60));
        if (i % 10 == 9) d.erase("key" + std::to_string(i - 5));
    }
}

void expect_keys(const Dict& d, int to) {
    for (int i = 0; i < to; ++i) {
        const bool erased = i % 10 == 4 && i + 5 < to;
        const auto got = d.get("key" + std::to_string(i));
        if (erased) {
            ASSERT_FALSE(got.has_value()) << i;
        } else {
            ASSERT_TRUE(got.has_value()) << i;
            ASSERT_EQ(*got, value_for(i, i % 60)) << i;
        }
    }
}

// Byte offsets of the two commit slots and of their generation counters (storage/header.hpp).
std::uint64_t slot_generation(const std::string& bytes, int i) {
    std::uint64_t g;
    std::memcpy(&g, bytes.data() + mmstore::storage::kCommitSlotOffset[i], 8);
    return g;
}

TEST_F(DictTest, TornNewestCommitSlotFallsBackToTheOlderOne) {
    {
        Dict d(path_);
        write_keys(d, 0, 1'000);
        d.sync();
        write_keys(d, 1'000, 2'000);
    }
    std::string bytes = mmstore_test::read_file(path_);
    const int newest = slot_generation(bytes, 0) > slot_generation(bytes, 1) ? 0 : 1;
    ASSERT_GT(slot_generation(bytes, 1 - newest), 0u);
    bytes[mmstore::storage::kCommitSlotOffset[newest] + 100] ^= 0x10;  // inside the slot's state: checksum fails
    mmstore_test::write_file(path_, bytes);
    Dict d(path_);
    EXPECT_NO_THROW(d.verify());
    expect_keys(d, 2'000);  // the live header is intact, so nothing is lost
}

TEST_F(DictTest, BothCommitSlotsDamagedIsRejectedAsCorrupt) {
    { Dict d(path_); d.set("k", "v"); }
    std::string bytes = mmstore_test::read_file(path_);
    for (int i = 0; i < 2; ++i) bytes[mmstore::storage::kCommitSlotOffset[i] + 100] ^= 0x10;
    mmstore_test::write_file(path_, bytes);
    EXPECT_TRUE(throws_format_error([&] { Dict d(path_); }, {ErrorCode::kCorrupt}));
}


TEST_F(DictTest, AbandonedDictReopensWithEveryEntry) {
    {
        Dict d(path_);
        write_keys(d, 0, 1'000);
        d.sync();
        write_keys(d, 1'000, 4'000);  // after the last sync: still in the mapping
        d.abandon();
        EXPECT_FALSE(d.is_open());
    }
    Dict d(path_);
    EXPECT_NO_THROW(d.verify());
    expect_keys(d, 4'000);
    write_keys(d, 4'000, 4'500);  // repaired free lists are usable
    EXPECT_NO_THROW(d.verify());
}

TEST_F(DictTest, ReadOnlyOpenOfAnUncleanlyClosedFileSeesEveryEntry) {
    {
        Dict d(path_);
        write_keys(d, 0, 2'000);
        d.abandon();
    }
    {
        OpenOptions ro;
        ro.readonly = true;
        Dict reader(path_, ro);  // cannot repair, but must read
        expect_keys(reader, 2'000);
    }
    Dict writer(path_);  // the first writer repairs
    EXPECT_NO_THROW(writer.verify());
    expect_keys(writer, 2'000);
}

TEST_F(DictTest, WriterThatExitsWithoutClosingLeavesARecoverableFile) {
    { Dict d(path_); write_keys(d, 0, 500); }
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        try {
            Dict d(path_);
            write_keys(d, 500, 5'000);
        } catch (...) {
            ::_exit(2);
        }
        ::_exit(0);  // no destructors: the store stays dirty
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);
    Dict d(path_);
    EXPECT_NO_THROW(d.verify());
    expect_keys(d, 5'000);
}

TEST_F(DictTest, WriterKilledMidOperationLosesAtMostTheUnacknowledgedKey) {
    // The child acknowledges each set() over a pipe after it returns; SIGKILL lands at a random point.
    std::mt19937_64 rng(44);
    int next = 0;  // keys below `next` are acknowledged
    for (int round = 0; round < 3; ++round) {
        int fds[2];
        ASSERT_EQ(::pipe(fds), 0);
        const int start = next;
        const pid_t child = ::fork();
        ASSERT_GE(child, 0);
        if (child == 0) {
            ::close(fds[0]);
            try {
                Dict d(path_);
                for (int i = start;; ++i) {
                    d.set("key" + std::to_string(i), value_for(i, i % 3 ? 5 : 90));
                    if (::write(fds[1], &i, sizeof i) != sizeof i) ::_exit(3);
                }
            } catch (...) {
                ::_exit(2);
            }
        }
        ::close(fds[1]);
        const int target = start + static_cast<int>(uniform(rng, 300, 3'000));
        int acked = -1, got = 0;
        while (acked < target && ::read(fds[0], &got, sizeof got) == sizeof got) acked = got;
        ::kill(child, SIGKILL);
        int status = 0;
        ASSERT_EQ(::waitpid(child, &status, 0), child);
        ASSERT_TRUE(WIFSIGNALED(status)) << "child failed before the kill, status " << status;
        while (::read(fds[0], &got, sizeof got) == sizeof got) acked = got;
        ::close(fds[0]);
        ASSERT_GE(acked, target);

        Dict d(path_);
        ASSERT_NO_THROW(d.verify()) << "round " << round;
        for (int i = 0; i <= acked; ++i) {
            const auto v = d.get("key" + std::to_string(i));
            ASSERT_TRUE(v.has_value()) << "acknowledged key " << i << " lost in round " << round;
            ASSERT_EQ(*v, value_for(i, i % 3 ? 5 : 90));
        }
        // Only the one set() in flight may or may not have landed.
        EXPECT_GE(d.size(), static_cast<std::uint64_t>(acked + 1));
        EXPECT_LE(d.size(), static_cast<std::uint64_t>(acked + 2));
        if (d.size() == static_cast<std::uint64_t>(acked + 2))
            EXPECT_TRUE(d.contains("key" + std::to_string(acked + 1)));
        d.close();
        next = acked + 1;
        // Keys beyond `acked` (at most one) are overwritten with the same value in the next round.
    }
}

}  // namespace

namespace {

class DictCreationTest : public ::testing::Test {
protected:
    mmstore_test::TempDir dir_;
    std::string path_ = dir_.file("d.mms");
};

TEST_F(DictCreationTest, FileOfZerosIsForeignNotCreatedAgain) {
    // Creation happens under no name (os::File::create_unlinked), so zeros at the path are someone else's.
    { std::ofstream(path_, std::ios::binary) << std::string(64 * 1024, '\0'); }
    for (auto create : {mmstore::OpenOptions::Create::kNever, mmstore::OpenOptions::Create::kIfMissing}) {
        mmstore::OpenOptions o;
        o.create = create;
        try {
            mmstore::Dict d(path_, o);
            FAIL() << "opened a file of zeros as a store";
        } catch (const mmstore::FormatError& e) {
            EXPECT_EQ(e.code(), mmstore::ErrorCode::kForeign);
        }
    }
    EXPECT_EQ(std::filesystem::file_size(path_), 64u * 1024);
}

TEST_F(DictCreationTest, OpeningForWritingRemovesFilesOfAKilledCompaction) {
    { mmstore::Dict d(path_); d.set("k", "v"); }
    const std::string stale = path_ + ".compact.12345";
    { std::ofstream(stale, std::ios::binary) << std::string(4096, 'x'); }
    const std::string unrelated = dir_.file("d.mms.keep");
    { std::ofstream(unrelated) << "x"; }
    mmstore::Dict d(path_);
    EXPECT_FALSE(std::filesystem::exists(stale));
    EXPECT_TRUE(std::filesystem::exists(unrelated));
    EXPECT_EQ(d.get("k"), std::optional<std::string_view>("v"));
}

}  // namespace

namespace {

TEST_F(DictCreationTest, DamagedIndexRaisesOnTheMissInsteadOfHidingAKey) {
    {
        Dict d(path_);
        for (int i = 0; i < 1000; ++i) d.set(Value::integer(i), Value::integer(i * 2));
    }
    std::string bytes = mmstore_test::read_file(path_);
    std::uint64_t root = 0;
    std::memcpy(&root, bytes.data() + mmstore::storage::kLiveHeaderOffset + offsetof(mmstore::storage::LiveHeader, root), 8);
    // Change the H2 byte of every full slot in the first group: those keys no longer match their slot.
    const std::size_t group0 = root + sizeof(mmstore::containers::TableHeader);
    int damaged = 0;
    for (unsigned lane = 0; lane < mmstore::containers::kLanes; ++lane) {
        auto& c = reinterpret_cast<unsigned char&>(bytes[group0 + lane]);
        if (c < 0x80) {
            c ^= 0x01;
            ++damaged;
        }
    }
    ASSERT_GT(damaged, 0);
    mmstore_test::write_file(path_, bytes);
    OpenOptions ro;
    ro.readonly = true;
    Dict d(path_, ro);
    int raised = 0;
    for (int i = 0; i < 1000; ++i) {
        try {
            const auto v = d.get(Value::integer(i));
            ASSERT_TRUE(v.has_value()) << "key " << i << " silently missing";
            EXPECT_EQ(v->i, i * 2);
        } catch (const mmstore::FormatError& e) {
            EXPECT_EQ(e.code(), mmstore::ErrorCode::kCorrupt);
            ++raised;
        }
    }
    EXPECT_GE(raised, 1);
    EXPECT_THROW(d.verify(), mmstore::FormatError);
}

}  // namespace
