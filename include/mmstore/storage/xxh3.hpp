// mmstore/storage/xxh3.hpp
//
// XXH3-64: the 64-bit hash of mmstore's file format, written here from its published specification
// (https://github.com/Cyan4973/xxHash/blob/dev/doc/xxhash_spec.md, "XXH3 Algorithm Description"), so that
// building mmstore needs nothing but a C++20 compiler. Every checksum and every key hash in a store is
// XXH3-64 with seed 0 and the default secret (docs/format.md), so this code is part of the format: its
// results must equal those of the reference library (libxxhash 0.8, PyPI `xxhash`) bit for bit, on every
// machine. tests/cpp/storage/xxh3_test.cpp and tests/python/test_hash.py check that against PyPI `xxhash`
// for every length 0..4096, random lengths up to 1 MiB and many seeds.
//
// What it provides:
//   xxh3::hash64(data, len[, seed])     one-shot XXH3_64bits (seed 0) / XXH3_64bits_withSeed
//   xxh3::Hasher                        streaming: reset(seed) / update(data, len) / digest(); digest() of
//                                       any sequence of updates equals hash64 of their concatenation
// mmstore code calls mmstore::hash64 (storage/checksum.hpp), which is hash64 with seed 0.
//
// Thread and process safety: hash64 is pure (reads only its input and constant tables), allocation-free and
// noexcept; call it from anywhere. A Hasher is a plain value (no pointers into itself, copyable) used by one
// thread at a time.
//
// How the algorithm is laid out (names follow the specification):
//   * 0-16 bytes: four closed formulas (empty, 1-3, 4-8, 9-16 bytes) mixing the first and last bytes with
//     fixed words of the secret. These run on every key lookup, so they are force-inlined and branch only
//     on the length.
//   * 17-128 bytes: 16-byte chunks read from both ends, each mixed with 16 secret bytes by one 64x64->128
//     multiply ("mix16"); unrolled as nested length tests, as the chunk count is at most 4 pairs.
//   * 129-240 bytes: 8 mix16 over the first 128 bytes, an avalanche, then the remaining chunks and the last
//     16 bytes. Out of line: rare, and it would bloat every caller.
//   * 241+ bytes ("long"): 8 accumulators fed 64-byte stripes; a stripe updates acc[i] += lo32(d^k)*hi32(d^k)
//     and acc[i^1] += d for its 8 little-endian words d (k: the secret, advancing 8 bytes per stripe). After
//     16 stripes (a 1024-byte block, for the 192-byte default secret) the accumulators are scrambled. The
//     last stripe is always the input's last 64 bytes (it may overlap the previous one) taken with secret
//     offset 121; the 8 accumulators fold into one with secret offset 11. With SSE2 (every x86-64) a stripe
//     is four 128-bit multiply-adds (_mm_mul_epu32), as fast as libxxhash's SSE2 build; other machines use
//     the scalar loop, which computes the same numbers.
//   * A seed enters the short formulas directly; for long inputs it derives a secret instead (the default
//     secret read as 24 little-endian words, seed added to the even ones and subtracted from the odd ones).
//
// Streaming: a Hasher buffers up to 256 bytes (4 stripes). A stripe is accumulated only once at least one
// more byte is known to follow it, because the spec treats the input's last stripe differently; so while
// the total is at most 256 bytes everything is in the buffer and digest() is the one-shot hash of it.
// The last 64 bytes consumed are kept (prev_) because the final stripe may reach back into them.
//
// Measured (bench/cpp/bench_hash.cpp, gcc 12 -O2, against libxxhash 0.8.1 inlined): see bench/README.md.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#if defined(__GNUC__)
#define MMSTORE_XXH3_FORCE_INLINE inline __attribute__((always_inline))
#define MMSTORE_XXH3_NOINLINE __attribute__((noinline))
#else
#define MMSTORE_XXH3_FORCE_INLINE inline
#define MMSTORE_XXH3_NOINLINE
#endif

namespace mmstore::xxh3 {

namespace detail {

// The specification's constants (primes chosen by the algorithm's author; PRIME_MX1/2 are the multipliers of
// the XXH3 avalanche and of the 4-8 byte mixer).
inline constexpr std::uint64_t kPrime32_1 = 0x9E3779B1u;
inline constexpr std::uint64_t kPrime32_2 = 0x85EBCA77u;
inline constexpr std::uint64_t kPrime32_3 = 0xC2B2AE3Du;
inline constexpr std::uint64_t kPrime64_1 = 0x9E3779B185EBCA87ull;
inline constexpr std::uint64_t kPrime64_2 = 0xC2B2AE3D27D4EB4Full;
inline constexpr std::uint64_t kPrime64_3 = 0x165667B19E3779F9ull;
inline constexpr std::uint64_t kPrime64_4 = 0x85EBCA77C2B2AE63ull;
inline constexpr std::uint64_t kPrime64_5 = 0x27D4EB2F165667C5ull;
inline constexpr std::uint64_t kPrimeMx1 = 0x165667919E3779F9ull;
inline constexpr std::uint64_t kPrimeMx2 = 0x9FB21C651E98DF25ull;

// The default secret (192 bytes, from the specification). Its size fixes the long-input geometry below.
inline constexpr std::size_t kSecretSize = 192;
alignas(64) inline constexpr unsigned char kDefaultSecret[kSecretSize] = {
    0xb8, 0xfe, 0x6c, 0x39, 0x23, 0xa4, 0x4b, 0xbe, 0x7c, 0x01, 0x81, 0x2c, 0xf7, 0x21, 0xad, 0x1c,
    0xde, 0xd4, 0x6d, 0xe9, 0x83, 0x90, 0x97, 0xdb, 0x72, 0x40, 0xa4, 0xa4, 0xb7, 0xb3, 0x67, 0x1f,
    0xcb, 0x79, 0xe6, 0x4e, 0xcc, 0xc0, 0xe5, 0x78, 0x82, 0x5a, 0xd0, 0x7d, 0xcc, 0xff, 0x72, 0x21,
    0xb8, 0x08, 0x46, 0x74, 0xf7, 0x43, 0x24, 0x8e, 0xe0, 0x35, 0x90, 0xe6, 0x81, 0x3a, 0x26, 0x4c,
    0x3c, 0x28, 0x52, 0xbb, 0x91, 0xc3, 0x00, 0xcb, 0x88, 0xd0, 0x65, 0x8b, 0x1b, 0x53, 0x2e, 0xa3,
    0x71, 0x64, 0x48, 0x97, 0xa2, 0x0d, 0xf9, 0x4e, 0x38, 0x19, 0xef, 0x46, 0xa9, 0xde, 0xac, 0xd8,
    0xa8, 0xfa, 0x76, 0x3f, 0xe3, 0x9c, 0x34, 0x3f, 0xf9, 0xdc, 0xbb, 0xc7, 0xc7, 0x0b, 0x4f, 0x1d,
    0x8a, 0x51, 0xe0, 0x4b, 0xcd, 0xb4, 0x59, 0x31, 0xc8, 0x9f, 0x7e, 0xc9, 0xd9, 0x78, 0x73, 0x64,
    0xea, 0xc5, 0xac, 0x83, 0x34, 0xd3, 0xeb, 0xc3, 0xc5, 0x81, 0xa0, 0xff, 0xfa, 0x13, 0x63, 0xeb,
    0x17, 0x0d, 0xdd, 0x51, 0xb7, 0xf0, 0xda, 0x49, 0xd3, 0x16, 0x55, 0x26, 0x29, 0xd4, 0x68, 0x9e,
    0x2b, 0x16, 0xbe, 0x58, 0x7d, 0x47, 0xa1, 0xfc, 0x8f, 0xf8, 0xb8, 0xd1, 0x7a, 0xd0, 0x31, 0xce,
    0x45, 0xcb, 0x3a, 0x8f, 0x95, 0x16, 0x04, 0x28, 0xaf, 0xd7, 0xfb, 0xca, 0xbb, 0x4b, 0x40, 0x7e,
};

// Long-input geometry for a 192-byte secret: a stripe is 64 bytes; the secret advances 8 bytes per stripe,
// so a block holds (192 - 64) / 8 = 16 stripes; the scramble uses the secret's last 64 bytes, the final
// stripe the 64 bytes at 192 - 64 - 7 = 121, the fold those at 11 (all from the specification).
inline constexpr std::size_t kStripe = 64;
inline constexpr std::size_t kStripesPerBlock = (kSecretSize - kStripe) / 8;
inline constexpr std::size_t kBlock = kStripe * kStripesPerBlock;
inline constexpr std::size_t kScrambleOffset = kSecretSize - kStripe;
inline constexpr std::size_t kLastStripeOffset = kSecretSize - kStripe - 7;
inline constexpr std::size_t kMergeOffset = 11;
inline constexpr std::size_t kMidMax = 240;  // longest input hashed without the stripe loop

// ---- little-endian reads and bit helpers ----

MMSTORE_XXH3_FORCE_INLINE std::uint32_t bswap32(std::uint32_t v) noexcept {
#if defined(__GNUC__)
    return __builtin_bswap32(v);
#else
    return (v >> 24) | ((v >> 8) & 0xFF00u) | ((v << 8) & 0xFF0000u) | (v << 24);
#endif
}

MMSTORE_XXH3_FORCE_INLINE std::uint64_t bswap64(std::uint64_t v) noexcept {
#if defined(__GNUC__)
    return __builtin_bswap64(v);
#else
    return (std::uint64_t{bswap32(static_cast<std::uint32_t>(v))} << 32) | bswap32(static_cast<std::uint32_t>(v >> 32));
#endif
}

MMSTORE_XXH3_FORCE_INLINE std::uint32_t read32(const unsigned char* p) noexcept {
    std::uint32_t v;
    std::memcpy(&v, p, 4);
    if constexpr (std::endian::native == std::endian::big) v = bswap32(v);
    return v;
}

MMSTORE_XXH3_FORCE_INLINE std::uint64_t read64(const unsigned char* p) noexcept {
    std::uint64_t v;
    std::memcpy(&v, p, 8);
    if constexpr (std::endian::native == std::endian::big) v = bswap64(v);
    return v;
}

MMSTORE_XXH3_FORCE_INLINE void write64(unsigned char* p, std::uint64_t v) noexcept {
    if constexpr (std::endian::native == std::endian::big) v = bswap64(v);
    std::memcpy(p, &v, 8);
}

// The full 128-bit product of a and b, folded to 64 bits by xoring its halves. Plain inline on purpose: gcc
// inlines it anyway, and forcing it made gcc 12 keep both halves of a product in callee-saved registers
// across the 17-128 byte path, which cost every short hash 3 pushes and pops (measured: 0-16 byte hashes
// ~1.3x slower than libxxhash until this was changed).
inline std::uint64_t mul128_fold64(std::uint64_t a, std::uint64_t b) noexcept {
#if defined(__SIZEOF_INT128__)
    const unsigned __int128 p = static_cast<unsigned __int128>(a) * b;
    return static_cast<std::uint64_t>(p) ^ static_cast<std::uint64_t>(p >> 64);
#else
    const std::uint64_t a_lo = a & 0xFFFFFFFFu, a_hi = a >> 32, b_lo = b & 0xFFFFFFFFu, b_hi = b >> 32;
    const std::uint64_t ll = a_lo * b_lo, lh = a_lo * b_hi, hl = a_hi * b_lo, hh = a_hi * b_hi;
    const std::uint64_t mid = (ll >> 32) + (lh & 0xFFFFFFFFu) + (hl & 0xFFFFFFFFu);
    const std::uint64_t lo = (mid << 32) | (ll & 0xFFFFFFFFu);
    const std::uint64_t hi = hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
    return lo ^ hi;
#endif
}

MMSTORE_XXH3_FORCE_INLINE std::uint64_t avalanche_xxh64(std::uint64_t h) noexcept {
    h ^= h >> 33;
    h *= kPrime64_2;
    h ^= h >> 29;
    h *= kPrime64_3;
    return h ^ (h >> 32);
}

MMSTORE_XXH3_FORCE_INLINE std::uint64_t avalanche(std::uint64_t h) noexcept {
    h ^= h >> 37;
    h *= kPrimeMx1;
    return h ^ (h >> 32);
}

// ---- 0 to 16 bytes ----

MMSTORE_XXH3_FORCE_INLINE std::uint64_t len_1to3(const unsigned char* p, std::size_t len, const unsigned char* s,
                                                 std::uint64_t seed) noexcept {
    const std::uint32_t combined = std::uint32_t{p[len - 1]} | (static_cast<std::uint32_t>(len) << 8) |
                                   (std::uint32_t{p[0]} << 16) | (std::uint32_t{p[len >> 1]} << 24);
    const std::uint64_t key = std::uint64_t{read32(s) ^ read32(s + 4)} + seed;
    return avalanche_xxh64(key ^ combined);
}

MMSTORE_XXH3_FORCE_INLINE std::uint64_t len_4to8(const unsigned char* p, std::size_t len, const unsigned char* s,
                                                 std::uint64_t seed) noexcept {
    seed ^= std::uint64_t{bswap32(static_cast<std::uint32_t>(seed))} << 32;
    const std::uint64_t first = read32(p), last = read32(p + len - 4);
    const std::uint64_t key = (read64(s + 8) ^ read64(s + 16)) - seed;
    std::uint64_t v = (last | (first << 32)) ^ key;
    v ^= std::rotl(v, 49) ^ std::rotl(v, 24);
    v *= kPrimeMx2;
    v ^= (v >> 35) + len;
    v *= kPrimeMx2;
    return v ^ (v >> 28);
}

MMSTORE_XXH3_FORCE_INLINE std::uint64_t len_9to16(const unsigned char* p, std::size_t len, const unsigned char* s,
                                                  std::uint64_t seed) noexcept {
    const std::uint64_t lo = read64(p) ^ ((read64(s + 24) ^ read64(s + 32)) + seed);
    const std::uint64_t hi = read64(p + len - 8) ^ ((read64(s + 40) ^ read64(s + 48)) - seed);
    return avalanche(len + bswap64(lo) + hi + mul128_fold64(lo, hi));
}

MMSTORE_XXH3_FORCE_INLINE std::uint64_t len_0to16(const unsigned char* p, std::size_t len, const unsigned char* s,
                                                  std::uint64_t seed) noexcept {
    if (len > 8) return len_9to16(p, len, s, seed);
    if (len >= 4) return len_4to8(p, len, s, seed);
    if (len > 0) return len_1to3(p, len, s, seed);
    return avalanche_xxh64(seed ^ read64(s + 56) ^ read64(s + 64));
}

// ---- 17 to 240 bytes ----

// The specification's mixStep: 16 input bytes against 16 secret bytes, one wide multiply.
MMSTORE_XXH3_FORCE_INLINE std::uint64_t mix16(const unsigned char* p, const unsigned char* s,
                                              std::uint64_t seed) noexcept {
    return mul128_fold64(read64(p) ^ (read64(s) + seed), read64(p + 8) ^ (read64(s + 8) - seed));
}

MMSTORE_XXH3_FORCE_INLINE std::uint64_t len_17to128(const unsigned char* p, std::size_t len, const unsigned char* s,
                                                    std::uint64_t seed) noexcept {
    // Chunk pair i (from the start and from the end) uses secret bytes [32i, 32i + 32); pairs are taken while
    // the chunks from the start have not passed the middle: ((len - 1) >> 5) + 1 pairs.
    std::uint64_t acc = len * kPrime64_1;
    if (len > 32) {
        if (len > 64) {
            if (len > 96) {
                acc += mix16(p + 48, s + 96, seed);
                acc += mix16(p + len - 64, s + 112, seed);
            }
            acc += mix16(p + 32, s + 64, seed);
            acc += mix16(p + len - 48, s + 80, seed);
        }
        acc += mix16(p + 16, s + 32, seed);
        acc += mix16(p + len - 32, s + 48, seed);
    }
    acc += mix16(p, s, seed);
    acc += mix16(p + len - 16, s + 16, seed);
    return avalanche(acc);
}

MMSTORE_XXH3_FORCE_INLINE std::uint64_t len_129to240(const unsigned char* p, std::size_t len, const unsigned char* s,
                                                     std::uint64_t seed) noexcept {
    std::uint64_t acc = len * kPrime64_1;
    for (std::size_t i = 0; i < 8; ++i) acc += mix16(p + 16 * i, s + 16 * i, seed);
    acc = avalanche(acc);
    const std::size_t chunks = len / 16;
    for (std::size_t i = 8; i < chunks; ++i) acc += mix16(p + 16 * i, s + 16 * (i - 8) + 3, seed);
    acc += mix16(p + len - 16, s + 119, seed);  // 119 = 136 - 17: the specification's last-chunk offset
    return avalanche(acc);
}

// ---- 241 bytes and more ----

// One stripe: for each of the 8 input words d (with secret word k), acc[i] += lo32(d ^ k) * hi32(d ^ k) and
// acc[i ^ 1] += d. acc must be 16-byte aligned.
MMSTORE_XXH3_FORCE_INLINE void accumulate_stripe(std::uint64_t* acc, const unsigned char* in,
                                                 const unsigned char* s) noexcept {
#if defined(__SSE2__)
    auto* a = reinterpret_cast<__m128i*>(acc);
    for (int i = 0; i < 4; ++i) {
        const __m128i d = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in) + i);
        const __m128i dk = _mm_xor_si128(d, _mm_loadu_si128(reinterpret_cast<const __m128i*>(s) + i));
        const __m128i product = _mm_mul_epu32(dk, _mm_srli_epi64(dk, 32));  // lo32 * hi32 in each 64-bit lane
        const __m128i swapped = _mm_shuffle_epi32(d, _MM_SHUFFLE(1, 0, 3, 2));  // word i feeds acc[i ^ 1]
        a[i] = _mm_add_epi64(a[i], _mm_add_epi64(product, swapped));
    }
#else
    for (int i = 0; i < 8; ++i) {
        const std::uint64_t d = read64(in + 8 * i);
        const std::uint64_t dk = d ^ read64(s + 8 * i);
        acc[i ^ 1] += d;
        acc[i] += (dk & 0xFFFFFFFFu) * (dk >> 32);
    }
#endif
}

// After each full block: acc = (acc ^ (acc >> 47) ^ k) * PRIME32_1, k the secret's last 64 bytes.
MMSTORE_XXH3_FORCE_INLINE void scramble(std::uint64_t* acc, const unsigned char* s) noexcept {
#if defined(__SSE2__)
    auto* a = reinterpret_cast<__m128i*>(acc);
    const __m128i prime = _mm_set1_epi32(static_cast<int>(kPrime32_1));
    for (int i = 0; i < 4; ++i) {
        __m128i v = _mm_xor_si128(a[i], _mm_srli_epi64(a[i], 47));
        v = _mm_xor_si128(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(s) + i));
        // 64 x 32-bit multiply from two 32 x 32 -> 64 products: lo * P + ((hi * P) << 32).
        const __m128i lo = _mm_mul_epu32(v, prime);
        const __m128i hi = _mm_mul_epu32(_mm_srli_epi64(v, 32), prime);
        a[i] = _mm_add_epi64(lo, _mm_slli_epi64(hi, 32));
    }
#else
    for (int i = 0; i < 8; ++i) {
        std::uint64_t v = acc[i];
        v ^= v >> 47;
        v ^= read64(s + 8 * i);
        acc[i] = v * kPrime32_1;
    }
#endif
}

// n consecutive stripes starting at secret offset 8 * first (first + n <= kStripesPerBlock).
MMSTORE_XXH3_FORCE_INLINE void accumulate(std::uint64_t* acc, const unsigned char* in, const unsigned char* s,
                                          std::size_t n) noexcept {
    for (std::size_t i = 0; i < n; ++i) accumulate_stripe(acc, in + kStripe * i, s + 8 * i);
}

MMSTORE_XXH3_FORCE_INLINE void init_acc(std::uint64_t* acc) noexcept {
    acc[0] = kPrime32_3;
    acc[1] = kPrime64_1;
    acc[2] = kPrime64_2;
    acc[3] = kPrime64_3;
    acc[4] = kPrime64_4;
    acc[5] = kPrime32_2;
    acc[6] = kPrime64_5;
    acc[7] = kPrime32_1;
}

MMSTORE_XXH3_FORCE_INLINE std::uint64_t merge(const std::uint64_t* acc, const unsigned char* s,
                                              std::uint64_t start) noexcept {
    std::uint64_t r = start;
    for (int i = 0; i < 4; ++i)
        r += mul128_fold64(acc[2 * i] ^ read64(s + 16 * i), acc[2 * i + 1] ^ read64(s + 16 * i + 8));
    return avalanche(r);
}

// The secret for a nonzero seed on long inputs: the default secret's 24 little-endian words, +seed on even
// ones and -seed on odd ones.
inline void derive_secret(unsigned char* out, std::uint64_t seed) noexcept {
    for (std::size_t i = 0; i < kSecretSize / 16; ++i) {
        write64(out + 16 * i, read64(kDefaultSecret + 16 * i) + seed);
        write64(out + 16 * i + 8, read64(kDefaultSecret + 16 * i + 8) - seed);
    }
}

MMSTORE_XXH3_FORCE_INLINE std::uint64_t hash_long(const unsigned char* p, std::size_t len,
                                                  const unsigned char* s) noexcept {
    alignas(16) std::uint64_t acc[8];
    init_acc(acc);
    // Full blocks, except that the block holding the last byte is never one of them (len - 1).
    const std::size_t blocks = (len - 1) / kBlock;
    for (std::size_t b = 0; b < blocks; ++b) {
        accumulate(acc, p + b * kBlock, s, kStripesPerBlock);
        scramble(acc, s + kScrambleOffset);
    }
    // The last block: its stripes that end before the input's last byte, then the input's last 64 bytes.
    const std::size_t tail_stripes = (len - 1 - blocks * kBlock) / kStripe;
    accumulate(acc, p + blocks * kBlock, s, tail_stripes);
    accumulate_stripe(acc, p + len - kStripe, s + kLastStripeOffset);
    return merge(acc, s + kMergeOffset, len * kPrime64_1);
}

// The out-of-line bodies, one pair per seed kind: with seed 0 the secret and the seed are constants the
// compiler folds into the code (as libxxhash does), which the seeded versions cannot.
MMSTORE_XXH3_NOINLINE inline std::uint64_t mid_default(const unsigned char* p, std::size_t len) noexcept {
    return len_129to240(p, len, kDefaultSecret, 0);
}

MMSTORE_XXH3_NOINLINE inline std::uint64_t mid_seeded(const unsigned char* p, std::size_t len,
                                                      std::uint64_t seed) noexcept {
    return len_129to240(p, len, kDefaultSecret, seed);
}

MMSTORE_XXH3_NOINLINE inline std::uint64_t long_default(const unsigned char* p, std::size_t len) noexcept {
    return hash_long(p, len, kDefaultSecret);
}

MMSTORE_XXH3_NOINLINE inline std::uint64_t long_seeded(const unsigned char* p, std::size_t len,
                                                       std::uint64_t seed) noexcept {
    if (seed == 0) return long_default(p, len);  // the derived secret of seed 0 is the default one
    alignas(16) unsigned char secret[kSecretSize];
    derive_secret(secret, seed);
    return hash_long(p, len, secret);
}

// Length dispatch. Seeded = false pins the seed to 0 at compile time.
template <bool Seeded>
MMSTORE_XXH3_FORCE_INLINE std::uint64_t hash_impl(const void* data, std::size_t len, std::uint64_t seed) noexcept {
    if constexpr (!Seeded) seed = 0;
    const auto* p = static_cast<const unsigned char*>(data);
    if (len <= 16) return len_0to16(p, len, kDefaultSecret, seed);
    if (len <= 128) return len_17to128(p, len, kDefaultSecret, seed);
    if constexpr (Seeded) {
        if (len <= kMidMax) return mid_seeded(p, len, seed);
        return long_seeded(p, len, seed);
    } else {
        if (len <= kMidMax) return mid_default(p, len);
        return long_default(p, len);
    }
}

}  // namespace detail

// XXH3-64 of [data, data + len): the file format's hash (seed 0). data may be null when len is 0.
inline std::uint64_t hash64(const void* data, std::size_t len) noexcept {
    return detail::hash_impl<false>(data, len, 0);
}

// XXH3-64 of [data, data + len) with `seed` (XXH3_64bits_withSeed; seed 0 gives the result above).
inline std::uint64_t hash64(const void* data, std::size_t len, std::uint64_t seed) noexcept {
    return detail::hash_impl<true>(data, len, seed);
}

// Streaming XXH3-64: digest() after any sequence of update() calls equals hash64 of their concatenation with
// the seed given to reset(). digest() does not change the state, so hashing may continue after it.
class Hasher {
   public:
    explicit Hasher(std::uint64_t seed = 0) noexcept { reset(seed); }

    void reset(std::uint64_t seed = 0) noexcept {
        detail::init_acc(acc_);
        seed_ = seed;
        if (seed != 0) detail::derive_secret(derived_, seed);
        total_ = 0;
        buffered_ = 0;
        stripes_ = 0;
    }

    void update(const void* data, std::size_t len) noexcept {
        if (len == 0) return;
        const auto* p = static_cast<const unsigned char*>(data);
        total_ += len;
        if (buffered_ + len <= kBuffer) {  // keep everything until more is known to follow
            std::memcpy(buf_ + buffered_, p, len);
            buffered_ += len;
            return;
        }
        if (buffered_ > 0) {  // complete the buffer; input follows it, so all 4 of its stripes can go
            const std::size_t fill = kBuffer - buffered_;
            std::memcpy(buf_ + buffered_, p, fill);
            p += fill;
            len -= fill;
            consume(buf_, kBuffer / detail::kStripe);
            std::memcpy(prev_, buf_ + kBuffer - detail::kStripe, detail::kStripe);
            buffered_ = 0;
        }
        if (len > kBuffer) {  // straight from the input, leaving 1..64 bytes (the last stripe's end) behind
            const std::size_t n = (len - 1) / detail::kStripe;
            consume(p, n);
            std::memcpy(prev_, p + (n - 1) * detail::kStripe, detail::kStripe);
            p += n * detail::kStripe;
            len -= n * detail::kStripe;
        }
        std::memcpy(buf_, p, len);
        buffered_ = len;
    }

    std::uint64_t digest() const noexcept {
        if (total_ <= detail::kMidMax) return hash64(buf_, static_cast<std::size_t>(total_), seed_);
        const unsigned char* s = secret();
        alignas(16) std::uint64_t acc[8];
        std::memcpy(acc, acc_, sizeof acc);
        std::size_t stripes = stripes_;
        // total_ > 240 here, so buffered_ is 1..256: its stripes but the last are not the input's last one.
        const std::size_t n = (buffered_ - 1) / detail::kStripe;
        for (std::size_t i = 0; i < n; ++i) {
            detail::accumulate_stripe(acc, buf_ + i * detail::kStripe, s + 8 * stripes);
            if (++stripes == detail::kStripesPerBlock) {
                detail::scramble(acc, s + detail::kScrambleOffset);
                stripes = 0;
            }
        }
        unsigned char joined[detail::kStripe];
        const unsigned char* last = joined;
        if (buffered_ >= detail::kStripe) {
            last = buf_ + buffered_ - detail::kStripe;
        } else {  // the last 64 bytes start in the previously consumed stripe
            const std::size_t from_prev = detail::kStripe - buffered_;
            std::memcpy(joined, prev_ + buffered_, from_prev);
            std::memcpy(joined + from_prev, buf_, buffered_);
        }
        detail::accumulate_stripe(acc, last, s + detail::kLastStripeOffset);
        return detail::merge(acc, s + detail::kMergeOffset, total_ * detail::kPrime64_1);
    }

   private:
    static constexpr std::size_t kBuffer = 4 * detail::kStripe;  // 256: one 64-byte stripe would do; 4 cut
                                                                 // the per-call overhead of small updates

    const unsigned char* secret() const noexcept { return seed_ == 0 ? detail::kDefaultSecret : derived_; }

    // n stripes, scrambling at each block boundary. Only called for stripes followed by more input.
    void consume(const unsigned char* p, std::size_t n) noexcept {
        const unsigned char* s = secret();
        while (n > 0) {
            const std::size_t take = n < detail::kStripesPerBlock - stripes_ ? n : detail::kStripesPerBlock - stripes_;
            detail::accumulate(acc_, p, s + 8 * stripes_, take);
            stripes_ += take;
            p += take * detail::kStripe;
            n -= take;
            if (stripes_ == detail::kStripesPerBlock) {
                detail::scramble(acc_, s + detail::kScrambleOffset);
                stripes_ = 0;
            }
        }
    }

    alignas(16) std::uint64_t acc_[8];                // the 8 long-input accumulators
    alignas(16) unsigned char buf_[kBuffer];          // input not yet accumulated: buf_[0, buffered_)
    unsigned char prev_[detail::kStripe];             // the last 64 bytes accumulated (valid once any were)
    unsigned char derived_[detail::kSecretSize];      // the seed's secret (valid when seed_ != 0)
    std::uint64_t seed_;
    std::uint64_t total_;                             // bytes given to update() since reset()
    std::size_t buffered_;
    std::size_t stripes_;                             // stripes accumulated in the current block, 0..15
};

}  // namespace mmstore::xxh3
