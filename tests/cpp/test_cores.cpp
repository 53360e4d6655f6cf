// test_cores.cpp — the default thread count follows the CPUs this process may use.
#if defined(__linux__)
#include <sched.h>
#endif

#include <sys/stat.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

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
    // Garbage and extremes: never a crash, never a negative or overflowed count.
    CHECK(cpus_from_cgroup_quota("max") == 0);
    CHECK(cpus_from_cgroup_quota("-500000 100000") == 0);
    CHECK(cpus_from_cgroup_quota("abc def") == 0);
    CHECK(cpus_from_cgroup_quota("12abc 100") == 0);
    CHECK(cpus_from_cgroup_quota("150000 100000") == 2);  // no newline
    CHECK(cpus_from_cgroup_quota(" 150000\t100000\n") == 2);
    CHECK(cpus_from_cgroup_quota("150000 100000 trailing words") == 2);
    CHECK(cpus_from_cgroup_quota("9223372036854775807 1") == (1 << 20));         // saturates
    CHECK(cpus_from_cgroup_quota("99999999999999999999999999 100000") == (1 << 20));  // overflow saturates
    CHECK(cpus_from_cgroup_quota(std::string(100000, '9')) == 0);  // one huge token, no period
    CHECK(cpus_from_cgroup_quota(std::string("1\0 2", 5)) == 0);
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
    void write(const std::string& rel, const std::string& text) const { write_raw(rel, text + "\n"); }
    void write_raw(const std::string& rel, const std::string& bytes) const {
        const std::filesystem::path p = root / rel;
        std::filesystem::create_directories(p.parent_path());
        std::ofstream(p, std::ios::binary) << bytes;
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

namespace {

// A host as physical_cores(HostView) sees it: `n` CPUs in the affinity mask, a fake sysfs CPU
// directory and a fake cgroup mount under one scratch directory.
struct FakeHost {
    FakeCgroupFs fs;
    HostView view(int n, const std::string& self_cgroup) const {
        HostView h;
        for (int i = 0; i < n; ++i) h.cpus.push_back(i);
        h.sys_cpu_dir = (fs.root / "sys/devices/system/cpu").string();
        h.cgroup_root = (fs.root / "cgroup").string();
        h.self_cgroup = self_cgroup;
        h.fallback_cpus = n;
        return h;
    }
    void siblings(int cpu, const std::string& list) const {
        fs.write("sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/thread_siblings_list", list);
    }
};

}  // namespace

// Issue 23: the H200 machine (a Firecracker VM, 16 CPUs, no SMT). /proc/self/cgroup names a v2
// cgroup that is not under the mount; the mount's root has no cpu.max. No quota: 16 cores.
APLS_TEST(the_gpu_machine_layout_gives_its_16_cpus) {
    FakeHost host;
    for (int c = 0; c < 16; ++c) host.siblings(c, std::to_string(c));
    for (const char* f :
         {"cgroup.controllers", "cgroup.max.depth", "cpu.pressure", "cpu.stat", "cpuset.cpus.effective"})
        host.fs.write(std::string("cgroup/") + f, "0-15");
    std::filesystem::create_directories(host.fs.root / "cgroup/process_api");
    const std::string self = "0::/process_api/cefd2f8c0a955b2dadef885f76cdc5ab\n";
    CHECK(physical_cores(host.view(16, self)) == 16);
    CHECK(physical_cores(host.view(16, "")) == 16);  // /proc/self/cgroup unreadable
}

// SMT siblings count once; a CPU whose topology is missing or garbage is its own core; the
// result never exceeds the affinity count.
APLS_TEST(topology_counts_smt_siblings_once_and_tolerates_garbage) {
    FakeHost host;
    for (int c = 0; c < 8; ++c) host.siblings(c, std::to_string(c % 4) + "," + std::to_string(c % 4 + 4));
    CHECK(physical_cores(host.view(8, "")) == 4);  // 8 threads on 4 cores ("0,4", "1,5", ...)
    host.siblings(0, "0-1");                          // ranges
    host.siblings(1, "0-1");
    CHECK(physical_cores(host.view(2, "")) == 1);
    FakeHost bare;                                    // no topology files at all
    CHECK(physical_cores(bare.view(6, "")) == 6);
    FakeHost junk;
    junk.siblings(0, "banana");
    junk.siblings(1, "7-3");                          // reversed range
    junk.siblings(2, "0-99999999999999999999");       // beyond any CPU id
    junk.siblings(3, "5");                            // does not hold cpu 3 itself
    junk.fs.write_raw("sys/devices/system/cpu/cpu4/topology/thread_siblings_list", "");
    std::filesystem::create_directories(junk.fs.root / "sys/devices/system/cpu/cpu5/topology/thread_siblings_list");
    CHECK(physical_cores(junk.view(6, "")) == 6);
}

// Mixed v1 and v2 lines (a hybrid host): the smallest quota of either wins.
APLS_TEST(cgroup_v1_and_v2_mixed) {
    FakeCgroupFs fs;
    fs.write("cpu,cpuacct/job/cpu.cfs_quota_us", "300000");
    fs.write("cpu,cpuacct/job/cpu.cfs_period_us", "100000");
    fs.write("unified/cpu.max", "max 100000");
    const std::string self = "5:cpu,cpuacct:/job\n0::/unified\n";
    CHECK(fs.cpus(self) == 3);
    fs.write("unified/cpu.max", "200000 100000");
    CHECK(fs.cpus(self) == 2);
}

// Paths that climb out of the mount are ignored; a deep path reads the levels nearest the root.
APLS_TEST(cgroup_paths_are_bounded) {
    FakeCgroupFs fs;
    fs.write("cpu.max", "max 100000");
    fs.write("a/cpu.max", "200000 100000");
    CHECK(fs.cpus("0::/../a\n") == 0);
    CHECK(fs.cpus("0::/a/../a\n") == 0);
    CHECK(fs.cpus("0::a\n") == 0);  // not absolute
    std::string deep = "/a";
    for (int i = 0; i < 300; ++i) deep += "/d";
    CHECK(fs.cpus("0::" + deep + "\n") == 2);  // the limit near the root is found
    std::string beyond = "";
    for (int i = 0; i < kMaxCgroupDepth + 5; ++i) beyond += "/d";
    fs.write(beyond.substr(1) + "/cpu.max", "100000 100000");
    CHECK(fs.cpus("0::" + beyond + "\n") == 0);  // a limit deeper than kMaxCgroupDepth is not read
}

// Files that are not plain files: a FIFO must not hang, a directory reads as nothing.
APLS_TEST(cgroup_files_that_are_not_files) {
    FakeCgroupFs fs;
    std::filesystem::create_directories(fs.root / "x");
    CHECK(mkfifo((fs.root / "x/cpu.max").c_str(), 0600) == 0);
    std::filesystem::create_directories(fs.root / "y/cpu.max");
    CHECK(fs.cpus("0::/x\n") == 0);
    CHECK(fs.cpus("0::/y\n") == 0);
}

// Random trees and contents (bounded time): the count stays in [1, affinity count] and nothing
// crashes (CI runs this under ASan and UBSan).
APLS_TEST(random_hosts_never_break_the_count) {
    std::mt19937 rng(23);
    const std::vector<std::string> texts = {
        "max 100000", "-1",        "150000 100000", "0 100000", "100000", "garbage", "",  "9223372036854775807 1",
        "1 1",        "100000 -5", "0-3",           "0,2",      "3-1",    "1,,2",    "-", ",",
        "4294967296", "\n\n"};
    const std::vector<std::string> names = {"cpu.max", "cpu.cfs_quota_us", "cpu.cfs_period_us"};
    auto pick = [&](const std::vector<std::string>& v) { return v[rng() % v.size()]; };
    auto bytes = [&] {
        std::string s(rng() % 24, '\0');
        for (char& c : s) c = static_cast<char>(rng() % 256);
        return s;
    };
    const auto t0 = std::chrono::steady_clock::now();
    int runs = 0;
    while (runs < 400 && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5)) {
        FakeHost host;
        const int n = 1 + static_cast<int>(rng() % 12);
        for (int c = 0; c < n; ++c)
            if (rng() % 4) host.siblings(c, rng() % 3 ? pick(texts) : bytes());
        std::vector<std::string> dirs = {"cgroup", "cgroup/cpu,cpuacct", "cgroup/cpu"};
        for (int d = 0; d < 6; ++d) dirs.push_back(dirs[rng() % dirs.size()] + "/s" + std::to_string(rng() % 3));
        for (const std::string& d : dirs)
            if (rng() % 2) host.fs.write_raw(d + "/" + pick(names), rng() % 3 ? pick(texts) : bytes());
        std::string self;
        for (int l = 0; l < 3; ++l) {
            const std::string path = dirs[rng() % dirs.size()].substr(6);  // below "cgroup"
            switch (rng() % 4) {
                case 0:
                    self += "0::" + (path.empty() ? "/" : path) + "\n";
                    break;
                case 1:
                    self +=
                        "4:cpu,cpuacct:" + path.substr(path.find('/', 1) == std::string::npos ? 0 : path.find('/', 1)) +
                        "\n";
                    break;
                case 2:
                    self += bytes() + "\n";
                    break;
                default:
                    self += "7:cpu:/" + pick(texts) + "\n";
                    break;
            }
        }
        const int got = physical_cores(host.view(n, self));
        CHECK(got >= 1 && got <= n);
        ++runs;
    }
    CHECK(runs >= 50);
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
