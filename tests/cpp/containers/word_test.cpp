// Checked words (containers/word.hpp, docs/format.md §3): every single-bit flip and every single-byte change
// of a word fails its check, and a seeded differential test of damaged Dict and List files: every read
// returns what the undamaged file holds or throws mmstore::Error, never other data.
#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "mmstore/containers/word.hpp"
#include "mmstore/dict.hpp"
#include "mmstore/list.hpp"
#include "../test_util.hpp"

namespace {

using namespace mmstore;
using containers::word_intact;

std::vector<std::uint64_t> sample_words() {
    std::vector<std::uint64_t> w;
    const std::vector<std::string> encs = {
        std::string("\x05", 1),  std::string("\x06\x01", 2), std::string("\x0B\x01\x02\x03\x04\x05\x06", 7),
        std::string("\x20", 1),  "\x23" "abc",                "\x26" "abcdef",
        std::string("\x40", 1),  "\x42" "xy",                 std::string("\x00", 1),
        "\x01",                  std::string("\x1D\x10\x20\x30\x40\x00\x00", 7),
        "\x27" "v123456",         "\x27" "\x7F~ \x01zZ0",      std::string("\x27\0\0\0\0\0\0\0", 8)};
    for (const auto& e : encs) {
        const std::uint64_t x = containers::inline_word(e);
        EXPECT_NE(x, 0u) << "not inline: " << e.size() << " bytes";
        w.push_back(x);
    }
    for (std::uint64_t off : {std::uint64_t{12288}, std::uint64_t{1} << 40, (std::uint64_t{1} << 48) - 16})
        w.push_back(containers::record_word(off));
    return w;
}

TEST(Word, EveryWriterWordIsIntactAndRoundTrips) {
    for (const std::uint64_t w : sample_words()) {
        EXPECT_TRUE(word_intact(w)) << std::hex << w;
        if (!containers::is_inline(w)) continue;
        EXPECT_TRUE(containers::inline_shape_ok(w)) << std::hex << w;
        char buf[8];
        if (containers::inline_kind(w) != containers::InlineKind::kRaw) {
            const std::size_t n = containers::implied_encoding(w, buf);
            EXPECT_EQ(containers::inline_word(std::string_view(buf, n)), w);  // canonical: one word per encoding
        }
    }
    EXPECT_FALSE(word_intact(0));  // an unwritten slot
    EXPECT_FALSE(word_intact(containers::kTombWord));
    EXPECT_EQ(containers::inline_word(std::string("\x0C\x01\x02\x03\x04\x05\x06\x07", 8)), 0u);  // 7 payload bytes: a record
}

// kAscii7: every 7-character ASCII str is one inline word whose implied encoding is the str's encoding,
// seeded over random characters (the 7-bit packing is the part that can go wrong); 7 characters with any
// byte >= 0x80 (UTF-8) stay records, as do 7-byte payloads of other kinds.
TEST(Word, SevenCharacterAsciiStrsAreInlineAndRoundTrip) {
    std::mt19937_64 rng(7);
    for (int round = 0; round < 20000; ++round) {
        std::string enc = "\x27";
        for (int i = 0; i < 7; ++i) enc.push_back(static_cast<char>(rng() % 128));
        const std::uint64_t w = containers::inline_word(enc);
        ASSERT_NE(w, 0u) << round;
        ASSERT_TRUE(word_intact(w));
        ASSERT_TRUE(containers::inline_shape_ok(w));
        ASSERT_EQ(containers::inline_kind(w), containers::InlineKind::kAscii7);
        char buf[8];
        ASSERT_EQ(containers::implied_encoding(w, buf), 8u);
        ASSERT_EQ(std::string(buf, 8), enc) << round;
        const std::uint64_t chars = containers::ascii7_chars(w);
        ASSERT_EQ(std::string(reinterpret_cast<const char*>(&chars), 7), enc.substr(1));
        std::string utf8 = enc;
        utf8[1 + rng() % 7] = static_cast<char>(0x80 | (rng() % 128));
        ASSERT_EQ(containers::inline_word(utf8), 0u) << "non-ASCII 7-byte str must be a record";
    }
    EXPECT_EQ(containers::inline_word(std::string("\x28" "v1234567", 9)), 0u);  // 8 characters: a record
    EXPECT_EQ(containers::inline_word(std::string("\x47" "1234567", 8)), 0u);   // 7 bytes of bytes: a record
    // A kAscii7 word claiming another length, or another kind with the 49th bit set, is not a writer's word.
    const std::uint64_t w = containers::inline_word("\x27" "abcdefg");
    EXPECT_FALSE(containers::inline_shape_ok((w & ~(std::uint64_t{7} << 56)) | (std::uint64_t{6} << 56)));
    const std::uint64_t s3 = containers::inline_word("\x23" "abc");
    EXPECT_FALSE(containers::inline_shape_ok(s3 | containers::kAscii7HighBit));
}

TEST(Word, EverySingleBitFlipAndByteChangeFailsTheCheck) {
    for (const std::uint64_t w : sample_words()) {
        for (unsigned bit = 0; bit < 64; ++bit) EXPECT_FALSE(word_intact(w ^ (std::uint64_t{1} << bit)));
        for (unsigned byte = 0; byte < 8; ++byte)
            for (unsigned v = 0; v < 256; ++v) {
                const std::uint64_t d = (w & ~(std::uint64_t{0xFF} << (8 * byte))) | (std::uint64_t{v} << (8 * byte));
                if (d != w) EXPECT_FALSE(word_intact(d)) << std::hex << w << " byte " << byte << " = " << v;
            }
    }
    // A tombstone changed in one byte never becomes a word a reader would decode.
    for (unsigned byte = 0; byte < 8; ++byte)
        for (unsigned v = 0; v < 255; ++v) {
            const std::uint64_t d = (containers::kTombWord & ~(std::uint64_t{0xFF} << (8 * byte))) | (std::uint64_t{v} << (8 * byte));
            EXPECT_FALSE(word_intact(d) && (containers::is_record_word(d) || containers::inline_shape_ok(d)));
        }
}

// ---- differential: damaged files ---------------------------------------------------------------------

struct Model {
    std::vector<std::pair<std::string, std::string>> dict;  // encoded key -> encoded value, insertion order
    std::vector<std::string> list;                           // encoded elements
};

std::string enc_int(std::int64_t i) { return codec::encode(Value::integer(i)); }
std::string enc_str(const std::string& s) { return codec::encode(Value::str(s)); }

Model build(const std::string& dpath, const std::string& lpath) {
    Model m;
    {
        Dict d(dpath);
        for (int i = 0; i < 200; ++i) {
            const std::string k = i % 2 ? enc_int(i * 7919 - 500) : enc_str("key" + std::to_string(i));
            const std::string v = i % 3 == 0 ? enc_str(std::string(static_cast<std::size_t>(i % 40), 'v')) : enc_int(i);
            d.set_encoded(k, v);
            m.dict.emplace_back(k, v);
        }
        d.set_encoded(enc_str("big"), enc_str(std::string(5000, 'b')));
        m.dict.emplace_back(enc_str("big"), enc_str(std::string(5000, 'b')));
        d.compact();
    }
    {
        List l(lpath);
        for (int i = 0; i < 200; ++i) {
            const std::string e = i % 2 ? enc_int(-i * 100003) : enc_str(std::string(static_cast<std::size_t>(i % 20), 's'));
            l.push_back_encoded(e);
            m.list.push_back(e);
        }
        l.compact();
    }
    return m;
}

// Everything a reader can get from the files, or nullopt when a read threw mmstore::Error.
std::optional<Model> read_all(const std::string& dpath, const std::string& lpath) {
    Model m;
    try {
        OpenOptions o;
        o.readonly = true;
        o.create = OpenOptions::Create::kNever;
        Dict d(dpath, o);
        d.for_each([&](std::string_view k, std::string_view v) { m.dict.emplace_back(k, v); });
        std::vector<std::string_view> keys;
        for (const auto& [k, v] : m.dict) {
            const auto got = d.get_encoded(k);
            if (!got || *got != v || !d.contains(codec::decode(k))) return Model{};  // disagrees: reported as wrong
        }
        if (d.size() != m.dict.size() || d.get_encoded(enc_str("absent"))) return Model{};
        List l(lpath, o);
        for (std::uint64_t i = 0, n = l.size(); i < n; ++i) m.list.push_back(l.get_encoded(i));
    } catch (const Error&) {
        return std::nullopt;
    }
    return m;
}

TEST(WordDifferential, DamagedDictAndListReadEqualOrThrow) {
    mmstore_test::TempDir dir;
    const Model want = build(dir.file("d"), dir.file("l"));
    const std::string dorig = mmstore_test::read_file(dir.file("d"));
    const std::string lorig = mmstore_test::read_file(dir.file("l"));
    ASSERT_EQ(read_all(dir.file("d"), dir.file("l"))->dict, want.dict);
    std::mt19937_64 rng(mmstore_test::seed(20261204));
    int errors = 0, equal = 0;
    const int cases = 600;
    for (int c = 0; c < cases; ++c) {
        const bool in_dict = c % 2 == 0;
        std::string bad = in_dict ? dorig : lorig;
        // List files are mostly unused capacity: aim at the part that holds data half the time.
        const std::uint64_t limit = in_dict || c % 4 == 1 ? bad.size() : std::min<std::uint64_t>(bad.size(), 32768);
        const std::uint64_t pos = mmstore_test::uniform(rng, 0, limit - 1);
        if (rng() % 3 != 0) bad[pos] = static_cast<char>(bad[pos] ^ (1 << (rng() % 8)));
        else bad[pos] = static_cast<char>(rng() & 0xFF);
        mmstore_test::write_file(dir.file(in_dict ? "d" : "l"), bad);
        const auto got = read_all(dir.file("d"), dir.file("l"));
        mmstore_test::write_file(dir.file(in_dict ? "d" : "l"), in_dict ? dorig : lorig);
        if (!got) {
            ++errors;
            continue;
        }
        ASSERT_EQ(got->dict, want.dict) << "case " << c << ": byte " << pos << " of the dict file";
        ASSERT_EQ(got->list, want.list) << "case " << c << ": byte " << pos << " of the list file";
        ++equal;
    }
    EXPECT_GT(errors, 0);  // the damage reached the readers
    EXPECT_EQ(errors + equal, cases);
}

}  // namespace
