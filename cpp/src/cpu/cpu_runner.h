// cpu/cpu_runner.h — the CPU backend's runner (runner.h): thread pool, scratch, host K/V rows.
#pragma once

#include <memory>

#include "runner.h"

namespace apls::cpu {

std::unique_ptr<Runner> make_runner(Context& ctx);

}  // namespace apls::cpu
