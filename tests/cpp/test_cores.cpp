// test_cores.cpp — the default thread count follows the CPUs this process may use.
#if defined(__linux__)
#include <sched.h>
#endif

#include "check.h"
#include "cpu/cores.h"

using namespace apls::cpu;

APLS_TEST(cgroup_quota_in_cpus_rounded_up) {
    CHECK(cpus_from_cgroup_quota("150000 100000") == 2);  // docker --cpus 1.5
    CHECK(cpus_from_cgroup_quota("100000 100000") == 1);
    CHECK(cpus_from_cgroup_quota("50000 100000") == 1);   // half a CPU still runs one thread
    CHECK(cpus_from_cgroup_quota("400000 100000\n") == 4);
    CHECK(cpus_from_cgroup_quota("max 100000") == 0);     // no limit
    CHECK(cpus_from_cgroup_quota("-1 100000") == 0);      // cgroup v1's "no limit"
    CHECK(cpus_from_cgroup_quota("") == 0);
    CHECK(cpus_from_cgroup_quota("100000") == 0);         // no period: not a quota
    CHECK(cpus_from_cgroup_quota("100000 0") == 0);
}

#if defined(__linux__)
// Against the kernel's own count: never more threads than CPUs in the affinity mask, and one
// thread when the process is pinned to one CPU (taskset -c N; a container's one-CPU cpuset).
APLS_TEST(physical_cores_follow_the_affinity_mask) {
    cpu_set_t all;
    CHECK(sched_getaffinity(0, sizeof(all), &all) == 0);
    const int n = physical_cores();
    CHECK(n >= 1 && n <= CPU_COUNT(&all));
    int first = 0;
    while (!CPU_ISSET(first, &all)) ++first;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(first, &one);
    CHECK(sched_setaffinity(0, sizeof(one), &one) == 0);
    const int pinned = physical_cores();
    CHECK(sched_setaffinity(0, sizeof(all), &all) == 0);
    CHECK(pinned == 1);
    CHECK(physical_cores() == n);
}
#endif

APLS_TEST_MAIN()
