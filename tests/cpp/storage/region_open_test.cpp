// Opening and creating store files (storage/region.cpp, os/file.cpp), through the public Dict: creation
// aside and linked into place, refusal of NUL bytes in paths and of non-regular files, compaction through
// symbolic links and after failures (issue 15).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "mmstore/containers/store.hpp"
#include "mmstore/dict.hpp"
#include "mmstore/error.hpp"
#include "mmstore/os/file.hpp"
#include "mmstore/storage/header.hpp"
#include "../test_util.hpp"

namespace {

class RegionOpenTest : public ::testing::Test {
protected:
    mmstore_test::TempDir dir_;
    std::string path_ = dir_.file("d.mms");
};

TEST(FileTest, CheckPathRefusesNulBytes) {
    EXPECT_NO_THROW(mmstore::os::check_path("a/b.mms"));
    try {
        mmstore::os::check_path(std::string("a/b\0c", 6));
        FAIL();
    } catch (const mmstore::Error& e) {
        EXPECT_EQ(e.code(), mmstore::ErrorCode::kInvalidArgument);
        EXPECT_NE(std::string(e.what()).find("a/b\\0c"), std::string::npos) << e.what();
    }
}

TEST_F(RegionOpenTest, FileOpenRefusesNonRegularFilesWithoutBlocking) {
    ASSERT_EQ(::mkfifo(path_.c_str(), 0600), 0);
    for (bool writable : {false, true}) {
        try {
            (void)mmstore::os::File::open(path_, writable, false, false, 0);
            FAIL() << "opened a FIFO";
        } catch (const mmstore::FormatError& e) {
            EXPECT_EQ(e.code(), mmstore::ErrorCode::kForeign);
        }
    }
    EXPECT_THROW((void)mmstore::os::File::open(dir_.path(), false, false, false, 0), mmstore::FormatError);
}

TEST_F(RegionOpenTest, UnlinkedFileAppearsOnlyWhenLinked) {
    auto f = mmstore::os::File::create_unlinked(path_, 0600);
    f.pwrite_all("abc", 3, 0);
    EXPECT_FALSE(std::filesystem::exists(path_));
    EXPECT_TRUE(f.link_into_place());
    EXPECT_EQ(std::filesystem::file_size(path_), 3u);
    auto g = mmstore::os::File::create_unlinked(path_, 0600);
    EXPECT_FALSE(g.link_into_place());  // taken: nothing replaced
    g.close();
    EXPECT_EQ(std::filesystem::file_size(path_), 3u);
    EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir_.path()), {}), 1);
}

TEST_F(RegionOpenTest, FailedCreationLeavesNothingAtThePath) {
    // A full disk while sizing the new file (fallocate fails: simulated with RLIMIT_FSIZE in a child).
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::signal(SIGXFSZ, SIG_IGN);
        rlimit lim{16 * 1024, 16 * 1024};
        ::setrlimit(RLIMIT_FSIZE, &lim);
        try {
            mmstore::Dict d(path_);
            ::_exit(2);
        } catch (const mmstore::Error& e) {
            ::_exit(e.code() == mmstore::ErrorCode::kDiskFull ? 0 : 3);
        }
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0);
    EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir_.path()), {}), 0);
}

TEST_F(RegionOpenTest, ManyOpenersCreateOneStore) {
    constexpr int kProcs = 6;
    std::vector<pid_t> kids;
    for (int i = 0; i < kProcs; ++i) {
        const pid_t pid = ::fork();
        if (pid == 0) {
            try {
                mmstore::Dict d(path_);
                d.set("k" + std::to_string(i), "v");
                d.close();
                ::_exit(0);
            } catch (...) {
                ::_exit(1);
            }
        }
        kids.push_back(pid);
    }
    for (pid_t k : kids) {
        int status = 0;
        ASSERT_EQ(::waitpid(k, &status, 0), k);
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    mmstore::Dict d(path_);
    EXPECT_EQ(d.size(), static_cast<std::uint64_t>(kProcs));
    d.verify();
    EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir_.path()), {}), 1);
}

TEST_F(RegionOpenTest, PathWithNulByteIsRefusedBeforeTouchingTheFilesystem) {
    const std::string bad = path_ + std::string("\0.secret", 8);
    try {
        mmstore::Dict d(bad);
        FAIL() << "opened a path with a NUL byte";
    } catch (const mmstore::Error& e) {
        EXPECT_EQ(e.code(), mmstore::ErrorCode::kInvalidArgument);
        EXPECT_NE(std::string(e.what()).find("NUL"), std::string::npos);
    }
    EXPECT_FALSE(std::filesystem::exists(path_));
    EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir_.path()), {}), 0);
}

TEST_F(RegionOpenTest, FifoIsRefusedAtOnce) {
    ASSERT_EQ(::mkfifo(path_.c_str(), 0600), 0);
    mmstore::OpenOptions ro;
    ro.readonly = true;
    for (const auto& o : {ro, mmstore::OpenOptions{}}) {
        try {
            mmstore::Dict d(path_, o);  // a blocking open(2) would hang here forever
            FAIL() << "opened a FIFO";
        } catch (const mmstore::FormatError& e) {
            EXPECT_EQ(e.code(), mmstore::ErrorCode::kForeign);
            EXPECT_NE(std::string(e.what()).find("FIFO"), std::string::npos);
        }
    }
}

TEST_F(RegionOpenTest, CompactThroughSymlinkRewritesTheTargetAndKeepsTheLink) {
    const std::string target = dir_.file("target.mms");
    std::filesystem::create_symlink("target.mms", path_);  // relative to the link's directory
    {
        mmstore::Dict d(path_);
        for (int i = 0; i < 3000; ++i) d.set("k" + std::to_string(i), std::string(200, 'v'));
        for (int i = 10; i < 3000; ++i) d.erase("k" + std::to_string(i));
        const auto big = std::filesystem::file_size(target);
        d.compact();
        EXPECT_LT(std::filesystem::file_size(target), big);
        d.set("after", "x");
    }
    EXPECT_TRUE(std::filesystem::is_symlink(path_));
    mmstore::Dict t(target);
    EXPECT_EQ(t.size(), 11u);
    EXPECT_EQ(t.get("after"), std::optional<std::string_view>("x"));
    EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir_.path()), {}), 2);
}

TEST_F(RegionOpenTest, FailedCompactionRemovesItsCopy) {
    {
        mmstore::Dict d(path_);
        for (int i = 0; i < 20000; ++i) d.set("k" + std::to_string(i), std::string(100, 'v'));
        for (int i = 0; i < 20000; i += 2) d.erase("k" + std::to_string(i));
    }
    ASSERT_GT(std::filesystem::file_size(path_), 2u << 20);
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::signal(SIGXFSZ, SIG_IGN);
        rlimit lim{1 << 20, 1 << 20};
        ::setrlimit(RLIMIT_FSIZE, &lim);
        try {
            mmstore::Dict d(path_);
            d.compact();
            ::_exit(2);
        } catch (const mmstore::Error& e) {
            ::_exit(e.code() == mmstore::ErrorCode::kDiskFull ? 0 : 3);
        }
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0);
    EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir_.path()), {}), 1);  // no .compact.<pid>
    mmstore::Dict d(path_);
    EXPECT_EQ(d.size(), 10000u);
    d.verify();
}

TEST_F(RegionOpenTest, NamedTemporaryFallbackCreatesAndCleansUp) {
    mmstore::os::use_named_temporaries(true);
    {
        mmstore::Dict d(path_);
        d.set("k", "v");
    }
    auto g = mmstore::os::File::create_unlinked(path_, 0600);
    EXPECT_FALSE(g.link_into_place());  // taken: the temporary is removed, the store untouched
    g.close();
    mmstore::os::use_named_temporaries(false);
    EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir_.path()), {}), 1);
    // A creator killed before linking leaves "<path>.create.<pid>-<n>": the next writer removes it once
    // that process is gone, and leaves those of live processes alone.
    const pid_t dead = ::fork();
    if (dead == 0) ::_exit(0);
    ::waitpid(dead, nullptr, 0);
    const std::string stale = path_ + ".create." + std::to_string(dead) + "-0";
    const std::string live = path_ + ".create." + std::to_string(::getpid()) + "-7";
    mmstore_test::write_file(stale, "x");
    mmstore_test::write_file(live, "x");
    {
        mmstore::Dict d(path_);
        EXPECT_EQ(d.get("k"), std::optional<std::string_view>("v"));
    }
    EXPECT_FALSE(std::filesystem::exists(stale));
    EXPECT_TRUE(std::filesystem::exists(live));
}

// The commit slot pages [4096, 12288) as the file holds them (read through the page cache, like any reader).
std::string commit_slot_pages(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::string bytes(2 * mmstore::storage::kPageSize, '\0');
    f.seekg(static_cast<std::streamoff>(mmstore::storage::kCommitSlotOffset[0]));
    f.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return bytes;
}

// The `dirty` field of the slot with the highest generation (format.md 1.4: generation at +0, state at +32).
std::uint64_t newest_slot_dirty(const std::string& pages) {
    std::uint64_t gen[2], dirty[2];
    for (int i = 0; i < 2; ++i) {
        std::memcpy(&gen[i], pages.data() + i * mmstore::storage::kPageSize, 8);
        std::memcpy(&dirty[i], pages.data() + i * mmstore::storage::kPageSize + 32, 8);
    }
    return gen[0] > gen[1] ? dirty[0] : dirty[1];
}

TEST_F(RegionOpenTest, CleanWritableOpenWritesNoCommitSlotUntilTheFirstWrite) {
    { mmstore::Dict d(path_); d.set("a", "1"); }
    const std::string closed = commit_slot_pages(path_);
    ASSERT_EQ(newest_slot_dirty(closed), 0u);
    mmstore::Dict d(path_);
    EXPECT_EQ(d.get("a"), std::optional<std::string_view>("1"));
    EXPECT_EQ(commit_slot_pages(path_), closed) << "a reopen that only reads wrote a commit slot";
    d.set("b", "2");
    const std::string written = commit_slot_pages(path_);
    EXPECT_NE(written, closed);
    EXPECT_EQ(newest_slot_dirty(written), 1u) << "the first write must record the store dirty first";
    d.set("c", "3");
    EXPECT_EQ(commit_slot_pages(path_), written) << "only the first write needs the slot";
    d.close();
    EXPECT_EQ(newest_slot_dirty(commit_slot_pages(path_)), 0u);
}

TEST_F(RegionOpenTest, KillBetweenOpenAndFirstWriteLeavesTheStoreWhole) {
    { mmstore::Dict d(path_); for (int i = 0; i < 1000; ++i) d.set("k" + std::to_string(i), std::to_string(i)); }
    const std::string closed = commit_slot_pages(path_);
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        ::close(fds[0]);
        try {
            mmstore::Dict d(path_);
            const char ok = d.get("k7").has_value() ? 'y' : 'n';
            if (::write(fds[1], &ok, 1) != 1) ::_exit(3);
            ::pause();
        } catch (...) {
            ::_exit(2);
        }
        ::_exit(0);
    }
    ::close(fds[1]);
    char ok = 0;
    ASSERT_EQ(::read(fds[0], &ok, 1), 1);
    ::close(fds[0]);
    EXPECT_EQ(ok, 'y');
    EXPECT_EQ(commit_slot_pages(path_), closed);
    ::kill(child, SIGKILL);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status));
    mmstore::Dict d(path_);
    ASSERT_NO_THROW(d.verify());
    for (int i = 0; i < 1000; ++i) ASSERT_EQ(d.get("k" + std::to_string(i)), std::optional<std::string_view>(std::to_string(i)));
    d.set("new", "v");
    EXPECT_EQ(newest_slot_dirty(commit_slot_pages(path_)), 1u);
    d.close();
    mmstore::Dict again(path_);
    EXPECT_NO_THROW(again.verify());
    EXPECT_EQ(again.get("new"), std::optional<std::string_view>("v"));
}

// Whether [at, at+n) of the file holds what the mapping `base` shows there (pwrite and the mapping share one
// page cache).
bool file_matches_mapping(const std::string& path, const std::uint8_t* base, std::uint64_t at, std::uint64_t n) {
    std::vector<std::uint8_t> file(n);
    std::ifstream in(path, std::ios::binary);
    in.seekg(static_cast<std::streamoff>(at));
    in.read(reinterpret_cast<char*>(file.data()), static_cast<std::streamsize>(n));
    return in.gcount() == static_cast<std::streamsize>(n) && std::memcmp(file.data(), base + at, n) == 0;
}

// Region::fill writes fresh arena blocks (table and List blocks) with pwrite for their page-aligned middle
// and through the mapping at the unaligned edges: the mapping must read the repeated pattern at every byte,
// in phase with the start, and nothing outside the range may change.
TEST_F(RegionOpenTest, FillRepeatsThePatternOverTheRangeAndNothingElse) {
    mmstore::Dict d(path_);
    auto& store = d.store();
    mmstore::containers::Store::WriteGuard g(store);
    auto& region = store.region();
    std::uint8_t pattern[64];
    for (int i = 0; i < 64; ++i) pattern[i] = static_cast<std::uint8_t>(i * 7 + 1);
    // Large (the pwrite path, 3 page-unaligned edges) and small (through the mapping only) ranges.
    for (const std::uint64_t len : {std::uint64_t{3} << 20, std::uint64_t{5000}}) {
        const std::uint64_t block = len + 4096;
        const std::uint64_t off = store.arena().allocate(block);
        std::memset(region.at<std::uint8_t>(off), 0x55, block);
        const std::uint64_t from = off + 48, n = len + 16;  // starts 48 bytes into the block: not page-aligned
        for (const std::size_t plen : {std::size_t{64}, std::size_t{1}}) {
            region.fill(from, n, pattern, plen);
            const auto* b = region.at<const std::uint8_t>(0);
            std::uint64_t bad = 0;
            for (std::uint64_t a = off; a < off + block; ++a) {
                const bool inside = a >= from && a < from + n;
                bad += b[a] != (inside ? pattern[(a - from) % plen] : 0x55);
            }
            EXPECT_EQ(bad, 0u) << "len " << len << ", pattern of " << plen;
            EXPECT_TRUE(file_matches_mapping(path_, b, from, n));
        }
        store.arena().free(off, block);
    }
}

// Region::copy moves a root block down at close (pwrite from the mapping for the page-aligned middle, the
// mapping at the edges): the destination must hold the source's bytes exactly, the source must be unchanged,
// and nothing around the destination may change, for ranges whose ends fall anywhere in a page.
TEST_F(RegionOpenTest, CopyMovesExactlyTheRangeAndNothingElse) {
    mmstore::Dict d(path_);
    auto& store = d.store();
    mmstore::containers::Store::WriteGuard g(store);
    auto& region = store.region();
    for (const std::uint64_t len : {(std::uint64_t{3} << 20) + 777, std::uint64_t{5000}}) {
        const std::uint64_t block = len + 8192;
        const std::uint64_t src = store.arena().allocate(block);
        const std::uint64_t dst = store.arena().allocate(block);
        auto* m = region.at<std::uint8_t>(0);
        for (std::uint64_t a = 0; a < block; ++a) m[src + a] = static_cast<std::uint8_t>((a * 2654435761u) >> 13);
        for (const std::uint64_t skew : {std::uint64_t{0}, std::uint64_t{48}, std::uint64_t{4095}}) {
            std::memset(m + dst, 0x55, block);
            const std::uint64_t to = dst + skew, from = src + 100;  // source and destination out of page phase
            region.copy(to, from, len);
            std::uint64_t bad = 0, src_changed = 0;
            for (std::uint64_t a = 0; a < block; ++a) {
                const bool inside = dst + a >= to && dst + a < to + len;
                bad += m[dst + a] != (inside ? m[from + (dst + a - to)] : 0x55);
                src_changed += m[src + a] != static_cast<std::uint8_t>((a * 2654435761u) >> 13);
            }
            EXPECT_EQ(bad, 0u) << "len " << len << ", skew " << skew;
            EXPECT_EQ(src_changed, 0u);
            EXPECT_TRUE(file_matches_mapping(path_, m, to, len));
        }
        store.arena().free(dst, block);
        store.arena().free(src, block);
    }
}

}  // namespace
