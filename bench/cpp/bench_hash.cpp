// bench/cpp/bench_hash.cpp
//
// mmstore's XXH3-64 (include/mmstore/storage/xxh3.hpp) against libxxhash's XXH3_64bits, the reference
// implementation it replaced, compiled the way mmstore used it (XXH_INLINE_ALL, so both are inlined into
// the same loops and built with the same flags). Bench-only: libxxhash-dev is needed here, never by mmstore.
//
// For each length (8, 11, 16, 32, 64, 100, 200, 1000, 64 KiB, 1 MiB) two loops, each run for both hashes:
//   throughput  independent hashes of consecutive inputs (start offset i % 64, so nothing is hoisted and
//               unaligned reads are included), results xor-folded: what a batch of key hashes costs;
//   latency     each input's start offset depends on the previous hash, so one hash must finish before
//               the next starts: what a single key lookup waits for.
// Every figure is the median of --reps runs (default 7), ours and the peer alternating so that load from
// other jobs hits both alike; the table prints ns per hash, GB/s for the long inputs and ours / libxxhash
// (below 1 is faster). A checksum line proves both computed the same numbers.
//
// Build and run (release flags, as the library):
//   cmake -S . -B build-bench -G Ninja -DMMSTORE_BUILD_BENCH=ON && ninja -C build-bench mmstore_bench_hash
//   build-bench/mmstore_bench_hash [--reps 7]
// or without the Google Benchmark dependencies of the other C++ benchmark:
//   g++ -std=c++20 -O2 -Iinclude bench/cpp/bench_hash.cpp -o build/bench_hash && build/bench_hash
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "mmstore/storage/xxh3.hpp"

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace {

struct Ours {
    static std::uint64_t hash(const void* p, std::size_t n) { return mmstore::xxh3::hash64(p, n); }
};
struct Peer {
    static std::uint64_t hash(const void* p, std::size_t n) { return XXH3_64bits(p, n); }
};

volatile std::uint64_t g_sink;

// ns per hash over `iters` independent hashes.
template <class H>
double throughput(const unsigned char* buf, std::size_t len, std::size_t iters) {
    const auto t0 = std::chrono::steady_clock::now();
    std::uint64_t acc = 0;
    for (std::size_t i = 0; i < iters; ++i) acc ^= H::hash(buf + (i & 63), len);
    const auto t1 = std::chrono::steady_clock::now();
    g_sink = acc;
    return std::chrono::duration<double, std::nano>(t1 - t0).count() / static_cast<double>(iters);
}

// ns per hash when each hash's input depends on the previous result.
template <class H>
double latency(const unsigned char* buf, std::size_t len, std::size_t iters) {
    const auto t0 = std::chrono::steady_clock::now();
    std::uint64_t h = 0;
    for (std::size_t i = 0; i < iters; ++i) h = H::hash(buf + (h & 63), len);
    const auto t1 = std::chrono::steady_clock::now();
    g_sink = h;
    return std::chrono::duration<double, std::nano>(t1 - t0).count() / static_cast<double>(iters);
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
    int reps = 7;
    for (int i = 1; i + 1 < argc; ++i)
        if (std::strcmp(argv[i], "--reps") == 0) reps = std::max(1, std::atoi(argv[i + 1]));

    const std::size_t lengths[] = {8, 11, 16, 32, 64, 100, 200, 1000, 64 << 10, 1 << 20};
    std::vector<unsigned char> buf((1 << 20) + 64);
    std::mt19937_64 rng(1);
    for (auto& c : buf) c = static_cast<unsigned char>(rng());

    // Same numbers first: every length 0..4096 and the benchmark lengths.
    std::uint64_t mismatches = 0;
    for (std::size_t n = 0; n <= 4096; ++n) mismatches += Ours::hash(buf.data() + 1, n) != Peer::hash(buf.data() + 1, n);
    for (std::size_t n : lengths) mismatches += Ours::hash(buf.data(), n) != Peer::hash(buf.data(), n);
    std::printf("check: %llu mismatches against XXH3_64bits (libxxhash %d.%d.%d)\n",
                static_cast<unsigned long long>(mismatches), XXH_VERSION_MAJOR, XXH_VERSION_MINOR, XXH_VERSION_RELEASE);

    std::printf("\n%-9s | %-29s | %-29s\n", "", "throughput (independent)", "latency (dependent chain)");
    std::printf("%-9s | %9s %9s %9s | %9s %9s %9s\n", "bytes", "mmstore", "libxxhash", "ratio", "mmstore",
                "libxxhash", "ratio");
    for (std::size_t len : lengths) {
        // About 20 ms per measurement: enough iterations to dwarf the clock reads.
        const std::size_t iters = std::max<std::size_t>(20, (std::size_t{400} << 20) / (len + 32));
        std::vector<double> ot, pt, ol, pl;
        throughput<Ours>(buf.data(), len, iters / 4 + 1);  // warm-up: caches, branch predictors, clock
        throughput<Peer>(buf.data(), len, iters / 4 + 1);
        for (int r = 0; r < reps; ++r) {
            if (r % 2 == 0) {  // who goes first alternates too
                ot.push_back(throughput<Ours>(buf.data(), len, iters));
                pt.push_back(throughput<Peer>(buf.data(), len, iters));
                ol.push_back(latency<Ours>(buf.data(), len, iters));
                pl.push_back(latency<Peer>(buf.data(), len, iters));
            } else {
                pt.push_back(throughput<Peer>(buf.data(), len, iters));
                ot.push_back(throughput<Ours>(buf.data(), len, iters));
                pl.push_back(latency<Peer>(buf.data(), len, iters));
                ol.push_back(latency<Ours>(buf.data(), len, iters));
            }
        }
        const double a = median(ot), b = median(pt), c = median(ol), d = median(pl);
        if (len >= 1000) {
            std::printf("%-9zu | %7.2fGB/s %7.2fGB/s %8.3fx | %7.2fGB/s %7.2fGB/s %8.3fx\n", len, len / a, len / b, a / b,
                        len / c, len / d, c / d);
        } else {
            std::printf("%-9zu | %7.2fns %9.2fns %8.3fx | %7.2fns %9.2fns %8.3fx\n", len, a, b, a / b, c, d, c / d);
        }
    }
    std::printf("\nratio = mmstore time / libxxhash time (median of %d runs each, alternating); < 1 is faster\n", reps);
    return mismatches == 0 ? 0 : 1;
}
