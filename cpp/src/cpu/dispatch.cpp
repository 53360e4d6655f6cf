// cpu/dispatch.cpp — choose the kernel table for this CPU once, at first use.
#include <cstdlib>
#include <cstring>

#include "common.h"
#include "cpu/kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace apls::cpu {

namespace {
#if defined(__x86_64__) || defined(__i386__)
// CPUID directly: clang before 16 does not know "f16c" in __builtin_cpu_supports.
bool has_f16c() {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}
#endif

bool cpu_has(const char* isa) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (std::strcmp(isa, "avx2") == 0)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c();
    if (std::strcmp(isa, "avx512") == 0)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("fma") && has_f16c();
#endif
    return std::strcmp(isa, "generic") == 0;
}

const KernelTable& choose() {
    if (const char* want = std::getenv("APLS_ISA"); want && *want) {
        if (const KernelTable* t = kernels_for(want)) return *t;
        fail(APLS_STATUS_INVALID_ARGUMENT, "APLS_ISA=", want, " is not available on this CPU or build");
    }
    for (const char* isa : {"avx512", "avx2"})
        if (const KernelTable* t = kernels_for(isa)) return *t;
    return *kernels_generic();
}
}  // namespace

const KernelTable* kernels_for(const char* isa) {
    const KernelTable* t = nullptr;
    if (std::strcmp(isa, "generic") == 0) t = kernels_generic();
    else if (std::strcmp(isa, "avx2") == 0) t = kernels_avx2();
    else if (std::strcmp(isa, "avx512") == 0) t = kernels_avx512();
    return (t && cpu_has(isa)) ? t : nullptr;
}

const KernelTable& kernels() {
    static const KernelTable& table = choose();
    return table;
}

}  // namespace apls::cpu
