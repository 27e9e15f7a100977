// mmstore/internal/temp_file.hpp -- internal (not API): an append-only temporary file with a 1 MiB write
// buffer, used by the typed-records builders (src/api/records_build.cpp, src/containers/frozen_index.cpp)
// to stream sections before the final image is assembled. Single-threaded; errors throw mmstore::Error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "mmstore/os/file.hpp"

namespace mmstore::internal {

class TempFile {
public:
    static constexpr std::size_t kBufBytes = std::size_t{1} << 20;

    TempFile() = default;
    // Creates `path` exclusively (it must not exist).
    TempFile(std::string path, unsigned mode) : path_(std::move(path)) {
        file_ = os::File::open(path_, true, true, true, mode);
        buf_.reserve(kBufBytes);
    }
    void append(const void* p, std::size_t n) {
        if (buf_.size() + n > kBufBytes) flush();
        if (n > kBufBytes) {
            file_.pwrite_all(p, n, written_);
            written_ += n;
            return;
        }
        buf_.append(static_cast<const char*>(p), n);
    }
    void append(std::string_view s) { append(s.data(), s.size()); }
    template <class T>
    void put(T v) { append(&v, sizeof v); }
    void flush() {
        if (buf_.empty()) return;
        file_.pwrite_all(buf_.data(), buf_.size(), written_);
        written_ += buf_.size();
        buf_.clear();
    }
    // Bytes appended so far (flushed or not).
    std::uint64_t size() const noexcept { return written_ + buf_.size(); }
    const os::File& file() const noexcept { return file_; }
    const std::string& path() const noexcept { return path_; }
    // Frees the write buffer of a file that will only be read from now on (after flush()).
    void release_buffer() { std::string().swap(buf_); }

private:
    std::string path_;
    os::File file_;
    std::string buf_;
    std::uint64_t written_ = 0;
};

}  // namespace mmstore::internal
