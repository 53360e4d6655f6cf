/* test_cores_static.c — issue 23's crash as it happened: a shared library carrying its own static
 * libstdc++ (cores_module.cpp), loaded into a process that has already loaded the shared
 * libstdc++.so.6 (as Python has once numpy or torch is imported), asks for the default thread
 * count. With GCC 13 or newer the library's copy of the standard streams is left uninitialised
 * there, and the std::ifstream of the old cpu/cores.cpp (1d002da) segfaulted; the POSIX reads of
 * today's do not. Shown with GCC 14.2 (Debian trixie): 1d002da's cores.cpp in this harness ends in
 * SIGSEGV, today's returns the core count. With GCC 12 both pass (the streams are initialised
 * either way). Written in C so that the harness itself links no libstdc++.
 *
 *   test_cores_static MODULE.so */
#define _GNU_SOURCE /* CPU_ZERO, CPU_COUNT */
#include <dlfcn.h>
#include <sched.h>
#include <stdio.h>

int main(int argc, char** argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s MODULE.so\n", argv[0]);
        return 2;
    }
    /* The shared libstdc++ first, privately, as an extension module imported earlier loads it. */
    if (!dlopen("libstdc++.so.6", RTLD_NOW | RTLD_LOCAL)) {
        fprintf(stderr, "cannot load libstdc++.so.6: %s\n", dlerror());
        return 1;
    }
    void* module = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!module) {
        fprintf(stderr, "cannot load %s: %s\n", argv[1], dlerror());
        return 1;
    }
    int (*physical_cores)(void) = (int (*)(void))dlsym(module, "apls_test_physical_cores");
    if (!physical_cores) {
        fprintf(stderr, "%s has no apls_test_physical_cores\n", argv[1]);
        return 1;
    }
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return 1;
    const int n = physical_cores();
    if (n < 1 || n > CPU_COUNT(&set)) {
        fprintf(stderr, "FAIL physical_cores() = %d with %d CPUs in the affinity mask\n", n, CPU_COUNT(&set));
        return 1;
    }
    printf("physical_cores() = %d (module with a static libstdc++, beside the shared one)\n", n);
    return 0;
}
