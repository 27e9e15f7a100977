// mmstore/codec/value.hpp
//
// The value codec (DESIGN.md layer 5): one compact, language-neutral, tagged encoding shared by C++ and
// Python. docs/format.md ("Value encoding") is the specification; this header is its C++ implementation.
//
// Encodings are canonical -- one value has exactly one encoding -- because stores compare keys by their
// encoded bytes and hash them with hash64 (XXH3-64). Consequences, documented for users: 1, 1.0 and True are
// three different keys; -0.0 and 0.0 differ; sets are encoded with elements sorted by their encodings.
//
// C++ decodes every tag; a pickle payload decodes to an opaque Value of Type::kPickle (bytes kept as is).
// decode() bounds-checks every length against the buffer and limits nesting to kMaxDepth, throwing
// FormatError (ErrorCode::kCorrupt) on malformed input: never a crash, never a read past the end.
// Thread safety: all functions are pure and thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mmstore::codec {

namespace tag {
inline constexpr std::uint8_t kNone = 0x00;
inline constexpr std::uint8_t kFalse = 0x01;
inline constexpr std::uint8_t kTrue = 0x02;
inline constexpr std::uint8_t kFloat = 0x03;      // 8 bytes IEEE-754 binary64
inline constexpr std::uint8_t kBigInt = 0x04;     // u32 n (> 8), n bytes two's complement
inline constexpr std::uint8_t kInt0 = 0x05;       // 0x05 + n: n (0..8) bytes two's complement, minimal
inline constexpr std::uint8_t kInt8 = 0x0D;
inline constexpr std::uint8_t kStr = 0x10;        // u32 len, UTF-8
inline constexpr std::uint8_t kBytes = 0x11;      // u32 len, raw
inline constexpr std::uint8_t kTuple = 0x12;      // u32 count, items
inline constexpr std::uint8_t kList = 0x13;       // u32 count, items
inline constexpr std::uint8_t kDict = 0x14;       // u32 count, key value pairs in insertion order
inline constexpr std::uint8_t kSet = 0x15;        // u32 count, items sorted by encoding
inline constexpr std::uint8_t kFrozenSet = 0x16;  // u32 count, items sorted by encoding
inline constexpr std::uint8_t kDate = 0x17;       // i32 year, u8 month, u8 day
inline constexpr std::uint8_t kDateTime = 0x18;   // see docs/format.md
inline constexpr std::uint8_t kDecimal = 0x19;    // u32 len, ASCII str(Decimal)
inline constexpr std::uint8_t kNdArray = 0x1A;    // see docs/format.md
inline constexpr std::uint8_t kPickle = 0x1B;     // u32 len, pickle (protocol 5) payload
inline constexpr std::uint8_t kRecord = 0x1C;     // u32 type code, u32 len, packed record (docs/format.md §8)
inline constexpr std::uint8_t kTableRef = 0x1D;   // 6 bytes LE: offset of a nested table's cell (SharedDict)
inline constexpr std::uint8_t kShortStr = 0x20;   // 0x20 + len (0..31), UTF-8
inline constexpr std::uint8_t kShortBytes = 0x40; // 0x40 + len (0..31), raw
inline constexpr std::uint32_t kShortMax = 31;
}  // namespace tag

inline constexpr int kMaxDepth = 200;

enum class TzKind : std::uint8_t { kNaive = 0, kFixed = 1, kUtc = 2, kZone = 3 };

struct Value {
    enum class Type : std::uint8_t {
        kNone, kBool, kInt, kBigInt, kFloat, kStr, kBytes, kTuple, kList, kDict, kSet, kFrozenSet,
        kDate, kDateTime, kDecimal, kNdArray, kPickle, kRecord, kTableRef
    };
    Type type = Type::kNone;
    bool b = false;
    std::int64_t i = 0;
    double f = 0.0;
    // kStr: UTF-8; kBytes; kBigInt: two's complement little-endian; kDecimal: text; kPickle: payload;
    // kNdArray: raw C-order data; kRecord: the packed record (mmstore/records.hpp, type code in `i`).
    std::string data;
    // kTuple/kList/kSet/kFrozenSet: elements; kDict: key0, value0, key1, value1, ...
    std::vector<Value> items;
    // kDate / kDateTime
    std::int32_t year = 0;
    std::uint8_t month = 0, day = 0, hour = 0, minute = 0, second = 0, fold = 0;
    std::uint32_t microsecond = 0;
    TzKind tz = TzKind::kNaive;
    std::int64_t utcoffset_us = 0;  // kFixed
    std::string tzname;             // kFixed: name; kZone: IANA key
    // kNdArray
    std::string dtype;              // numpy dtype.str, e.g. "<f8"
    std::vector<std::uint64_t> shape;

    static Value none() { return {}; }
    static Value boolean(bool v) { Value x; x.type = Type::kBool; x.b = v; return x; }
    static Value integer(std::int64_t v) { Value x; x.type = Type::kInt; x.i = v; return x; }
    static Value real(double v) { Value x; x.type = Type::kFloat; x.f = v; return x; }
    static Value str(std::string_view s) { Value x; x.type = Type::kStr; x.data = s; return x; }
    static Value bytes(std::string_view s) { Value x; x.type = Type::kBytes; x.data = s; return x; }
    static Value sequence(Type t, std::vector<Value> items) { Value x; x.type = t; x.items = std::move(items); return x; }

    friend bool operator==(const Value& a, const Value& b);
};

// Appends the canonical encoding of `v` to `out`.
void encode(const Value& v, std::string& out);
std::string encode(const Value& v);
// Decodes one value occupying exactly `buf`; throws FormatError otherwise.
Value decode(std::string_view buf);
// Returns the end position of the value starting at `pos`, validating structure and bounds. O(1) without
// allocation for scalars, str and bytes; containers are walked.
std::size_t skip(std::string_view buf, std::size_t pos, int depth = 0);

// False when `buf` (a valid encoding) is a scalar in a form the encoder never writes: an int longer than its
// minimal two's complement, a big-int form for an int that fits 8 bytes, or the long str/bytes form for a
// payload under 32 bytes. Store keys are compared by encoding, so repair() and verify() reject such keys.
// Containers are accepted as they are (their items are checked by the Python and C++ decoders' rules).
bool canonical_scalar(std::string_view buf) noexcept;

// Helpers for the minimal two's complement integer form shared with the Python codec.
void append_int(std::int64_t v, std::string& out);
void append_u32(std::uint32_t v, std::string& out);
void append_u64(std::uint64_t v, std::string& out);

// `buf` must be a valid encoding. If it is a str or bytes value, returns its payload (zero-copy).
bool payload_view(std::string_view buf, std::uint8_t& tag_family, std::string_view& payload) noexcept;

}  // namespace mmstore::codec
