// Harness: the value codec -- decode, skip and the canonical check agree, and a decoded value re-encodes
// to something that decodes to the same value.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "mmstore/codec/value.hpp"
#include "mmstore/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view in(reinterpret_cast<const char*>(data), size);
    std::size_t end = 0;
    try {
        end = mmstore::codec::skip(in, 0);
    } catch (const mmstore::Error&) {
        end = 0;
    }
    try {
        const mmstore::codec::Value v = mmstore::codec::decode(in);
        if (end != size) std::abort();  // decode accepted what skip rejected
        (void)mmstore::codec::canonical_scalar(in);
        const std::string again = mmstore::codec::encode(v);
        if (!(mmstore::codec::decode(again) == v)) std::abort();
    } catch (const mmstore::Error&) {
    }
    return 0;
}
