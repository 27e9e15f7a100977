#include "mmstore/error.hpp"

#include <cerrno>
#include <cstring>

namespace mmstore {

namespace {
std::string compose(const std::string& path, const std::string& message) {
    return path.empty() ? message : path + ": " + message;
}
}  // namespace

Error::Error(ErrorCode code, std::string path, std::string message, int sys_errno)
    : std::runtime_error(compose(path, message)),
      code_(code),
      path_(std::move(path)),
      message_(std::move(message)),
      errno_(sys_errno) {}

void throw_error(ErrorCode code, std::string_view path, std::string_view message, int sys_errno) {
    throw Error(code, std::string(path), std::string(message), sys_errno);
}

void throw_format(ErrorCode code, std::string_view path, std::string_view message) {
    throw FormatError(code, std::string(path), std::string(message));
}

void throw_errno(std::string_view path, std::string_view what, int sys_errno) {
    std::string msg(what);
    msg += ": ";
    msg += std::strerror(sys_errno);
    const bool full = sys_errno == ENOSPC || sys_errno == EDQUOT || sys_errno == EFBIG;
    throw Error(full ? ErrorCode::kDiskFull : ErrorCode::kIo, std::string(path), std::move(msg), sys_errno);
}

}  // namespace mmstore
