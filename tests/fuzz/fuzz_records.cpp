// Harness: a RecordArray image from a buffer: every field of every record, then verify().
#include <cstdint>
#include <stdexcept>

#include "mmstore/error.hpp"
#include "mmstore/records.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    try {
        const mmstore::RecordArray a = mmstore::RecordArray::from_buffer(data, size, "<fuzz>");
        const std::size_t nf = a.schema().size();
        for (std::uint64_t i = 0; i < a.size() && i < 4096; ++i) {
            const mmstore::RecordView r = a.at(i);
            for (std::size_t f = 0; f < nf; ++f) (void)r.get(f);
        }
        for (std::size_t f = 0; f < nf; ++f)
            if (mmstore::is_fixed(a.schema().field(f).type)) (void)a.column(f);
        a.verify();
    } catch (const mmstore::Error&) {
    }
    return 0;
}
