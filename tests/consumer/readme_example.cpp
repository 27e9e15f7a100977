// app.cpp
#include <mmstore/mmstore.hpp>

#include <cstdio>
#include <optional>
#include <span>
#include <string_view>

int main() {
    mmstore::Dict d("users.mms");                        // created if missing, mode 0600
    d.set("key", "value");                               // bytes level: Python sees b"key": b"value"
    std::optional<std::string_view> v = d.get("key");    // zero-copy view into the mapping, valid until the
                                                         // next write to d (dict.hpp states every lifetime)
    std::printf("key -> %.*s\n", int(v->size()), v->data());
    d.set(mmstore::Value::str("alice"), mmstore::Value::integer(31));  // typed level: Python sees 'alice': 31
    std::printf("alice -> %lld, %llu entries\n", (long long)d.get(mmstore::Value::str("alice"))->i,
                (unsigned long long)d.size());

    mmstore::Vector<double> xs("samples.mmv");           // a std::vector<double> in a file
    xs.push_back(1.5);
    xs.push_back(2.5);
    std::span<double> all = xs.span();                   // valid until the next reallocation
    double sum = 0;
    for (double x : all) sum += x;
    std::printf("%zu samples, sum %.1f\n", all.size(), sum);
}
