// cpu/cores.cpp — the default thread count: physical cores of the affinity mask, capped by the
// cgroup CPU quota. A pool larger than the CPUs it may run on spins against itself.
#include "cpu/cores.h"

#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#if defined(__linux__)
#include <sched.h>
#endif

namespace apls::cpu {

namespace {

std::string read_line(const std::string& path) {
    std::ifstream f(path);
    std::string s;
    if (f) std::getline(f, s);
    return s;
}

// Cores (sets of SMT siblings) among the CPUs this process may run on; 0 when unknown.
int cores_in_affinity() {
#if defined(__linux__)
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return 0;
    std::set<std::string> cores;
    int cpus = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
        if (!CPU_ISSET(cpu, &set)) continue;
        ++cpus;
        const std::string siblings =
            read_line("/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/thread_siblings_list");
        cores.insert(siblings.empty() ? "cpu" + std::to_string(cpu) : siblings);
    }
    return cores.empty() ? cpus : static_cast<int>(cores.size());
#else
    return 0;
#endif
}

// The quota of this process's cgroup (v2 `cpu.max`, else v1 cfs quota/period); 0: none.
int cgroup_cpus() {
    std::ifstream self("/proc/self/cgroup");
    std::string line, v2_path;
    while (std::getline(self, line))
        if (line.rfind("0::", 0) == 0) v2_path = line.substr(3);
    for (const std::string& dir : {"/sys/fs/cgroup" + v2_path, std::string("/sys/fs/cgroup")})
        if (const std::string s = read_line(dir + "/cpu.max"); !s.empty()) return cpus_from_cgroup_quota(s);
    const std::string quota = read_line("/sys/fs/cgroup/cpu/cpu.cfs_quota_us");
    const std::string period = read_line("/sys/fs/cgroup/cpu/cpu.cfs_period_us");
    return quota.empty() || period.empty() ? 0 : cpus_from_cgroup_quota(quota + " " + period);
}

}  // namespace

int cpus_from_cgroup_quota(const std::string& cpu_max) {
    std::istringstream in(cpu_max);
    long long quota = 0, period = 0;
    if (!(in >> quota >> period) || quota <= 0 || period <= 0) return 0;  // "max ...", "-1 ...": no limit
    return static_cast<int>((quota + period - 1) / period);
}

int physical_cores() {
    int n = cores_in_affinity();
    if (n <= 0) n = static_cast<int>(std::thread::hardware_concurrency());
    if (const int quota = cgroup_cpus(); quota > 0 && (n <= 0 || quota < n)) n = quota;
    return n > 0 ? n : 1;
}

}  // namespace apls::cpu
