// Tests of mmstore's XXH3-64 (include/mmstore/storage/xxh3.hpp) against the reference library.
//
// The expected values were computed with PyPI `xxhash` 4.1.0 (libxxhash 0.8.4), the reference
// implementation, as xxhash.xxh3_64_intdigest(pattern(len), seed), with pattern() as defined below. They
// cover each branch of the specification (0, 1-3, 4-8, 9-16, 17-128, 129-240 bytes, and long inputs at
// stripe and 1024-byte block edges) with seed 0 (the file format's hash) and two others (the seeded secret
// derivation). tests/python/test_hash.py compares against the library itself over many more lengths and seeds.
#include "mmstore/storage/xxh3.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "mmstore/storage/checksum.hpp"

namespace {

using mmstore::xxh3::Hasher;
using mmstore::xxh3::hash64;

// byte i of the test input: bits 13..20 of i * 2654435761 (Knuth's multiplier), mirrored in the Python that
// computed the vectors: bytes(((i * 2654435761) >> 13) & 0xFF for i in range(n)).
std::vector<unsigned char> pattern(std::size_t n) {
    std::vector<unsigned char> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<unsigned char>((std::uint64_t{i} * 2654435761u) >> 13);
    return v;
}

const std::vector<unsigned char>& mib() {
    static const std::vector<unsigned char> v = pattern(std::size_t{1} << 20);
    return v;
}

struct Vector {
    std::size_t len;
    std::uint64_t seed;
    std::uint64_t expected;
};

// clang-format off
constexpr Vector kVectors[] = {
    {0, 0x0000000000000000ull, 0x2D06800538D394C2ull},
    {1, 0x0000000000000000ull, 0xC44BDFF4074EECDBull},
    {2, 0x0000000000000000ull, 0x1CA5CFA6A6D57DC2ull},
    {3, 0x0000000000000000ull, 0xA1C4A8259B827291ull},
    {4, 0x0000000000000000ull, 0xBB4E3D89EE0B271Dull},
    {5, 0x0000000000000000ull, 0xDAFB9806147DED6Full},
    {7, 0x0000000000000000ull, 0xE8317720FF435ECEull},
    {8, 0x0000000000000000ull, 0x79D02238B80E37B1ull},
    {9, 0x0000000000000000ull, 0xF64CECC4271FF461ull},
    {15, 0x0000000000000000ull, 0x6F72FD6B5D066049ull},
    {16, 0x0000000000000000ull, 0x222E9AEAD6BDDD51ull},
    {17, 0x0000000000000000ull, 0x47AAD6B375EB4BBAull},
    {31, 0x0000000000000000ull, 0x001CB9F64CB08212ull},
    {32, 0x0000000000000000ull, 0x774140158F21FF0Aull},
    {33, 0x0000000000000000ull, 0x537E7ED26D825E92ull},
    {63, 0x0000000000000000ull, 0x625B8B75EEEAF221ull},
    {64, 0x0000000000000000ull, 0x70A70E66815E67E5ull},
    {65, 0x0000000000000000ull, 0x4B4CE7050EEB9559ull},
    {96, 0x0000000000000000ull, 0xA97F9AE93C0FF67Aull},
    {97, 0x0000000000000000ull, 0x0DD88DB1BBAF7326ull},
    {127, 0x0000000000000000ull, 0xB931EE7057194E63ull},
    {128, 0x0000000000000000ull, 0x421A9C905C6E66BAull},
    {129, 0x0000000000000000ull, 0x9E2414800F83768Aull},
    {200, 0x0000000000000000ull, 0x20A87DB907CE74E4ull},
    {239, 0x0000000000000000ull, 0x11C20FC75E84087Bull},
    {240, 0x0000000000000000ull, 0xB714C5FD22744964ull},
    {241, 0x0000000000000000ull, 0xBC424A2C480DD281ull},
    {255, 0x0000000000000000ull, 0x155BAA5891F7606Full},
    {256, 0x0000000000000000ull, 0x2D040B1AB40F0D78ull},
    {257, 0x0000000000000000ull, 0xD0515FBEC69EFB50ull},
    {511, 0x0000000000000000ull, 0xF3848293E35DDB39ull},
    {512, 0x0000000000000000ull, 0x17EC4809D1A9AD43ull},
    {1023, 0x0000000000000000ull, 0x3071307BAFA2F8F4ull},
    {1024, 0x0000000000000000ull, 0x1FD15E7D36F5E1BCull},
    {1025, 0x0000000000000000ull, 0xFE08E5A874D23FD2ull},
    {1087, 0x0000000000000000ull, 0x31BD71B326693B7Full},
    {2048, 0x0000000000000000ull, 0x81EC4A6A9EE23D55ull},
    {2049, 0x0000000000000000ull, 0x9156A1FD2D1A8C37ull},
    {4096, 0x0000000000000000ull, 0x84D9E7CE664C8217ull},
    {16383, 0x0000000000000000ull, 0x6CA55E84C91DF594ull},
    {16384, 0x0000000000000000ull, 0x7388B93F4BFA5AEEull},
    {16385, 0x0000000000000000ull, 0x5946E5FEBEBB3B4Cull},
    {100000, 0x0000000000000000ull, 0x1D43EC753D462301ull},
    {1048576, 0x0000000000000000ull, 0xE2786B358EAB4A67ull},
    {0, 0x9E3779B97F4A7C15ull, 0x602B0E2CD6662C8Bull},
    {1, 0x9E3779B97F4A7C15ull, 0x062B185E4E01441Aull},
    {2, 0x9E3779B97F4A7C15ull, 0xE0BD22AB7317AF96ull},
    {3, 0x9E3779B97F4A7C15ull, 0x2C0F411A2C50B127ull},
    {4, 0x9E3779B97F4A7C15ull, 0x6FEEF6740D50B0AFull},
    {5, 0x9E3779B97F4A7C15ull, 0x7A8545EF93E356ECull},
    {7, 0x9E3779B97F4A7C15ull, 0xF61F709D8DCFB621ull},
    {8, 0x9E3779B97F4A7C15ull, 0x9E68DFD280CFE66Aull},
    {9, 0x9E3779B97F4A7C15ull, 0xE11E6253A093B0A0ull},
    {15, 0x9E3779B97F4A7C15ull, 0x98A8CA6AA7F9620Aull},
    {16, 0x9E3779B97F4A7C15ull, 0x54D48B2367B853F2ull},
    {17, 0x9E3779B97F4A7C15ull, 0xD0C99AE6D4D79953ull},
    {31, 0x9E3779B97F4A7C15ull, 0xB15807A541F866A1ull},
    {32, 0x9E3779B97F4A7C15ull, 0xCAF446CBCFB21649ull},
    {33, 0x9E3779B97F4A7C15ull, 0x0D2183956181E28Bull},
    {63, 0x9E3779B97F4A7C15ull, 0xDE50577F061718CFull},
    {64, 0x9E3779B97F4A7C15ull, 0xAD3C620216A23B35ull},
    {65, 0x9E3779B97F4A7C15ull, 0x3A2D1E2A1CF90AAFull},
    {96, 0x9E3779B97F4A7C15ull, 0x4EE40D77FDF1CBD4ull},
    {97, 0x9E3779B97F4A7C15ull, 0xECD5CB9EFA43C0F7ull},
    {127, 0x9E3779B97F4A7C15ull, 0xA5191878F4AFA0C6ull},
    {128, 0x9E3779B97F4A7C15ull, 0xC63A7EB995D1461Eull},
    {129, 0x9E3779B97F4A7C15ull, 0xF1E03185164C9A4Bull},
    {200, 0x9E3779B97F4A7C15ull, 0xFAE81C3DB303F62Bull},
    {239, 0x9E3779B97F4A7C15ull, 0xF922918BC557A25Cull},
    {240, 0x9E3779B97F4A7C15ull, 0xDA8B158566CF41E0ull},
    {241, 0x9E3779B97F4A7C15ull, 0xDBCB360ABF2CA85Dull},
    {255, 0x9E3779B97F4A7C15ull, 0x6B281C5F1253F92Bull},
    {256, 0x9E3779B97F4A7C15ull, 0xC9FF3E475003261Full},
    {257, 0x9E3779B97F4A7C15ull, 0x987DFD4F1D950785ull},
    {511, 0x9E3779B97F4A7C15ull, 0x0DE15A19C685DF22ull},
    {512, 0x9E3779B97F4A7C15ull, 0x0BD264522BB7F27Cull},
    {1023, 0x9E3779B97F4A7C15ull, 0x98A3EB21A6568011ull},
    {1024, 0x9E3779B97F4A7C15ull, 0x249CD8F9AD0EA839ull},
    {1025, 0x9E3779B97F4A7C15ull, 0x455EAD76FA138D0Aull},
    {1087, 0x9E3779B97F4A7C15ull, 0xCA6335C08B763363ull},
    {2048, 0x9E3779B97F4A7C15ull, 0xDF66BCF56366E0FBull},
    {2049, 0x9E3779B97F4A7C15ull, 0x031BFB503CB30A7Eull},
    {4096, 0x9E3779B97F4A7C15ull, 0xA8864F8A2D507D77ull},
    {16383, 0x9E3779B97F4A7C15ull, 0xFB07BBCD1721E766ull},
    {16384, 0x9E3779B97F4A7C15ull, 0x6C69089C796986CFull},
    {16385, 0x9E3779B97F4A7C15ull, 0x6B31FEEDFCEA1EFDull},
    {100000, 0x9E3779B97F4A7C15ull, 0x420B91C8137258D5ull},
    {1048576, 0x9E3779B97F4A7C15ull, 0xF7853E554026D983ull},
    {0, 0xFFFFFFFFFFFFFFFFull, 0x4C093276AE47A555ull},
    {1, 0xFFFFFFFFFFFFFFFFull, 0x77B2DF5FF42AAB88ull},
    {2, 0xFFFFFFFFFFFFFFFFull, 0x5E7657F7DB55FAA5ull},
    {3, 0xFFFFFFFFFFFFFFFFull, 0xF0B1CAB2C81625B3ull},
    {4, 0xFFFFFFFFFFFFFFFFull, 0xAB569E415A3D0E00ull},
    {5, 0xFFFFFFFFFFFFFFFFull, 0xA0E80AFA9602D823ull},
    {7, 0xFFFFFFFFFFFFFFFFull, 0x429FA16CD25BE45Full},
    {8, 0xFFFFFFFFFFFFFFFFull, 0xFA246CCC67B2CD8Full},
    {9, 0xFFFFFFFFFFFFFFFFull, 0x8A5878C8EC2A693Dull},
    {15, 0xFFFFFFFFFFFFFFFFull, 0xE0CD10C155336AEFull},
    {16, 0xFFFFFFFFFFFFFFFFull, 0xD6083A3221B2EE89ull},
    {17, 0xFFFFFFFFFFFFFFFFull, 0x424F34B72B3FB24Cull},
    {31, 0xFFFFFFFFFFFFFFFFull, 0xCA8272390E4A650Cull},
    {32, 0xFFFFFFFFFFFFFFFFull, 0x4529EE0647D8B3BEull},
    {33, 0xFFFFFFFFFFFFFFFFull, 0xA727FCE955865C8Aull},
    {63, 0xFFFFFFFFFFFFFFFFull, 0x874E2722DCAB735Eull},
    {64, 0xFFFFFFFFFFFFFFFFull, 0xE24EDFA01BB49D6Aull},
    {65, 0xFFFFFFFFFFFFFFFFull, 0x1BD59896CB980A08ull},
    {96, 0xFFFFFFFFFFFFFFFFull, 0x8FE3A7DF367B6683ull},
    {97, 0xFFFFFFFFFFFFFFFFull, 0x9B263468959AE322ull},
    {127, 0xFFFFFFFFFFFFFFFFull, 0xF26D705A633A482Full},
    {128, 0xFFFFFFFFFFFFFFFFull, 0x4AB38292CB32B65Cull},
    {129, 0xFFFFFFFFFFFFFFFFull, 0xFE3C1F643E46510Cull},
    {200, 0xFFFFFFFFFFFFFFFFull, 0x85BFC344C12C9ECEull},
    {239, 0xFFFFFFFFFFFFFFFFull, 0xD1CA326F62D5F8E8ull},
    {240, 0xFFFFFFFFFFFFFFFFull, 0x25446CAD8DFC5B73ull},
    {241, 0xFFFFFFFFFFFFFFFFull, 0xE8E1BB673657B274ull},
    {255, 0xFFFFFFFFFFFFFFFFull, 0x37C4E64046268F38ull},
    {256, 0xFFFFFFFFFFFFFFFFull, 0x9E0C3EB5AC84FE4Cull},
    {257, 0xFFFFFFFFFFFFFFFFull, 0x85B712654E3ABDBCull},
    {511, 0xFFFFFFFFFFFFFFFFull, 0x6EA064E6E391694Eull},
    {512, 0xFFFFFFFFFFFFFFFFull, 0x85AA1A5E9FE7355Bull},
    {1023, 0xFFFFFFFFFFFFFFFFull, 0x8270043D488FD49Aull},
    {1024, 0xFFFFFFFFFFFFFFFFull, 0x89B6EEE508ADC17Dull},
    {1025, 0xFFFFFFFFFFFFFFFFull, 0xCD3CFB67AB44CA09ull},
    {1087, 0xFFFFFFFFFFFFFFFFull, 0x2D9E4CDF6F4C4784ull},
    {2048, 0xFFFFFFFFFFFFFFFFull, 0xD32C1B458FFEA374ull},
    {2049, 0xFFFFFFFFFFFFFFFFull, 0xFB639E41E356D7FFull},
    {4096, 0xFFFFFFFFFFFFFFFFull, 0x6C04182D88C398C1ull},
    {16383, 0xFFFFFFFFFFFFFFFFull, 0x6B1939EEBCF9AFFEull},
    {16384, 0xFFFFFFFFFFFFFFFFull, 0xD5D4EC7A0098AC8Bull},
    {16385, 0xFFFFFFFFFFFFFFFFull, 0x6BA26C45363763BDull},
    {100000, 0xFFFFFFFFFFFFFFFFull, 0x8BA6120FB1B6D774ull},
    {1048576, 0xFFFFFFFFFFFFFFFFull, 0x6AF3CBD897FFA55Bull},
};
// clang-format on

// The 8-byte little-endian hashes of pattern(n) for every n in 0..2048, hashed: one number that pins all
// 2049 lengths (reference: xxh3_64_intdigest(b"".join(xxh3_64_intdigest(pattern(n), seed).to_bytes(8,
// "little") for n in range(2049)))).
std::uint64_t every_length_fold(std::uint64_t seed) {
    std::vector<unsigned char> out;
    for (std::size_t n = 0; n <= 2048; ++n) {
        const std::uint64_t h = hash64(mib().data(), n, seed);
        for (int b = 0; b < 8; ++b) out.push_back(static_cast<unsigned char>(h >> (8 * b)));
    }
    return hash64(out.data(), out.size());
}

// Feeds [data, data + len) to h in pieces of random sizes, up to max_piece bytes (0-byte pieces included).
void feed_randomly(Hasher& h, const unsigned char* data, std::size_t len, std::size_t max_piece, std::mt19937_64& rng) {
    std::size_t pos = 0;
    while (pos < len) {
        const std::size_t n = std::min<std::size_t>(len - pos, rng() % (max_piece + 1));
        h.update(data + pos, n);
        pos += n;
    }
}

TEST(Xxh3, OneShotMatchesReferenceVectors) {
    for (const Vector& v : kVectors)
        EXPECT_EQ(hash64(mib().data(), v.len, v.seed), v.expected) << "len " << v.len << " seed " << v.seed;
}

TEST(Xxh3, EmptyInputHashesToTheWellKnownValue) {
    EXPECT_EQ(hash64(nullptr, 0), 0x2D06800538D394C2ull);
    EXPECT_EQ(Hasher().digest(), 0x2D06800538D394C2ull);
}

TEST(Xxh3, EveryLengthTo2048MatchesReference) {
    EXPECT_EQ(every_length_fold(0), 0xCBBB8BBAB629A9B5ull);
    EXPECT_EQ(every_length_fold(0x9E3779B97F4A7C15ull), 0x152FACACA6F1284Full);
}

TEST(Xxh3, FormatHashIsSeedZero) {
    for (std::size_t n : {0, 3, 8, 16, 100, 240, 241, 5000})
        EXPECT_EQ(mmstore::hash64(mib().data(), n), hash64(mib().data(), n, 0)) << n;
}

TEST(Xxh3, StreamingMatchesReferenceVectors) {
    std::mt19937_64 rng(20240601);
    for (const Vector& v : kVectors) {
        Hasher h(v.seed);
        feed_randomly(h, mib().data(), v.len, v.len < 4096 ? 300 : 70000, rng);
        EXPECT_EQ(h.digest(), v.expected) << "len " << v.len << " seed " << v.seed;
    }
}

TEST(Xxh3, StreamingEqualsOneShotForEveryLengthAndRandomSplits) {
    std::mt19937_64 rng(7);
    for (std::uint64_t seed : {std::uint64_t{0}, std::uint64_t{0x0123456789ABCDEF}}) {
        for (std::size_t n = 0; n <= 2048; ++n) {
            const std::uint64_t want = hash64(mib().data(), n, seed);
            Hasher two(seed);  // one random split point
            const std::size_t cut = n == 0 ? 0 : rng() % (n + 1);
            two.update(mib().data(), cut);
            two.update(mib().data() + cut, n - cut);
            ASSERT_EQ(two.digest(), want) << "len " << n << " cut " << cut << " seed " << seed;
            Hasher many(seed);  // many pieces, some small and some larger than the 256-byte buffer
            feed_randomly(many, mib().data(), n, n % 2 ? 70 : 600, rng);
            ASSERT_EQ(many.digest(), want) << "len " << n << " seed " << seed;
        }
    }
}

TEST(Xxh3, StreamingOneByteAtATime) {
    for (std::size_t n : {0, 1, 17, 240, 241, 255, 256, 257, 320, 1024, 1025, 1088, 3000}) {
        Hasher h;
        for (std::size_t i = 0; i < n; ++i) h.update(mib().data() + i, 1);
        EXPECT_EQ(h.digest(), hash64(mib().data(), n)) << n;
    }
}

TEST(Xxh3, DigestLeavesTheStateToContinue) {
    Hasher h;
    h.update(mib().data(), 1000);
    EXPECT_EQ(h.digest(), hash64(mib().data(), 1000));
    h.update(mib().data() + 1000, 3000);
    EXPECT_EQ(h.digest(), hash64(mib().data(), 4000));
}

TEST(Xxh3, ResetStartsOverWithTheNewSeed) {
    Hasher h(5);
    h.update(mib().data(), 5000);
    h.reset(9);
    h.update(mib().data(), 700);
    EXPECT_EQ(h.digest(), hash64(mib().data(), 700, 9));
    h.reset();
    EXPECT_EQ(h.digest(), hash64(nullptr, 0));
}

TEST(Xxh3, CopiedHasherContinuesIndependently) {
    Hasher a(3);
    a.update(mib().data(), 1500);
    Hasher b = a;
    a.update(mib().data() + 1500, 10);
    b.update(mib().data() + 1500, 2000);
    EXPECT_EQ(a.digest(), hash64(mib().data(), 1510, 3));
    EXPECT_EQ(b.digest(), hash64(mib().data(), 3500, 3));
}

TEST(Xxh3, UnalignedInputHashesTheSame) {
    std::vector<unsigned char> shifted(5000 + 7);
    for (std::size_t off = 1; off < 8; ++off) {
        std::copy(mib().begin(), mib().begin() + 5000, shifted.begin() + off);
        for (std::size_t n : {5, 12, 33, 150, 241, 1025, 5000})
            EXPECT_EQ(hash64(shifted.data() + off, n), hash64(mib().data(), n)) << "offset " << off << " len " << n;
    }
}

}  // namespace
