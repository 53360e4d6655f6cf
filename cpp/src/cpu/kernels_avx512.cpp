// cpu/kernels_avx512.cpp — placeholder until the avx512 kernels land.
#include "cpu/kernels.h"

namespace apls::cpu {
const KernelTable* kernels_avx512() { return nullptr; }
}  // namespace apls::cpu
