// common.h — errors as values at the C boundary, exceptions inside the engine.
//
// Every engine failure throws apls::Error carrying a status and a message that names the
// problem. The C API (capi.cpp) catches it, stores the message for apls_last_error() and
// returns the status; nothing else may escape the C boundary.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

#include "apls/apls.h"

namespace apls {

class Error : public std::runtime_error {
public:
    Error(apls_status status, const std::string& msg) : std::runtime_error(msg), status_(status) {}
    apls_status status() const { return status_; }

private:
    apls_status status_;
};

namespace detail {
inline void append(std::string&) {}
template <typename T, typename... Rest>
void append(std::string& s, const T& v, const Rest&... rest) {
    if constexpr (std::is_convertible_v<const T&, std::string>) s += std::string(v);
    else if constexpr (std::is_same_v<T, char>) s += v;
    else s += std::to_string(v);
    append(s, rest...);
}
}  // namespace detail

// str("tensor ", name, " has ", n, " dims") — message building without iostreams.
template <typename... Args>
std::string str(const Args&... args) {
    std::string s;
    detail::append(s, args...);
    return s;
}

template <typename... Args>
[[noreturn]] void fail(apls_status status, const Args&... args) {
    throw Error(status, str(args...));
}

// Overflow-checked arithmetic for sizes read from untrusted files.
inline bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) { return __builtin_mul_overflow(a, b, out); }
inline bool add_overflows(uint64_t a, uint64_t b, uint64_t* out) { return __builtin_add_overflow(a, b, out); }

}  // namespace apls
