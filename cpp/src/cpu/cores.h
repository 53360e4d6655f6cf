// cpu/cores.h — how many worker threads the forward pass should use by default.
#pragma once

#include <string>

namespace apls::cpu {

// Physical cores this process may use: the CPUs of its affinity mask (taskset, a container's
// cpuset) with SMT siblings counted once, capped by its cgroup's CPU quota (a container's
// --cpus, a Kubernetes CPU limit), rounded up; at least 1.
int physical_cores();

// CPUs a cgroup quota allows, rounded up, from the text of a cgroup v2 `cpu.max` file
// ("150000 100000" -> 2); 0 when the text sets no limit ("max 100000") or cannot be read.
int cpus_from_cgroup_quota(const std::string& cpu_max);

// CPUs the cgroup quotas allow this process, rounded up; 0 when none is set. `root`: where the
// cgroup file systems are mounted (/sys/fs/cgroup); `self_cgroup`: the text of /proc/self/cgroup
// ("0::/a/b" for v2, "4:cpu,cpuacct:/a/b" for v1). A limit may sit on any ancestor of the
// process's cgroup (a systemd slice, a Kubernetes pod above its container), so each hierarchy
// is walked from the process's cgroup up to its root and the smallest quota wins. A path that
// does not exist under `root` (a container that mounts its own cgroup as the root) is skipped
// on the way up.
int cgroup_quota_cpus(const std::string& root, const std::string& self_cgroup);

}  // namespace apls::cpu
