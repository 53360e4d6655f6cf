// cpu/cores.cpp — the default thread count: physical cores of the affinity mask, capped by the
// cgroup CPU quota. A pool larger than the CPUs it may run on spins against itself.
//
// Everything here reads /proc and /sys with plain POSIX calls into bounded buffers and parses by
// hand: no iostreams (a library linked with a static libstdc++ of GCC 13 or newer has no
// initialised locale unless something includes <iostream>, so the first std::ifstream crashed the
// Python module on such a build — issue 23), no exceptions, no unbounded reads or walks.
#include "cpu/cores.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <set>
#include <string>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#endif

namespace apls::cpu {

namespace {

constexpr size_t kMaxFileBytes = 64 * 1024;  // /proc/self/cgroup of a process in every v1 hierarchy is ~1 KB
constexpr int kMaxCpuId = 1 << 16;            // beyond any machine; bounds CPU lists and affinity masks
constexpr int kHugeCpus = 1 << 20;            // a quota "of more CPUs than any machine": saturates here

// Up to kMaxFileBytes of a file; "" when it cannot be opened or read (missing, a directory, no
// permission). O_NONBLOCK: a FIFO planted where a cgroup file should be must not hang us.
std::string read_file(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return {};
    std::string out;
    char buf[4096];
    while (out.size() < kMaxFileBytes) {
        const ssize_t n = ::read(fd, buf, sizeof(buf));
        if (n <= 0) break;
        out.append(buf, static_cast<size_t>(std::min<size_t>(static_cast<size_t>(n), kMaxFileBytes - out.size())));
    }
    ::close(fd);
    return out;
}

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

bool is_dir(const std::string& path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

// A decimal integer at s[i] (leading blanks skipped, optional '-'), ending at a blank or the end
// of s; saturates at +-LLONG_MAX. Advances i past it. False (i unchanged) when there is none.
bool parse_int(const std::string& s, size_t& i, long long& v) {
    size_t j = i;
    while (j < s.size() && is_space(s[j])) ++j;
    const bool neg = j < s.size() && s[j] == '-';
    if (neg) ++j;
    if (j >= s.size() || !is_digit(s[j])) return false;
    long long x = 0;
    for (; j < s.size() && is_digit(s[j]); ++j) {
        const int d = s[j] - '0';
        x = x > (LLONG_MAX - d) / 10 ? LLONG_MAX : x * 10 + d;
    }
    if (j < s.size() && !is_space(s[j])) return false;  // "12abc": not a number
    v = neg ? -x : x;
    i = j;
    return true;
}

int min_positive(int a, int b) { return a <= 0 ? b : b <= 0 ? a : std::min(a, b); }

// The components of an absolute cgroup path ("/a/b" -> {a, b}); false for a path that is not
// absolute or would climb out of the hierarchy ("..", ".").
bool split_cgroup_path(const std::string& path, std::vector<std::string>& parts) {
    if (path.empty() || path[0] != '/') return false;
    size_t i = 1;
    while (i <= path.size()) {
        const size_t j = std::min(path.find('/', i), path.size());
        const std::string c = path.substr(i, j - i);
        if (c == ".." || c == ".") return false;
        if (!c.empty()) parts.push_back(c);
        i = j + 1;
    }
    return true;
}

// The smallest positive quota over `top` + path and its ancestors up to `top`; `read(dir)` gives
// one directory's quota in CPUs (0: none there). Reads at most kMaxCgroupDepth levels below top.
template <typename Read>
int smallest_quota_up(const std::string& top, const std::string& path, Read read) {
    std::vector<std::string> parts;
    if (!split_cgroup_path(path, parts)) return 0;
    if (parts.size() > static_cast<size_t>(kMaxCgroupDepth)) parts.resize(kMaxCgroupDepth);
    std::vector<std::string> dirs{top};  // top, top/a, top/a/b, ...
    for (const std::string& c : parts) dirs.push_back(dirs.back() + "/" + c);
    int best = 0;
    for (const std::string& d : dirs) best = min_positive(best, read(d));
    return best;
}

int v2_quota(const std::string& dir) { return cpus_from_cgroup_quota(first_line(read_file(dir + "/cpu.max"))); }

int v1_quota(const std::string& dir) {
    const std::string quota = first_line(read_file(dir + "/cpu.cfs_quota_us"));
    const std::string period = first_line(read_file(dir + "/cpu.cfs_period_us"));
    return quota.empty() || period.empty() ? 0 : cpus_from_cgroup_quota(quota + " " + period);
}

// Whether a v1 line's controller list ("cpu,cpuacct") names the cpu controller.
bool names_cpu(const std::string& controllers) {
    size_t i = 0;
    while (i <= controllers.size()) {
        const size_t j = std::min(controllers.find(',', i), controllers.size());
        if (controllers.compare(i, j - i, "cpu") == 0) return true;
        i = j + 1;
    }
    return false;
}

// The v1 cpu hierarchy's mount: named by its controller list (cpu,cpuacct), or /cpu (often a
// link to it).
std::string v1_cpu_mount(const std::string& root, const std::string& controllers) {
    const std::string named = root + "/" + controllers;
    return controllers.find('/') == std::string::npos && is_dir(named) ? named : root + "/cpu";
}

// The core a CPU belongs to, from its thread_siblings_list ("0-1,8-9"): the smallest CPU id of
// the list, if the list parses and holds `cpu` itself; otherwise `cpu` (its own core).
int core_of(int cpu, const std::string& siblings) {
    const std::string s = first_line(siblings);
    int lowest = INT_MAX;
    bool has_self = false;
    size_t i = 0;
    while (i < s.size()) {
        const size_t j = std::min(s.find(',', i), s.size());
        const std::string range = s.substr(i, j - i);
        const size_t dash = range.find('-');
        size_t p = 0, q = 0;
        long long a = 0, b = 0;
        const std::string lo = range.substr(0, dash), hi = dash == std::string::npos ? lo : range.substr(dash + 1);
        if (!parse_int(lo, p, a) || !parse_int(hi, q, b) || p != lo.size() || q != hi.size()) return cpu;
        if (a < 0 || b < a || b > kMaxCpuId) return cpu;
        lowest = std::min<long long>(lowest, a);
        has_self |= a <= cpu && cpu <= b;
        i = j + 1;
    }
    return has_self ? lowest : cpu;
}

int cores_among(const std::vector<int>& cpus, const std::string& sys_cpu_dir) {
    std::set<int> cores;
    for (const int cpu : cpus) {
        const std::string path = sys_cpu_dir + "/cpu" + std::to_string(cpu) + "/topology/thread_siblings_list";
        cores.insert(core_of(cpu, read_file(path)));
    }
    return static_cast<int>(cores.size());
}

// CPU ids of this process's affinity mask (empty when it cannot be read), for masks of up to
// kMaxCpuId CPUs (the kernel refuses a buffer smaller than its own mask: grow and retry).
std::vector<int> affinity_cpus() {
    std::vector<int> out;
#if defined(__linux__)
    for (int n = CPU_SETSIZE; n <= kMaxCpuId; n *= 4) {
        cpu_set_t* set = CPU_ALLOC(n);
        if (set == nullptr) return out;
        const size_t size = CPU_ALLOC_SIZE(n);
        CPU_ZERO_S(size, set);
        const int rc = sched_getaffinity(0, size, set);
        if (rc == 0)
            for (int cpu = 0; cpu < n; ++cpu)
                if (CPU_ISSET_S(cpu, size, set)) out.push_back(cpu);
        CPU_FREE(set);
        if (rc == 0 || errno != EINVAL) return out;
    }
#endif
    return out;
}

}  // namespace

int cpus_from_cgroup_quota(const std::string& cpu_max) {
    size_t i = 0;
    long long quota = 0, period = 0;
    if (!parse_int(cpu_max, i, quota) || !parse_int(cpu_max, i, period)) return 0;  // "max ...": no limit
    if (quota <= 0 || period <= 0) return 0;                                        // "-1 ...": no limit
    const long long cpus = quota / period + (quota % period != 0);
    return static_cast<int>(std::min<long long>(cpus, kHugeCpus));
}

int cgroup_quota_cpus(const std::string& root, const std::string& self_cgroup) {
    int cpus = 0;
    size_t i = 0;
    while (i < self_cgroup.size()) {
        const size_t end = std::min(self_cgroup.find('\n', i), self_cgroup.size());
        const std::string line = self_cgroup.substr(i, end - i);
        i = end + 1;
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

int physical_cores(const HostView& host) {
    const int limit = host.cpus.empty() ? std::max(1, host.fallback_cpus) : static_cast<int>(host.cpus.size());
    try {
        int n = host.cpus.empty() ? limit : cores_among(host.cpus, host.sys_cpu_dir);
        const int quota = cgroup_quota_cpus(host.cgroup_root, host.self_cgroup);
        if (quota > 0) n = std::min(n, quota);
        return std::clamp(n, 1, limit);
    } catch (...) {  // only an allocation can throw here; the affinity count is still right
        return limit;
    }
}

int physical_cores() {
    try {
        HostView host;
        host.cpus = affinity_cpus();
        host.sys_cpu_dir = "/sys/devices/system/cpu";
        host.cgroup_root = "/sys/fs/cgroup";
        host.self_cgroup = read_file("/proc/self/cgroup");
        host.fallback_cpus = static_cast<int>(std::thread::hardware_concurrency());
        return physical_cores(host);
    } catch (...) {
        return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
    }
}

}  // namespace apls::cpu
