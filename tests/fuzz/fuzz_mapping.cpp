// Harness: a Mapping image from a buffer: every entry's key and value, a lookup of each key, verify().
#include <cstdint>

#include "mmstore/error.hpp"
#include "mmstore/records.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    try {
        const mmstore::Mapping m = mmstore::Mapping::from_buffer(data, size, "<fuzz>");
        const std::size_t nf = m.schema().size();
        for (std::uint64_t e = 0; e < m.size() && e < 4096; ++e) {
            const mmstore::RecordView r = m.value(e);
            for (std::size_t f = 0; f < nf; ++f) (void)r.get(f);
            if (!m.approximate()) (void)m.find_encoded(m.key_encoded(e));
            (void)m.key_hash_bits(e);
        }
        m.verify();
    } catch (const mmstore::Error&) {
    }
    return 0;
}
