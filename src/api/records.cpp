// src/api/records.cpp -- Schema, RecordView and the readers RecordArray and Mapping (mmstore/records.hpp).
// The builders are in records_build.cpp; the layout is in records_format.hpp and docs/format.md §7.
#include "mmstore/records.hpp"

#include <cassert>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "mmstore/error.hpp"
#include "mmstore/os/file.hpp"
#include "mmstore/storage/checksum.hpp"
#include "mmstore/storage/header.hpp"
#include "mmstore/internal/records_format.hpp"

namespace mmstore {

namespace tag = codec::tag;
using codec::Value;
using VT = Value::Type;

bool is_fixed(FieldType t) noexcept { return static_cast<std::uint8_t>(t) <= 11; }

unsigned fixed_width(FieldType t) noexcept {
    switch (t) {
        case FieldType::kInt8: case FieldType::kUInt8: case FieldType::kBool: return 1;
        case FieldType::kInt16: case FieldType::kUInt16: return 2;
        case FieldType::kInt32: case FieldType::kUInt32: case FieldType::kFloat32: return 4;
        case FieldType::kInt64: case FieldType::kUInt64: case FieldType::kFloat64: return 8;
        default: return 0;
    }
}

const char* field_type_name(FieldType t) noexcept {
    switch (t) {
        case FieldType::kInt8: return "int8";
        case FieldType::kInt16: return "int16";
        case FieldType::kInt32: return "int32";
        case FieldType::kInt64: return "int64";
        case FieldType::kUInt8: return "uint8";
        case FieldType::kUInt16: return "uint16";
        case FieldType::kUInt32: return "uint32";
        case FieldType::kUInt64: return "uint64";
        case FieldType::kFloat32: return "float32";
        case FieldType::kFloat64: return "float64";
        case FieldType::kBool: return "bool";
        case FieldType::kBytes: return "bytes";
        case FieldType::kStr: return "str";
        case FieldType::kDate: return "date";
        case FieldType::kDateTime: return "datetime";
        case FieldType::kDecimal: return "Decimal";
        case FieldType::kTuple: return "tuple";
        case FieldType::kList: return "list";
        case FieldType::kDict: return "dict";
        case FieldType::kFrozenSet: return "frozenset";
        case FieldType::kNdArray: return "ndarray";
        case FieldType::kObject: return "object";
        case FieldType::kRecord: return "record";
    }
    return "?";
}

bool valid_field_type(std::uint8_t c) noexcept { return (c >= 1 && c <= 11) || (c >= 32 && c <= 43); }

// ---------------------------------------------------------------------------------------------------------
// Schema

Schema::Schema(std::string name, std::vector<FieldSpec> fields, std::uint32_t type_code)
    : name_(std::move(name)), fields_(std::move(fields)), type_code_(type_code) {
    if (fields_.size() > 4096) throw_error(ErrorCode::kInvalidArgument, "", "a schema has at most 4096 fields");
    for (std::size_t i = 0; i < fields_.size(); ++i) {
        const auto& f = fields_[i];
        if (f.name.empty()) throw_error(ErrorCode::kInvalidArgument, "", "schema field names must not be empty");
        if (!valid_field_type(static_cast<std::uint8_t>(f.type)))
            throw_error(ErrorCode::kInvalidArgument, "", "field '" + f.name + "' has an unknown type");
        if (f.type == FieldType::kRecord && !f.nested)
            throw_error(ErrorCode::kInvalidArgument, "", "record field '" + f.name + "' needs a nested schema");
        for (std::size_t j = 0; j < i; ++j)
            if (fields_[j].name == f.name)
                throw_error(ErrorCode::kInvalidArgument, "", "duplicate field name '" + f.name + "'");
    }
    bitmap_bytes_ = static_cast<std::uint32_t>((fields_.size() + 7) / 8);
    std::uint32_t off = 4 + bitmap_bytes_;
    row_off_.assign(fields_.size(), 0);
    for (std::size_t i = 0; i < fields_.size(); ++i)
        if (is_fixed(fields_[i].type)) {
            row_off_[i] = off;
            off += fixed_width(fields_[i].type);
        }
    for (std::size_t i = 0; i < fields_.size(); ++i)
        if (!is_fixed(fields_[i].type)) {
            row_off_[i] = off;
            off += 4;
        }
    header_size_ = off;
}

std::optional<std::size_t> Schema::index_of(std::string_view name) const noexcept {
    for (std::size_t i = 0; i < fields_.size(); ++i)
        if (fields_[i].name == name) return i;
    return std::nullopt;
}

Value Schema::to_value() const {
    std::vector<Value> fs;
    for (const auto& f : fields_) {
        fs.push_back(Value::sequence(VT::kTuple, {Value::str(f.name), Value::integer(static_cast<int>(f.type)),
                                                  f.nested ? f.nested->to_value() : Value::none()}));
    }
    return Value::sequence(VT::kTuple, {Value::str("mmstore.schema"), Value::integer(1), Value::str(name_),
                                        Value::integer(type_code_), Value::sequence(VT::kTuple, std::move(fs))});
}

namespace {
[[noreturn]] void bad_schema(const std::string& what) {
    throw_format(ErrorCode::kCorrupt, "", "corrupt stored schema: " + what);
}
}  // namespace

SchemaPtr Schema::from_value(const Value& v, int depth) {
    if (depth > 32) bad_schema("records nested deeper than 32 levels");
    if (v.type != VT::kTuple || v.items.size() != 5 || v.items[0].type != VT::kStr ||
        v.items[0].data != "mmstore.schema")
        bad_schema("not a schema value");
    if (v.items[1].type != VT::kInt || v.items[1].i != 1)
        throw_format(ErrorCode::kVersion, "", "stored schema has an unsupported schema version");
    if (v.items[2].type != VT::kStr || v.items[3].type != VT::kInt || v.items[4].type != VT::kTuple)
        bad_schema("malformed header");
    if (v.items[3].i < 0 || v.items[3].i > 0xFFFFFFFFll) bad_schema("type code out of range");
    std::vector<FieldSpec> fs;
    for (const auto& f : v.items[4].items) {
        if (f.type != VT::kTuple || f.items.size() != 3 || f.items[0].type != VT::kStr || f.items[1].type != VT::kInt)
            bad_schema("malformed field");
        const auto code = f.items[1].i;
        if (code < 0 || code > 255 || !valid_field_type(static_cast<std::uint8_t>(code)))
            bad_schema("unknown field type " + std::to_string(code));
        FieldSpec spec{f.items[0].data, static_cast<FieldType>(code), nullptr};
        if (spec.type == FieldType::kRecord) spec.nested = from_value(f.items[2], depth + 1);
        else if (f.items[2].type != VT::kNone) bad_schema("nested schema on a non-record field");
        fs.push_back(std::move(spec));
    }
    try {
        return std::make_shared<const Schema>(v.items[2].data, std::move(fs), static_cast<std::uint32_t>(v.items[3].i));
    } catch (const FormatError&) {
        throw;
    } catch (const Error& e) {
        bad_schema(e.message());
    }
}

SchemaPtr Schema::decode(std::string_view blob) { return from_value(codec::decode(blob)); }

namespace {

[[noreturn]] void pack_error(const FieldSpec& f, const std::string& why) {
    throw_error(ErrorCode::kEncode, "", "field '" + f.name + "' (" + field_type_name(f.type) + "): " + why);
}

bool family_ok(FieldType t, const Value& v) {
    switch (t) {
        case FieldType::kBytes: return v.type == VT::kBytes;
        case FieldType::kStr: return v.type == VT::kStr;
        case FieldType::kDate: return v.type == VT::kDate;
        case FieldType::kDateTime: return v.type == VT::kDateTime;
        case FieldType::kDecimal: return v.type == VT::kDecimal;
        case FieldType::kTuple: return v.type == VT::kTuple;
        case FieldType::kList: return v.type == VT::kList;
        case FieldType::kDict: return v.type == VT::kDict;
        case FieldType::kFrozenSet: return v.type == VT::kFrozenSet;
        case FieldType::kNdArray: return v.type == VT::kNdArray;
        case FieldType::kRecord: return v.type == VT::kRecord;
        default: return true;
    }
}

void store_fixed(const FieldSpec& f, const Value& v, char* p) {
    if (f.type == FieldType::kFloat32 || f.type == FieldType::kFloat64) {
        double d;
        if (v.type == VT::kFloat) d = v.f;
        else if (v.type == VT::kInt) d = static_cast<double>(v.i);
        else pack_error(f, "expects a float");
        if (f.type == FieldType::kFloat32) {
            const float x = static_cast<float>(d);
            std::memcpy(p, &x, 4);
        } else {
            std::memcpy(p, &d, 8);
        }
        return;
    }
    if (v.type != VT::kInt && v.type != VT::kBool) pack_error(f, "expects an int");
    const std::int64_t x = v.type == VT::kBool ? v.b : v.i;
    std::int64_t lo = 0, hi = 0;
    switch (f.type) {
        case FieldType::kBool: lo = 0; hi = 1; break;
        case FieldType::kInt8: lo = INT8_MIN; hi = INT8_MAX; break;
        case FieldType::kInt16: lo = INT16_MIN; hi = INT16_MAX; break;
        case FieldType::kInt32: lo = INT32_MIN; hi = INT32_MAX; break;
        case FieldType::kInt64: lo = INT64_MIN; hi = INT64_MAX; break;
        case FieldType::kUInt8: hi = UINT8_MAX; break;
        case FieldType::kUInt16: hi = UINT16_MAX; break;
        case FieldType::kUInt32: hi = UINT32_MAX; break;
        case FieldType::kUInt64: hi = INT64_MAX; break;  // kInt Values hold int64; larger uint64 come as bytes
        default: break;
    }
    if (x < lo || x > hi) pack_error(f, std::to_string(x) + " is out of range");
    std::memcpy(p, &x, fixed_width(f.type));  // little-endian: the low bytes
}

}  // namespace

std::string Schema::pack(const std::vector<Value>& values) const {
    if (values.size() != fields_.size())
        throw_error(ErrorCode::kInvalidArgument, "", "pack: expected " + std::to_string(fields_.size()) + " values");
    std::string row(header_size_, '\0');
    for (std::size_t i = 0; i < fields_.size(); ++i) {
        const auto& f = fields_[i];
        const Value& v = values[i];
        if (v.type == VT::kNone) continue;
        row[4 + i / 8] = static_cast<char>(row[4 + i / 8] | (1 << (i % 8)));
        if (is_fixed(f.type)) {
            store_fixed(f, v, &row[row_off_[i]]);
        } else {
            if (!family_ok(f.type, v)) pack_error(f, "value of another type");
            if (row.size() > 0xFFFFFFFFu) throw_error(ErrorCode::kCapacity, "", "a packed record exceeds 4 GiB");
            const auto at = static_cast<std::uint32_t>(row.size());
            std::memcpy(&row[row_off_[i]], &at, 4);
            codec::encode(v, row);
        }
    }
    if (row.size() > 0xFFFFFFFFu) throw_error(ErrorCode::kCapacity, "", "a packed record exceeds 4 GiB");
    const auto total = static_cast<std::uint32_t>(row.size());
    std::memcpy(row.data(), &total, 4);
    return row;
}

// ---------------------------------------------------------------------------------------------------------
// Value lengths and views

namespace detail {

std::string_view ColumnSet::heap_value(std::uint64_t off) const {
    if (off >= heap_len)
        throw_format(ErrorCode::kCorrupt, path ? *path : "", "corrupt heap offset " + std::to_string(off));
    try {
        const std::size_t end = value_end(heap, heap_len, off);
        return std::string_view(heap + off, end - off);
    } catch (const FormatError& e) {
        throw_format(ErrorCode::kCorrupt, path ? *path : "", e.message());
    }
}

}  // namespace detail

using detail::load;

RecordView RecordView::from_row(const Schema& schema, std::string_view row) {
    if (row.size() < 4 || row.size() < schema.row_header_size())
        throw_format(ErrorCode::kCorrupt, "", "packed record shorter than its schema's fixed part");
    const auto total = load<std::uint32_t>(row.data());
    if (total < schema.row_header_size() || total > row.size())
        throw_format(ErrorCode::kCorrupt, "", "packed record length " + std::to_string(total) + " out of bounds");
    RecordView v;
    v.schema_ = &schema;
    v.row_ = row.data();
    v.row_len_ = total;
    return v;
}

bool RecordView::is_null(std::size_t i) const {
    if (i >= schema_->size()) throw std::out_of_range("field index out of range");
    if (row_ != nullptr) return !(static_cast<std::uint8_t>(row_[4 + i / 8]) >> (i % 8) & 1);
    if (cols_->is_arrow(i)) return !cols_->present(i, index_);
    if (!is_fixed(schema_->field(i).type)) {
        const auto off = load<std::uint64_t>(cols_->data[i] + index_ * 8);
        return off < cols_->heap_len && cols_->heap[off] == 0;  // codec None
    }
    const std::uint8_t* p = cols_->presence[i];
    return p != nullptr && !(p[index_ / 8] >> (index_ % 8) & 1);
}

namespace {
const char* fixed_ptr(const Schema& s, const detail::ColumnSet* cols, std::uint64_t idx, const char* row, std::size_t i) {
    return row ? row + s.row_offset(i) : cols->data[i] + idx * fixed_width(s.field(i).type);
}
}  // namespace

std::int64_t RecordView::get_int(std::size_t i) const {
    const auto t = schema_->field(i).type;
    if (!is_fixed(t) || t == FieldType::kFloat32 || t == FieldType::kFloat64)
        throw_error(ErrorCode::kInvalidArgument, "", "field '" + schema_->field(i).name + "' is not an integer field");
    if (is_null(i)) return 0;
    const char* p = fixed_ptr(*schema_, cols_, index_, row_, i);
    switch (t) {
        case FieldType::kInt8: return load<std::int8_t>(p);
        case FieldType::kInt16: return load<std::int16_t>(p);
        case FieldType::kInt32: return load<std::int32_t>(p);
        case FieldType::kInt64: return load<std::int64_t>(p);
        case FieldType::kUInt8: return load<std::uint8_t>(p);
        case FieldType::kUInt16: return load<std::uint16_t>(p);
        case FieldType::kUInt32: return load<std::uint32_t>(p);
        case FieldType::kUInt64: return static_cast<std::int64_t>(load<std::uint64_t>(p));
        case FieldType::kBool: return load<std::uint8_t>(p) != 0;
        default: return 0;
    }
}

double RecordView::get_float(std::size_t i) const {
    const auto t = schema_->field(i).type;
    if (t != FieldType::kFloat32 && t != FieldType::kFloat64) return static_cast<double>(get_int(i));
    if (is_null(i)) return std::numeric_limits<double>::quiet_NaN();
    const char* p = fixed_ptr(*schema_, cols_, index_, row_, i);
    return t == FieldType::kFloat32 ? load<float>(p) : load<double>(p);
}

namespace {
// The codec value of `raw` as a str or bytes (codec §6: short forms below 32 bytes).
std::string encode_raw(FieldType t, std::string_view raw) {
    return codec::encode(t == FieldType::kStr ? Value::str(raw) : Value::bytes(raw));
}
}  // namespace

std::string RecordView::get_encoded(std::size_t i) const {
    if (i >= schema_->size()) throw std::out_of_range("field index out of range");
    if (is_fixed(schema_->field(i).type))
        throw_error(ErrorCode::kInvalidArgument, "", "field '" + schema_->field(i).name + "' is a fixed-width field");
    if (row_ == nullptr && cols_->is_arrow(i)) {
        if (!cols_->present(i, index_)) return {};
        return encode_raw(schema_->field(i).type, cols_->var_bytes(i, index_));
    }
    return std::string(encoded_view(i));
}

std::optional<std::string_view> RecordView::get_bytes(std::size_t i) const {
    if (i >= schema_->size()) throw std::out_of_range("field index out of range");
    const auto t = schema_->field(i).type;
    if (t != FieldType::kStr && t != FieldType::kBytes)
        throw_error(ErrorCode::kInvalidArgument, "", "field '" + schema_->field(i).name + "' is not a str or bytes field");
    if (row_ == nullptr && cols_->is_arrow(i)) {
        if (!cols_->present(i, index_)) return std::nullopt;
        return cols_->var_bytes(i, index_);
    }
    const auto enc = encoded_view(i);
    if (enc.empty()) return std::nullopt;
    // codec §6: short forms are one tag byte (0x20+n str, 0x40+n bytes), long ones a tag and a u32 length.
    const auto tg = static_cast<std::uint8_t>(enc[0]);
    if ((tg >= tag::kShortStr && tg < tag::kShortStr + 32) || (tg >= tag::kShortBytes && tg < tag::kShortBytes + 32))
        return enc.substr(1);
    if ((tg == tag::kStr || tg == tag::kBytes) && enc.size() >= 5) return enc.substr(5);
    throw_format(ErrorCode::kCorrupt, cols_ && cols_->path ? *cols_->path : "",
                 "field '" + schema_->field(i).name + "' holds a value that is not a str or bytes");
}

std::string_view RecordView::encoded_view(std::size_t i) const {
    if (row_ != nullptr) {
        const auto at = load<std::uint32_t>(row_ + schema_->row_offset(i));
        if (at == 0) return {};
        if (at < schema_->row_header_size())
            throw_format(ErrorCode::kCorrupt, "", "corrupt record: value offset inside the fixed part");
        const std::size_t end = detail::value_end(row_, row_len_, at);
        return std::string_view(row_ + at, end - at);
    }
    const auto v = cols_->heap_value(load<std::uint64_t>(cols_->data[i] + index_ * 8));
    return v.size() == 1 && v[0] == 0 ? std::string_view{} : v;
}

Value RecordView::get(std::size_t i) const {
    const auto t = schema_->field(i).type;
    if (row_ == nullptr && cols_->is_arrow(i)) {
        if (!cols_->present(i, index_)) return Value::none();
        const auto raw = cols_->var_bytes(i, index_);
        return t == FieldType::kStr ? Value::str(raw) : Value::bytes(raw);
    }
    if (is_fixed(t)) {
        if (is_null(i)) return Value::none();
        if (t == FieldType::kFloat32 || t == FieldType::kFloat64) return Value::real(get_float(i));
        if (t == FieldType::kBool) return Value::boolean(get_int(i) != 0);
        if (t == FieldType::kUInt64) {
            const auto u = load<std::uint64_t>(fixed_ptr(*schema_, cols_, index_, row_, i));
            if (u > static_cast<std::uint64_t>(INT64_MAX)) {
                Value big;
                big.type = VT::kBigInt;
                big.data.assign(reinterpret_cast<const char*>(&u), 8);
                big.data.push_back('\0');
                return big;
            }
        }
        return Value::integer(get_int(i));
    }
    const auto enc = encoded_view(i);  // (a str/bytes column in Arrow layout returned above)
    if (enc.empty()) return Value::none();
    return codec::decode(enc);
}

Value RecordView::get(std::string_view name) const {
    const auto i = schema_->index_of(name);
    if (!i) throw_error(ErrorCode::kInvalidArgument, "", "no field named '" + std::string(name) + "'");
    return get(*i);
}

std::string RecordView::to_row() const {
    if (row_ != nullptr) return std::string(row_, row_len_);
    const Schema& s = *schema_;
    std::string row(s.row_header_size(), '\0');
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (is_null(i)) continue;
        row[4 + i / 8] = static_cast<char>(row[4 + i / 8] | (1 << (i % 8)));
        const auto t = s.field(i).type;
        if (is_fixed(t)) {
            std::memcpy(&row[s.row_offset(i)], fixed_ptr(s, cols_, index_, nullptr, i), fixed_width(t));
        } else {
            const auto at = static_cast<std::uint32_t>(row.size());
            std::memcpy(&row[s.row_offset(i)], &at, 4);
            row += get_encoded(i);
        }
    }
    const auto total = static_cast<std::uint32_t>(row.size());
    std::memcpy(row.data(), &total, 4);
    return row;
}

// ---------------------------------------------------------------------------------------------------------
// Parsing a file image

namespace detail {

TypedFile::~TypedFile() {
    if (map_addr != nullptr) os::unmap_readonly(map_addr, map_offset, map_len);
}

void TypedFile::parse(std::uint32_t kind) {
    using storage::FileHeader;
    const auto want = static_cast<storage::StoreKind>(kind);
    if (size < sizeof(FileHeader) || std::memcmp(base, storage::kMagic, 8) != 0) {
        if (size >= 8 && std::memcmp(base, storage::kMagic, 8) == 0)
            throw_format(ErrorCode::kTruncated, path, "truncated: shorter than the file header");
        throw_format(ErrorCode::kForeign, path, "not an mmstore file (bad magic)");
    }
    const auto fh = load<FileHeader>(base);
    if (fh.checksum != hash64(&fh, offsetof(FileHeader, checksum)))
        throw_format(ErrorCode::kCorrupt, path, "corrupt file header (checksum mismatch at offset 0)");
    // The kind first: stores (Dict, List) carry their own, newer format number (storage/header.hpp).
    if (fh.kind != kind) {
        const bool known = fh.kind >= 1 && fh.kind <= 5;
        throw_format(ErrorCode::kWrongKind, path,
                     known ? std::string("is a ") + storage::kind_name(static_cast<storage::StoreKind>(fh.kind)) +
                                 " file, not a " + storage::kind_name(want)
                           : "is an mmstore file of unknown kind " + std::to_string(fh.kind));
    }
    if (fh.format_version > kRecordsFormatVersion || fh.format_version == 0)
        throw_format(ErrorCode::kVersion, path, "records format version " + std::to_string(fh.format_version) +
                                                    " is not supported (this build reads 1 to " +
                                                    std::to_string(kRecordsFormatVersion) + ")");
    const bool arrow_strings = fh.format_version >= kArrowStringsVersion;
    if (fh.byte_order != storage::kByteOrderMark || fh.word_size != 8)
        throw_format(ErrorCode::kVersion, path, "incompatible layout (byte order or word size)");
    if (size < kSchemaOffset) throw_format(ErrorCode::kTruncated, path, "truncated: shorter than the records header");
    header = load<RecordsHeader>(base + kRecordsHeaderOffset);
    if (header.checksum != hash64(&header, offsetof(RecordsHeader, checksum)))
        throw_format(ErrorCode::kCorrupt, path, "corrupt records header (checksum mismatch at offset 64)");
    if (header.file_size > size)
        throw_format(ErrorCode::kTruncated, path, "truncated: " + std::to_string(size) + " bytes, the header says " +
                                                      std::to_string(header.file_size));
    const std::uint64_t fs = header.file_size;
    auto in_bounds = [&](std::uint64_t off, std::uint64_t len) { return off <= fs && len <= fs - off; };
    if (header.schema_off != kSchemaOffset || !in_bounds(header.schema_off, header.schema_len) ||
        header.nsections > 4096 * 2 + 8 || !in_bounds(header.table_off, std::uint64_t{header.nsections} * 32))
        throw_format(ErrorCode::kCorrupt, path, "corrupt records header (schema or section table out of bounds)");
    {
        Hasher st;
        st.update(base + header.schema_off, header.schema_len);
        st.update(base + header.table_off, std::uint64_t{header.nsections} * 32);
        if (st.digest() != header.meta_checksum)
            throw_format(ErrorCode::kCorrupt, path, "corrupt schema or section table (checksum mismatch)");
    }
    try {
        cols.schema = Schema::decode(std::string_view(base + header.schema_off, header.schema_len));
    } catch (const FormatError& e) {
        throw_format(e.code(), path, e.message());
    }
    const Schema& s = *cols.schema;
    cols.path = &path;
    cols.count = header.count;
    cols.data.assign(s.size(), nullptr);
    cols.presence.assign(s.size(), nullptr);
    cols.off_width.assign(s.size(), 0);
    cols.var_data.assign(s.size(), nullptr);
    cols.var_len.assign(s.size(), 0);
    cols.var_stride.assign(s.size(), 0);
    std::vector<bool> has_var_data(s.size(), false);
    auto is_arrow_field = [&](std::size_t i) { return arrow_strings && arrow_layout(s.field(i).type); };
    sections.resize(header.nsections);
    const bool is_map = kind == static_cast<std::uint32_t>(storage::StoreKind::kMapping);
    const bool approx = header.flags & kFlagApproximate;
    const std::uint64_t n = header.count;
    if (n > fs) throw_format(ErrorCode::kCorrupt, path, "corrupt records header (count exceeds the file size)");
    auto& ix = index;
    ix.count = n;
    ix.path = &path;
    ix.approximate = approx;
    ix.bucket_bits = header.bucket_bits;
    ix.wide_keys = header.flags & kFlagWideKeys;
    if (is_map && ix.bucket_bits > 40) throw_format(ErrorCode::kCorrupt, path, "corrupt directory size");
    auto bad_len = [&](const SectionSlot& sl, std::uint64_t want_len) {
        if (sl.length != want_len)
            throw_format(ErrorCode::kCorrupt, path, "corrupt section " + std::to_string(sl.id) + ": length " +
                                                        std::to_string(sl.length) + ", expected " + std::to_string(want_len));
    };
    for (std::uint32_t k = 0; k < header.nsections; ++k) {
        const auto sl = load<SectionSlot>(base + header.table_off + 32ull * k);
        sections[k] = sl;
        if (!in_bounds(sl.offset, sl.length) || sl.offset % kSectionAlign != 0)
            throw_format(ErrorCode::kCorrupt, path, "corrupt section table: section " + std::to_string(sl.id) + " out of bounds");
        const char* p = base + sl.offset;
        if (sl.id >= kSectionColumn && sl.id < kSectionColumn + s.size()) {
            const std::size_t i = sl.id - kSectionColumn;
            if (is_arrow_field(i)) {
                if (sl.width != 4 && sl.width != 8)
                    throw_format(ErrorCode::kCorrupt, path, "corrupt section " + std::to_string(sl.id) +
                                                                ": offset width " + std::to_string(sl.width));
                bad_len(sl, (n + 1) * sl.width);
                cols.off_width[i] = static_cast<std::uint8_t>(sl.width);
            } else {
                bad_len(sl, n * (is_fixed(s.field(i).type) ? fixed_width(s.field(i).type) : 8));
            }
            cols.data[i] = p;
        } else if (sl.id >= kSectionPresence && sl.id < kSectionPresence + s.size() &&
                   (is_fixed(s.field(sl.id - kSectionPresence).type) || is_arrow_field(sl.id - kSectionPresence))) {
            bad_len(sl, (n + 7) / 8);
            cols.presence[sl.id - kSectionPresence] = reinterpret_cast<const std::uint8_t*>(p);
        } else if (sl.id >= kSectionVarData && sl.id < kSectionVarData + s.size() && is_arrow_field(sl.id - kSectionVarData)) {
            const std::size_t i = sl.id - kSectionVarData;
            cols.var_data[i] = p;
            cols.var_len[i] = sl.length;
            has_var_data[i] = true;
        } else if (sl.id == kSectionHeap) {
            if (sl.length == 0 || p[0] != 0) throw_format(ErrorCode::kCorrupt, path, "corrupt heap (no leading None)");
            cols.heap = p;
            cols.heap_len = sl.length;
        } else if (is_map && sl.id == containers::kSectionIndexSlots) {
            bad_len(sl, n * (approx || !ix.wide_keys ? 8 : 4));
            ix.slots = p;
        } else if (is_map && !approx && ix.wide_keys && sl.id == containers::kSectionKeyOffsets) {
            bad_len(sl, n * 8);
            ix.key_offsets = p;
        } else if (is_map && !approx && sl.id == containers::kSectionKeyHeap) {
            ix.key_heap = p;
            ix.key_heap_len = sl.length;
        } else if (is_map && sl.id == containers::kSectionDirectory) {
            bad_len(sl, ((std::uint64_t{1} << ix.bucket_bits) + 1) * 8);
            ix.directory = p;
        } else {
            throw_format(ErrorCode::kCorrupt, path, "corrupt section table: unexpected section id " + std::to_string(sl.id));
        }
    }
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (is_arrow_field(i)) {
            if (cols.off_width[i] == 0 || !has_var_data[i])
                throw_format(ErrorCode::kCorrupt, path, "corrupt file: missing offsets or data of field '" + s.field(i).name + "'");
            continue;
        }
        if (cols.data[i] == nullptr && n > 0)
            throw_format(ErrorCode::kCorrupt, path, "corrupt file: missing column of field '" + s.field(i).name + "'");
    }
    static const char kNoneByte = 0;
    if (cols.heap == nullptr) {
        cols.heap = &kNoneByte;
        cols.heap_len = 1;
    }
    static const char kEmpty[8] = {};
    for (auto& d : cols.data)
        if (d == nullptr) d = kEmpty;  // n == 0
    if (is_map) {
        if (ix.directory == nullptr || ix.slots == nullptr ||
            (!approx && ((ix.wide_keys && ix.key_offsets == nullptr) || ix.key_heap == nullptr)))
            if (!(n == 0 && ix.directory != nullptr))
                throw_format(ErrorCode::kCorrupt, path, "corrupt mapping: a section of the index is missing");
        if (ix.slots == nullptr) ix.slots = kEmpty;
        if (ix.key_offsets == nullptr) ix.key_offsets = kEmpty;
        if (ix.key_heap == nullptr) ix.key_heap = kEmpty;
        const auto plain = header.flags & kFlagPlainValues;
        if (plain && (s.size() != 1 || s.field(0).name != "value"))
            throw_format(ErrorCode::kCorrupt, path, "corrupt mapping: plain values need a single 'value' field");
    }
    // Arrow offsets: 0 first, non-decreasing, the data's length last (and below 2^31 when 32-bit, which Arrow
    // reads as signed), so a read (and an Arrow array wrapping them) never leaves the data section. The same
    // pass finds fields whose values all have one width (ColumnSet::var_stride).
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (cols.off_width[i] == 0) continue;
        const char* o = cols.data[i];
        const std::uint64_t w = n > 0 ? cols.var_len[i] / n : 0;
        std::uint64_t prev = 0;
        bool ok = true, uniform = w > 0;
        if (cols.off_width[i] == 4) {
            ok = load<std::uint32_t>(o) == 0;
            for (std::uint64_t k = 1; k <= n && ok; ++k) {
                const std::uint64_t x = load<std::uint32_t>(o + k * 4);
                ok = x >= prev;
                uniform &= x == prev + w;
                prev = x;
            }
            ok = ok && prev <= 0x7FFFFFFFu;
        } else {
            ok = load<std::uint64_t>(o) == 0;
            for (std::uint64_t k = 1; k <= n && ok; ++k) {
                const std::uint64_t x = load<std::uint64_t>(o + k * 8);
                ok = x >= prev;
                uniform &= x == prev + w;
                prev = x;
            }
            ok = ok && prev <= 0x7FFFFFFFFFFFFFFFull;
        }
        if (!ok || prev != cols.var_len[i])
            throw_format(ErrorCode::kCorrupt, path, "corrupt offsets of field '" + s.field(i).name + "'");
        if (uniform) cols.var_stride[i] = w;
    }
    // Checked reads (docs/design.md, "Integrity"): every byte a read can return lies in a section, so the
    // sections' checksums are verified once, here, and nothing read through this handle is unchecked. One
    // pass over the image at XXH3 speed (memory bandwidth when cached; a read of the file when not).
    verify();
}

void TypedFile::verify() const {
    for (const auto& sl : sections)
        if (hash64(base + sl.offset, sl.length) != sl.checksum)
            throw_format(ErrorCode::kCorrupt, path, "corrupt section " + std::to_string(sl.id) + " at offset " +
                                                        std::to_string(sl.offset) + " (checksum mismatch)");
}

std::shared_ptr<const TypedFile> open_typed(const std::string& path, std::uint64_t offset, std::uint64_t length,
                                            std::uint32_t kind) {
    auto file = os::File::open(path, false, false, false, 0);
    const std::uint64_t fsize = file.size();
    if (offset > fsize) throw_format(ErrorCode::kTruncated, path, "offset beyond the end of the file");
    if (length == 0) length = fsize - offset;
    if (length > fsize - offset) throw_format(ErrorCode::kTruncated, path, "member extends beyond the end of the file");
    auto tf = std::make_shared<TypedFile>();
    tf->path = path;
    if (length > 0) {
        tf->map_addr = os::map_readonly(file, offset, length);
        tf->map_offset = offset;
        tf->map_len = length;
    }
    static const char kNothing[1] = {};
    tf->base = tf->map_addr ? static_cast<const char*>(tf->map_addr) : kNothing;
    tf->size = length;
    tf->parse(kind);
    return tf;
}

std::shared_ptr<const TypedFile> typed_from_buffer(const void* data, std::size_t len, std::string name, std::uint32_t kind) {
    auto tf = std::make_shared<TypedFile>();
    tf->path = std::move(name);
    static const char kNothing[1] = {};
    tf->base = data ? static_cast<const char*>(data) : kNothing;
    tf->size = len;
    tf->parse(kind);
    return tf;
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------------------
// RecordArray

namespace {
constexpr auto kArrayKind = static_cast<std::uint32_t>(storage::StoreKind::kRecordArray);
constexpr auto kMapKind = static_cast<std::uint32_t>(storage::StoreKind::kMapping);
}  // namespace

RecordArray RecordArray::open(const std::string& path, std::uint64_t offset, std::uint64_t length) {
    RecordArray a;
    a.f_ = detail::open_typed(path, offset, length, kArrayKind);
    return a;
}

RecordArray RecordArray::from_buffer(const void* data, std::size_t len, std::string name) {
    RecordArray a;
    a.f_ = detail::typed_from_buffer(data, len, std::move(name), kArrayKind);
    return a;
}

std::uint64_t RecordArray::size() const noexcept { return f_->cols.count; }
const Schema& RecordArray::schema() const noexcept { return *f_->cols.schema; }
SchemaPtr RecordArray::schema_ptr() const noexcept { return f_->cols.schema; }

RecordView RecordArray::operator[](std::uint64_t i) const noexcept {
    assert(i < size());
    RecordView v;
    v.schema_ = f_->cols.schema.get();
    v.cols_ = &f_->cols;
    v.index_ = i;
    return v;
}

RecordView RecordArray::at(std::uint64_t i) const {
    if (i >= size()) throw std::out_of_range("record index " + std::to_string(i) + " out of range");
    return (*this)[i];
}

std::span<const std::byte> RecordArray::column(std::size_t field) const {
    const auto& s = schema();
    if (field >= s.size() || !is_fixed(s.field(field).type))
        throw_error(ErrorCode::kInvalidArgument, path(), "column(): not a fixed-width field");
    return {reinterpret_cast<const std::byte*>(f_->cols.data[field]), size() * fixed_width(s.field(field).type)};
}

unsigned RecordArray::offset_width(std::size_t field) const {
    if (field >= schema().size()) throw_error(ErrorCode::kInvalidArgument, path(), "offset_width(): no such field");
    return f_->cols.off_width[field];
}

std::span<const std::byte> RecordArray::offsets(std::size_t field) const {
    const unsigned w = offset_width(field);
    if (w == 0) throw_error(ErrorCode::kInvalidArgument, path(), "offsets(): not a str/bytes field in Arrow layout");
    return {reinterpret_cast<const std::byte*>(f_->cols.data[field]), (size() + 1) * w};
}

std::span<const std::byte> RecordArray::var_data(std::size_t field) const {
    if (offset_width(field) == 0) throw_error(ErrorCode::kInvalidArgument, path(), "var_data(): not a str/bytes field in Arrow layout");
    return {reinterpret_cast<const std::byte*>(f_->cols.var_data[field]), f_->cols.var_len[field]};
}

const std::uint8_t* RecordArray::presence(std::size_t field) const { return f_->cols.presence.at(field); }
void RecordArray::verify() const { f_->verify(); }
const std::string& RecordArray::path() const noexcept { return f_->path; }
std::string_view RecordArray::image() const noexcept { return {f_->base, f_->header.file_size}; }
const detail::ColumnSet& RecordArray::columns() const noexcept { return f_->cols; }

// ---------------------------------------------------------------------------------------------------------
// Mapping

Mapping Mapping::open(const std::string& path, std::uint64_t offset, std::uint64_t length) {
    Mapping m;
    m.f_ = detail::open_typed(path, offset, length, kMapKind);
    return m;
}

Mapping Mapping::from_buffer(const void* data, std::size_t len, std::string name) {
    Mapping m;
    m.f_ = detail::typed_from_buffer(data, len, std::move(name), kMapKind);
    return m;
}

std::uint64_t Mapping::size() const noexcept { return f_->cols.count; }
bool Mapping::multi() const noexcept { return f_->header.flags & detail::kFlagMulti; }
bool Mapping::approximate() const noexcept { return f_->header.flags & detail::kFlagApproximate; }
bool Mapping::plain_values() const noexcept { return f_->header.flags & detail::kFlagPlainValues; }
KeyKind Mapping::key_kind() const noexcept { return static_cast<KeyKind>(f_->header.key_kind); }
const Schema& Mapping::schema() const noexcept { return *f_->cols.schema; }
void Mapping::verify() const { f_->verify(); }
const std::string& Mapping::path() const noexcept { return f_->path; }
std::string_view Mapping::image() const noexcept { return {f_->base, f_->header.file_size}; }
const detail::ColumnSet& Mapping::columns() const noexcept { return f_->cols; }

std::string_view Mapping::key_encoded(std::uint64_t e) const { return f_->index.key(e); }
std::uint64_t Mapping::key_hash_bits(std::uint64_t e) const { return f_->index.hash_bits(e); }
std::pair<std::uint64_t, std::uint64_t> Mapping::find_encoded(std::string_view key) const { return f_->index.find(key); }

RecordView Mapping::value(std::uint64_t e) const {
    if (e >= size()) throw std::out_of_range("entry " + std::to_string(e) + " out of range");
    RecordView v;
    v.schema_ = f_->cols.schema.get();
    v.cols_ = &f_->cols;
    v.index_ = e;
    return v;
}

}  // namespace mmstore
