// Tests of mmstore/records.hpp: Schema, packed rows, RecordArray, Mapping, builders, merge, corrupt input.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include "mmstore/error.hpp"
#include "mmstore/records.hpp"

namespace fs = std::filesystem;
using mmstore::FieldType;
using mmstore::Schema;
using mmstore::codec::Value;
using VT = Value::Type;

namespace {

struct TmpDir {
    fs::path p;
    TmpDir() {
        p = fs::temp_directory_path() / ("mmrec-" + std::to_string(::getpid()) + "-" + std::to_string(std::rand()));
        fs::create_directories(p);
    }
    ~TmpDir() { fs::remove_all(p); }
    std::string operator/(const char* name) const { return (p / name).string(); }
};

mmstore::SchemaPtr abs_schema() {
    return std::make_shared<const Schema>("ABS", std::vector<mmstore::FieldSpec>{
        {"a", FieldType::kInt64, nullptr}, {"b", FieldType::kFloat64, nullptr}, {"s", FieldType::kStr, nullptr}});
}

mmstore::SchemaPtr wide_schema() {
    auto inner = std::make_shared<const Schema>("Inner", std::vector<mmstore::FieldSpec>{{"x", FieldType::kInt32, nullptr}}, 7);
    return std::make_shared<const Schema>("Wide", std::vector<mmstore::FieldSpec>{
        {"i8", FieldType::kInt8, nullptr}, {"u16", FieldType::kUInt16, nullptr}, {"i32", FieldType::kInt32, nullptr},
        {"f32", FieldType::kFloat32, nullptr}, {"flag", FieldType::kBool, nullptr}, {"s", FieldType::kStr, nullptr},
        {"raw", FieldType::kBytes, nullptr}, {"t", FieldType::kTuple, nullptr}, {"o", FieldType::kObject, nullptr},
        {"in", FieldType::kRecord, inner}}, 3);
}

std::vector<Value> abs_values(std::int64_t i) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "k%07lld", static_cast<long long>(i));
    return {Value::integer(i), Value::real(i * 0.5), Value::str(buf)};
}

std::string file_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

TEST(Records, SchemaRoundTripsThroughCodecValue) {
    auto s = wide_schema();
    auto back = Schema::decode(s->encode());
    EXPECT_EQ(*back, *s);
    EXPECT_EQ(back->type_code(), 3u);
    EXPECT_EQ(back->field(9).nested->name(), "Inner");
    EXPECT_THROW(Schema("x", {{"a", FieldType::kInt8, nullptr}, {"a", FieldType::kInt8, nullptr}}), mmstore::Error);
}

TEST(Records, PackedRowReadsBackEveryFieldType) {
    auto s = wide_schema();
    auto inner = s->field(9).nested;
    Value rec;
    rec.type = VT::kRecord;
    rec.i = 7;
    rec.data = inner->pack({Value::integer(-5)});
    std::vector<Value> v = {Value::integer(-100), Value::integer(65000), Value::none(), Value::real(1.5),
                            Value::boolean(true), Value::str("hello"), Value::bytes(std::string("\0\1", 2)),
                            Value::sequence(VT::kTuple, {Value::integer(1), Value::str("x")}),
                            Value::sequence(VT::kList, {Value::none()}), rec};
    const std::string row = s->pack(v);
    auto view = mmstore::RecordView::from_row(*s, row);
    EXPECT_EQ(view.get_int(0), -100);
    EXPECT_EQ(view.get_int(1), 65000);
    EXPECT_TRUE(view.is_null(2));
    EXPECT_EQ(view.get(2).type, VT::kNone);
    EXPECT_DOUBLE_EQ(view.get_float(3), 1.5);
    EXPECT_EQ(view.get(4), Value::boolean(true));
    for (std::size_t i = 5; i < 10; ++i) EXPECT_EQ(view.get(i), v[i]) << i;
    const Value nine = view.get(9);  // the view reads the row in place: keep it alive
    auto nested = mmstore::RecordView::from_row(*inner, nine.data);
    EXPECT_EQ(nested.get_int(0), -5);
    EXPECT_EQ(view.to_row(), row);
    // Type and range errors.
    v[0] = Value::integer(1000);
    EXPECT_THROW(s->pack(v), mmstore::Error);
    v[0] = Value::integer(1);
    v[5] = Value::integer(3);
    EXPECT_THROW(s->pack(v), mmstore::Error);
}

TEST(Records, ArrayMatchesModelWithNullsAndDedup) {
    TmpDir d;
    auto s = wide_schema();
    std::mt19937_64 rng(42);
    std::vector<std::vector<Value>> model;
    for (bool dedup : {true, false}) {
        model.clear();
        mmstore::BuildOptions o;
        o.dedup = dedup;
        o.dedup_budget = 4096;  // forces cache resets
        mmstore::RecordArrayBuilder b(d / "a.mms", s, o);
        for (int i = 0; i < 3000; ++i) {
            std::vector<Value> v(10);
            v[1] = Value::integer(static_cast<std::uint16_t>(rng()));
            if (rng() % 4) v[0] = Value::integer(static_cast<std::int8_t>(rng()));
            if (rng() % 4) v[2] = Value::integer(static_cast<std::int32_t>(rng()));
            if (rng() % 2) v[4] = Value::boolean(rng() % 2);
            if (rng() % 3) v[5] = Value::str("s" + std::to_string(rng() % 50));
            if (rng() % 5 == 0) v[8] = Value::sequence(VT::kDict, {Value::str("k"), Value::integer(i)});
            b.add(v);
            model.push_back(v);
        }
        EXPECT_EQ(b.finish(), 3000u);
        auto a = mmstore::RecordArray::open(d / "a.mms");
        a.verify();
        ASSERT_EQ(a.size(), model.size());
        for (std::size_t i = 0; i < model.size(); ++i)
            for (std::size_t f = 0; f < 10; ++f) ASSERT_EQ(a[i].get(f), model[i][f]) << i << " " << f;
        EXPECT_THROW(a.at(3000), std::out_of_range);
        auto col = a.column(2);
        EXPECT_EQ(col.size(), 3000u * 4);
        EXPECT_NE(a.presence(2), nullptr);
        EXPECT_EQ(a.presence(1), nullptr);  // u16 never null
    }
}

TEST(Records, DedupWritesRepeatedHeapValuesOnce) {
    // Heap fields (a tuple here) are deduplicated; str/bytes are in Arrow's layout, one copy per record.
    TmpDir d;
    auto s = std::make_shared<const Schema>("T", std::vector<mmstore::FieldSpec>{
        {"a", FieldType::kInt64, nullptr}, {"t", FieldType::kTuple, nullptr}});
    std::uint64_t sizes[2];
    auto value = [](int i) {
        return Value::sequence(VT::kTuple, {Value::str("a fairly long repeated string value"), Value::integer(i % 3)});
    };
    for (int dedup = 0; dedup < 2; ++dedup) {
        mmstore::BuildOptions o;
        o.dedup = dedup;
        mmstore::RecordArrayBuilder b(d / "a.mms", s, o);
        for (int i = 0; i < 2000; ++i) b.add({Value::integer(i), value(i)});
        b.finish();
        sizes[dedup] = fs::file_size(d / "a.mms");
        auto a = mmstore::RecordArray::open(d / "a.mms");
        EXPECT_EQ(a[1999].get(1), value(1999));
    }
    EXPECT_LT(sizes[1] + 2000 * 30, sizes[0]);
}

// Version-3 str/bytes columns (Arrow layout) against a model: values, nulls, get_bytes/get_encoded, the
// offsets and data spans, and the switch to u64 offsets once a field's bytes pass the limit.
TEST(Records, StrAndBytesColumnsInArrowLayoutMatchModel) {
    TmpDir d;
    auto s = std::make_shared<const Schema>("SB", std::vector<mmstore::FieldSpec>{
        {"s", FieldType::kStr, nullptr}, {"raw", FieldType::kBytes, nullptr}, {"n", FieldType::kInt32, nullptr}});
    std::mt19937_64 rng(7);
    for (std::uint64_t limit : {std::uint64_t{0x7FFFFFFF}, std::uint64_t{5000}}) {
        std::vector<std::vector<Value>> model;
        mmstore::BuildOptions o;
        o.narrow_offsets_limit = limit;
        mmstore::RecordArrayBuilder b(d / "a.mms", s, o);
        for (int i = 0; i < 3000; ++i) {
            std::vector<Value> v(3);
            if (rng() % 5) v[0] = Value::str(std::string(rng() % 40, static_cast<char>('a' + rng() % 26)));
            if (rng() % 7) v[1] = Value::bytes(std::string(rng() % 70, static_cast<char>(rng() % 256)));
            v[2] = Value::integer(i);
            b.add(v);
            model.push_back(v);
        }
        b.finish();
        auto a = mmstore::RecordArray::open(d / "a.mms");
        const unsigned want_width = limit == 5000 ? 8 : 4;
        ASSERT_EQ(a.offset_width(0), want_width);
        ASSERT_EQ(a.offset_width(1), want_width);
        EXPECT_EQ(a.offset_width(2), 0u);
        EXPECT_THROW(a.offsets(2), mmstore::Error);
        for (std::size_t f = 0; f < 2; ++f) {
            const auto offs = a.offsets(f);
            const auto data = a.var_data(f);
            ASSERT_EQ(offs.size(), (a.size() + 1) * want_width);
            std::uint64_t last = 0;
            std::memcpy(&last, offs.data() + a.size() * want_width, want_width);
            EXPECT_EQ(last, data.size());
            EXPECT_NE(a.presence(f), nullptr);
        }
        for (std::size_t i = 0; i < model.size(); ++i)
            for (std::size_t f = 0; f < 3; ++f) {
                ASSERT_EQ(a[i].get(f), model[i][f]) << i << " " << f;
                if (f == 2) continue;
                const auto raw = a[i].get_bytes(f);
                ASSERT_EQ(raw.has_value(), model[i][f].type != VT::kNone);
                EXPECT_EQ(a[i].is_null(f), !raw.has_value());
                if (raw) {
                    EXPECT_EQ(*raw, model[i][f].data);
                    EXPECT_EQ(a[i].get_encoded(f), mmstore::codec::encode(model[i][f]));
                } else {
                    EXPECT_EQ(a[i].get_encoded(f), "");
                }
                // to_row re-encodes: the packed row reads back the same value
                const std::string row = a[i].to_row();
                EXPECT_EQ(mmstore::RecordView::from_row(*s, row).get(f), model[i][f]);
            }
    }
}

TEST(Records, AbandonedBuildLeavesNoFiles) {
    TmpDir d;
    {
        mmstore::RecordArrayBuilder b(d / "a.mms", abs_schema());
        b.add(abs_values(1));
    }
    EXPECT_TRUE(fs::is_empty(d.p));
}

TEST(Records, MappingMatchesModelExactMultiAndApproximate) {
    TmpDir d;
    auto s = abs_schema();
    for (int mode = 0; mode < 4; ++mode) {
        mmstore::MappingOptions o;
        o.multi = mode == 1;
        o.approximate = mode == 2;
        o.wide_keys = mode == 3;
        o.memory_budget = 64 << 10;  // forces re-partitioning
        std::multimap<std::string, std::int64_t> model;
        std::map<std::string, std::int64_t> last;
        std::mt19937_64 rng(7 + mode);
        {
            mmstore::MappingBuilder b(d / "m.mms", s, o);
            for (int i = 0; i < 20000; ++i) {
                const std::string key = mmstore::codec::encode(Value::str("key" + std::to_string(rng() % 15000)));
                b.add_encoded(key, s->pack(abs_values(i)));
                model.emplace(key, i);
                last[key] = i;
            }
            b.finish();
        }
        auto m = mmstore::Mapping::open(d / "m.mms");
        m.verify();
        EXPECT_EQ(m.multi(), mode == 1);
        EXPECT_EQ(m.size(), mode == 1 ? model.size() : last.size());
        for (const auto& [key, v] : last) {
            auto [lo, hi] = m.find_encoded(key);
            ASSERT_LT(lo, hi);
            if (mode == 1) {
                std::vector<std::int64_t> got, want;
                for (auto e = lo; e < hi; ++e) got.push_back(m.value(e).get_int(0));
                auto r = model.equal_range(key);
                for (auto it = r.first; it != r.second; ++it) want.push_back(it->second);
                EXPECT_EQ(got, want);  // input order
            } else {
                EXPECT_EQ(hi - lo, 1u);
                EXPECT_EQ(m.value(lo).get_int(0), v);
            }
            if (mode != 2) EXPECT_EQ(m.key_encoded(lo), key);
        }
        auto miss = m.find(Value::str("absent"));
        EXPECT_EQ(miss.first, miss.second);
    }
}

TEST(Records, EmptyMappingAndArray) {
    TmpDir d;
    mmstore::MappingBuilder(d / "m.mms", abs_schema()).finish();
    auto m = mmstore::Mapping::open(d / "m.mms");
    EXPECT_EQ(m.size(), 0u);
    auto r = m.find(Value::integer(1));
    EXPECT_EQ(r.first, r.second);
    mmstore::RecordArrayBuilder(d / "a.mms", abs_schema()).finish();
    EXPECT_EQ(mmstore::RecordArray::open(d / "a.mms").size(), 0u);
}

TEST(Records, MergeLetsTheSecondMappingWin) {
    TmpDir d;
    auto s = abs_schema();
    {
        mmstore::MappingBuilder a(d / "a.mms", s);
        for (int i = 0; i < 100; ++i) a.add(Value::integer(i), abs_values(i));
        a.finish();
        mmstore::MappingBuilder b(d / "b.mms", s);
        for (int i = 50; i < 150; ++i) b.add(Value::integer(i), abs_values(i + 1000));
        b.finish();
    }
    mmstore::merge(mmstore::Mapping::open(d / "a.mms"), mmstore::Mapping::open(d / "b.mms"), d / "c.mms");
    auto c = mmstore::Mapping::open(d / "c.mms");
    EXPECT_EQ(c.size(), 150u);
    EXPECT_EQ(c.value(c.find(Value::integer(10)).first).get_int(0), 10);
    EXPECT_EQ(c.value(c.find(Value::integer(60)).first).get_int(0), 1060);
    EXPECT_EQ(c.value(c.find(Value::integer(149)).first).get_int(0), 1149);
}

// Every prefix and every single-byte flip of small files: a FormatError or a readable file, never a crash;
// verify() catches every flip.
TEST(Records, TruncationAndByteFlipSweep) {
    TmpDir d;
    auto s = abs_schema();
    {
        mmstore::RecordArrayBuilder b(d / "a.mms", s);
        for (int i = 0; i < 20; ++i) b.add(abs_values(i));
        b.finish();
        mmstore::MappingBuilder m(d / "m.mms", s);
        for (int i = 0; i < 20; ++i) m.add(Value::integer(i), abs_values(i));
        m.finish();
    }
    auto read_all_array = [&](const std::string& img) {
        auto a = mmstore::RecordArray::from_buffer(img.data(), img.size());
        for (std::uint64_t i = 0; i < a.size(); ++i)
            for (std::size_t f = 0; f < 3; ++f) (void)a[i].get(f);
        a.verify();
    };
    auto read_all_map = [&](const std::string& img) {
        auto m = mmstore::Mapping::from_buffer(img.data(), img.size());
        for (int i = 0; i < 20; ++i) {
            auto [lo, hi] = m.find(Value::integer(i));
            for (auto e = lo; e < hi; ++e) (void)m.value(e).get(2);
        }
        for (std::uint64_t e = 0; e < m.size(); ++e) (void)m.key_encoded(e);
        m.verify();
    };
    for (auto [name, fn] : {std::pair<const char*, std::function<void(const std::string&)>>{"a.mms", read_all_array},
                            {"m.mms", read_all_map}}) {
        const std::string good = file_bytes(d / name);
        fn(good);
        for (std::size_t n = 0; n < good.size(); ++n) {
            EXPECT_THROW(fn(good.substr(0, n)), mmstore::FormatError) << name << " prefix " << n;
        }
        for (std::size_t i = 0; i < good.size(); ++i) {
            std::string bad = good;
            bad[i] = static_cast<char>(bad[i] ^ 0x5A);
            bool thrown = false;
            try {
                fn(bad);  // ends with verify()
            } catch (const mmstore::FormatError&) {
                thrown = true;
            }
            // Bytes outside the checksummed regions are alignment padding only.
            if (i < 192) EXPECT_TRUE(thrown) << name << " flip at " << i;
        }
    }
}

TEST(Records, ForeignAndWrongKindFilesAreRejected) {
    TmpDir d;
    {
        mmstore::RecordArrayBuilder b(d / "a.mms", abs_schema());
        b.finish();
    }
    try {
        mmstore::Mapping::open(d / "a.mms");
        FAIL();
    } catch (const mmstore::FormatError& e) {
        EXPECT_EQ(e.code(), mmstore::ErrorCode::kWrongKind);
    }
    std::ofstream(d / "x.bin") << "not an mmstore file at all, just some text padding it out to size........"
                                  "..........................................................................."
                                  "...........................................................................";
    try {
        mmstore::RecordArray::open(d / "x.bin");
        FAIL();
    } catch (const mmstore::FormatError& e) {
        EXPECT_EQ(e.code(), mmstore::ErrorCode::kForeign);
    }
}

TEST(Records, MalformedRowsAreRejected) {
    TmpDir d;
    auto s = abs_schema();
    const std::string good = s->pack(abs_values(3));
    mmstore::RecordArrayBuilder b(d / "a.mms", s);
    b.add_row(good);
    EXPECT_THROW(b.add_row(good.substr(0, 10)), mmstore::FormatError);  // shorter than the fixed part
    std::string bad_len = good;
    bad_len[0] = static_cast<char>(bad_len[0] + 1);
    EXPECT_THROW(b.add_row(bad_len), mmstore::FormatError);  // length field disagrees
    std::string bad_slot = good;
    const std::uint32_t inside = 5;  // a value offset pointing into the fixed part
    std::memcpy(&bad_slot[s->row_offset(2)], &inside, 4);
    EXPECT_THROW(b.add_row(bad_slot), mmstore::FormatError);
    std::string bad_value = good;
    bad_value.back() = '\0';
    bad_value[s->row_header_size()] = static_cast<char>(0x10);  // long str tag with a length past the end
    EXPECT_THROW(b.add_row(bad_value), mmstore::FormatError);
    EXPECT_EQ(b.count(), 1u);
    EXPECT_EQ(b.finish(), 1u);
    EXPECT_THROW(mmstore::RecordView::from_row(*s, good.substr(0, good.size() - 1)), mmstore::FormatError);
    auto v = mmstore::RecordView::from_row(*s, good);
    EXPECT_EQ(v.get("s").data, "k0000003");
}

// Sections kept in memory (a build that fits its budget), spilled part-way, or never kept give the same
// bytes: the image does not depend on where the builder held its sections.
TEST(Records, BuildIsByteIdenticalWhetherSectionsStayInMemoryOrSpill) {
    TmpDir d;
    auto s = abs_schema();
    std::string images[3];
    const std::uint64_t budgets[3] = {256ull << 20, 8ull << 20, 0};  // all in memory, 2 MiB then spill, none
    for (int k = 0; k < 3; ++k) {
        mmstore::BuildOptions o;
        o.memory_budget = budgets[k];
        mmstore::RecordArrayBuilder b(d / "a.mms", s, o);
        for (int i = 0; i < 300000; ++i) b.add(abs_values(i));
        b.finish();
        images[k] = file_bytes(d / "a.mms");
        auto a = mmstore::RecordArray::open(d / "a.mms");
        ASSERT_EQ(a.size(), 300000u);
        EXPECT_EQ(a[299999].get(2).data, "k0299999");
        EXPECT_EQ(a[123456].get(0).i, 123456);
    }
    EXPECT_EQ(images[0], images[1]);
    EXPECT_EQ(images[0], images[2]);
    EXPECT_GT(images[0].size(), 300000u * 28);
}
