// device.h — where a model runs. The CPU backend is the engine's own code (cpu/); the CUDA
// backend (cpp/cuda/) plugs in behind DeviceModel and Runner (runner.h), so that code outside
// cpp/cuda/ never sees a CUDA type and the library builds and runs without CUDA.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace apls {

class Context;
class Model;
class Runner;

enum class Device : int32_t { CPU = 0, CUDA = 1 };
const char* device_name(Device d);

// A model's weights as a backend keeps them (device copies); owned by the Model.
class DeviceModel {
public:
    virtual ~DeviceModel() = default;
    virtual uint64_t bytes() const = 0;  // device memory held
};

namespace cuda {
// True when the library was built with the CUDA backend.
bool compiled();
// Usable CUDA devices (0 when not compiled, no driver or no GPU).
int device_count();
// One line: the device in use, or why CUDA is unavailable.
std::string describe();
// Why the CUDA backend cannot run this model ("" when it can): an architecture or shape its
// kernels do not cover, or a build without it.
std::string unsupported_reason(const Model& model);
// Copy the model's weights to the GPU (throws APLS_STATUS_UNSUPPORTED when CUDA is unavailable
// or unsupported_reason(model) is not empty).
std::unique_ptr<DeviceModel> upload(const Model& model);
// The runner of a context whose model was uploaded: K/V rows, scratch and the forward on the GPU.
std::unique_ptr<Runner> make_runner(Context& ctx);
}  // namespace cuda

}  // namespace apls
