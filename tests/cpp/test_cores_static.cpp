// test_cores_static.cpp — the default thread count from a program linked with a static libstdc++
// (issue 23). A static libstdc++ of GCC 13 or newer initialises the standard streams only in
// programs that include <iostream>; on such a build (the H200 machine's GCC 13.3 made the Python
// module this way) the engine's first std::ifstream crashed. Nothing here includes <iostream>.
#include <sched.h>

#include <cstdio>

#include "cpu/cores.h"

int main() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return 0;
    const int n = apls::cpu::physical_cores();
    if (n < 1 || n > CPU_COUNT(&set)) {
        std::fprintf(stderr, "FAIL physical_cores() = %d with %d CPUs in the affinity mask\n", n, CPU_COUNT(&set));
        return 1;
    }
    std::printf("physical_cores() = %d\n", n);
    return 0;
}
