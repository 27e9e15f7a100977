// tests/cpp/codec/value_test.cpp -- the value codec (include/mmstore/codec/value.hpp).
//
// Three kinds of test: exact byte encodings from the format spec (so C++ and Python agree on the wire),
// round trips of every Value type, and malformed input (every truncation, seeded random mutations, trailing
// bytes, excessive nesting) which must decode or throw FormatError -- never crash or read out of bounds.
#include "mmstore/codec/value.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "../test_util.hpp"
#include "mmstore/error.hpp"

namespace {

using mmstore::ErrorCode;
using mmstore::FormatError;
using mmstore::codec::decode;
using mmstore::codec::encode;
using mmstore::codec::TzKind;
using mmstore::codec::Value;
using T = Value::Type;

std::string hex(std::string_view s) {
    static constexpr char kDigits[] = "0123456789ABCDEF";
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (i) out += ' ';
        const auto c = static_cast<unsigned char>(s[i]);
        out += kDigits[c >> 4];
        out += kDigits[c & 15];
    }
    return out;
}

std::string bytes_of(std::initializer_list<int> b) {
    std::string s;
    for (int x : b) s.push_back(static_cast<char>(x));
    return s;
}

// Decoding then re-encoding must reproduce the canonical bytes.
void expect_round_trip(const Value& v) {
    const std::string enc = encode(v);
    const Value back = decode(enc);
    EXPECT_EQ(back.type, v.type);
    EXPECT_EQ(hex(encode(back)), hex(enc));
}

Value tuple(std::vector<Value> items) { return Value::sequence(T::kTuple, std::move(items)); }
Value list(std::vector<Value> items) { return Value::sequence(T::kList, std::move(items)); }
Value dict(std::vector<Value> kv) { return Value::sequence(T::kDict, std::move(kv)); }

Value date(std::int32_t y, int m, int d) {
    Value v;
    v.type = T::kDate;
    v.year = y;
    v.month = static_cast<std::uint8_t>(m);
    v.day = static_cast<std::uint8_t>(d);
    return v;
}

Value datetime(TzKind tz, std::int64_t offset_us = 0, std::string tzname = {}) {
    Value v;
    v.type = T::kDateTime;
    v.year = 2024;
    v.month = 2;
    v.day = 29;
    v.hour = 23;
    v.minute = 59;
    v.second = 58;
    v.microsecond = 999'999;
    v.fold = 1;
    v.tz = tz;
    v.utcoffset_us = offset_us;
    v.tzname = std::move(tzname);
    return v;
}

Value ndarray(std::string dtype, std::vector<std::uint64_t> shape, std::string data) {
    Value v;
    v.type = T::kNdArray;
    v.dtype = std::move(dtype);
    v.shape = std::move(shape);
    v.data = std::move(data);
    return v;
}

Value opaque(T type, std::string data) {
    Value v;
    v.type = type;
    v.data = std::move(data);
    return v;
}

// A value that exercises every tag, nested a few levels.
Value kitchen_sink() {
    return tuple({
        Value::none(), Value::boolean(true), Value::boolean(false), Value::integer(0), Value::integer(-129),
        Value::integer(std::numeric_limits<std::int64_t>::min()), opaque(T::kBigInt, std::string(12, '\x7f')),
        Value::real(-0.0), Value::str("short"), Value::str(std::string(40, 'L')), Value::bytes(std::string("\0\1\2", 3)),
        Value::bytes(std::string(33, 'B')),
        list({Value::integer(1), dict({Value::str("k"), list({Value::none()}), Value::integer(2), Value::real(2.5)})}),
        Value::sequence(T::kSet, {Value::integer(3), Value::str("x")}),
        Value::sequence(T::kFrozenSet, {Value::bytes("y")}), date(1999, 12, 31), datetime(TzKind::kNaive),
        datetime(TzKind::kUtc), datetime(TzKind::kFixed, -18'000'000'000, "EST"),
        datetime(TzKind::kZone, 0, "Europe/Paris"), opaque(T::kDecimal, "-1.2345E+7"),
        ndarray("<i4", {2, 3}, std::string(24, '\x05')), opaque(T::kPickle, "\x80\x05K\x01."),
    });
}

// --- exact encodings (docs/format.md, "Value encoding")

TEST(ValueEncoding, NoneAndBoolsAreSingleTagBytes) {
    EXPECT_EQ(hex(encode(Value::none())), "00");
    EXPECT_EQ(hex(encode(Value::boolean(false))), "01");
    EXPECT_EQ(hex(encode(Value::boolean(true))), "02");
}

TEST(ValueEncoding, IntegersUseTagFivePlusMinimalTwosComplementWidth) {
    EXPECT_EQ(hex(encode(Value::integer(0))), "05");
    EXPECT_EQ(hex(encode(Value::integer(1))), "06 01");
    EXPECT_EQ(hex(encode(Value::integer(-1))), "06 FF");
    EXPECT_EQ(hex(encode(Value::integer(127))), "06 7F");
    EXPECT_EQ(hex(encode(Value::integer(128))), "07 80 00");
    EXPECT_EQ(hex(encode(Value::integer(-128))), "06 80");
    EXPECT_EQ(hex(encode(Value::integer(-129))), "07 7F FF");
    EXPECT_EQ(hex(encode(Value::integer(std::int64_t{1} << 47))), "0C 00 00 00 00 00 80 00");
    EXPECT_EQ(hex(encode(Value::integer(std::numeric_limits<std::int64_t>::max()))), "0D FF FF FF FF FF FF FF 7F");
    EXPECT_EQ(hex(encode(Value::integer(std::numeric_limits<std::int64_t>::min()))), "0D 00 00 00 00 00 00 00 80");
}

TEST(ValueEncoding, FloatIsTagThreeThenLittleEndianBits) {
    EXPECT_EQ(hex(encode(Value::real(1.5))), "03 00 00 00 00 00 00 F8 3F");
    EXPECT_EQ(hex(encode(Value::real(-0.0))), "03 00 00 00 00 00 00 00 80");
    EXPECT_EQ(hex(encode(Value::real(0.0))), "03 00 00 00 00 00 00 00 00");
}

TEST(ValueEncoding, ShortStrAndBytesCarryTheirLengthInTheTag) {
    EXPECT_EQ(hex(encode(Value::str(""))), "20");
    EXPECT_EQ(hex(encode(Value::str("abc"))), "23 61 62 63");
    EXPECT_EQ(hex(encode(Value::str("\xC3\xA9"))), "22 C3 A9");  // "é": length counts UTF-8 bytes
    EXPECT_EQ(hex(encode(Value::bytes(""))), "40");
    EXPECT_EQ(hex(encode(Value::bytes(std::string("\0\xFF", 2)))), "42 00 FF");
    const std::string s31(31, 'a');
    EXPECT_EQ(encode(Value::str(s31)), "\x3F" + s31);
    EXPECT_EQ(encode(Value::bytes(s31)), "\x5F" + s31);
}

TEST(ValueEncoding, LongStrAndBytesUseTagThenU32Length) {
    const std::string s32(32, 'z');
    EXPECT_EQ(encode(Value::str(s32)), bytes_of({0x10, 0x20, 0, 0, 0}) + s32);
    EXPECT_EQ(encode(Value::bytes(s32)), bytes_of({0x11, 0x20, 0, 0, 0}) + s32);
    const std::string s1000(1000, 'q');
    EXPECT_EQ(encode(Value::str(s1000)), bytes_of({0x10, 0xE8, 0x03, 0, 0}) + s1000);
}

TEST(ValueEncoding, TupleIsTagCountThenItems) {
    EXPECT_EQ(hex(encode(tuple({Value::integer(1), Value::str("a")}))), "12 02 00 00 00 06 01 21 61");
    EXPECT_EQ(hex(encode(tuple({}))), "12 00 00 00 00");
    EXPECT_EQ(hex(encode(list({Value::none()}))), "13 01 00 00 00 00");
    EXPECT_EQ(hex(encode(dict({Value::str("k"), Value::boolean(true)}))), "14 01 00 00 00 21 6B 02");
}

TEST(ValueEncoding, EqualLookingValuesOfDifferentTypesEncodeDifferently) {
    // Stores compare keys by encoding: 1, 1.0, True, "1" and b"1" must be five distinct keys.
    const std::vector<std::string> encs = {encode(Value::integer(1)), encode(Value::real(1.0)),
                                           encode(Value::boolean(true)), encode(Value::str("1")),
                                           encode(Value::bytes("1"))};
    for (std::size_t a = 0; a < encs.size(); ++a)
        for (std::size_t b = a + 1; b < encs.size(); ++b) EXPECT_NE(encs[a], encs[b]) << a << " vs " << b;
    EXPECT_NE(encode(Value::real(0.0)), encode(Value::real(-0.0)));
    EXPECT_NE(encode(tuple({})), encode(list({})));
}

// --- round trips

TEST(ValueRoundTrip, NoneAndBools) {
    EXPECT_EQ(decode(encode(Value::none())).type, T::kNone);
    const Value t = decode(encode(Value::boolean(true)));
    ASSERT_EQ(t.type, T::kBool);
    EXPECT_TRUE(t.b);
    const Value f = decode(encode(Value::boolean(false)));
    ASSERT_EQ(f.type, T::kBool);
    EXPECT_FALSE(f.b);
}

TEST(ValueRoundTrip, IntegersAtEveryWidthBoundaryKeepValueAndMinimalWidth) {
    std::vector<std::pair<std::int64_t, int>> cases = {{0, 0}};  // value, expected payload width
    for (int n = 1; n <= 8; ++n) {
        const int bits = 8 * n - 1;
        const std::int64_t hi = n == 8 ? std::numeric_limits<std::int64_t>::max() : (std::int64_t{1} << bits) - 1;
        const std::int64_t lo = n == 8 ? std::numeric_limits<std::int64_t>::min() : -(std::int64_t{1} << bits);
        cases.push_back({hi, n});
        cases.push_back({lo, n});
        if (n < 8) {
            cases.push_back({hi + 1, n + 1});
            cases.push_back({lo - 1, n + 1});
        }
    }
    for (auto [v, width] : cases) {
        const std::string enc = encode(Value::integer(v));
        ASSERT_EQ(enc.size(), static_cast<std::size_t>(1 + width)) << v;
        EXPECT_EQ(static_cast<std::uint8_t>(enc[0]), 0x05 + width) << v;
        const Value back = decode(enc);
        ASSERT_EQ(back.type, T::kInt) << v;
        EXPECT_EQ(back.i, v);
    }
}

TEST(ValueRoundTrip, RandomIntegersRoundTrip) {
    std::mt19937_64 rng(7);
    for (int k = 0; k < 10'000; ++k) {
        const auto v = static_cast<std::int64_t>(rng() >> (rng() % 64));
        const auto w = k % 2 ? v : -v;
        const Value back = decode(encode(Value::integer(w)));
        ASSERT_EQ(back.type, T::kInt);
        ASSERT_EQ(back.i, w);
    }
}

TEST(ValueRoundTrip, BigIntKeepsItsTwosComplementBytes) {
    const std::string mag = std::string("\x01\x02\x03\x04\x05\x06\x07\x08\x09\xFF", 10);
    const Value v = opaque(T::kBigInt, mag);
    const std::string enc = encode(v);
    EXPECT_EQ(enc, bytes_of({0x04, 10, 0, 0, 0}) + mag);
    const Value back = decode(enc);
    ASSERT_EQ(back.type, T::kBigInt);
    EXPECT_EQ(back.data, mag);
}

TEST(ValueRoundTrip, BigIntThatFitsEightBytesIsRefused) {
    // Canonical form: a value that fits 64 bits must be a kInt, never a BigInt.
    EXPECT_TRUE(mmstore_test::throws_error([] { encode(opaque(T::kBigInt, std::string(8, '\1'))); }, ErrorCode::kEncode));
}

TEST(ValueRoundTrip, FloatsKeepTheirExactBits) {
    const std::uint64_t patterns[] = {
        0x8000000000000000ull,  // -0.0
        0x7FF8000000000000ull,  // quiet NaN
        0x7FF8000000000123ull,  // NaN with payload
        0xFFF0000000000001ull,  // negative signalling NaN
        0x7FF0000000000000ull,  // +inf
        0xFFF0000000000000ull,  // -inf
        0x0000000000000001ull,  // smallest denormal
        0x3FF0000000000000ull,  // 1.0
    };
    for (std::uint64_t bits : patterns) {
        double d;
        std::memcpy(&d, &bits, 8);
        const Value back = decode(encode(Value::real(d)));
        ASSERT_EQ(back.type, T::kFloat);
        std::uint64_t got;
        std::memcpy(&got, &back.f, 8);
        EXPECT_EQ(got, bits) << std::hex << bits;
    }
}

TEST(ValueRoundTrip, StrAndBytesOfEveryLengthAroundTheShortLimit) {
    std::mt19937_64 rng(11);
    for (std::size_t n : {0, 1, 7, 30, 31, 32, 33, 255, 256, 65'536}) {
        const std::string s = mmstore_test::random_text(rng, n);
        const Value vs = decode(encode(Value::str(s)));
        ASSERT_EQ(vs.type, T::kStr);
        EXPECT_EQ(vs.data, s);
        const std::string b = mmstore_test::random_bytes(rng, n);
        const Value vb = decode(encode(Value::bytes(b)));
        ASSERT_EQ(vb.type, T::kBytes);
        EXPECT_EQ(vb.data, b);
        EXPECT_EQ(encode(Value::str(s)).size(), n + (n <= 31 ? 1 : 5));
    }
}

TEST(ValueRoundTrip, NestedTupleListDictKeepStructureAndOrder) {
    const Value v = dict({
        Value::str("b"), tuple({Value::integer(1), list({Value::integer(2), tuple({})})}),
        Value::str("a"), dict({tuple({Value::integer(1), Value::integer(2)}), Value::none()}),
        Value::integer(3), list({}),
    });
    const Value back = decode(encode(v));
    ASSERT_EQ(back.type, T::kDict);
    ASSERT_EQ(back.items.size(), 6u);
    // Insertion order, not sorted order.
    EXPECT_EQ(back.items[0].data, "b");
    EXPECT_EQ(back.items[2].data, "a");
    ASSERT_EQ(back.items[1].type, T::kTuple);
    ASSERT_EQ(back.items[1].items[1].type, T::kList);
    EXPECT_EQ(back.items[1].items[1].items[0].i, 2);
    EXPECT_EQ(back.items[3].items[0].type, T::kTuple);
    expect_round_trip(v);
}

TEST(ValueRoundTrip, SetEncodingIsIndependentOfElementOrder) {
    std::vector<Value> items = {Value::integer(5), Value::str("five"), Value::bytes("5"), Value::real(5.0),
                                tuple({Value::integer(5)}), Value::none(), Value::integer(-5)};
    for (T kind : {T::kSet, T::kFrozenSet}) {
        const std::string reference = encode(Value::sequence(kind, items));
        std::mt19937_64 rng(3);
        for (int k = 0; k < 20; ++k) {
            std::vector<Value> shuffled = items;
            std::shuffle(shuffled.begin(), shuffled.end(), rng);
            EXPECT_EQ(hex(encode(Value::sequence(kind, shuffled))), hex(reference));
        }
        // A duplicate element does not change the set.
        std::vector<Value> dup = items;
        dup.push_back(Value::integer(5));
        EXPECT_EQ(hex(encode(Value::sequence(kind, dup))), hex(reference));
        const Value back = decode(reference);
        ASSERT_EQ(back.type, kind);
        EXPECT_EQ(back.items.size(), items.size());
        expect_round_trip(back);
    }
    EXPECT_NE(encode(Value::sequence(T::kSet, items)), encode(Value::sequence(T::kFrozenSet, items)));
}

TEST(ValueRoundTrip, DateKeepsYearMonthDay) {
    for (const Value& d : {date(2024, 2, 29), date(1, 1, 1), date(9999, 12, 31), date(-44, 3, 15)}) {
        const Value back = decode(encode(d));
        ASSERT_EQ(back.type, T::kDate);
        EXPECT_EQ(back.year, d.year);
        EXPECT_EQ(back.month, d.month);
        EXPECT_EQ(back.day, d.day);
    }
    EXPECT_EQ(encode(date(2024, 2, 29)).size(), 7u);  // tag, i32 year, u8 month, u8 day
}

TEST(ValueRoundTrip, DateTimeKeepsEveryFieldForEachTimezoneKind) {
    const Value cases[] = {datetime(TzKind::kNaive), datetime(TzKind::kUtc),
                           datetime(TzKind::kFixed, 19'800'000'000, "IST"),  // +05:30
                           datetime(TzKind::kFixed, -3'600'000'000, ""),
                           datetime(TzKind::kZone, 0, "America/Argentina/ComodRivadavia")};
    std::vector<std::string> encs;
    for (const Value& v : cases) {
        const std::string enc = encode(v);
        encs.push_back(enc);
        const Value back = decode(enc);
        ASSERT_EQ(back.type, T::kDateTime);
        EXPECT_EQ(back.year, v.year);
        EXPECT_EQ(back.month, v.month);
        EXPECT_EQ(back.day, v.day);
        EXPECT_EQ(back.hour, v.hour);
        EXPECT_EQ(back.minute, v.minute);
        EXPECT_EQ(back.second, v.second);
        EXPECT_EQ(back.microsecond, v.microsecond);
        EXPECT_EQ(back.fold, v.fold);
        EXPECT_EQ(back.tz, v.tz);
        if (v.tz == TzKind::kFixed) EXPECT_EQ(back.utcoffset_us, v.utcoffset_us);
        EXPECT_EQ(back.tzname, v.tzname);
    }
    // Naive and UTC instants with the same wall time are different values.
    EXPECT_NE(encs[0], encs[1]);
}

TEST(ValueRoundTrip, DecimalKeepsItsText) {
    for (std::string text : {"0", "-0", "3.14159265358979323846264338327950288", "1E+999", "NaN", "-Infinity"}) {
        const Value back = decode(encode(opaque(T::kDecimal, text)));
        ASSERT_EQ(back.type, T::kDecimal);
        EXPECT_EQ(back.data, text);
    }
}

TEST(ValueRoundTrip, NdArrayDataStarts16ByteAlignedFromTheEncodingStart) {
    // Vary dtype length and ndim so that every padding length 0..15 is exercised.
    std::set<std::size_t> paddings;
    std::mt19937_64 rng(5);
    for (std::size_t dl = 0; dl <= 16; ++dl) {
        for (std::size_t nd = 0; nd <= 4; ++nd) {
            std::string dtype = "<f8" + std::string(dl, 'x');
            std::vector<std::uint64_t> shape(nd, 3);
            std::uint64_t elems = 1;
            for (auto s : shape) elems *= s;
            const std::string data = mmstore_test::random_bytes(rng, elems * 8);
            const Value v = ndarray(dtype, shape, data);
            const std::string enc = encode(v);
            const std::size_t data_at = enc.size() - data.size();
            EXPECT_EQ(data_at % 16, 0u) << "dtype length " << dtype.size() << " ndim " << nd;
            EXPECT_EQ(enc.substr(data_at), data);
            const std::size_t pad_at = 1 + 1 + dtype.size() + 1 + 8 * nd + 8;  // tag, dl, dtype, nd, shape, nbytes
            const std::size_t pad = static_cast<std::uint8_t>(enc[pad_at]);
            EXPECT_EQ(pad_at + 1 + pad, data_at);
            paddings.insert(pad);
            const Value back = decode(enc);
            ASSERT_EQ(back.type, T::kNdArray);
            EXPECT_EQ(back.dtype, dtype);
            EXPECT_EQ(back.shape, shape);
            EXPECT_EQ(back.data, data);
        }
    }
    EXPECT_EQ(paddings.size(), 16u);
}

TEST(ValueRoundTrip, PickleIsKeptAsOpaquePayload) {
    const std::string payload = std::string("\x80\x05\x95\x0b\x00\x00\x00\x00\x00\x00\x00\x8c\x07unknown\x94.", 22);
    const std::string enc = encode(opaque(T::kPickle, payload));
    EXPECT_EQ(enc, bytes_of({0x1B, 22, 0, 0, 0}) + payload);
    const Value back = decode(enc);
    ASSERT_EQ(back.type, T::kPickle);
    EXPECT_EQ(back.data, payload);
}

TEST(ValueRoundTrip, KitchenSinkOfEveryTypeRoundTrips) { expect_round_trip(kitchen_sink()); }

TEST(ValueHelpers, SkipReturnsTheEndOfEachConcatenatedValue) {
    const Value parts[] = {Value::integer(300), kitchen_sink(), Value::str(std::string(50, 's')), Value::none()};
    std::string buf;
    std::vector<std::size_t> ends;
    for (const Value& p : parts) {
        encode(p, buf);  // appends
        ends.push_back(buf.size());
    }
    std::size_t pos = 0;
    for (std::size_t end : ends) {
        pos = mmstore::codec::skip(buf, pos);
        EXPECT_EQ(pos, end);
    }
}

TEST(ValueHelpers, PayloadViewPointsAtStrAndBytesContent) {
    std::uint8_t family = 0;
    std::string_view payload;
    const std::string short_str = encode(Value::str("hey"));
    ASSERT_TRUE(mmstore::codec::payload_view(short_str, family, payload));
    EXPECT_EQ(family, mmstore::codec::tag::kStr);
    EXPECT_EQ(payload, "hey");
    EXPECT_EQ(payload.data(), short_str.data() + 1);  // zero-copy
    const std::string long_bytes = encode(Value::bytes(std::string(40, 'b')));
    ASSERT_TRUE(mmstore::codec::payload_view(long_bytes, family, payload));
    EXPECT_EQ(family, mmstore::codec::tag::kBytes);
    EXPECT_EQ(payload, std::string(40, 'b'));
    EXPECT_FALSE(mmstore::codec::payload_view(encode(Value::integer(5)), family, payload));
}

// --- malformed input

TEST(ValueDecodeMalformed, EveryTruncationOfANestedEncodingIsRejected) {
    const std::string enc = encode(kitchen_sink());
    for (std::size_t n = 0; n < enc.size(); ++n) {
        // A strict prefix is never one complete value: the tag fixes the length.
        const std::string cut = enc.substr(0, n);  // own buffer, so a read past the end is caught by ASan
        EXPECT_TRUE(mmstore_test::throws_format_error([&] { decode(cut); }, {ErrorCode::kCorrupt})) << "length " << n;
    }
}

TEST(ValueDecodeMalformed, RandomMutationsDecodeOrThrowFormatError) {
    const std::string enc = encode(kitchen_sink());
    std::mt19937_64 rng(mmstore_test::seed(20240229));
    int decoded = 0, rejected = 0;
    for (int k = 0; k < 20'000; ++k) {
        std::string m = enc;
        const int edits = 1 + static_cast<int>(rng() % 4);
        for (int e = 0; e < edits; ++e) {
            const std::size_t at = rng() % m.size();
            switch (rng() % 4) {
                case 0: m[at] = static_cast<char>(rng()); break;                       // overwrite a byte
                case 1: m[at] = static_cast<char>(m[at] ^ (1 << (rng() % 8))); break;  // flip a bit
                case 2: m.erase(at, 1 + rng() % 4); break;                            // delete bytes
                case 3: m.insert(at, 1, static_cast<char>(rng())); break;             // insert a byte
            }
            if (m.empty()) m.push_back('\0');
        }
        try {
            const Value v = decode(m);
            ++decoded;
            (void)v;
        } catch (const FormatError& e) {
            ASSERT_EQ(e.code(), ErrorCode::kCorrupt) << e.what();
            ++rejected;
        } catch (const std::exception& e) {
            FAIL() << "mutation " << k << " threw a non-FormatError: " << e.what() << "\n" << hex(m);
        }
    }
    EXPECT_GT(rejected, 0);
    EXPECT_GT(decoded, 0);  // some mutations (e.g. in payload bytes) stay valid
}

TEST(ValueDecodeMalformed, RandomBytesDecodeOrThrowFormatError) {
    std::mt19937_64 rng(mmstore_test::seed(99));
    for (int k = 0; k < 20'000; ++k) {
        const std::string m = mmstore_test::random_bytes(rng, 1 + rng() % 64);
        try {
            (void)decode(m);
        } catch (const FormatError&) {
        } catch (const std::exception& e) {
            FAIL() << "threw a non-FormatError: " << e.what() << "\n" << hex(m);
        }
    }
}

TEST(ValueDecodeMalformed, TrailingBytesAreRejected) {
    for (const Value& v : {Value::none(), Value::integer(128), Value::str("abc"), kitchen_sink()}) {
        const std::string enc = encode(v) + '\0';
        EXPECT_TRUE(mmstore_test::throws_format_error([&] { decode(enc); }, {ErrorCode::kCorrupt}));
    }
}

TEST(ValueDecodeMalformed, EmptyInputIsRejected) {
    EXPECT_TRUE(mmstore_test::throws_format_error([] { decode(""); }, {ErrorCode::kCorrupt}));
}

TEST(ValueDecodeMalformed, UnassignedTagsAreRejected) {
    for (int t : {0x0E, 0x0F, 0x1C, 0x1D, 0x1E, 0x1F, 0x60, 0x7F, 0x80, 0xFF}) {
        const std::string enc = bytes_of({t}) + std::string(16, '\0');
        EXPECT_TRUE(mmstore_test::throws_format_error([&] { decode(enc); }, {ErrorCode::kCorrupt})) << t;
    }
}

TEST(ValueDecodeMalformed, LengthsAndCountsBeyondTheBufferAreRejected) {
    const std::string cases[] = {
        bytes_of({0x10, 0xFF, 0xFF, 0xFF, 0xFF}) + "abc",      // long str
        bytes_of({0x11, 0x04, 0, 0, 0}) + "abc",               // long bytes one short
        bytes_of({0x12, 0xFF, 0xFF, 0xFF, 0xFF, 0x00}),        // tuple count
        bytes_of({0x14, 0x01, 0, 0, 0, 0x00}),                 // dict of one key, no value
        bytes_of({0x3F}) + "short",                            // short str claiming 31 bytes
        bytes_of({0x0D, 1, 2, 3}),                             // 8-byte int with 3 bytes
        bytes_of({0x1A, 0x03, '<', 'f', '8', 0x01, 1, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}),
    };
    for (const std::string& enc : cases)
        EXPECT_TRUE(mmstore_test::throws_format_error([&] { decode(enc); }, {ErrorCode::kCorrupt})) << hex(enc);
}

TEST(ValueDecodeMalformed, DateTimeWithUnknownTimezoneKindIsRejected) {
    std::string enc = encode(datetime(TzKind::kUtc));
    enc.back() = 9;  // the tz kind is the last byte of a UTC datetime
    EXPECT_TRUE(mmstore_test::throws_format_error([&] { decode(enc); }, {ErrorCode::kCorrupt}));
}

TEST(ValueDecodeMalformed, NdArrayWithMisalignedPaddingIsRejected) {
    std::string enc = encode(ndarray("<u1", {4}, "abcd"));
    const std::size_t pad_at = 1 + 1 + 3 + 1 + 8 + 8;  // tag, dtype length, "<u1", ndim, shape[0], nbytes
    const std::uint8_t pad = static_cast<std::uint8_t>(enc[pad_at]);
    ASSERT_LE(pad, 15);
    std::string bad = enc;
    bad[pad_at] = static_cast<char>((pad + 1) % 16);
    EXPECT_TRUE(mmstore_test::throws_format_error([&] { decode(bad); }, {ErrorCode::kCorrupt}));
}

std::string nested_tuples(int depth) {
    std::string enc;
    for (int d = 0; d < depth; ++d) enc += bytes_of({0x12, 1, 0, 0, 0});
    enc += '\0';  // innermost: None
    return enc;
}

TEST(ValueDecodeMalformed, NestingOf200LevelsDecodes) {
    const Value v = decode(nested_tuples(mmstore::codec::kMaxDepth));
    EXPECT_EQ(v.type, T::kTuple);
}

TEST(ValueDecodeMalformed, NestingDeeperThan200IsRejected) {
    EXPECT_TRUE(mmstore_test::throws_format_error([] { decode(nested_tuples(mmstore::codec::kMaxDepth + 1)); },
                                                  {ErrorCode::kCorrupt}));
    // Far deeper input must fail at the limit, not overflow the stack.
    EXPECT_TRUE(mmstore_test::throws_format_error([] { decode(nested_tuples(1'000'000)); }, {ErrorCode::kCorrupt}));
    EXPECT_TRUE(mmstore_test::throws_format_error(
        [] { mmstore::codec::skip(nested_tuples(mmstore::codec::kMaxDepth + 1), 0); }, {ErrorCode::kCorrupt}));
}

TEST(ValueEncodeLimits, EncodingAValueNestedDeeperThan200IsRefused) {
    auto nest = [](int depth) {
        Value v = Value::none();
        for (int d = 0; d < depth; ++d) v = tuple({std::move(v)});
        return v;
    };
    EXPECT_EQ(encode(nest(mmstore::codec::kMaxDepth)), nested_tuples(mmstore::codec::kMaxDepth));
    EXPECT_TRUE(mmstore_test::throws_error([&] { encode(nest(mmstore::codec::kMaxDepth + 1)); }, ErrorCode::kEncode));
}

TEST(ValueEncodeLimits, DictWithOddItemCountIsRefused) {
    EXPECT_TRUE(mmstore_test::throws_error([] { encode(dict({Value::integer(1)})); }, ErrorCode::kEncode));
}

}  // namespace
