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

}  // namespace apls::cpu
