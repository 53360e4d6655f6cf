// cpu/cores.cpp — the default thread count: physical cores of the affinity mask, capped by the
// cgroup CPU quota. A pool larger than the CPUs it may run on spins against itself.
#include "cpu/cores.h"

#include <filesystem>
#include <fstream>
#include <iterator>
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

int min_positive(int a, int b) { return a <= 0 ? b : b <= 0 ? a : (a < b ? a : b); }

// The smallest positive quota over `dir` and its ancestors up to `top` (dir = top + path);
// `read(dir)` gives one directory's quota in CPUs (0: none there).
template <typename Read>
int smallest_quota_up(const std::string& top, std::string path, Read read) {
    int best = 0;
    for (;;) {
        best = min_positive(best, read(top + path));
        if (path.empty() || path == "/") return best;
        const size_t cut = path.find_last_of('/');
        path = cut == std::string::npos ? std::string() : path.substr(0, cut);
    }
}

int v2_quota(const std::string& dir) { return cpus_from_cgroup_quota(read_line(dir + "/cpu.max")); }

int v1_quota(const std::string& dir) {
    const std::string quota = read_line(dir + "/cpu.cfs_quota_us"), period = read_line(dir + "/cpu.cfs_period_us");
    return quota.empty() || period.empty() ? 0 : cpus_from_cgroup_quota(quota + " " + period);
}

// Whether a v1 line's controller list ("cpu,cpuacct") names the cpu controller.
bool names_cpu(const std::string& controllers) {
    std::istringstream in(controllers);
    std::string c;
    while (std::getline(in, c, ','))
        if (c == "cpu") return true;
    return false;
}

// The v1 cpu hierarchy's mount: named by its controller list (cpu,cpuacct), or /cpu (often a
// link to it).
std::string v1_cpu_mount(const std::string& root, const std::string& controllers) {
    std::error_code ec;
    const std::string named = root + "/" + controllers;
    return std::filesystem::is_directory(named, ec) ? named : root + "/cpu";
}

}  // namespace

int cpus_from_cgroup_quota(const std::string& cpu_max) {
    std::istringstream in(cpu_max);
    long long quota = 0, period = 0;
    if (!(in >> quota >> period) || quota <= 0 || period <= 0) return 0;  // "max ...", "-1 ...": no limit
    return static_cast<int>((quota + period - 1) / period);
}

int cgroup_quota_cpus(const std::string& root, const std::string& self_cgroup) {
    std::istringstream lines(self_cgroup);
    std::string line;
    int cpus = 0;
    while (std::getline(lines, line)) {
        const size_t a = line.find(':'), b = a == std::string::npos ? a : line.find(':', a + 1);
        if (b == std::string::npos) continue;
        const std::string id = line.substr(0, a), controllers = line.substr(a + 1, b - a - 1),
                          path = line.substr(b + 1);
        if (id == "0" && controllers.empty()) {
            cpus = min_positive(cpus, smallest_quota_up(root, path, v2_quota));
        } else if (names_cpu(controllers)) {
            cpus = min_positive(cpus, smallest_quota_up(v1_cpu_mount(root, controllers), path, v1_quota));
        }
    }
    return cpus;
}

int physical_cores() {
    int n = cores_in_affinity();
    if (n <= 0) n = static_cast<int>(std::thread::hardware_concurrency());
    std::ifstream self("/proc/self/cgroup");
    const std::string self_cgroup((std::istreambuf_iterator<char>(self)), std::istreambuf_iterator<char>());
    if (const int quota = cgroup_quota_cpus("/sys/fs/cgroup", self_cgroup); quota > 0 && (n <= 0 || quota < n))
        n = quota;
    return n > 0 ? n : 1;
}

}  // namespace apls::cpu
