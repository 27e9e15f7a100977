// mmstore/containers/word.hpp
//
// The 8-byte *word*: the unit every Dict entry and List element holds (docs/format.md §3, "Words and
// records"). This header is the one place that encodes, checks and decodes words; the containers, the C++
// API and the Python bindings all go through it, so the format has a single implementation.
//
//   byte   0..5           6        7
//   inline payload (n<=6) check    1 kkk nnnn   kind k (InlineKind), length n
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
};
inline constexpr unsigned kInlineKinds = 5;

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
constexpr std::size_t inline_len(std::uint64_t w) noexcept { return static_cast<std::size_t>((w >> 56) & 0x0F); }
constexpr InlineKind inline_kind(std::uint64_t w) noexcept { return static_cast<InlineKind>((w >> 60) & 0x7); }
// True for an inline word whose kind and length are ones a writer produces (check byte not consulted).
constexpr bool inline_shape_ok(std::uint64_t w) noexcept {
    const unsigned kind = static_cast<unsigned>(inline_kind(w));
    const std::size_t n = inline_len(w);
    return kind < kInlineKinds && n <= kInlineMax && (kind != static_cast<unsigned>(InlineKind::kTableRef) || n == 6);
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
    if (n == 0 || n > kInlineMax + 1) return 0;
    const auto* p = reinterpret_cast<const unsigned char*>(enc.data());
    const unsigned t = p[0];
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
// (tag, then the payload); returns its length. The word must satisfy inline_shape_ok().
inline std::size_t implied_encoding(std::uint64_t w, char* out) noexcept {
    static constexpr unsigned char kBase[kInlineKinds] = {0, 0x20, 0x40, 0x05, kTableRefTag};
    const auto kind = static_cast<unsigned>(inline_kind(w));
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
