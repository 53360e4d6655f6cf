// cpu/kernels_avx2.cpp — placeholder until the avx2 kernels land.
#include "cpu/kernels.h"

namespace apls::cpu {
const KernelTable* kernels_avx2() { return nullptr; }
}  // namespace apls::cpu
