#include "mmstore/codec/value.hpp"

#include <algorithm>
#include <cstring>
#include <string>

#include "mmstore/error.hpp"

namespace mmstore::codec {

namespace {

[[noreturn]] void bad(std::string_view what, std::size_t pos) {
    throw_format(ErrorCode::kCorrupt, "", "corrupt value encoding: " + std::string(what) + " at byte " + std::to_string(pos));
}

std::uint32_t rd_u32(std::string_view b, std::size_t pos) {
    if (pos + 4 > b.size()) bad("truncated length", pos);
    std::uint32_t v;
    std::memcpy(&v, b.data() + pos, 4);
    return v;
}

std::uint64_t rd_u64(std::string_view b, std::size_t pos) {
    if (pos + 8 > b.size()) bad("truncated field", pos);
    std::uint64_t v;
    std::memcpy(&v, b.data() + pos, 8);
    return v;
}

std::size_t need(std::string_view b, std::size_t pos, std::uint64_t n) {
    if (n > b.size() || pos > b.size() - n) bad("length exceeds buffer", pos);
    return pos + static_cast<std::size_t>(n);
}

void append_len_tagged(std::uint8_t short_base, std::uint8_t long_tag, std::string_view s, std::string& out) {
    if (s.size() <= tag::kShortMax) {
        out.push_back(static_cast<char>(short_base + s.size()));
    } else {
        if (s.size() > 0xFFFFFFFFu) throw_error(ErrorCode::kEncode, "", "string or bytes longer than 4 GiB");
        out.push_back(static_cast<char>(long_tag));
        append_u32(static_cast<std::uint32_t>(s.size()), out);
    }
    out.append(s);
}

void encode_impl(const Value& v, std::string& out, int depth);

void encode_items(std::uint8_t t, const std::vector<Value>& items, std::size_t count, std::string& out, int depth) {
    out.push_back(static_cast<char>(t));
    append_u32(static_cast<std::uint32_t>(count), out);
    if (t == tag::kSet || t == tag::kFrozenSet) {
        std::vector<std::string> parts;
        parts.reserve(items.size());
        for (const Value& x : items) {
            std::string e;
            encode_impl(x, e, depth + 1);
            parts.push_back(std::move(e));
        }
        std::sort(parts.begin(), parts.end());
        parts.erase(std::unique(parts.begin(), parts.end()), parts.end());
        // Count must reflect deduplicated elements.
        const auto n = static_cast<std::uint32_t>(parts.size());
        std::memcpy(out.data() + out.size() - 4, &n, 4);
        for (const auto& p : parts) out += p;
        return;
    }
    for (const Value& x : items) encode_impl(x, out, depth + 1);
}

void encode_impl(const Value& v, std::string& out, int depth) {
    if (depth > kMaxDepth) throw_error(ErrorCode::kEncode, "", "value nested deeper than 200 levels");
    using T = Value::Type;
    switch (v.type) {
        case T::kNone: out.push_back(static_cast<char>(tag::kNone)); return;
        case T::kBool: out.push_back(static_cast<char>(v.b ? tag::kTrue : tag::kFalse)); return;
        case T::kInt: append_int(v.i, out); return;
        case T::kBigInt:
            if (v.data.size() <= 8) throw_error(ErrorCode::kEncode, "", "BigInt must need more than 8 bytes; use kInt");
            out.push_back(static_cast<char>(tag::kBigInt));
            append_u32(static_cast<std::uint32_t>(v.data.size()), out);
            out += v.data;
            return;
        case T::kFloat: {
            out.push_back(static_cast<char>(tag::kFloat));
            std::uint64_t bits;
            std::memcpy(&bits, &v.f, 8);
            append_u64(bits, out);
            return;
        }
        case T::kStr: append_len_tagged(tag::kShortStr, tag::kStr, v.data, out); return;
        case T::kBytes: append_len_tagged(tag::kShortBytes, tag::kBytes, v.data, out); return;
        case T::kTuple: encode_items(tag::kTuple, v.items, v.items.size(), out, depth); return;
        case T::kList: encode_items(tag::kList, v.items, v.items.size(), out, depth); return;
        case T::kDict:
            if (v.items.size() % 2 != 0) throw_error(ErrorCode::kEncode, "", "dict Value needs key/value pairs");
            encode_items(tag::kDict, v.items, v.items.size() / 2, out, depth);
            return;
        case T::kSet: encode_items(tag::kSet, v.items, v.items.size(), out, depth); return;
        case T::kFrozenSet: encode_items(tag::kFrozenSet, v.items, v.items.size(), out, depth); return;
        case T::kDate:
            out.push_back(static_cast<char>(tag::kDate));
            append_u32(static_cast<std::uint32_t>(v.year), out);
            out.push_back(static_cast<char>(v.month));
            out.push_back(static_cast<char>(v.day));
            return;
        case T::kDateTime:
            out.push_back(static_cast<char>(tag::kDateTime));
            append_u32(static_cast<std::uint32_t>(v.year), out);
            for (std::uint8_t x : {v.month, v.day, v.hour, v.minute, v.second, v.fold}) out.push_back(static_cast<char>(x));
            append_u32(v.microsecond, out);
            out.push_back(static_cast<char>(v.tz));
            if (v.tz == TzKind::kFixed) {
                append_u64(static_cast<std::uint64_t>(v.utcoffset_us), out);
                append_len_tagged(tag::kShortStr, tag::kStr, v.tzname, out);
            } else if (v.tz == TzKind::kZone) {
                append_len_tagged(tag::kShortStr, tag::kStr, v.tzname, out);
            }
            return;
        case T::kDecimal:
            out.push_back(static_cast<char>(tag::kDecimal));
            append_u32(static_cast<std::uint32_t>(v.data.size()), out);
            out += v.data;
            return;
        case T::kNdArray: {
            const std::size_t start = out.size();
            out.push_back(static_cast<char>(tag::kNdArray));
            if (v.dtype.size() > 255 || v.shape.size() > 255) throw_error(ErrorCode::kEncode, "", "ndarray dtype or ndim too large");
            out.push_back(static_cast<char>(v.dtype.size()));
            out += v.dtype;
            out.push_back(static_cast<char>(v.shape.size()));
            for (auto d : v.shape) append_u64(d, out);
            append_u64(v.data.size(), out);
            // Pad so the raw data starts 16-byte aligned relative to the start of this value.
            const std::size_t after = out.size() + 1 - start;
            const std::size_t pad = (16 - after % 16) % 16;
            out.push_back(static_cast<char>(pad));
            out.append(pad, '\0');
            out += v.data;
            return;
        }
        case T::kPickle:
            out.push_back(static_cast<char>(tag::kPickle));
            append_u32(static_cast<std::uint32_t>(v.data.size()), out);
            out += v.data;
            return;
        case T::kTableRef:
            out.push_back(static_cast<char>(tag::kTableRef));
            out.append(reinterpret_cast<const char*>(&v.i), 6);
            return;
        case T::kRecord:
            out.push_back(static_cast<char>(tag::kRecord));
            append_u32(static_cast<std::uint32_t>(v.i), out);
            append_u32(static_cast<std::uint32_t>(v.data.size()), out);
            out += v.data;
            return;
    }
    throw_error(ErrorCode::kEncode, "", "unknown Value type");
}

Value decode_at(std::string_view b, std::size_t& pos, int depth) {
    if (depth > kMaxDepth) bad("nesting deeper than 200", pos);
    if (pos >= b.size()) bad("missing tag", pos);
    const auto t = static_cast<std::uint8_t>(b[pos++]);
    Value v;
    using T = Value::Type;
    if (t >= tag::kShortStr && t < tag::kShortStr + 32) {
        const std::size_t end = need(b, pos, t - tag::kShortStr);
        v = Value::str(b.substr(pos, end - pos));
        pos = end;
        return v;
    }
    if (t >= tag::kShortBytes && t < tag::kShortBytes + 32) {
        const std::size_t end = need(b, pos, t - tag::kShortBytes);
        v = Value::bytes(b.substr(pos, end - pos));
        pos = end;
        return v;
    }
    if (t >= tag::kInt0 && t <= tag::kInt8) {
        const int n = t - tag::kInt0;
        const std::size_t end = need(b, pos, n);
        std::uint64_t u = 0;
        std::memcpy(&u, b.data() + pos, n);
        if (n > 0 && n < 8 && (static_cast<std::uint8_t>(b[pos + n - 1]) & 0x80)) u |= ~std::uint64_t{0} << (8 * n);
        pos = end;
        return Value::integer(static_cast<std::int64_t>(u));
    }
    switch (t) {
        case tag::kNone: return v;
        case tag::kFalse: return Value::boolean(false);
        case tag::kTrue: return Value::boolean(true);
        case tag::kFloat: {
            const std::uint64_t bits = rd_u64(b, pos);
            pos += 8;
            double d;
            std::memcpy(&d, &bits, 8);
            return Value::real(d);
        }
        case tag::kBigInt: case tag::kStr: case tag::kBytes: case tag::kDecimal: case tag::kPickle: {
            const std::uint32_t n = rd_u32(b, pos);
            pos += 4;
            const std::size_t end = need(b, pos, n);
            v.data.assign(b.data() + pos, n);
            pos = end;
            v.type = t == tag::kBigInt ? T::kBigInt : t == tag::kStr ? T::kStr : t == tag::kBytes ? T::kBytes
                   : t == tag::kDecimal ? T::kDecimal : T::kPickle;
            return v;
        }
        case tag::kTuple: case tag::kList: case tag::kDict: case tag::kSet: case tag::kFrozenSet: {
            const std::uint32_t n = rd_u32(b, pos);
            pos += 4;
            const std::uint64_t items = t == tag::kDict ? std::uint64_t{n} * 2 : n;
            if (items > b.size() - pos) bad("element count exceeds buffer", pos);  // each item is >= 1 byte
            v.type = t == tag::kTuple ? T::kTuple : t == tag::kList ? T::kList : t == tag::kDict ? T::kDict
                   : t == tag::kSet ? T::kSet : T::kFrozenSet;
            v.items.reserve(items);
            for (std::uint64_t k = 0; k < items; ++k) v.items.push_back(decode_at(b, pos, depth + 1));
            return v;
        }
        case tag::kDate: {
            v.type = T::kDate;
            v.year = static_cast<std::int32_t>(rd_u32(b, pos));
            need(b, pos, 6);
            v.month = static_cast<std::uint8_t>(b[pos + 4]);
            v.day = static_cast<std::uint8_t>(b[pos + 5]);
            pos += 6;
            return v;
        }
        case tag::kDateTime: {
            v.type = T::kDateTime;
            need(b, pos, 15);
            v.year = static_cast<std::int32_t>(rd_u32(b, pos));
            const auto* p = reinterpret_cast<const std::uint8_t*>(b.data() + pos + 4);
            v.month = p[0]; v.day = p[1]; v.hour = p[2]; v.minute = p[3]; v.second = p[4]; v.fold = p[5];
            v.microsecond = rd_u32(b, pos + 10);
            v.tz = static_cast<TzKind>(p[10]);
            pos += 15;
            if (v.tz == TzKind::kFixed) {
                v.utcoffset_us = static_cast<std::int64_t>(rd_u64(b, pos));
                pos += 8;
            }
            if (v.tz == TzKind::kFixed || v.tz == TzKind::kZone) {
                Value name = decode_at(b, pos, depth + 1);
                if (name.type != T::kStr) bad("timezone name is not a str", pos);
                v.tzname = std::move(name.data);
            } else if (v.tz != TzKind::kNaive && v.tz != TzKind::kUtc) {
                bad("unknown timezone kind", pos);
            }
            return v;
        }
        case tag::kNdArray: {
            v.type = T::kNdArray;
            const std::size_t start = pos - 1;
            need(b, pos, 1);
            const std::size_t dl = static_cast<std::uint8_t>(b[pos++]);
            std::size_t end = need(b, pos, dl);
            v.dtype.assign(b.data() + pos, dl);
            pos = end;
            need(b, pos, 1);
            const std::size_t nd = static_cast<std::uint8_t>(b[pos++]);
            for (std::size_t k = 0; k < nd; ++k, pos += 8) v.shape.push_back(rd_u64(b, pos));
            const std::uint64_t nbytes = rd_u64(b, pos);
            pos += 8;
            need(b, pos, 1);
            const std::size_t pad = static_cast<std::uint8_t>(b[pos++]);
            if (pad > 15 || (pos + pad - start) % 16 != 0) bad("bad ndarray padding", pos);
            pos = need(b, pos, pad);
            end = need(b, pos, nbytes);
            v.data.assign(b.data() + pos, nbytes);
            pos = end;
            return v;
        }
        case tag::kTableRef: {
            v.type = T::kTableRef;
            const std::size_t end = need(b, pos, 6);
            std::uint64_t off = 0;
            std::memcpy(&off, b.data() + pos, 6);
            v.i = static_cast<std::int64_t>(off);
            pos = end;
            return v;
        }
        case tag::kRecord: {
            v.type = T::kRecord;
            v.i = rd_u32(b, pos);
            const std::uint32_t n = rd_u32(b, pos + 4);
            pos += 8;
            const std::size_t end = need(b, pos, n);
            v.data.assign(b.data() + pos, n);
            pos = end;
            return v;
        }
        default: bad("unknown tag " + std::to_string(t), pos - 1);
    }
}

}  // namespace

void append_u32(std::uint32_t v, std::string& out) { out.append(reinterpret_cast<const char*>(&v), 4); }
void append_u64(std::uint64_t v, std::string& out) { out.append(reinterpret_cast<const char*>(&v), 8); }

void append_int(std::int64_t v, std::string& out) {
    // Minimal two's complement length: the bits of v without its sign-extension, plus one sign bit.
    const auto x = static_cast<std::uint64_t>(v ^ (v >> 63));
    const int bits = x == 0 ? 0 : 64 - __builtin_clzll(x);
    const int n = v == 0 ? 0 : bits / 8 + 1;
    out.push_back(static_cast<char>(tag::kInt0 + n));
    out.append(reinterpret_cast<const char*>(&v), static_cast<std::size_t>(n));
}

void encode(const Value& v, std::string& out) { encode_impl(v, out, 0); }

std::string encode(const Value& v) {
    std::string out;
    encode_impl(v, out, 0);
    return out;
}

Value decode(std::string_view buf) {
    std::size_t pos = 0;
    Value v = decode_at(buf, pos, 0);
    if (pos != buf.size()) bad("trailing bytes after value", pos);
    return v;
}

std::size_t skip(std::string_view buf, std::size_t pos, int depth) {
    // Scalars and strings are measured from their tag (typed-record field reads and key compares call this
    // on every access); containers and the rest share decode's parser, so the two cannot disagree.
    if (pos >= buf.size()) bad("missing tag", pos);
    const auto t = static_cast<std::uint8_t>(buf[pos]);
    std::uint64_t len;
    if (t <= tag::kTrue) len = 1;
    else if (t == tag::kFloat) len = 9;
    else if (t >= tag::kInt0 && t <= tag::kInt8) len = 1 + (t - tag::kInt0);
    else if (t >= tag::kShortStr && t < tag::kShortBytes + 32) len = 1 + (t & 31);
    else if (t == tag::kStr || t == tag::kBytes || t == tag::kBigInt || t == tag::kDecimal || t == tag::kPickle)
        len = 5 + std::uint64_t{rd_u32(buf, pos + 1)};
    else if (t == tag::kRecord) len = 9 + std::uint64_t{rd_u32(buf, pos + 5)};
    else if (t == tag::kDate) len = 7;
    else {
        decode_at(buf, pos, depth);
        return pos;
    }
    return need(buf, pos, len);
}

bool payload_view(std::string_view buf, std::uint8_t& family, std::string_view& payload) noexcept {
    if (buf.empty()) return false;
    const auto t = static_cast<std::uint8_t>(buf[0]);
    if (t >= tag::kShortStr && t < tag::kShortBytes + 32) {
        family = t < tag::kShortBytes ? tag::kStr : tag::kBytes;
        payload = buf.substr(1);
        return true;
    }
    if ((t == tag::kStr || t == tag::kBytes) && buf.size() >= 5) {
        family = t;
        payload = buf.substr(5);
        return true;
    }
    return false;
}

bool operator==(const Value& a, const Value& b) { return encode(a) == encode(b); }

bool canonical_scalar(std::string_view buf) noexcept {
    if (buf.empty()) return false;
    const auto* p = reinterpret_cast<const unsigned char*>(buf.data());
    const unsigned t = p[0];
    // Minimal two's complement of n bytes: no redundant top byte (0x00 over a clear sign bit, 0xFF over a
    // set one), and zero is the empty form.
    auto minimal = [](const unsigned char* v, std::size_t n) {
        if (n == 0) return true;
        if (n == 1) return v[0] != 0;
        const unsigned top = v[n - 1], next = v[n - 2];
        return !((top == 0x00 && (next & 0x80) == 0) || (top == 0xFF && (next & 0x80) != 0));
    };
    if (t >= tag::kInt0 && t <= tag::kInt0 + 8) return buf.size() == 1 + (t - tag::kInt0) && minimal(p + 1, t - tag::kInt0);
    if (t == tag::kBigInt) {
        if (buf.size() < 5) return false;
        std::uint32_t n;
        std::memcpy(&n, p + 1, 4);
        return n > 8 && buf.size() == 5 + std::size_t{n} && minimal(p + 5, n);
    }
    // A table reference is exactly its tag and a 6-byte offset (stored as inline word kind 4).
    if (t == tag::kTableRef) return buf.size() == 7;
    if (t == tag::kStr || t == tag::kBytes) {
        if (buf.size() < 5) return false;
        std::uint32_t n;
        std::memcpy(&n, p + 1, 4);
        return n >= 32;
    }
    return true;
}

}  // namespace mmstore::codec
