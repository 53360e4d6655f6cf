// device_stub.cpp — the CUDA entry points of a build without the CUDA backend (APLS_CUDA=OFF
// or no nvcc at build time): they say so instead of failing obscurely.
#include "common.h"
#include "device.h"
#include "runner.h"

namespace apls::cuda {

bool compiled() { return false; }
int device_count() { return 0; }
std::string describe() { return "CUDA: not built (configure with APLS_CUDA=ON and nvcc + cuBLAS headers)"; }

std::string unsupported_reason(const Model&) { return "this build of APLS has no CUDA backend"; }

std::unique_ptr<DeviceModel> upload(const Model&) {
    fail(APLS_STATUS_UNSUPPORTED, "device 'cuda' requested but this build of APLS has no CUDA backend (", describe(),
         ")");
}

std::unique_ptr<Runner> make_runner(Context&) {
    fail(APLS_STATUS_UNSUPPORTED, "device 'cuda' requested but this build of APLS has no CUDA backend");
}

}  // namespace apls::cuda
