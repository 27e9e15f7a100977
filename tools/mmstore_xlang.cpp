// tools/mmstore_xlang.cpp -- the C++ half of the cross-language tests (tests/python/test_cross_language.py).
//
//   mmstore_xlang dump-dict PATH   prints "<hex key> <hex value> <key type> <value type>" per entry, where
//                                  each hex is the C++ *re-encoding* of the decoded codec::Value, so any
//                                  information lost by C++ decoding shows up as a difference
//   mmstore_xlang dump-list PATH   the same for a List ("<hex value> <type>")
//   mmstore_xlang write-dict PATH  writes a fixed sample of every codec type from C++ (see sample())
//   mmstore_xlang write-list PATH  the same values into a List
//   mmstore_xlang dump-pool PATH   loads a Pool file (mmstore.load format): "<dtype|bytes> <shape a,b> <hex data>"
//   mmstore_xlang write-pool PATH  saves an int32 2x3 array from a C++ Pool to PATH and b"pool bytes" to PATH.bytes
//   mmstore_xlang dump-records PATH   a RecordArray: "<schema name> <count>", then one line per record with
//                                     the hex re-encoding of each field (00 for None)
//   mmstore_xlang dump-mapping PATH   a Mapping: "<count> <multi> <approximate>", then per entry the key's hex
//                                     and its fields' hex
//   mmstore_xlang write-records PATH  writes record_sample() (schema XRec) as a RecordArray
//   mmstore_xlang write-mapping PATH  writes "k<i>" -> record_sample()[i] as a str-keyed Mapping
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "mmstore/mmstore.hpp"

using mmstore::Value;
using T = mmstore::Value::Type;

namespace {

std::string hex(std::string_view s) {
    static const char* d = "0123456789abcdef";
    std::string out;
    for (unsigned char c : s) {
        out.push_back(d[c >> 4]);
        out.push_back(d[c & 15]);
    }
    return out;
}

const char* type_name(const Value& v) {
    switch (v.type) {
        case T::kNone: return "None";
        case T::kBool: return "bool";
        case T::kInt: case T::kBigInt: return "int";
        case T::kFloat: return "float";
        case T::kStr: return "str";
        case T::kBytes: return "bytes";
        case T::kTuple: return "tuple";
        case T::kList: return "list";
        case T::kDict: return "dict";
        case T::kSet: return "set";
        case T::kFrozenSet: return "frozenset";
        case T::kDate: return "date";
        case T::kDateTime: return "datetime";
        case T::kDecimal: return "Decimal";
        case T::kNdArray: return "ndarray";
        case T::kPickle: return "pickle";
        case T::kRecord: return "record";
    }
    return "?";
}

Value seq(T t, std::vector<Value> items) { return Value::sequence(t, std::move(items)); }

std::vector<std::pair<Value, Value>> sample() {
    std::vector<std::pair<Value, Value>> out;
    out.emplace_back(Value::str("none"), Value::none());
    out.emplace_back(Value::str("true"), Value::boolean(true));
    out.emplace_back(Value::str("int"), Value::integer(-123456789012345));
    out.emplace_back(Value::integer(42), Value::str("forty-two, a str longer than thirty-one bytes"));
    Value big;
    big.type = T::kBigInt;
    big.data = std::string("\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01", 13);  // 2**96
    out.emplace_back(Value::str("big"), big);
    out.emplace_back(Value::str("float"), Value::real(-2.5));
    out.emplace_back(Value::bytes("raw-key"), Value::bytes(std::string("\x00\xff\x10", 3)));
    out.emplace_back(seq(T::kTuple, {Value::integer(1), Value::str("a")}),
                     seq(T::kList, {Value::none(), Value::real(1.5), seq(T::kTuple, {})}));
    out.emplace_back(Value::str("dict"), seq(T::kDict, {Value::str("k"), Value::integer(1), Value::integer(2), Value::str("v")}));
    out.emplace_back(Value::str("set"), seq(T::kSet, {Value::integer(3), Value::integer(1), Value::integer(2)}));
    out.emplace_back(seq(T::kFrozenSet, {Value::str("x"), Value::str("y")}), Value::str("frozenset key"));
    Value date;
    date.type = T::kDate;
    date.year = 2024;
    date.month = 2;
    date.day = 29;
    out.emplace_back(Value::str("date"), date);
    Value dt;
    dt.type = T::kDateTime;
    dt.year = 2001;
    dt.month = 9;
    dt.day = 9;
    dt.hour = 1;
    dt.minute = 46;
    dt.second = 40;
    dt.microsecond = 123456;
    out.emplace_back(Value::str("naive"), dt);
    dt.tz = mmstore::codec::TzKind::kUtc;
    out.emplace_back(Value::str("utc"), dt);
    dt.tz = mmstore::codec::TzKind::kFixed;
    dt.utcoffset_us = 5400LL * 1000000;  // +01:30
    dt.tzname = "UTC+01:30";
    out.emplace_back(Value::str("fixed"), dt);
    Value dec;
    dec.type = T::kDecimal;
    dec.data = "3.14159";
    out.emplace_back(Value::str("decimal"), dec);
    Value arr;
    arr.type = T::kNdArray;
    arr.dtype = "<i4";
    arr.shape = {2, 3};
    for (std::int32_t i = 0; i < 6; ++i) arr.data.append(reinterpret_cast<const char*>(&i), 4);
    out.emplace_back(Value::str("ndarray"), arr);
    return out;
}

// XRec {i: int32, f: float64, flag: bool, s: str, o: object, inner: record Inner {x: int16}}
mmstore::SchemaPtr record_schema() {
    using F = mmstore::FieldType;
    auto inner = std::make_shared<const mmstore::Schema>("XInner", std::vector<mmstore::FieldSpec>{{"x", F::kInt16, nullptr}});
    return std::make_shared<const mmstore::Schema>("XRec", std::vector<mmstore::FieldSpec>{
        {"i", F::kInt32, nullptr}, {"f", F::kFloat64, nullptr}, {"flag", F::kBool, nullptr},
        {"s", F::kStr, nullptr}, {"o", F::kObject, nullptr}, {"inner", F::kRecord, inner}});
}

std::vector<std::vector<Value>> record_sample(const mmstore::Schema& s) {
    const auto& inner = *s.field(5).nested;
    Value rec;
    rec.type = T::kRecord;
    rec.data = inner.pack({Value::integer(-7)});
    std::vector<std::vector<Value>> out;
    out.push_back({Value::integer(1), Value::real(0.5), Value::boolean(true), Value::str("one"),
                   seq(T::kTuple, {Value::integer(1), Value::str("x")}), rec});
    out.push_back({Value::none(), Value::none(), Value::none(), Value::none(), Value::none(), Value::none()});
    out.push_back({Value::integer(-2147483648), Value::real(-1e300), Value::boolean(false),
                   Value::str("a longer string with non-ASCII: \xc3\xa9\xe2\x82\xac"),
                   seq(T::kDict, {Value::str("k"), Value::integer(2)}), rec});
    return out;
}

void print_fields(const mmstore::RecordView& v) {
    for (std::size_t i = 0; i < v.schema().size(); ++i)
        std::printf("%s%s", i ? " " : "", hex(mmstore::codec::encode(v.get(i))).c_str());
    std::printf("\n");
}

int usage() {
    std::fprintf(stderr, "usage: mmstore_xlang dump-dict|dump-list|write-dict|write-list|dump-pool|write-pool|"
                         "dump-records|dump-mapping|write-records|write-mapping PATH\n");
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3) return usage();
    const std::string cmd = argv[1], path = argv[2];
    try {
        if (cmd == "dump-records") {
            auto a = mmstore::RecordArray::open(path);
            a.verify();
            std::printf("%s %llu\n", a.schema().name().c_str(), static_cast<unsigned long long>(a.size()));
            for (std::uint64_t i = 0; i < a.size(); ++i) print_fields(a[i]);
            return 0;
        }
        if (cmd == "dump-mapping") {
            auto m = mmstore::Mapping::open(path);
            m.verify();
            std::printf("%llu %d %d\n", static_cast<unsigned long long>(m.size()), m.multi(), m.approximate());
            for (std::uint64_t e = 0; e < m.size(); ++e) {
                const auto key = m.key_encoded(e);
                auto [lo, hi] = m.find_encoded(key);  // every stored key finds its own entry
                if (!(lo <= e && e < hi)) throw std::runtime_error("lookup of a stored key failed");
                std::printf("%s ", hex(key).c_str());
                print_fields(m.value(e));
            }
            return 0;
        }
        if (cmd == "write-records" || cmd == "write-mapping") {
            auto s = record_schema();
            const auto rows = record_sample(*s);
            if (cmd == "write-records") {
                mmstore::RecordArrayBuilder b(path, s);
                for (const auto& r : rows) b.add(r);
                b.finish();
            } else {
                mmstore::MappingOptions o;
                o.key_kind = mmstore::KeyKind::kStr;
                mmstore::MappingBuilder b(path, s, o);
                for (std::size_t i = 0; i < rows.size(); ++i) b.add(Value::str("k" + std::to_string(i)), rows[i]);
                b.finish();
            }
            return 0;
        }
        if (cmd == "dump-dict") {
            mmstore::OpenOptions o;
            o.readonly = true;
            mmstore::Dict d(path, o);
            d.verify();
            d.for_each([](std::string_view k, std::string_view v) {
                const Value kv = mmstore::codec::decode(k), vv = mmstore::codec::decode(v);
                std::printf("%s %s %s %s\n", hex(mmstore::codec::encode(kv)).c_str(), hex(mmstore::codec::encode(vv)).c_str(),
                            type_name(kv), type_name(vv));
            });
        } else if (cmd == "dump-list") {
            mmstore::OpenOptions o;
            o.readonly = true;
            mmstore::List l(path, o);
            l.verify();
            for (std::uint64_t i = 0; i < l.size(); ++i) {
                const Value v = l.get_value(i);
                std::printf("%s %s\n", hex(mmstore::codec::encode(v)).c_str(), type_name(v));
            }
        } else if (cmd == "write-dict") {
            mmstore::Dict d(path);
            for (const auto& [k, v] : sample()) d.set(k, v);
            d.set(std::string_view("bytes-api-key"), std::string_view("bytes-api-value"));
            d.close();
        } else if (cmd == "write-list") {
            mmstore::List l(path);
            for (const auto& [k, v] : sample()) l.push_back(v);
            l.push_back(std::string_view("bytes-api-value"));
            l.close();
        } else if (cmd == "dump-pool") {
            auto o = mmstore::Pool::load(path);
            std::string shape;
            for (auto d : o->shape()) shape += (shape.empty() ? "" : ",") + std::to_string(d);
            const auto b = o->bytes();
            std::printf("%s %s %s\n", o->dtype().empty() ? "bytes" : o->dtype().c_str(), shape.empty() ? "-" : shape.c_str(),
                        hex(std::string_view(reinterpret_cast<const char*>(b.data()), b.size())).c_str());
        } else if (cmd == "write-pool") {
            const std::string dir = path + ".spill";
            mmstore::Pool pool(mmstore::PoolOptions{1 << 20, dir.substr(0, dir.rfind('/'))});
            const std::int32_t data[] = {1, -2, 3, 4, 5, -6};
            pool.save(pool.put_array<std::int32_t>(data, {2, 3}), path);
            const std::string_view text = "pool bytes";
            pool.save(pool.put(std::span(reinterpret_cast<const std::byte*>(text.data()), text.size())), path + ".bytes");
        } else {
            return usage();
        }
    } catch (const mmstore::Error& e) {
        std::fprintf(stderr, "mmstore error %d: %s\n", static_cast<int>(e.code()), e.what());
        return 1;
    }
    return 0;
}
