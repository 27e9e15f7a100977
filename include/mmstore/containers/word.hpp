// mmstore/containers/word.hpp
//
// The 8-byte *word*: the unit every Dict entry and List element holds (docs/format.md §3, "Words and
// records"). This header is the one place that encodes, checks and decodes words; the containers, the C++
// API and the Python bindings all go through it, so the format has a single implementation.
//
//   byte   0..5           6        7
//   inline payload (n<=6) check    1 kkk 0nnn   kind k (InlineKind), length n
//   7-bit packed ASCII    check    1 101 h111   kAscii7: a 7-character ASCII str, 49 bits: bytes 0..5 hold
//                                               the low 48, h (bit 59) the 49th
//   record offset (<2^48) check    0x00         arena offset of {u32 len, u32 check, len bytes}
//   kTombWord: all ones (an erased Dict entry; never checked, compared whole)
//
// The check byte makes every word self-checking: the XOR of the word's eight bytes equals kWordSeed. Any
// change of a single byte of the word (so any single-bit flip) changes that XOR by the changed byte's
// delta, which is never zero: word_intact() then fails. The all-zero word (an unwritten slot) and
// kTombWord fail it too (their XOR is 0x00 and 0x00, not kWordSeed), so neither can pass for data.
// Checking costs a few shifts and XORs on a word already in a register: no extra memory access, no extra
// file space (the byte came from shortening inline payloads from 7 to 6 bytes; record offsets were
// already below 2^48).
//
// Thread and process safety: pure functions of their arguments.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace mmstore::containers {

inline constexpr std::uint64_t kTombWord = ~std::uint64_t{0};
inline constexpr std::size_t kInlineMax = 6;                  // payload bytes of an inline word
inline constexpr std::uint64_t kPayloadMask = 0xFFFFFFFFFFFFull;  // bytes 0..5: inline payload or record offset
inline constexpr unsigned kCheckShift = 48;                   // byte 6: the check byte
inline constexpr std::uint64_t kCheckMask = std::uint64_t{0xFF} << kCheckShift;
// XOR of all eight bytes of an intact word. Not 0x00 (the XOR of the zero word and of kTombWord), and
// 0xFF ^ kWordSeed = 0x58 is no valid top byte, so a tombstone with one byte changed never decodes.
inline constexpr std::uint8_t kWordSeed = 0xA7;

// How an inline word's payload becomes an encoding (docs/format.md §3): kRaw holds the whole encoding;
// the others drop a tag byte that the kind and length imply.
enum class InlineKind : unsigned {
    kRaw = 0,       // the n bytes are a whole encoding (n <= 6)
    kStr = 1,       // payload of a short str (tag 0x20 + n implied)
    kBytes = 2,     // payload of short bytes (tag 0x40 + n implied)
    kInt = 3,       // payload of an n-byte integer (tag 0x05 + n implied)
    kTableRef = 4,  // SharedDict nested-table reference: 6-byte cell offset (tag 0x1D implied, n = 6)
    // A str of exactly 7 ASCII characters (tag 0x27 implied), 7 bits each: 49 bits, so it fits beside the
    // check byte. Seven characters are the common short key or value that the check byte would otherwise
    // have pushed into a record ('v123456', str(1_000_000), ISO dates without dashes): a record costs an
    // allocation on write and a dependent cache miss on read.
    kAscii7 = 5,
};
inline constexpr unsigned kInlineKinds = 6;
inline constexpr std::uint64_t kAscii7Top = 0x80u | (5u << 4) | 7u;  // top byte of a kAscii7 word, h = 0
inline constexpr std::uint64_t kAscii7HighBit = std::uint64_t{1} << 59;

// XOR of the eight bytes of w.
constexpr std::uint8_t xor_fold(std::uint64_t w) noexcept {
    w ^= w >> 32;
    w ^= w >> 16;
    w ^= w >> 8;
    return static_cast<std::uint8_t>(w);
}

// True when the word's check byte matches its other seven bytes.
constexpr bool word_intact(std::uint64_t w) noexcept { return xor_fold(w) == kWordSeed; }

// w with its check byte set (whatever byte 6 held is replaced).
constexpr std::uint64_t seal_word(std::uint64_t w) noexcept {
    w &= ~kCheckMask;
    return w | (std::uint64_t{static_cast<std::uint8_t>(xor_fold(w) ^ kWordSeed)} << kCheckShift);
}

constexpr bool is_inline(std::uint64_t w) noexcept { return (w >> 63) != 0 && w != kTombWord; }
// Payload length: bytes for every kind but kAscii7, characters (7) for kAscii7.
constexpr std::size_t inline_len(std::uint64_t w) noexcept { return static_cast<std::size_t>((w >> 56) & 0x07); }
constexpr InlineKind inline_kind(std::uint64_t w) noexcept { return static_cast<InlineKind>((w >> 60) & 0x7); }
// True for an inline word whose kind and length are ones a writer produces (check byte not consulted).
constexpr bool inline_shape_ok(std::uint64_t w) noexcept {
    const unsigned kind = static_cast<unsigned>(inline_kind(w));
    const std::size_t n = inline_len(w);
    if (kind == static_cast<unsigned>(InlineKind::kAscii7)) return n == 7;
    return kind < kInlineKinds && n <= kInlineMax && (w & kAscii7HighBit) == 0 &&
           (kind != static_cast<unsigned>(InlineKind::kTableRef) || n == 6);
}

// 7-bit packing of seven ASCII bytes (byte 7 of `x` zero, every byte < 0x80) into 49 bits, and back: three
// SWAR steps each way, no loop and no BMI2 dependence.
constexpr std::uint64_t pack_ascii7(std::uint64_t x) noexcept {
    x = (x & 0x007F007F007F007Full) | ((x & 0x7F007F007F007F00ull) >> 1);
    x = (x & 0x00003FFF00003FFFull) | ((x & 0x3FFF00003FFF0000ull) >> 2);
    return (x & 0x000000000FFFFFFFull) | ((x & 0x0FFFFFFF00000000ull) >> 4);
}
constexpr std::uint64_t unpack_ascii7(std::uint64_t v) noexcept {
    v = (v & 0x000000000FFFFFFFull) | ((v & 0x00FFFFFFF0000000ull) << 4);
    v = (v & 0x00003FFF00003FFFull) | ((v & 0x0FFFC0000FFFC000ull) << 2);
    return (v & 0x007F007F007F007Full) | ((v & 0x3F803F803F803F80ull) << 1);
}
// The seven characters of a kAscii7 word, little-endian in bytes 0..6 (byte 7 zero).
constexpr std::uint64_t ascii7_chars(std::uint64_t w) noexcept {
    return unpack_ascii7((w & kPayloadMask) | ((w & kAscii7HighBit) >> 11));
}

// Record words: top byte 0, offset in bytes 0..5.
constexpr std::uint64_t record_word(std::uint64_t offset) noexcept { return seal_word(offset); }
constexpr std::uint64_t record_offset(std::uint64_t w) noexcept { return w & kPayloadMask; }
constexpr bool is_record_word(std::uint64_t w) noexcept { return (w >> 56) == 0; }

// SharedDict nested-table references (docs/format.md §4.1).
inline constexpr std::uint8_t kTableRefTag = 0x1D;  // codec::tag::kTableRef
inline constexpr std::uint64_t kTableRefTop = 0x80u | (4u << 4) | 6u;
constexpr bool is_table_ref(std::uint64_t w) noexcept { return (w >> 56) == kTableRefTop; }
constexpr std::uint64_t table_ref_cell(std::uint64_t w) noexcept { return w & kPayloadMask; }

// Packs up to 7 bytes into a word without a variable-length memcpy call (overlapping loads).
inline std::uint64_t pack7(const unsigned char* p, std::size_t n) noexcept {
    if (n >= 4) {
        std::uint32_t lo, hi;
        std::memcpy(&lo, p, 4);
        std::memcpy(&hi, p + n - 4, 4);
        return lo | (std::uint64_t{hi} << (8 * (n - 4)));
    }
    if (n == 0) return 0;
    return p[0] | (std::uint64_t{p[n / 2]} << (8 * (n / 2))) | (std::uint64_t{p[n - 1]} << (8 * (n - 1)));
}

// The canonical inline word of an encoding (sealed), or 0 when it needs a record. Short str, bytes and int
// values whose payload fits 6 bytes drop their tag (so 'v99999' and every int in [-2^47, 2^47) are inline),
// as do table references; other encodings of at most 6 bytes are stored raw. Equal encodings have equal
// words, so an inline key compares with one 8-byte comparison.
inline std::uint64_t inline_word(std::string_view enc) noexcept {
    const std::size_t n = enc.size();
    if (n == 0 || n > kInlineMax + 2) return 0;
    const auto* p = reinterpret_cast<const unsigned char*>(enc.data());
    const unsigned t = p[0];
    if (n == kInlineMax + 2) {  // 8 bytes: only a 7-character ASCII str (tag 0x27) is inline, as kAscii7
        if (t != 0x20 + kInlineMax + 1) return 0;
        std::uint64_t x;
        std::memcpy(&x, p, 8);
        x >>= 8;  // the seven characters, byte 7 zero
        if (x & 0x0080808080808080ull) return 0;
        const std::uint64_t v = pack_ascii7(x);
        return seal_word((v & kPayloadMask) | ((v << 11) & kAscii7HighBit) | (kAscii7Top << 56));
    }
    InlineKind kind;
    if (t >= 0x20 && t <= 0x20 + kInlineMax && n == 1 + (t - 0x20)) kind = InlineKind::kStr;
    else if (t >= 0x40 && t <= 0x40 + kInlineMax && n == 1 + (t - 0x40)) kind = InlineKind::kBytes;
    else if (t >= 0x05 && t <= 0x05 + kInlineMax && n == 1 + (t - 0x05)) kind = InlineKind::kInt;
    else if (t == kTableRefTag && n == 7) kind = InlineKind::kTableRef;
    else if (n <= kInlineMax) return seal_word(pack7(p, n) | (std::uint64_t{0x80 | n} << 56));
    else return 0;
    return seal_word(pack7(p + 1, n - 1) |
                     (std::uint64_t{0x80u | (static_cast<unsigned>(kind) << 4) | static_cast<unsigned>(n - 1)} << 56));
}

// The encoding of an inline word of implied-tag kind (not kRaw), written as one 8-byte store into `out`
// (tag, then the payload; at most 8 bytes); returns its length. The word must satisfy inline_shape_ok().
inline std::size_t implied_encoding(std::uint64_t w, char* out) noexcept {
    static constexpr unsigned char kBase[kInlineKinds] = {0, 0x20, 0x40, 0x05, kTableRefTag, 0x20};
    const auto kind = static_cast<unsigned>(inline_kind(w));
    if (kind == static_cast<unsigned>(InlineKind::kAscii7)) {
        const std::uint64_t enc = (ascii7_chars(w) << 8) | (0x20u + 7u);
        std::memcpy(out, &enc, 8);
        return 8;
    }
    const std::size_t n = inline_len(w);
    const unsigned tag = kBase[kind] + (kind == static_cast<unsigned>(InlineKind::kTableRef) ? 0u : static_cast<unsigned>(n));
    // One 8-byte store of tag + payload: a byte store followed by a memcpy made the hash's loads miss store
    // forwarding (measured: a third of insert time went to that stall).
    const std::uint64_t enc = ((w & kPayloadMask) << 8) | tag;
    std::memcpy(out, &enc, 8);
    return n + 1;
}

// A fold of a container header's counters with the fields they are bounded by (TableHeader::check,
// SequenceHeader::check): multiplication by an odd constant is a bijection of u64, so a change of any one
// field -- any number of its bytes -- changes the result.
constexpr std::uint64_t counters_check(std::uint64_t a, std::uint64_t b, std::uint64_t c, std::uint64_t d) noexcept {
    return (a * 0x9E3779B97F4A7C15ull) ^ (b * 0xC2B2AE3D27D4EB4Full) ^ (c * 0x165667B19E3779F9ull) ^
           (d * 0xD6E8FEB86659FD93ull) ^ 0x6D6D73746F726533ull;
}

}  // namespace mmstore::containers
