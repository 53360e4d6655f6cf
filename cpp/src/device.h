// device.h — where a model runs. The CPU backend is the engine's own code (forward.cpp,
// cpu/); the CUDA backend (cpp/cuda/) plugs in behind the two interfaces below, so that code
// outside cpp/cuda/ never sees a CUDA type and the library builds and runs without CUDA.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace apls {

class Context;
class Model;
struct Batch;
struct Plan;
struct Visibility;

enum class Device : int32_t { CPU = 0, CUDA = 1 };
const char* device_name(Device d);

// A model's weights as a backend keeps them (device copies); owned by the Model.
class DeviceModel {
public:
    virtual ~DeviceModel() = default;
    virtual uint64_t bytes() const = 0;  // device memory held
};

// A context's state on a device: scratch buffers, the KV storage, logits. Owned by the Context.
class DeviceRunner {
public:
    virtual ~DeviceRunner() = default;
    // Forward pass of a validated batch under `plan`, attention as `vis` says (batch.h); K/V of
    // token i go to KV slot slots[i]. Results stay on the device until asked for.
    // chain_step >= 0: step of a greedy draft chain (a batch of one token). Its greedy choice and
    // probability are kept on the device as the chain's entry chain_step; for chain_step > 0 the
    // batch's token is replaced, on the device, by entry chain_step - 1, so the host queues the
    // whole chain without waiting for a token.
    virtual void forward(const Batch& batch, const Plan& plan, const Visibility& vis, const int64_t* slots,
                         int32_t chain_step = -1) = 0;
    // The first n entries of the draft chain (waits for them).
    virtual void chain_results(int32_t n, int32_t* ids, float* probs) = 0;
    // Logits of the last forward's output rows, (n_rows, n_vocab), copied to dst.
    virtual void fetch_logits(float* dst, int32_t n_rows) = 0;
    // Per output row of the last forward, computed on the device: the greedy choice (largest
    // logit; ties to the lowest id) and its softmax probability.
    virtual const int32_t* argmax() = 0;
    virtual const float* top_prob() = 0;
    // The most tokens a batch may hold with each token's logits bit-identical to decoding it
    // alone (larger batches take other kernels); speculative verify batches stay within it.
    virtual int32_t max_invariant_batch() const = 0;
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
// A runner for ctx (whose model was uploaded); attaches the device KV storage to ctx.kv().
std::unique_ptr<DeviceRunner> make_runner(Context& ctx);
}  // namespace cuda

}  // namespace apls
