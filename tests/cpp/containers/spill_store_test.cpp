// Tests of containers/spill_store.hpp: the spill file format (round trip, alignment, validation of every
// damaged form) and SpillDir (private directories, orphan removal after a real SIGKILL).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include "mmstore/containers/spill_store.hpp"
#include "../test_util.hpp"

using mmstore::ErrorCode;
using mmstore::containers::SpillDir;
using mmstore::containers::SpillFile;
using mmstore::containers::write_spill_file;
using namespace mmstore_test;

namespace {

std::span<const std::byte> as_bytes(const std::string& s) {
    return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

std::string to_string(std::span<const std::byte> b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }

std::string write_sample(const TempDir& t, bool hash = false) {
    const std::string a = "alpha", b(10000, 'b'), c;
    const std::span<const std::byte> bufs[] = {as_bytes(a), as_bytes(b), as_bytes(c)};
    const std::string path = t.file("x.spill");
    write_spill_file(path, "META", bufs, {false, hash, 0600});
    return path;
}

}  // namespace

TEST(SpillStore, RoundTripsBuffersAndMetadataPageAligned) {
    TempDir t;
    const std::string path = write_sample(t);
    auto f = SpillFile::open(path);
    EXPECT_EQ(f->meta(), "META");
    ASSERT_EQ(f->buffer_count(), 3u);
    EXPECT_EQ(to_string(f->buffer(0)), "alpha");
    EXPECT_EQ(to_string(f->buffer(1)), std::string(10000, 'b'));
    EXPECT_EQ(f->buffer(2).size(), 0u);
    for (std::size_t i = 0; i < 2; ++i) EXPECT_EQ(reinterpret_cast<std::uintptr_t>(f->buffer(i).data()) % 4096, 0u);
    EXPECT_EQ(f->size(), file_size(path));
}

TEST(SpillStore, ViewsOutliveTheDeletedFile) {
    TempDir t;
    auto f = SpillFile::open(write_sample(t));
    std::filesystem::remove(t.file("x.spill"));
    EXPECT_EQ(to_string(f->buffer(0)), "alpha");
}

TEST(SpillStore, LeavesNoTemporaryFiles) {
    TempDir t;
    write_sample(t);
    EXPECT_EQ(std::distance(std::filesystem::directory_iterator(t.path()), {}), 1);
}

TEST(SpillStore, TruncatedFileIsRejected) {
    TempDir t;
    const std::string path = write_sample(t);
    for (std::uint64_t n : {std::uint64_t{0}, std::uint64_t{10}, std::uint64_t{63}, std::uint64_t{100}, std::uint64_t{4096}, file_size(path) - 1}) {
        const std::string data = read_file(path).substr(0, n);
        write_file(t.file("cut.spill"), data);
        EXPECT_TRUE(throws_format_error([&] { SpillFile::open(t.file("cut.spill")); },
                                        {ErrorCode::kTruncated, ErrorCode::kCorrupt}))
            << "length " << n;
    }
}

TEST(SpillStore, DamagedHeaderOrForeignFileIsRejected) {
    TempDir t;
    const std::string path = write_sample(t);
    std::string data = read_file(path);
    std::string bad = data;
    bad[20] ^= 1;  // file_size
    write_file(path, bad);
    EXPECT_TRUE(throws_format_error([&] { SpillFile::open(path); }, {ErrorCode::kCorrupt}));
    bad = data;
    bad[70] ^= 1;  // buffer table
    write_file(path, bad);
    EXPECT_TRUE(throws_format_error([&] { SpillFile::open(path); }, {ErrorCode::kCorrupt}));
    bad = data;
    bad[0] = 'X';
    write_file(path, bad);
    EXPECT_TRUE(throws_format_error([&] { SpillFile::open(path); }, {ErrorCode::kForeign}));
    bad = data;
    bad[8] = 9;  // version
    write_file(path, bad);
    EXPECT_TRUE(throws_format_error([&] { SpillFile::open(path); }, {ErrorCode::kVersion}));
}

TEST(SpillStore, DataHashesCatchDamagedBuffersWhenVerifying) {
    TempDir t;
    const std::string path = write_sample(t, true);
    std::string data = read_file(path);
    data[4096 * 2 + 5] ^= 1;  // inside buffer 1
    write_file(path, data);
    EXPECT_NO_THROW(SpillFile::open(path, false));
    EXPECT_TRUE(throws_format_error([&] { SpillFile::open(path, true); }, {ErrorCode::kCorrupt}));
}

TEST(SpillStore, InjectedWriteFailureIsDiskFullAndLeavesNothing) {
    TempDir t;
    mmstore::os::inject_write_failures(ENOSPC, 1);
    EXPECT_TRUE(throws_error([&] { write_sample(t); }, ErrorCode::kDiskFull));
    EXPECT_EQ(std::distance(std::filesystem::directory_iterator(t.path()), {}), 0);
    EXPECT_NO_THROW(write_sample(t));
}

TEST(SpillDir, CreatesPrivateDirectoryAndRemovesItOnClose) {
    TempDir t;
    std::string path;
    {
        SpillDir d = SpillDir::create(t.path());
        path = d.path();
        EXPECT_TRUE(std::filesystem::is_directory(path));
        write_file(d.file("a.spill"), "x");
        SpillDir other = SpillDir::create(t.path());  // a live pool's directory is not an orphan
        EXPECT_TRUE(std::filesystem::exists(d.file("a.spill")));
    }
    EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(SpillDir, DirectoryOfAKilledProcessIsRemovedByTheNextPool) {
    TempDir t;
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    const pid_t pid = ::fork();
    if (pid == 0) {
        SpillDir d = SpillDir::create(t.path());
        write_file(d.file("1.spill"), "data");
        (void)!::write(fds[1], "x", 1);
        ::pause();
        ::_exit(0);
    }
    char c;
    ASSERT_EQ(::read(fds[0], &c, 1), 1);
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    ::close(fds[0]);
    ::close(fds[1]);
    EXPECT_EQ(std::distance(std::filesystem::directory_iterator(t.path()), {}), 1);
    SpillDir d = SpillDir::create(t.path());
    std::vector<std::string> names;
    for (auto& e : std::filesystem::directory_iterator(t.path())) names.push_back(e.path().string());
    ASSERT_EQ(names.size(), 1u);
    EXPECT_EQ(names[0], d.path());
}

TEST(SpillDir, ForkedChildClosingItsCopyKeepsTheDirectory) {
    TempDir t;
    SpillDir d = SpillDir::create(t.path());
    const pid_t pid = ::fork();
    if (pid == 0) {
        d.close();
        ::_exit(0);
    }
    ::waitpid(pid, nullptr, 0);
    EXPECT_TRUE(std::filesystem::is_directory(d.path()));
}
