// test_cores.cpp — the default thread count follows the CPUs this process may use.
#if defined(__linux__)
#include <sched.h>
#endif

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

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

namespace {

// A scratch cgroup file system: write(rel, text) creates root/rel with its directories.
struct FakeCgroupFs {
    std::filesystem::path root;
    FakeCgroupFs() {
        std::string tmpl = (std::filesystem::temp_directory_path() / "apls-cgroup-XXXXXX").string();
        CHECK(mkdtemp(tmpl.data()) != nullptr);
        root = tmpl;
    }
    ~FakeCgroupFs() { std::filesystem::remove_all(root); }
    void write(const std::string& rel, const std::string& text) const {
        const std::filesystem::path p = root / rel;
        std::filesystem::create_directories(p.parent_path());
        std::ofstream(p) << text << "\n";
    }
    int cpus(const std::string& self) const { return cgroup_quota_cpus(root.string(), self); }
};

}  // namespace

// cgroup v2: the limit may sit on the process's cgroup or any ancestor (a systemd slice, a
// Kubernetes pod); the smallest wins, "max" sets none.
APLS_TEST(cgroup_v2_quota_is_the_smallest_up_the_hierarchy) {
    FakeCgroupFs fs;
    CHECK(fs.cpus("0::/user.slice/job.scope\n") == 0);  // no cpu.max anywhere
    fs.write("user.slice/job.scope/cpu.max", "max 100000");
    fs.write("cpu.max", "max 100000");
    CHECK(fs.cpus("0::/user.slice/job.scope\n") == 0);
    fs.write("user.slice/cpu.max", "300000 100000");      // CPUQuota=300% on the slice
    CHECK(fs.cpus("0::/user.slice/job.scope\n") == 3);
    fs.write("user.slice/job.scope/cpu.max", "150000 100000");
    CHECK(fs.cpus("0::/user.slice/job.scope\n") == 2);
    CHECK(fs.cpus("0::/other.slice\n") == 0);             // a sibling sees neither
    // A container with its own cgroup namespace: /proc/self/cgroup says "/", the quota is at the root.
    FakeCgroupFs ns;
    ns.write("cpu.max", "200000 100000");
    CHECK(ns.cpus("0::/\n") == 2);
}

// cgroup v1: the cpu controller's line names the path inside its own mount; a container that
// mounts its cgroup as the root (the path missing below it) still finds the quota at the root.
APLS_TEST(cgroup_v1_quota_under_the_cpu_mount) {
    FakeCgroupFs fs;
    const std::string self = "12:memory:/x\n4:cpu,cpuacct:/kubepods/pod1/c1\n1:name=systemd:/kubepods/pod1/c1\n";
    CHECK(fs.cpus(self) == 0);
    fs.write("cpu,cpuacct/kubepods/pod1/cpu.cfs_quota_us", "400000");
    fs.write("cpu,cpuacct/kubepods/pod1/cpu.cfs_period_us", "100000");
    CHECK(fs.cpus(self) == 4);                              // the pod's limit, through cpu,cpuacct
    fs.write("cpu,cpuacct/kubepods/pod1/c1/cpu.cfs_quota_us", "-1");  // the container: none of its own
    fs.write("cpu,cpuacct/kubepods/pod1/c1/cpu.cfs_period_us", "100000");
    CHECK(fs.cpus(self) == 4);
    FakeCgroupFs linked;  // only /cpu (the list's mount not there): found through it
    linked.write("cpu/kubepods/pod1/cpu.cfs_quota_us", "200000");
    linked.write("cpu/kubepods/pod1/cpu.cfs_period_us", "100000");
    CHECK(linked.cpus(self) == 2);
    FakeCgroupFs docker;  // the container's own cgroup mounted as the cpu root
    docker.write("cpu/cpu.cfs_quota_us", "250000");
    docker.write("cpu/cpu.cfs_period_us", "100000");
    CHECK(docker.cpus("3:cpu:/docker/0123abcd\n") == 3);
    CHECK(docker.cpus("garbage\n::\n") == 0);             // unreadable lines set nothing
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
