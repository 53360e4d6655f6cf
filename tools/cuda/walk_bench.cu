// tools/cuda/walk_bench.cu — how fast do different block/warp decompositions stream an F16
// matrix (rows x k) from DRAM? Loads only (each thread sums what it loads, so the loads stay
// live), plus one walk with the one-token kernel's activation loads and FMAs. A guide for the
// layout of a matrix kernel, not part of the engine; see docs/BENCHMARKS.md.
//
//   nvcc -O3 -std=c++17 -arch=sm_90 -o walk_bench tools/cuda/walk_bench.cu && ./walk_bench
//
// Times are the mean over 200 back-to-back launches (rotating over 4 copies so L2 never holds
// the matrix), and, for the first walk, over single launches each waited for (as
// test_cuda_ops --bench times its kernels: that adds the launch latency).
#include <cuda_fp16.h>
#include <cstdint>
#include <cstdio>
#include <utility>
#include <vector>

__device__ __forceinline__ uint4 ldna(const void* p) {
    uint4 r;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
                 : "l"(p));
    return r;
}
__device__ __forceinline__ float sum16(uint4 u) {
    return __uint_as_float(u.x) + __uint_as_float(u.y) + __uint_as_float(u.z) + __uint_as_float(u.w);
}
// Sum of the 16-byte units at r + i * bytes for i = from, from + step, ... < to (unrolled by 8).
__device__ __forceinline__ float walk(const uint8_t* r, int from, int to, int step, int bytes) {
    float s = 0;
#pragma unroll 8
    for (int i = from; i < to; i += step) s += sum16(ldna(r + static_cast<int64_t>(i) * bytes));
    return s;
}
__device__ __forceinline__ void keep(float s, float* out) {
    if (s == 12345.f) out[0] = s;  // never true for the zeroed matrix; keeps the loads
}
// A: a block of 128 threads per row; thread t takes 16-byte units t, t + 128, ...
__global__ void walk_row(const uint8_t* w, int64_t row_bytes, float* out) {
    const uint8_t* r = w + blockIdx.x * row_bytes;
    const int nu = row_bytes / 16;
    keep(walk(r, threadIdx.x, nu, 128, 16), out);
}
// B: 8 rows per block of 4 warps; lane -> row lane/4, 16 bytes at (lane%4)*16 of a 64-byte chunk;
// warp w takes chunks w, w + 4, ... (the tensor-core fragment walk).
__global__ void walk_tc8(const uint8_t* w, int64_t row_bytes, float* out) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const uint8_t* r = w + (blockIdx.x * 8 + lane / 4) * row_bytes + (lane % 4) * 16;
    const int nc = row_bytes / 64;
    keep(walk(r, warp, nc, 4, 64), out);
}
// C: as B, but warp w takes a contiguous quarter of the chunks.
__global__ void walk_tc8q(const uint8_t* w, int64_t row_bytes, float* out) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const uint8_t* r = w + (blockIdx.x * 8 + lane / 4) * row_bytes + (lane % 4) * 16;
    const int nc = row_bytes / 64, q = nc / 4;
    keep(walk(r, warp * q, (warp + 1) * q, 1, 64), out);
}
// D: 8 rows per block of 8 warps, a warp per row: lane takes units lane, lane + 32, ... (512
// contiguous bytes per warp load; an mma would read its fragments from shared memory).
__global__ void walk_warprow(const uint8_t* w, int64_t row_bytes, float* out) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const uint8_t* r = w + (blockIdx.x * 8 + warp) * row_bytes;
    const int nu = row_bytes / 16;
    keep(walk(r, lane, nu, 32, 16), out);
}
// E: 8 rows per block of 4 warps, each warp two rows one after the other (512 B per load).
__global__ void walk_warp2row(const uint8_t* w, int64_t row_bytes, float* out) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int nu = row_bytes / 16;
    float s = 0;
    for (int j = 0; j < 2; ++j) s += walk(w + (blockIdx.x * 8 + warp * 2 + j) * row_bytes, lane, nu, 32, 16);
    keep(s, out);
}
// F: 8 rows per block of 4 warps, a warp per 2 rows interleaved: lane -> row (lane/16), units
// (lane%16) + 16 i (256 contiguous bytes per row per load).
__global__ void walk_half(const uint8_t* w, int64_t row_bytes, float* out) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const uint8_t* r = w + (blockIdx.x * 8 + warp * 2 + lane / 16) * row_bytes;
    const int nu = row_bytes / 16;
    keep(walk(r, lane % 16, nu, 16, 16), out);
}
// G: as A, plus the F32 activations (32 bytes per unit, L1) and 8 FMAs per unit: the real
// one-token kernel's work without its conversion and reduction. R rows per block share x.
template <int R>
__global__ void walk_rowx(const uint8_t* w, int64_t row_bytes, const float* x, float* out) {
    const int nu = row_bytes / 16;
    float s[R] = {};
#pragma unroll 4
    for (int u = threadIdx.x; u < nu; u += 128) {
        uint4 v[R];
#pragma unroll
        for (int q = 0; q < R; ++q) v[q] = ldna(w + (blockIdx.x * R + q) * row_bytes + u * 16);
        const float4 a = __ldg(reinterpret_cast<const float4*>(x) + 2 * u),
                     b = __ldg(reinterpret_cast<const float4*>(x) + 2 * u + 1);
#pragma unroll
        for (int q = 0; q < R; ++q) {
            const __half2* h = reinterpret_cast<const __half2*>(&v[q]);
            const float2 f0 = __half22float2(h[0]), f1 = __half22float2(h[1]), f2 = __half22float2(h[2]),
                         f3 = __half22float2(h[3]);
            s[q] = fmaf(f0.x, a.x, s[q]);
            s[q] = fmaf(f0.y, a.y, s[q]);
            s[q] = fmaf(f1.x, a.z, s[q]);
            s[q] = fmaf(f1.y, a.w, s[q]);
            s[q] = fmaf(f2.x, b.x, s[q]);
            s[q] = fmaf(f2.y, b.y, s[q]);
            s[q] = fmaf(f3.x, b.z, s[q]);
            s[q] = fmaf(f3.y, b.w, s[q]);
        }
    }
#pragma unroll
    for (int q = 0; q < R; ++q) keep(s[q], out);
}

int main() {
    const int copies = 4;
    for (const std::pair<int, int> shape :
         {std::pair<int, int>{11008, 4096}, {4096, 11008}, {4096, 4096}, {8192, 2048}}) {
        const int rows = shape.first, k = shape.second;
        const int64_t rb = int64_t(k) * 2, bytes = rows * rb;
        std::vector<uint8_t*> w(copies);
        for (auto& p : w) {
            cudaMalloc(&p, bytes);
            cudaMemset(p, 0, bytes);
        }
        float* out;
        cudaMalloc(&out, 4);
        float* x;
        cudaMalloc(&x, 4 * k);
        cudaMemset(x, 0, 4 * k);
        cudaEvent_t a, b;
        cudaEventCreate(&a);
        cudaEventCreate(&b);
        auto time = [&](const char* name, auto launch) {
            for (int i = 0; i < 8; ++i) launch(w[i % copies]);
            cudaEventRecord(a);
            const int n = 200;
            for (int i = 0; i < n; ++i) launch(w[i % copies]);
            cudaEventRecord(b);
            cudaEventSynchronize(b);
            float ms;
            cudaEventElapsedTime(&ms, a, b);
            const double us = ms * 1e3 / n;
            printf("%5dx%-6d %-10s %7.1f us %6.2f TB/s\n", rows, k, name, us, bytes / us / 1e6);
        };
        time("row", [&](uint8_t* p) { walk_row<<<rows, 128>>>(p, rb, out); });
        {  // one launch at a time, waited for
            float total = 0;
            for (int i = 0; i < 50; ++i) {
                cudaEventRecord(a);
                walk_row<<<rows, 128>>>(w[i % copies], rb, out);
                cudaEventRecord(b);
                cudaEventSynchronize(b);
                float ms;
                cudaEventElapsedTime(&ms, a, b);
                total += ms;
            }
            const double us = total * 1e3 / 50;
            printf("%5dx%-6d %-10s %7.1f us %6.2f TB/s\n", rows, k, "row/single", us, bytes / us / 1e6);
        }
        time("tc8", [&](uint8_t* p) { walk_tc8<<<rows / 8, 128>>>(p, rb, out); });
        time("tc8q", [&](uint8_t* p) { walk_tc8q<<<rows / 8, 128>>>(p, rb, out); });
        time("warprow8", [&](uint8_t* p) { walk_warprow<<<rows / 8, 256>>>(p, rb, out); });
        time("warp2row", [&](uint8_t* p) { walk_warp2row<<<rows / 8, 128>>>(p, rb, out); });
        time("half", [&](uint8_t* p) { walk_half<<<rows / 8, 128>>>(p, rb, out); });
        time("row", [&](uint8_t* p) { walk_row<<<rows, 128>>>(p, rb, out); });
        time("rowx", [&](uint8_t* p) { walk_rowx<1><<<rows, 128>>>(p, rb, x, out); });
        time("rowx2", [&](uint8_t* p) { walk_rowx<2><<<rows / 2, 128>>>(p, rb, x, out); });
        time("rowx4", [&](uint8_t* p) { walk_rowx<4><<<rows / 4, 128>>>(p, rb, x, out); });
        time("rowx", [&](uint8_t* p) { walk_rowx<1><<<rows, 128>>>(p, rb, x, out); });
        cudaFree(x);
        for (auto p : w) cudaFree(p);
        cudaFree(out);
    }
    printf("err: %s\n", cudaGetErrorString(cudaGetLastError()));
}
