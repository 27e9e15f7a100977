// tests/cpp/test_util.hpp
//
// Helpers shared by the GoogleTest suite: a per-test temporary directory that is removed afterwards,
// seeded random data, raw file access for damaging stores on purpose, and an assertion for "this call
// throws mmstore::FormatError with one of these codes". Header-only; every test file includes it.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <random>
#include <string>
#include <string_view>

#include "mmstore/error.hpp"

namespace mmstore_test {

// A fresh directory under ::testing::TempDir(), removed with everything in it on destruction.
class TempDir {
public:
    TempDir() {
        std::string base = ::testing::TempDir();
        if (base.empty()) base = "/tmp/";
        if (base.back() != '/') base += '/';
        std::string tmpl = base + "mmstore_test_XXXXXX";
        if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed for " + tmpl);
        path_ = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    const std::string& path() const { return path_; }
    std::string file(std::string_view name) const { return path_ + "/" + std::string(name); }

private:
    std::string path_;
};

// The fixed seed of a randomized test, perturbed by $MMSTORE_TEST_SEED when set (to explore more cases
// locally: `for s in $(seq 100); do MMSTORE_TEST_SEED=$s ./mmstore_tests; done`). CI runs the fixed seeds.
inline std::uint64_t seed(std::uint64_t fixed) {
    const char* env = std::getenv("MMSTORE_TEST_SEED");
    if (env == nullptr || *env == '\0') return fixed;
    return fixed ^ (std::strtoull(env, nullptr, 10) * 0x9E3779B97F4A7C15ull);
}

inline std::string random_bytes(std::mt19937_64& rng, std::size_t n) {
    std::string s(n, '\0');
    for (auto& c : s) c = static_cast<char>(rng() & 0xFF);
    return s;
}

// Printable so that failure messages stay readable.
inline std::string random_text(std::mt19937_64& rng, std::size_t n) {
    static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-";
    std::string s(n, '\0');
    for (auto& c : s) c = kAlphabet[rng() % (sizeof kAlphabet - 1)];
    return s;
}

inline std::uint64_t uniform(std::mt19937_64& rng, std::uint64_t lo, std::uint64_t hi) {  // inclusive
    return std::uniform_int_distribution<std::uint64_t>(lo, hi)(rng);
}

inline std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline void write_file(const std::string& path, std::string_view data) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

inline std::uint64_t file_size(const std::string& path) { return std::filesystem::file_size(path); }

inline const char* code_name(mmstore::ErrorCode c) {
    using mmstore::ErrorCode;
    switch (c) {
        case ErrorCode::kIo: return "kIo";
        case ErrorCode::kDiskFull: return "kDiskFull";
        case ErrorCode::kTruncated: return "kTruncated";
        case ErrorCode::kCorrupt: return "kCorrupt";
        case ErrorCode::kForeign: return "kForeign";
        case ErrorCode::kWrongKind: return "kWrongKind";
        case ErrorCode::kVersion: return "kVersion";
        case ErrorCode::kLocked: return "kLocked";
        case ErrorCode::kClosed: return "kClosed";
        case ErrorCode::kEncode: return "kEncode";
        case ErrorCode::kCapacity: return "kCapacity";
        case ErrorCode::kNotFound: return "kNotFound";
        case ErrorCode::kExists: return "kExists";
        case ErrorCode::kInvalidArgument: return "kInvalidArgument";
        case ErrorCode::kForked: return "kForked";
    }
    return "unknown";
}

// Runs f and checks that it throws mmstore::FormatError with one of `codes`.
template <class F>
::testing::AssertionResult throws_format_error(F&& f, std::initializer_list<mmstore::ErrorCode> codes) {
    try {
        f();
    } catch (const mmstore::FormatError& e) {
        for (auto c : codes)
            if (e.code() == c) return ::testing::AssertionSuccess();
        return ::testing::AssertionFailure() << "FormatError with unexpected code " << code_name(e.code()) << ": "
                                             << e.what();
    } catch (const std::exception& e) {
        return ::testing::AssertionFailure() << "threw something other than FormatError: " << e.what();
    }
    return ::testing::AssertionFailure() << "did not throw";
}

// Runs f and checks that it throws mmstore::Error (any subclass) with `code`.
template <class F>
::testing::AssertionResult throws_error(F&& f, mmstore::ErrorCode code) {
    try {
        f();
    } catch (const mmstore::Error& e) {
        if (e.code() == code) return ::testing::AssertionSuccess();
        return ::testing::AssertionFailure() << "Error with code " << code_name(e.code()) << " instead of "
                                             << code_name(code) << ": " << e.what();
    } catch (const std::exception& e) {
        return ::testing::AssertionFailure() << "threw something other than mmstore::Error: " << e.what();
    }
    return ::testing::AssertionFailure() << "did not throw";
}

// Runs f() in a forked child and returns its wait status: exit code f() returned, 100 when it threw a
// FormatError, 101 for any other exception -- or a signal when it crashed. For "never a crash" tests.
template <class F>
int run_in_child(F&& f) {
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error("fork failed");
    if (pid == 0) {
        int code = 0;
        try {
            code = f();
        } catch (const mmstore::FormatError&) {
            code = 100;
        } catch (...) {
            code = 101;
        }
        ::_exit(code);
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return status;
}

inline std::string describe_status(int status) {
    if (WIFEXITED(status)) return "exit code " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
    return "status " + std::to_string(status);
}

// Runs `body` in a forked child that exits 0 on success and 1 on any exception; returns the child's pid.
inline pid_t spawn(const std::function<void()>& body) {
    const pid_t pid = ::fork();
    if (pid == 0) {
        int rc = 0;
        try {
            body();
        } catch (const std::exception& e) {
            std::fprintf(stderr, "child %d: %s\n", static_cast<int>(::getpid()), e.what());  // the parent's test fails
            rc = 1;
        } catch (...) {
            rc = 1;
        }
        ::_exit(rc);
    }
    return pid;
}

// Waits for a child; its exit code, or 128 + the signal that ended it.
inline int wait_exit(pid_t pid) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Kills and reaps a child that runs forever, also when an assertion returns from the test early.
struct KillOnExit {
    pid_t pid;
    ~KillOnExit() {
        if (pid > 0) {
            ::kill(pid, SIGKILL);
            wait_exit(pid);
        }
    }
};

// Sets `flag` when the scope ends, however it ends: a reader thread holds one so that a writer thread
// looping "until the readers have seen enough" also stops when a reader returned early on a failed
// assertion (otherwise the test hangs instead of failing).
struct SetOnExit {
    std::atomic<bool>& flag;
    ~SetOnExit() { flag = true; }
};

}  // namespace mmstore_test
