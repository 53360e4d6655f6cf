// cpu/cores.h — how many worker threads the forward pass should use by default.
#pragma once

#include <string>
#include <vector>

namespace apls::cpu {

// Physical cores this process may use: the CPUs of its affinity mask (taskset, a container's
// cpuset) with SMT siblings counted once, capped by its cgroup's CPU quota (a container's
// --cpus, a Kubernetes CPU limit), rounded up; at least 1. Never throws and never fails: what
// it cannot read or parse in /proc and /sys is treated as unknown, and when nothing else can be
// told the answer is the number of CPUs in the affinity mask.
int physical_cores();

// What physical_cores() reads, made explicit so that tests can point it at fake trees.
struct HostView {
    std::vector<int> cpus;        // CPU ids of the affinity mask (empty: unknown)
    std::string sys_cpu_dir;      // "/sys/devices/system/cpu": <dir>/cpuN/topology/thread_siblings_list
    std::string cgroup_root;      // "/sys/fs/cgroup": where the cgroup file systems are mounted
    std::string self_cgroup;      // the text of /proc/self/cgroup
    int fallback_cpus = 1;        // the answer when `cpus` is empty (the host's CPU count)
};

// physical_cores() over `host`: in [1, cpus.size()] when cpus is not empty, else in
// [1, max(1, fallback_cpus)]. Never throws.
int physical_cores(const HostView& host);

// CPUs a cgroup quota allows, rounded up, from the text of a cgroup v2 `cpu.max` file
// ("150000 100000" -> 2); 0 when the text sets no limit ("max 100000", "-1 100000") or is not
// two positive integers (empty, garbage, a missing period). Quotas beyond any real machine
// saturate at a large int instead of overflowing.
int cpus_from_cgroup_quota(const std::string& cpu_max);

// CPUs the cgroup quotas allow this process, rounded up; 0 when none is set or none can be
// read. `root`: where the cgroup file systems are mounted (/sys/fs/cgroup); `self_cgroup`: the
// text of /proc/self/cgroup ("0::/a/b" for v2, "4:cpu,cpuacct:/a/b" for v1; both kinds may be
// mixed). A limit may sit on any ancestor of the process's cgroup (a systemd slice, a
// Kubernetes pod above its container), so each hierarchy is walked from the process's cgroup
// up to its root and the smallest quota wins. A path that does not exist under `root` (a
// container that mounts its own cgroup as the root; a VM whose process cgroup is outside the
// mount) is skipped on the way up. Paths that would leave `root` ("..") are ignored, and of a
// deeper path only the kMaxCgroupDepth levels nearest the root are read (where slices and pods
// set their limits).
int cgroup_quota_cpus(const std::string& root, const std::string& self_cgroup);

constexpr int kMaxCgroupDepth = 64;

}  // namespace apls::cpu
