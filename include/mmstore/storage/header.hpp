// mmstore/storage/header.hpp
//
// The fixed layout at the start of every mmstore file (docs/format.md, "Header"). Three 4096-byte pages:
//
//   page 0  FileHeader (64 B, written once at creation, checksummed)
//           LockSlot   (64 B, the store's process-shared robust mutex and change-notification futex)
//           LiveHeader (bytes 256..1023: the live state, updated in place with single 8-byte stores)
//   page 1  CommitSlot A   } double-buffered snapshots of the live state written by sync() and close();
//   page 2  CommitSlot B   } the valid slot with the higher generation wins, a torn one fails its checksum
//   page 3+ the arena (alloc::Arena) holding every container record
//
// All fields are little-endian and fixed-width; the layout does not depend on the word size of the writer.
// Thread/process safety: only the holder of the store's ProcessMutex (sync/process_mutex.hpp) writes the
// LiveHeader and the commit slots; LockSlot fields say who writes them. Readers in any process read the
// LiveHeader without a lock: every field they use is a single aligned 8-byte word.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mmstore::storage {

inline constexpr std::uint64_t kPageSize = 4096;  // layout unit; also the alignment of large blocks
inline constexpr char kMagic[8] = {'M', 'M', 'S', 'T', 'O', 'R', 'E', '\0'};
// Format of the mutable stores (Dict, List, Vector, SharedDict segments):
// 2: LockSlot holds a process-shared mutex and LiveHeader a reclaim counter (many writers per file).
// 3: every word carries a check byte (inline payloads of at most 6 bytes; SharedDict table references are
//    inline kind 4), and table and sequence headers a check of their counters (docs/format.md §3).
//    Older files are refused with a message naming `mmstore upgrade` (upgrade.hpp), which converts them.
inline constexpr std::uint32_t kFormatVersion = 3;
// The oldest store format upgrade() converts.
inline constexpr std::uint32_t kOldestUpgradable = 2;
// The read-only record images (RecordArray, Mapping) have their own format number,
// detail::kRecordsFormatVersion (internal/records_format.hpp); store format 3 did not change them.
inline constexpr std::uint32_t kByteOrderMark = 0x01020304u;  // reads back as such only on little-endian
inline constexpr std::uint64_t kCommitSlotOffset[2] = {kPageSize, 2 * kPageSize};
inline constexpr std::uint64_t kDataStart = 3 * kPageSize;  // first arena byte

// kRecordArray and kMapping are read-only images (mmstore/records.hpp): FileHeader only, no pages 1-2.
enum class StoreKind : std::uint32_t { kDict = 1, kList = 2, kVector = 3, kRecordArray = 4, kMapping = 5 };
const char* kind_name(StoreKind kind) noexcept;

// Offset 0. Immutable after creation; `checksum` is XXH3-64 of bytes [0, 56).
struct FileHeader {
    char magic[8];                  // kMagic
    std::uint32_t format_version;   // kFormatVersion at creation; newer versions are refused
    std::uint32_t kind;             // StoreKind
    std::uint32_t byte_order;       // kByteOrderMark
    std::uint32_t word_size;        // 8: offsets and lengths are 64-bit whatever the writer's word size
    std::uint32_t page_size;        // kPageSize
    std::uint32_t elem_size;        // Vector<T>: sizeof(T); 0 for other kinds
    std::uint64_t elem_tag;         // Vector<T>: caller-chosen type tag checked at open; 0 otherwise
    std::uint64_t created_unix_ns;  // creation time, informational
    std::uint32_t creator_pid;      // pid of the creating process, informational (mmstore.shared_dicts())
    std::uint32_t reserved;         // 0
    std::uint64_t checksum;         // XXH3-64 of the 56 bytes above
};
static_assert(sizeof(FileHeader) == 64);

// Offset 64. Process-local content: a pthread mutex only means something to processes on the machine that
// initialized it, so the first writable opener of a store that nobody else has open (or whose `boot_id`
// is not this boot's) initializes `mutex` afresh (storage::Region::open, under the open gate). Nothing
// here is part of the portable data; a copied file simply gets a fresh lock.
struct LockSlot {
    std::uint8_t mutex[48];    // pthread_mutex_t: process-shared, robust, recursive (40 B on x86-64 glibc)
    std::uint32_t holder_pid;  // pid of the holder (diagnostics: CannotAcquireLock.blocking_pid); 0 = free
    std::uint32_t depth;       // recursion depth of the holder; written by the holder only
    std::uint32_t change;      // futex word: +1 after every committed mutation (wait_for_change)
    std::uint32_t waiters;     // processes blocked in wait_for_change; writers FUTEX_WAKE only when nonzero
};
static_assert(sizeof(LockSlot) == 64);

// Offset 256. The live state, valid at every instant for a reader of the mapping (a process killed at any
// instruction leaves it consistent with the arena because writers publish with single 8-byte stores).
struct LiveHeader {
    std::uint64_t dirty;       // 1 while a writer has the store open; 0 after a clean close
    std::uint64_t file_size;   // bytes of the file in use; a multiple of kPageSize, <= the file's size
    std::uint64_t root;        // offset of the container's root record (0 = none yet)
    std::uint64_t mutations;   // incremented on every change of the key set / length (iterator checks)
    // Incremented (before the first byte changes) whenever memory a reader may be reading is freed or
    // rewritten in place other than by a single 8-byte store. Lock-free readers copy what they need, then
    // compare: an unchanged count proves the copy was never overwritten (a seqlock without an odd state, so
    // a writer stopped at any instruction never stalls readers).
    std::uint64_t reclaims;
    std::uint64_t boot_id;     // hash of /proc/sys/kernel/random/boot_id when `mutex` was initialized
    std::uint64_t next_id;     // SharedDict: source of unique ids for nested tables
    std::uint64_t reserved0;   // 0
    // SharedDict: 1 once a handle that closed asked for auto_unlink; the last handle to close then removes
    // the segment's name (docs/design.md, "Segment lifetime").
    std::uint64_t unlink_on_last_close;
    // Incremented by every mark-and-sweep of the arena (Arena::rebuild): frees a handle deferred before
    // it (alloc::Arena, "Deferred frees") are then already free again and must be dropped, not freed twice.
    std::uint64_t arena_epoch;
    std::uint64_t reserved[6];
    std::uint8_t arena[640];   // alloc::ArenaState, opaque to this layer
};
static_assert(sizeof(LiveHeader) == 768);
inline constexpr std::uint64_t kLiveHeaderOffset = 256;

// Pages 1 and 2. A snapshot of LiveHeader taken by sync(); `checksum` covers every byte before it.
struct CommitSlot {
    std::uint64_t generation;  // strictly increasing; 0 = never written
    std::uint64_t reserved[3];
    LiveHeader state;
    std::uint64_t checksum;    // XXH3-64 of the bytes above
};
static_assert(sizeof(CommitSlot) == 808);

}  // namespace mmstore::storage
