// Harness: open a Pool spill file with data hashes checked (what mmstore.load does), read its buffers.
#include <cstdint>

#include "fuzz_common.hpp"
#include "mmstore/containers/spill_store.hpp"
#include "mmstore/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    FuzzFile f(data, size, ".spill");
    try {
        auto s = mmstore::containers::SpillFile::open(f.path, true);
        std::uint64_t sum = 0;
        for (std::size_t i = 0; i < s->buffer_count(); ++i)
            for (std::byte b : s->buffer(i)) sum += static_cast<std::uint8_t>(b);
        (void)s->meta();
        (void)sum;
    } catch (const mmstore::Error&) {
    }
    return 0;
}
