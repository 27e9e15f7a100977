// mmstore/error.hpp
//
// The exception hierarchy shared by every layer. Environment and data failures throw an Error subclass
// carrying a code, the path of the store involved and the errno (0 when none), built by the out-of-line
// [[noreturn]] helpers below so that throwing sites stay small on hot paths. Expected outcomes (a missing
// key, a full slot) are return values, never exceptions. Broken preconditions are assertions.
//
// The Python bindings translate each ErrorCode to one class under mmstore.Error (see python/mmstore/errors.py).
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace mmstore {

enum class ErrorCode : int {
    kIo = 1,            // an OS call failed (errno says which)
    kDiskFull = 2,      // ENOSPC/EDQUOT while growing or writing a store; nothing was changed
    kTruncated = 3,     // the file is shorter than its header says
    kCorrupt = 4,       // a checksum, bound or invariant does not hold
    kForeign = 5,       // not an mmstore file at all
    kWrongKind = 6,     // an mmstore file of another kind (a List opened as a Dict)
    kVersion = 7,       // written by a newer format version, or an incompatible layout
    kLocked = 8,        // the operation needs the store to itself (compact) while others have it open
    kClosed = 9,        // the handle was closed
    kEncode = 10,       // a value the codec cannot encode (pickle refused, unsupported type)
    kCapacity = 11,     // the store outgrew its address reservation or a format limit
    kNotFound = 12,     // create=false and the store does not exist
    kExists = 13,       // create=true and the store exists
    kInvalidArgument = 14,
    kForked = 15,       // a handle opened before fork() used in the child
    kReadOnly = 16,     // a write through a handle opened read-only
};

// Base of every mmstore exception. what() is "<path>: <message>" (path omitted when empty).
class Error : public std::runtime_error {
public:
    Error(ErrorCode code, std::string path, std::string message, int sys_errno = 0);
    ErrorCode code() const noexcept { return code_; }
    const std::string& path() const noexcept { return path_; }
    const std::string& message() const noexcept { return message_; }
    int sys_errno() const noexcept { return errno_; }

private:
    ErrorCode code_;
    std::string path_;
    std::string message_;
    int errno_;
};

// A corrupt, truncated, foreign, wrong-kind or newer-version file (DESIGN.md contract 5).
class FormatError : public Error {
public:
    using Error::Error;
};

// The operation needs exclusive use of the store (compact()) while other handles have it open, or a pool
// directory is taken; holder_pid() names the store's lock holder when there is one (0 otherwise).
class LockedError : public Error {
public:
    LockedError(std::string path, std::string message, int holder_pid)
        : Error(ErrorCode::kLocked, std::move(path), std::move(message)), holder_pid_(holder_pid) {}
    int holder_pid() const noexcept { return holder_pid_; }

private:
    int holder_pid_;
};

[[noreturn]] void throw_error(ErrorCode code, std::string_view path, std::string_view message, int sys_errno = 0);
[[noreturn]] void throw_format(ErrorCode code, std::string_view path, std::string_view message);
// Throws kIo or kDiskFull from errno, with strerror appended to `what`.
[[noreturn]] void throw_errno(std::string_view path, std::string_view what, int sys_errno);

}  // namespace mmstore
