// tools/cuda/boundary_bench.cu — what a kernel boundary costs in a decode step, and what a
// persistent kernel with grid barriers would save (issue "One launch per step"). Not part of the
// engine; a guide for its design. See docs/BENCHMARKS.md.
//
//   nvcc -O3 -std=c++17 -arch=sm_90 -o boundary_bench tools/cuda/boundary_bench.cu && ./boundary_bench
//
// A synthetic step of 30 layers x 10 ops (SmolLM2-135M's 300 dependent row operations and
// products). Every op reads the whole activation vector x (576 floats) that the op before it wrote,
// streams its own slice of weights (0 bytes: the dependency alone; 320 KB: SmolLM2's ~97 MB per
// step spread evenly), reduces, and writes its rows of the next x. One block per SM. The same
// device function runs in every variant, so the final vectors must be bit-identical (checked):
//   chain        300 launches in stream order, replayed from a CUDA graph
//   chain+pdl    the same with programmatic dependent launch (weights prefetched to L2 before
//                griddepcontrol.wait), as the engine launches its kernels today
//   per-layer    30 launches (PDL between them), each running its layer's 10 ops with a grid
//                barrier between ops (stage (a) of the issue)
//   persistent   one launch running all 300 ops with a grid barrier between ops; the next op's
//                weight slice is prefetched to L2 before each barrier (stage (b)); the barrier's
//                arrival a fence + atomic, or ("release barrier") one red.release
// plus the time to stream the same weights in one kernel (the floor for a step of this size).
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#define CK(x)                                                                                       \
    do {                                                                                            \
        cudaError_t e_ = (x);                                                                       \
        if (e_ != cudaSuccess) {                                                                    \
            std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
            std::exit(1);                                                                           \
        }                                                                                           \
    } while (0)

constexpr int kThreads = 256;
constexpr int kD = 576;  // activation width (SmolLM2's n_embd)
constexpr int kLayers = 30, kOpsPerLayer = 10, kOps = kLayers * kOpsPerLayer;

struct Step {
    float* x[2];            // ping-pong activations: op i reads x[i % 2], writes x[(i + 1) % 2]
    const float4* w;        // kOps slices of units_per_op float4 each
    int64_t units_per_op;   // float4 units of weights per op (all blocks together)
};

__device__ __forceinline__ void pdl_trigger() { asm volatile("griddepcontrol.launch_dependents;" ::: "memory"); }
__device__ __forceinline__ void pdl_wait() { asm volatile("griddepcontrol.wait;" ::: "memory"); }
__device__ __forceinline__ void prefetch_l2(const void* p) { asm volatile("prefetch.global.L2 [%0];" ::"l"(p)); }
__device__ __forceinline__ unsigned ld_acquire(const unsigned* p) {
    unsigned v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}

// This block's weight slice of op i: units [b * per, (b + 1) * per) of the op's units.
__device__ __forceinline__ const float4* slice(const Step& s, int op, int64_t& per) {
    per = s.units_per_op / gridDim.x;
    return s.w + op * s.units_per_op + blockIdx.x * per;
}

__device__ void prefetch_slice(const Step& s, int op) {
    int64_t per;
    const float4* p = slice(s, op, per);
    for (int64_t u = threadIdx.x * 8; u < per; u += kThreads * 8) prefetch_l2(p + u);  // 128-byte lines
}

// One op, one block: x (kD floats) into shared memory, the weight slice dotted with it, a block
// reduction, then this block's rows of the next x. A fixed order of operations per element.
__device__ void op_body(const Step& s, int op) {
    __shared__ float xs[kD];
    __shared__ float red[kThreads / 32];
    const float* x = s.x[op % 2];
    float* y = s.x[(op + 1) % 2];
    for (int j = threadIdx.x; j < kD; j += kThreads) xs[j] = __ldcg(x + j);  // L2: written by another SM
    __syncthreads();
    int64_t per;
    const float4* w = slice(s, op, per);
    float acc = 0.0f;
    for (int64_t u = threadIdx.x; u < per; u += kThreads) {
        const float4 v = __ldcs(w + u);
        const int j = static_cast<int>((4 * u) % kD);
        acc = fmaf(v.x, xs[j], acc);
        acc = fmaf(v.y, xs[j + 1], acc);
        acc = fmaf(v.z, xs[j + 2], acc);
        acc = fmaf(v.w, xs[j + 3], acc);
    }
    acc += xs[threadIdx.x % kD] * 1e-3f;
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = acc;
    __syncthreads();
    float tot = 0.0f;
    for (int i = 0; i < kThreads / 32; ++i) tot += red[i];
    for (int r = blockIdx.x + gridDim.x * (threadIdx.x / 32); r < kD; r += gridDim.x * (kThreads / 32))
        if (threadIdx.x % 32 == 0) y[r] = 0.5f * xs[r] + 0.49f * xs[(r + 1) % kD] + 1e-4f * tot;
    __syncthreads();  // xs and red are reused by the next op of a persistent block
}

// Every block of the grid arrives, then waits for all: arrivals count up across the launch
// (target = barriers so far x blocks), so the counter needs no reset between barriers.
// kRelease: the arrival is a release reduction (red.release.gpu) instead of a full fence and an
// atomic; the CTA barrier before it orders the block's writes (PTX release is cumulative).
template <bool kRelease>
__device__ void grid_barrier(unsigned* count, unsigned target) {
    __syncthreads();
    if (threadIdx.x == 0) {
        if constexpr (kRelease) {
            asm volatile("red.release.gpu.global.add.u32 [%0], 1;" ::"l"(count) : "memory");
        } else {
            __threadfence();
            atomicAdd(count, 1u);
        }
        while (ld_acquire(count) < target) {}
    }
    __syncthreads();
}

__global__ void op_kernel(Step s, int op, bool pdl) {
    if (pdl) {
        pdl_trigger();
        prefetch_slice(s, op);  // weights depend on no kernel
        pdl_wait();
    }
    op_body(s, op);
}

// Ops [op0, op0 + n) with a grid barrier between them; count starts at 0 for this launch.
template <bool kRelease>
__global__ void ops_kernel(Step s, int op0, int n, unsigned* count, bool pdl) {
    if (pdl) {
        pdl_trigger();
        prefetch_slice(s, op0);
        pdl_wait();
    }
    for (int i = 0; i < n; ++i) {
        op_body(s, op0 + i);
        if (i + 1 < n) {
            prefetch_slice(s, op0 + i + 1);
            grid_barrier<kRelease>(count, static_cast<unsigned>((i + 1) * gridDim.x));
        }
    }
}

__global__ void stream_kernel(const float4* w, int64_t units, float* out) {
    float acc = 0.0f;
    for (int64_t u = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x; u < units;
         u += static_cast<int64_t>(gridDim.x) * kThreads) {
        const float4 v = __ldcs(w + u);
        acc += v.x + v.y + v.z + v.w;
    }
    if (acc == 12345.0f) out[0] = acc;  // keeps the loads
}

template <typename... A>
void launch(bool pdl, void (*k)(A...), int grid, cudaStream_t st, A... args) {
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t cfg{};
    cfg.gridDim = dim3(grid);
    cfg.blockDim = dim3(kThreads);
    cfg.stream = st;
    cfg.attrs = attr;
    cfg.numAttrs = pdl ? 1 : 0;
    CK(cudaLaunchKernelEx(&cfg, k, args...));
}

enum class Variant { chain, chain_pdl, per_layer, persistent, persistent_release };
const char* kNames[] = {"chain", "chain+pdl", "per-layer", "persistent", "persistent, release barrier"};
constexpr int kVariants = 5;

// One step's launches (captured into a graph by the caller).
void step(Variant v, const Step& s, int grid, unsigned* counts, cudaStream_t st) {
    switch (v) {
        case Variant::chain:
        case Variant::chain_pdl:
            for (int op = 0; op < kOps; ++op)
                launch(v == Variant::chain_pdl, op_kernel, grid, st, s, op, v == Variant::chain_pdl);
            break;
        case Variant::per_layer:
            CK(cudaMemsetAsync(counts, 0, kLayers * sizeof(unsigned), st));
            for (int l = 0; l < kLayers; ++l)
                launch(true, ops_kernel<false>, grid, st, s, l * kOpsPerLayer, kOpsPerLayer, counts + l, true);
            break;
        case Variant::persistent:
        case Variant::persistent_release:
            CK(cudaMemsetAsync(counts, 0, sizeof(unsigned), st));
            launch(false, v == Variant::persistent ? ops_kernel<false> : ops_kernel<true>, grid, st, s, 0, kOps, counts,
                   false);
            break;
    }
}

int main(int argc, char** argv) {
    const int reps = argc > 1 ? std::atoi(argv[1]) : 50;
    cudaDeviceProp prop{};
    CK(cudaGetDeviceProperties(&prop, 0));
    const int grid = prop.multiProcessorCount;  // one block per SM: all resident at once
    std::printf("device: %s, %d SMs; %d ops per step (%d layers x %d), grid %d x %d threads, %d reps\n", prop.name,
                grid, kOps, kLayers, kOpsPerLayer, grid, kThreads, reps);
    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    float *x0, *x1, *out;
    unsigned* counts;
    CK(cudaMalloc(&x0, kD * sizeof(float)));
    CK(cudaMalloc(&x1, kD * sizeof(float)));
    CK(cudaMalloc(&out, sizeof(float)));
    CK(cudaMalloc(&counts, kLayers * sizeof(unsigned)));
    std::vector<float> xinit(kD);
    for (int j = 0; j < kD; ++j) xinit[j] = 0.01f * static_cast<float>((j * 37) % 101 - 50);
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));

    std::printf(
        "\n| weights per op | variant | us per step | us per op | final x (checksum) |\n|---|---|---|---|---|\n");
    for (const int64_t op_bytes : {int64_t{0}, int64_t{320} << 10}) {
        // Units per op rounded to a multiple of grid blocks; 4 copies rotate so L2 never holds a step.
        const int64_t units = op_bytes / 16 / grid * grid;
        const int copies = 4;
        float4* w = nullptr;
        const size_t wbytes = static_cast<size_t>(units) * kOps * 16 * copies + 16;
        CK(cudaMalloc(&w, wbytes));
        CK(cudaMemset(w, 0, wbytes));
        if (units > 0) {  // small non-zero weights: a deterministic pattern
            std::vector<float> h(static_cast<size_t>(units) * kOps * 4);
            for (size_t i = 0; i < h.size(); ++i) h[i] = 1e-4f * static_cast<float>(static_cast<int>(i % 13) - 6);
            for (int c = 0; c < copies; ++c)
                CK(cudaMemcpy(reinterpret_cast<char*>(w) + c * h.size() * 4, h.data(), h.size() * 4,
                              cudaMemcpyHostToDevice));
        }
        double floor_us = 0.0;
        if (units > 0) {
            for (int r = 0; r < 3; ++r) stream_kernel<<<grid * 4, kThreads, 0, st>>>(w, units * kOps, out);
            CK(cudaEventRecord(e0, st));
            for (int r = 0; r < reps; ++r)
                stream_kernel<<<grid * 4, kThreads, 0, st>>>(w + (r % copies) * units * kOps, units * kOps, out);
            CK(cudaEventRecord(e1, st));
            CK(cudaEventSynchronize(e1));
            float ms;
            CK(cudaEventElapsedTime(&ms, e0, e1));
            floor_us = 1e3 * ms / reps;
        }
        std::vector<float> ref;
        for (int vi = 0; vi < kVariants; ++vi) {
            const Variant v = static_cast<Variant>(vi);
            cudaGraphExec_t exec[copies];
            for (int c = 0; c < copies; ++c) {
                Step s{{x0, x1}, w + c * units * kOps, units};
                cudaGraph_t g;
                CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
                step(v, s, grid, counts, st);
                CK(cudaStreamEndCapture(st, &g));
                CK(cudaGraphInstantiate(&exec[c], g, 0));
                CK(cudaGraphDestroy(g));
            }
            // Correctness: one step from the same x, compared with the first variant.
            CK(cudaMemcpy(x0, xinit.data(), kD * 4, cudaMemcpyHostToDevice));
            CK(cudaGraphLaunch(exec[0], st));
            CK(cudaStreamSynchronize(st));
            std::vector<float> got(kD);
            CK(cudaMemcpy(got.data(), kOps % 2 ? x1 : x0, kD * 4, cudaMemcpyDeviceToHost));
            if (vi == 0) ref = got;
            const bool same = std::memcmp(got.data(), ref.data(), kD * 4) == 0;
            double sum = 0.0;
            for (float f : got) sum += f;
            for (int r = 0; r < 5; ++r) CK(cudaGraphLaunch(exec[r % copies], st));
            CK(cudaEventRecord(e0, st));
            for (int r = 0; r < reps; ++r) CK(cudaGraphLaunch(exec[r % copies], st));
            CK(cudaEventRecord(e1, st));
            CK(cudaEventSynchronize(e1));
            float ms;
            CK(cudaEventElapsedTime(&ms, e0, e1));
            const double us = 1e3 * ms / reps;
            std::printf("| %lld KB | %s | %.1f | %.2f | %.6g%s |\n", static_cast<long long>(op_bytes >> 10), kNames[vi],
                        us, us / kOps, sum, same ? "" : " DIFFERS");
            for (int c = 0; c < copies; ++c) CK(cudaGraphExecDestroy(exec[c]));
        }
        if (units > 0)
            std::printf("| %lld KB | weights streamed in one kernel | %.1f | - | - |\n",
                        static_cast<long long>(op_bytes >> 10), floor_us);
        CK(cudaFree(w));
    }
    return 0;
}
