// mmstore/records.hpp
//
// Typed records (DESIGN.md, face "Typed records"): schemas, packed records, read-only record arrays and
// read-only hash mappings built once from a stream. This is the C++ face of what Python builds with
// RecordArray.build / Mapping.build; both languages read and write the same files (docs/format.md §8).
//
//   Schema            named, typed fields. Fixed-width fields (ints, floats, bool) are stored inline;
//                     every other type (str, bytes, date, datetime, Decimal, tuple, list, dict, frozenset,
//                     ndarray, object, nested record) is stored as one value of the codec
//                     (mmstore/codec/value.hpp). A schema is stored in each file as a codec value, never a
//                     pickle, so opening an untrusted file runs no code.
//   packed record     ("row") one record as a self-delimiting byte string: Schema::pack, RecordView::from_row.
//   RecordArray       a file (or buffer) of N records stored column by column: every fixed-width field is a
//                     contiguous little-endian array (zero-copy column views); str and bytes fields are in
//                     Arrow's layout (offsets + bytes, zero-copy Arrow arrays); other variable fields are u64
//                     offsets into one heap of codec values (identical values stored once when deduplicated).
//   Mapping           keys (codec-encoded, hashed with hash64) to records or to plain values, through a
//                     build-once index sorted by hash with a bucket directory (FrozenIndex, docs/format.md).
//                     Exact maps store the keys; approximate maps only their hashes (smaller, and a lookup can
//                     return the values of another key whose 64-bit hash collides).
//   *Builder          stream records in with bounded memory; write to a temporary file renamed into place by
//                     finish(). MappingBuilder partitions entries by hash into temporary files and builds
//                     partition by partition within BuildOptions::memory_budget.
//
// Validation: every offset and length read from a file is bounds-checked; malformed input throws
// FormatError (kForeign, kWrongKind, kVersion, kTruncated, kCorrupt) and never reads out of bounds.
// Opening checks the XXH3 checksum of every section (O(file size), once per handle), so every value a
// read returns was checked; verify() repeats that check.
//
// Thread and process safety: readers (RecordArray, Mapping, RecordView) are immutable and safe to use from
// any number of threads and processes at once, copies included (they share one mapping through a
// shared_ptr). A writer never changes a built file: a build (or merge) writes a temporary file and renames
// it over the path, so handles open on the old file keep reading it, whole and unchanged, while any number
// of builds replace it in this process or others; open() again to see the new one (tests/cpp/threads_test.cpp,
// under TSan). Modifying a built file in place by other means (truncating it, writing into it) is outside
// this contract. Builders are single-threaded objects.
//
// Lifetimes: a RecordArray/Mapping opened from a path owns its mapping; copies share it. A RecordView and
// every string_view it returns point into that mapping (or the caller's buffer) and stay valid while any
// copy of the RecordArray/Mapping it came from is alive (for from_buffer: while the buffer is).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mmstore/codec/value.hpp"

namespace mmstore {

// Stable type codes (stored in files; never renumber).
enum class FieldType : std::uint8_t {
    kInt8 = 1, kInt16 = 2, kInt32 = 3, kInt64 = 4,
    kUInt8 = 5, kUInt16 = 6, kUInt32 = 7, kUInt64 = 8,
    kFloat32 = 9, kFloat64 = 10, kBool = 11,
    kBytes = 32, kStr = 33, kDate = 34, kDateTime = 35, kDecimal = 36, kTuple = 37, kList = 38, kDict = 39,
    kFrozenSet = 40, kNdArray = 41, kObject = 42, kRecord = 43,
};
bool is_fixed(FieldType t) noexcept;
// Bytes of a fixed-width field; 0 for variable fields (which use a 4-byte slot in a row, 8 in a column).
unsigned fixed_width(FieldType t) noexcept;
const char* field_type_name(FieldType t) noexcept;
bool valid_field_type(std::uint8_t code) noexcept;

class Schema;
using SchemaPtr = std::shared_ptr<const Schema>;

struct FieldSpec {
    std::string name;
    FieldType type;
    SchemaPtr nested;  // kRecord only: the schema of the nested record
};

// Immutable after construction; share it through SchemaPtr.
class Schema {
public:
    // Throws Error(kInvalidArgument) on duplicate or empty names, or a kRecord field without a schema.
    Schema(std::string name, std::vector<FieldSpec> fields, std::uint32_t type_code = 0);

    const std::string& name() const noexcept { return name_; }
    // The stable code under which an `object` field stores records of this schema (0: none).
    std::uint32_t type_code() const noexcept { return type_code_; }
    std::size_t size() const noexcept { return fields_.size(); }
    const FieldSpec& field(std::size_t i) const { return fields_.at(i); }
    std::optional<std::size_t> index_of(std::string_view name) const noexcept;

    // Packed row layout: u32 total length, presence bitmap, fixed fields, u32 slots of variable fields.
    std::uint32_t bitmap_bytes() const noexcept { return bitmap_bytes_; }
    // Fixed field: offset of its value in a row; variable field: offset of its u32 slot.
    std::uint32_t row_offset(std::size_t i) const noexcept { return row_off_[i]; }
    std::uint32_t row_header_size() const noexcept { return header_size_; }

    // The schema as a codec value (docs/format.md §8.2) and back; decode throws FormatError(kCorrupt).
    codec::Value to_value() const;
    std::string encode() const { return codec::encode(to_value()); }
    static SchemaPtr from_value(const codec::Value& v, int depth = 0);
    static SchemaPtr decode(std::string_view blob);
    bool operator==(const Schema& o) const { return encode() == o.encode(); }

    // Packs one record. `values[i]` is field i (Value::none() = missing/None). Fixed fields take kInt/kBool
    // (ints, bool) or kFloat/kInt (floats); variable fields any value of their family. Throws Error(kEncode)
    // on a type mismatch or an out-of-range integer.
    std::string pack(const std::vector<codec::Value>& values) const;

private:
    std::string name_;
    std::vector<FieldSpec> fields_;
    std::uint32_t type_code_;
    std::uint32_t bitmap_bytes_ = 0, header_size_ = 0;
    std::vector<std::uint32_t> row_off_;
};

namespace detail {
struct ColumnSet;
struct TypedFile;
}  // namespace detail

// One record: a row of a RecordArray or Mapping, or a packed row. Cheap to copy (pointers only).
class RecordView {
public:
    // Validates the row header against `schema` (FormatError on mismatch). `row` must outlive the view.
    static RecordView from_row(const Schema& schema, std::string_view row);

    const Schema& schema() const noexcept { return *schema_; }
    bool is_null(std::size_t field) const;
    // Fixed-width integer or bool fields (0 when null; a uint64 above INT64_MAX wraps: use get());
    // Error(kInvalidArgument) for other fields.
    std::int64_t get_int(std::size_t field) const;
    // float32/float64 (ints convert); NaN when null.
    double get_float(std::size_t field) const;
    // Variable fields: the codec encoding of the value (empty when null), bounds-checked. A copy: a str or
    // bytes field of a column set stores its bytes without the codec tag (get_bytes reads them in place).
    std::string get_encoded(std::size_t field) const;
    // str and bytes fields: the UTF-8 or raw bytes, in place (valid as long as the view); nullopt when null.
    // Error(kInvalidArgument) for other fields.
    std::optional<std::string_view> get_bytes(std::size_t field) const;
    // Any field as a codec value (Value::none() when null).
    codec::Value get(std::size_t field) const;
    codec::Value get(std::string_view name) const;
    // This record as a packed row (Schema::pack of its values, without re-encoding variable values).
    std::string to_row() const;

private:
    friend class RecordArray;
    friend class Mapping;
    friend struct detail::ColumnSet;
    // The codec value of a variable field stored as one (a row, or the heap of a column set).
    std::string_view encoded_view(std::size_t field) const;
    const Schema* schema_ = nullptr;
    const detail::ColumnSet* cols_ = nullptr;  // column mode
    std::uint64_t index_ = 0;
    const char* row_ = nullptr;                // row mode
    std::uint32_t row_len_ = 0;
};

class RecordArray {
public:
    // Maps [offset, offset+length) of `path` (length 0: to the end), e.g. an uncompressed zip member.
    static RecordArray open(const std::string& path, std::uint64_t offset = 0, std::uint64_t length = 0);
    // Reads a file image held by the caller, who keeps it alive and unchanged while this object is used.
    static RecordArray from_buffer(const void* data, std::size_t len, std::string name = "<buffer>");

    std::uint64_t size() const noexcept;
    const Schema& schema() const noexcept;
    SchemaPtr schema_ptr() const noexcept;
    // Unchecked index (asserted); at() throws std::out_of_range.
    RecordView operator[](std::uint64_t i) const noexcept;
    RecordView at(std::uint64_t i) const;
    // Fixed-width field: its column (size() * width bytes, little-endian, not necessarily aligned).
    std::span<const std::byte> column(std::size_t field) const;
    // str/bytes field of a version-3 file: Arrow's offsets (size() + 1 little-endian values of offset_width()
    // bytes, 4 or 8) and data. Error(kInvalidArgument) for another field or an older file (offset_width 0).
    unsigned offset_width(std::size_t field) const;
    std::span<const std::byte> offsets(std::size_t field) const;
    std::span<const std::byte> var_data(std::size_t field) const;
    // Presence bitmap of a fixed or str/bytes field (bit i%8 of byte i/8 set = present), or nullptr when none
    // is null.
    const std::uint8_t* presence(std::size_t field) const;
    // Checks every section checksum; FormatError(kCorrupt) naming the first bad section.
    void verify() const;
    const std::string& path() const noexcept;
    // The whole file image.
    std::string_view image() const noexcept;
    // Internal (used by the Python bindings): the parsed columns.
    const detail::ColumnSet& columns() const noexcept;

private:
    std::shared_ptr<const detail::TypedFile> f_;
};

enum class KeyKind : std::uint8_t { kObject = 0, kStr = 1, kInt = 2 };

class Mapping {
public:
    static Mapping open(const std::string& path, std::uint64_t offset = 0, std::uint64_t length = 0);
    static Mapping from_buffer(const void* data, std::size_t len, std::string name = "<buffer>");

    // Entries (a multi-map counts each value).
    std::uint64_t size() const noexcept;
    bool multi() const noexcept;
    bool approximate() const noexcept;
    KeyKind key_kind() const noexcept;
    // True when values are plain values (the single field "value" of schema()), not records.
    bool plain_values() const noexcept;
    const Schema& schema() const noexcept;

    // Entries whose key encodes to `key` (for approximate maps: whose key hash equals hash64(key)), as the
    // half-open range [first, last) of entry numbers; empty when absent. Never allocates; FormatError on a
    // corrupt directory.
    std::pair<std::uint64_t, std::uint64_t> find_encoded(std::string_view key) const;
    std::pair<std::uint64_t, std::uint64_t> find(const codec::Value& key) const { return find_encoded(codec::encode(key)); }
    // Entry e (e < size()): its value record, and its key encoding (empty for approximate maps).
    RecordView value(std::uint64_t e) const;
    std::string_view key_encoded(std::uint64_t e) const;
    std::uint64_t key_hash_bits(std::uint64_t e) const;  // stored hash (low 32 bits for exact maps)
    void verify() const;
    const std::string& path() const noexcept;
    std::string_view image() const noexcept;
    // Internal (used by the Python bindings): the parsed columns of the values.
    const detail::ColumnSet& columns() const noexcept;

private:
    std::shared_ptr<const detail::TypedFile> f_;
};

struct BuildOptions {
    bool dedup = true;                               // write identical variable values once
    std::uint64_t dedup_budget = 64ull << 20;        // bytes the dedup cache may hold (it is reset when full)
    // Bound on buffered bytes: Mapping builds' entries; and a quarter of it for the sections of records,
    // kept in memory until they exceed it (then they spill to temporary files), so a build that fits writes
    // each byte once.
    std::uint64_t memory_budget = 256ull << 20;
    unsigned mode = 0600;
    std::function<void(std::uint64_t done)> progress;  // called every 65536 entries (and at the end)
    // A str/bytes field whose bytes pass this total switches to u64 offsets (Arrow's large_string); the
    // default is Arrow's int32 limit, lowered only by tests to exercise the switch.
    std::uint64_t narrow_offsets_limit = 0x7FFFFFFF;
};

class RecordArrayBuilder {
public:
    RecordArrayBuilder(std::string path, SchemaPtr schema, BuildOptions options = {});
    ~RecordArrayBuilder();  // without finish(): removes every temporary file; `path` is untouched
    RecordArrayBuilder(const RecordArrayBuilder&) = delete;
    RecordArrayBuilder& operator=(const RecordArrayBuilder&) = delete;

    // A packed row of the builder's schema (validated: FormatError(kCorrupt) if malformed).
    void add_row(std::string_view row);
    void add(const std::vector<codec::Value>& values) { add_row(schema_->pack(values)); }
    std::uint64_t count() const noexcept;
    // Writes the file and renames it into place; returns the record count.
    std::uint64_t finish();

private:
    struct Impl;
    SchemaPtr schema_;
    std::unique_ptr<Impl> impl_;
};

struct MappingOptions : BuildOptions {
    KeyKind key_kind = KeyKind::kObject;
    bool multi = false;        // keep every value of a repeated key (else the last one wins)
    bool approximate = false;  // store key hashes only
    bool plain_values = false; // values are plain values: the schema must be one field named "value"
    bool wide_keys = false;    // force the >4 GiB key layout (it is chosen automatically; set by tests)
};

class MappingBuilder {
public:
    MappingBuilder(std::string path, SchemaPtr schema, MappingOptions options = {});
    ~MappingBuilder();
    MappingBuilder(const MappingBuilder&) = delete;
    MappingBuilder& operator=(const MappingBuilder&) = delete;

    void add_encoded(std::string_view key, std::string_view row);
    // An entry known only by its key hash (merging approximate maps).
    void add_hashed(std::uint64_t hash, std::string_view row);
    void add(const codec::Value& key, const std::vector<codec::Value>& values) {
        add_encoded(codec::encode(key), schema_->pack(values));
    }
    std::uint64_t count() const noexcept;
    std::uint64_t finish();

private:
    struct Impl;
    SchemaPtr schema_;
    std::unique_ptr<Impl> impl_;
};

// Writes the union of `a` and `b` to `out`: for a key in both, `b`'s value wins (multi-maps keep all values).
// Both must have equal schemas and options (Error(kInvalidArgument) otherwise).
std::uint64_t merge(const Mapping& a, const Mapping& b, const std::string& out, BuildOptions options = {});

}  // namespace mmstore
