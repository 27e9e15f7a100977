// tests/fuzz/fuzz_common.hpp -- shared by the libFuzzer harnesses (scripts/fuzz.sh, docs/design.md
// "Fuzzing"). Each harness is one format entry point: it feeds the input to the reader as a file or a
// buffer, reads everything it can, runs verify(), and treats an mmstore::Error (or std::out_of_range from an
// index the reader reported) as the expected outcome for bad input. Anything else -- a crash, a sanitizer
// report, an uncaught exception of another type, a hang -- is a finding.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

// Writes the input to a fresh file in /dev/shm (tmpfs: no disk I/O per execution) and returns its path.
inline std::string fuzz_file(const std::uint8_t* data, std::size_t size, const char* suffix) {
    static const std::string dir = [] {
        const char* d = std::getenv("MMSTORE_FUZZ_DIR");
        return std::string(d != nullptr ? d : "/dev/shm");
    }();
    const std::string path = dir + "/mmstore-fuzz-" + std::to_string(::getpid()) + suffix;
    ::unlink(path.c_str());
    const int fd = ::open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0600);
    if (fd < 0) std::abort();
    std::size_t done = 0;
    while (done < size) {
        const ssize_t n = ::write(fd, data + done, size - done);
        if (n <= 0) std::abort();
        done += static_cast<std::size_t>(n);
    }
    ::close(fd);
    return path;
}

struct FuzzFile {
    std::string path;
    FuzzFile(const std::uint8_t* data, std::size_t size, const char* suffix) : path(fuzz_file(data, size, suffix)) {}
    ~FuzzFile() {
        ::unlink(path.c_str());
        // compact() and repair may leave siblings named after the store; none should survive a harness run.
        ::unlink((path + ".compact." + std::to_string(::getpid())).c_str());
    }
};
