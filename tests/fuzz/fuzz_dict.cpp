// Harness: open a Dict file (the writable first opener: header validation, commit slots, rollback or repair
// of a dirty store), read every entry, look each key up, verify(), write once, verify() again.
#include <cstdint>

#include "fuzz_common.hpp"
#include "mmstore/dict.hpp"
#include "mmstore/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    FuzzFile f(data, size, ".mms");
    try {
        mmstore::OpenOptions o;
        o.create = mmstore::OpenOptions::Create::kNever;
        o.reserve = std::uint64_t{1} << 30;  // many harness iterations, little address space
        mmstore::Dict d(f.path, o);
        std::uint64_t n = 0;
        d.for_each([&](std::string_view k, std::string_view v) {
            (void)v;
            auto got = d.get_encoded(k);
            if (!got) throw mmstore::FormatError(mmstore::ErrorCode::kCorrupt, f.path, "key found by iteration but not lookup");
            ++n;
        });
        (void)d.size();
        d.verify();
        d.set_encoded(std::string("\x21z", 2), std::string("\x05", 1));
        d.verify();
        d.close();
    } catch (const mmstore::Error&) {
    }
    return 0;
}
