// capi_util.h — shared by the capi*.cpp files: exceptions become status codes at the C boundary.
#pragma once

#include <new>
#include <string>

#include "apls/apls.h"
#include "common.h"

namespace apls {
extern thread_local std::string g_last_error;

// Run f, mapping any exception to a status and the thread's last error.
template <typename F>
apls_status guard(F&& f) {
    try {
        f();
        g_last_error.clear();
        return APLS_STATUS_OK;
    } catch (const Error& e) {
        g_last_error = e.what();
        return e.status();
    } catch (const std::bad_alloc&) {
        g_last_error = "out of memory";
        return APLS_STATUS_OUT_OF_MEMORY;
    } catch (const std::exception& e) {
        g_last_error = std::string("internal error: ") + e.what();
        return APLS_STATUS_INTERNAL;
    } catch (...) {
        g_last_error = "internal error: unknown exception";
        return APLS_STATUS_INTERNAL;
    }
}

inline apls_status null_arg(const char* what) {
    g_last_error = std::string(what) + " is NULL";
    return APLS_STATUS_INVALID_ARGUMENT;
}
}  // namespace apls
