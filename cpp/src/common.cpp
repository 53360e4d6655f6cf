// common.cpp — the thread-local last-error message behind apls_last_error().
#include "common.h"

namespace apls {
thread_local std::string g_last_error;
}
