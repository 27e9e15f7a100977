// mmstore/internal/records_format.hpp -- internal (not API; used by src/api/records*.cpp and the bindings): the persistent layout of RecordArray and Mapping files
// (docs/format.md §8) and the parsed, validated view of one file image shared by the readers.
//
// A file is one flat, position-independent image: every offset is relative to the image start, so it reads
// the same from a mapping of a file, a caller's buffer, or a member stored uncompressed inside a zip file.
//
//   0      FileHeader (storage/header.hpp), kind 4 (RecordArray) or 5 (Mapping), checksummed
//   64     RecordsHeader (128 B, checksummed)
//   192    schema: one codec value (Schema::to_value)
//          section table: nsections x SectionSlot, 64-byte aligned
//          sections, each 64-byte aligned
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "mmstore/containers/frozen_index.hpp"
#include "mmstore/records.hpp"

namespace mmstore::detail {

// Offset 64. Written once by the builder.
struct RecordsHeader {
    std::uint64_t count;          // records (RecordArray) or entries (Mapping)
    std::uint64_t schema_off;     // the schema's codec value: [schema_off, schema_off + schema_len)
    std::uint64_t schema_len;
    std::uint64_t table_off;      // section table, nsections SectionSlots
    std::uint32_t nsections;
    std::uint32_t flags;          // Mapping: kFlagMulti | kFlagApproximate | kFlagPlainValues
    std::uint64_t file_size;      // bytes of the image; a longer buffer is fine, a shorter one is truncated
    std::uint32_t bucket_bits;    // Mapping: the directory has 2^bucket_bits + 1 entries
    std::uint8_t key_kind;        // Mapping: KeyKind (informational for C++; Python checks key types with it)
    std::uint8_t reserved0[3];
    std::uint64_t meta_checksum;  // XXH3-64 of the schema bytes followed by the section table bytes
    std::uint64_t reserved[7];    // 0
    std::uint64_t checksum;       // XXH3-64 of the 120 bytes above
};
static_assert(sizeof(RecordsHeader) == 128);
static_assert(offsetof(RecordsHeader, checksum) == 120);
inline constexpr std::uint64_t kRecordsHeaderOffset = 64;
inline constexpr std::uint64_t kSchemaOffset = 192;

inline constexpr std::uint32_t kFlagMulti = 1, kFlagApproximate = 2, kFlagPlainValues = 4;
// Exact maps whose key heap may exceed 4 GiB: u32 hashes plus a separate u64 key-offset section. Without it,
// each entry is one u64 "slot": low 32 bits of the hash | u32 key offset << 32, so one cache line answers
// both the hash check and where the key is (format.md §8.4).
inline constexpr std::uint32_t kFlagWideKeys = 8;

// One section: a contiguous byte range of the image.
struct SectionSlot {
    std::uint32_t id;        // kSection* below
    std::uint32_t width;     // element bytes of an array section (informational), 0 for heaps
    std::uint64_t offset;    // from the image start, 64-byte aligned
    std::uint64_t length;    // bytes
    std::uint64_t checksum;  // XXH3-64 of the section bytes (checked by verify())
};
static_assert(sizeof(SectionSlot) == 32);

inline constexpr std::uint32_t kSectionHeap = 1;        // codec values of variable fields; byte 0 is None
// Mapping index sections 2..5: containers::kSectionIndexSlots .. kSectionDirectory (frozen_index.hpp).
inline constexpr std::uint32_t kSectionColumn = 0x100;  // + field: fixed values, u64 heap offsets, or Arrow offsets
inline constexpr std::uint32_t kSectionPresence = 0x200;  // + field: presence bitmap of a fixed or str/bytes field
inline constexpr std::uint32_t kSectionVarData = 0x300;   // + field: the bytes of a str/bytes field (version 3)
inline constexpr std::uint64_t kSectionAlign = 64;

// The records format version (FileHeader::format_version of kinds 4 and 5; docs/format.md §8). It is the
// records' own, independent of storage::kFormatVersion (Dict/List), since the two layouts change apart.
//   2  every variable field is a column of u64 offsets into the heap of codec values.
//   3  str and bytes fields use Arrow's layout instead (so RecordArray.to_arrow wraps them without a copy):
//      column 0x100+f holds count+1 offsets (u32 when the field's bytes total less than 2 GiB, else u64; the
//      slot's width says which), section 0x300+f the bytes, 0x200+f the presence bitmap when a value is
//      missing. Other variable fields keep the heap.
// Readers read versions 1..3; builders write 3; a newer version is FormatError(kVersion).
inline constexpr std::uint32_t kRecordsFormatVersion = 3;
inline constexpr std::uint32_t kArrowStringsVersion = 3;

// Whether a field of type t is stored in Arrow's variable-width layout by a version-3 builder.
inline bool arrow_layout(FieldType t) noexcept { return t == FieldType::kStr || t == FieldType::kBytes; }

template <class T>
inline T load(const char* p) noexcept {
    T v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

// The columns of N records: shared by RecordArray and Mapping values.
struct ColumnSet {
    SchemaPtr schema;
    std::uint64_t count = 0;
    std::vector<const char*> data;               // per field: the column
    std::vector<const std::uint8_t*> presence;   // per fixed or Arrow-layout field: bitmap or nullptr
    // Per field: 4 or 8 when the field is in Arrow layout (data[i] holds count+1 offsets of that width into
    // var_data[i], validated at open: 0 first, non-decreasing, var_len[i] last), 0 otherwise.
    std::vector<std::uint8_t> off_width;
    std::vector<const char*> var_data;
    std::vector<std::uint64_t> var_len;
    // Per Arrow-layout field: w > 0 when every record's value is exactly w bytes (offset k == k * w for every
    // k, proved by the open's validation of the offsets), else 0. Fixed-format strs (ids, codes, hashes,
    // dates) are common; for them a read skips the offsets and their dependent cache miss: v[i] is one miss,
    // not two.
    std::vector<std::uint64_t> var_stride;
    const char* heap = nullptr;
    std::uint64_t heap_len = 0;
    const std::string* path = nullptr;

    // The codec value at heap offset `off` (bounds-checked).
    std::string_view heap_value(std::uint64_t off) const;
    bool is_arrow(std::size_t i) const noexcept { return off_width[i] != 0; }
    // Arrow-layout field i of record idx: its bytes (empty for a missing value; check presence). Never
    // out of bounds: the offsets were validated at open.
    std::string_view var_bytes(std::size_t i, std::uint64_t idx) const noexcept {
        if (const std::uint64_t w = var_stride[i]) return {var_data[i] + idx * w, static_cast<std::size_t>(w)};
        std::uint64_t a, b;
        if (off_width[i] == 4) {
            a = load<std::uint32_t>(data[i] + idx * 4);
            b = load<std::uint32_t>(data[i] + idx * 4 + 4);
        } else {
            a = load<std::uint64_t>(data[i] + idx * 8);
            b = load<std::uint64_t>(data[i] + idx * 8 + 8);
        }
        return {var_data[i] + a, static_cast<std::size_t>(b - a)};
    }
    bool present(std::size_t i, std::uint64_t idx) const noexcept {
        return presence[i] == nullptr || (presence[i][idx / 8] >> (idx % 8) & 1);
    }
};

// A validated file image.
struct TypedFile {
    std::string path;
    const char* base = nullptr;
    std::uint64_t size = 0;
    // Set when this object owns a read-only mapping of a file.
    const void* map_addr = nullptr;
    std::uint64_t map_offset = 0, map_len = 0;

    RecordsHeader header{};
    std::vector<SectionSlot> sections;
    ColumnSet cols;
    containers::FrozenIndex index;  // Mapping

    TypedFile() = default;
    TypedFile(const TypedFile&) = delete;
    TypedFile& operator=(const TypedFile&) = delete;
    ~TypedFile();

    void parse(std::uint32_t kind);
    void verify() const;
};

std::shared_ptr<const TypedFile> open_typed(const std::string& path, std::uint64_t offset, std::uint64_t length,
                                            std::uint32_t kind);
std::shared_ptr<const TypedFile> typed_from_buffer(const void* data, std::size_t len, std::string name,
                                                   std::uint32_t kind);

// End of the codec value starting at `pos` of [b, b+n): codec::skip (bounds-checked, FormatError(kCorrupt)).
inline std::size_t value_end(const char* b, std::size_t n, std::size_t pos) {
    return codec::skip(std::string_view(b, n), pos);
}

}  // namespace mmstore::detail
