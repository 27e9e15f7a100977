// Harness: a schema blob (its length in the first two input bytes, little-endian) followed by a packed row
// read through that schema.
#include <cstdint>
#include <string_view>

#include "mmstore/error.hpp"
#include "mmstore/records.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    std::size_t blob_len = data[0] | (std::size_t{data[1]} << 8);
    if (blob_len > size - 2) blob_len = size - 2;
    const std::string_view blob(reinterpret_cast<const char*>(data + 2), blob_len);
    const std::string_view row(reinterpret_cast<const char*>(data + 2 + blob_len), size - 2 - blob_len);
    try {
        const mmstore::SchemaPtr s = mmstore::Schema::decode(blob);
        const mmstore::RecordView r = mmstore::RecordView::from_row(*s, row);
        for (std::size_t f = 0; f < s->size(); ++f) (void)r.get(f);
        (void)r.to_row();
    } catch (const mmstore::Error&) {
    }
    return 0;
}
