#include "mmstore/upgrade.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "compact.hpp"
#include "mmstore/dict.hpp"
#include "mmstore/list.hpp"
#include "mmstore/storage/header.hpp"

namespace mmstore {

namespace {

// The old file, mapped read-only, with the version-2 word format (docs/format.md of 0.2, §3): an inline
// word is top byte 1kkknnnn with n <= 7 payload bytes in bytes 0..6; a record word is the bare offset.
class OldStore {
public:
    explicit OldStore(const std::string& path) : path_(path) {
        fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd_ < 0) throw_error(errno == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIo, path, "cannot open", errno);
        struct stat st;
        if (::fstat(fd_, &st) != 0) throw_error(ErrorCode::kIo, path, "cannot stat", errno);
        size_ = static_cast<std::uint64_t>(st.st_size);
        mode_ = st.st_mode & 0777;
        if (size_ < storage::kDataStart) throw_format(ErrorCode::kTruncated, path, "too short to be a store");
        void* p = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd_, 0);
        if (p == MAP_FAILED) throw_error(ErrorCode::kIo, path, "cannot map", errno);
        base_ = static_cast<const std::uint8_t*>(p);
    }
    ~OldStore() {
        if (base_ != nullptr) ::munmap(const_cast<std::uint8_t*>(base_), size_);
        if (fd_ >= 0) ::close(fd_);
    }
    OldStore(const OldStore&) = delete;
    OldStore& operator=(const OldStore&) = delete;

    bool in_bounds(std::uint64_t off, std::uint64_t n) const noexcept { return off <= size_ && n <= size_ - off; }
    template <class T>
    T load(std::uint64_t off) const {
        if (!in_bounds(off, sizeof(T))) corrupt("offset " + std::to_string(off) + " is past the end of the file");
        T v;
        std::memcpy(&v, base_ + off, sizeof v);
        return v;
    }
    [[noreturn]] void corrupt(const std::string& what) const {
        throw_format(ErrorCode::kCorrupt, path_, "cannot upgrade: " + what + "; nothing was changed");
    }
    // The encoding a version-2 word holds, checked (records: bounds and checksum, whatever their size).
    std::string encoding(std::uint64_t w, std::uint64_t at) const {
        if ((w >> 63) != 0) {
            const unsigned n = (w >> 56) & 0x0F, kind = (w >> 60) & 0x7;
            if (n > 7 || kind > 3) corrupt("word at offset " + std::to_string(at) + " has a bad kind or length");
            static constexpr unsigned char kBase[4] = {0, 0x20, 0x40, 0x05};
            std::string enc;
            if (kind != 0) enc.push_back(static_cast<char>(kBase[kind] + n));
            for (unsigned i = 0; i < n; ++i) enc.push_back(static_cast<char>((w >> (8 * i)) & 0xFF));
            if (!enc.empty() && static_cast<std::uint8_t>(enc[0]) == codec::tag::kTableRef)
                corrupt("nested-table references exist only in SharedDict segments, which are not converted");
            return enc;
        }
        if (w % 16 != 0 || !in_bounds(w, 8)) corrupt("record word at offset " + std::to_string(at) + " is out of bounds");
        const auto len = load<std::uint32_t>(w);
        const auto check = load<std::uint32_t>(w + 4);
        if (!in_bounds(w + 8, len)) corrupt("record at offset " + std::to_string(w) + " extends past the end");
        if (static_cast<std::uint32_t>(hash64(base_ + w + 8, len)) != check)
            corrupt("record at offset " + std::to_string(w) + " fails its checksum");
        return std::string(reinterpret_cast<const char*>(base_ + w + 8), len);
    }
    const std::uint8_t* base() const noexcept { return base_; }
    unsigned mode() const noexcept { return mode_; }

private:
    std::string path_;
    int fd_ = -1;
    const std::uint8_t* base_ = nullptr;
    std::uint64_t size_ = 0;
    unsigned mode_ = 0600;
};

}  // namespace

UpgradeResult upgrade(const std::string& path) {
    OldStore old(path);
    const auto fh = old.load<storage::FileHeader>(0);
    if (std::memcmp(fh.magic, storage::kMagic, sizeof fh.magic) != 0)
        throw_format(ErrorCode::kForeign, path, "not an mmstore file (bad magic)");
    if (hash64(old.base(), 56) != fh.checksum) old.corrupt("the file header fails its checksum");
    UpgradeResult r{fh.format_version, storage::kFormatVersion, fh.kind, 0};
    const auto kind = static_cast<storage::StoreKind>(fh.kind);
    if (fh.format_version == storage::kFormatVersion) return r;  // already current
    if (fh.format_version != 2)
        throw_format(ErrorCode::kVersion, path, "format version " + std::to_string(fh.format_version) +
                                                    " cannot be upgraded (this build converts format 2)");
    if (kind != storage::StoreKind::kDict && kind != storage::StoreKind::kList)
        throw_format(ErrorCode::kVersion, path,
                     std::string("a format-2 ") + storage::kind_name(kind) +
                         " file cannot be upgraded in place; rebuild it from its data with this version");
    const auto live = old.load<storage::LiveHeader>(storage::kLiveHeaderOffset);
    if (live.dirty != 0)
        old.corrupt("the store was not closed cleanly; open and close it once with mmstore 0.2 (which repairs it), "
                    "then upgrade");
    const std::uint64_t root = live.root;
    OpenOptions options;
    options.mode = old.mode();
    if (kind == storage::StoreKind::kDict) {
        const auto th = old.load<containers::TableHeader>(root);
        if (hash64(old.base() + root, 16) != th.checksum || th.capacity < 16 || (th.capacity & (th.capacity - 1)) != 0 ||
            th.capacity > (std::uint64_t{1} << 36) || th.used > containers::entries_cap_of(th.capacity))
            old.corrupt("the dict table header at offset " + std::to_string(root) + " is damaged");
        const std::uint64_t ent = root + 64 + th.capacity / 16 * 64;
        detail::rewrite_compacted<Dict>(path, options, [&](Dict& out) {
            out.table().reserve(th.live);
            for (std::uint64_t i = 0; i < th.used; ++i) {
                const std::uint64_t at = ent + 16 * i;
                const auto kw = old.load<std::uint64_t>(at);
                if (kw == containers::kTombWord) continue;
                out.table().set(old.encoding(kw, at), old.encoding(old.load<std::uint64_t>(at + 8), at + 8));
                ++r.entries;
            }
            if (r.entries != th.live) old.corrupt("the dict's live count disagrees with its entries");
        });
    } else {
        const auto sh = old.load<containers::SequenceHeader>(root);
        if (hash64(old.base() + root + 8, 16) != sh.checksum || sh.elem_size != 8 || sh.count > sh.capacity)
            old.corrupt("the list header at offset " + std::to_string(root) + " is damaged");
        detail::rewrite_compacted<List>(path, options, [&](List& out) {
            out.sequence().reserve(sh.count);
            for (std::uint64_t i = 0; i < sh.count; ++i) {
                const std::uint64_t at = root + 64 + 8 * i;
                const std::uint64_t w = out.store().put(old.encoding(old.load<std::uint64_t>(at), at));
                out.sequence().push_back_word(w);
                ++r.entries;
            }
        });
    }
    return r;
}

}  // namespace mmstore
