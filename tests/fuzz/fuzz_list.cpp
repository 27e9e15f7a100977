// Harness: open a List file, read every element (decoding it), verify(), append and pop once, verify().
#include <cstdint>

#include "fuzz_common.hpp"
#include "mmstore/error.hpp"
#include "mmstore/list.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    FuzzFile f(data, size, ".mml");
    try {
        mmstore::OpenOptions o;
        o.create = mmstore::OpenOptions::Create::kNever;
        o.reserve = std::uint64_t{1} << 30;
        mmstore::List l(f.path, o);
        for (std::uint64_t i = 0, n = l.size(); i < n; ++i) (void)l.get_value(i);
        l.verify();
        l.push_back(mmstore::Value::integer(7));
        l.pop_back();
        l.verify();
        l.close();
    } catch (const mmstore::Error&) {
    }
    return 0;
}
