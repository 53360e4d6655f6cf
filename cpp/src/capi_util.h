// capi_util.h — shared by the capi*.cpp files: exceptions become status codes at the C boundary.
#pragma once

#include <new>
#include <string>

#include "apls/apls.h"
#include "common.h"

namespace apls {
extern thread_local std::string g_last_error;

// Store the thread's last error without throwing: copying the message may allocate, and this
// runs in catch blocks and in functions outside any guard, where a bad_alloc would escape
// through the C boundary. "out of memory" fits the small-string buffer, so the fallback does
// not allocate.
inline void set_last_error(const char* prefix, const char* msg) noexcept {
    try {
        g_last_error.assign(prefix);
        g_last_error.append(msg);
    } catch (...) {
        g_last_error.clear();
        g_last_error = "out of memory";
    }
}

// Run f, mapping any exception to a status and the thread's last error.
template <typename F>
apls_status guard(F&& f) noexcept {
    try {
        f();
        g_last_error.clear();
        return APLS_STATUS_OK;
    } catch (const Error& e) {
        set_last_error("", e.what());
        return e.status();
    } catch (const std::bad_alloc&) {
        set_last_error("", "out of memory");
        return APLS_STATUS_OUT_OF_MEMORY;
    } catch (const std::exception& e) {
        set_last_error("internal error: ", e.what());
        return APLS_STATUS_INTERNAL;
    } catch (...) {
        set_last_error("", "internal error: unknown exception");
        return APLS_STATUS_INTERNAL;
    }
}

inline apls_status null_arg(const char* what) noexcept {
    set_last_error(what, " is NULL");
    return APLS_STATUS_INVALID_ARGUMENT;
}
}  // namespace apls
