// cuda/matvec.cu — matrix times a few vectors (decode, draft, verify: t <= 16 tokens).
//
// Float rows: a block computes R rows (1 for one token, 4 for batches); its kWarps warps split
// each row (split-K). Thread (warp w, lane i) walks the row in units of 8 elements (16 bytes)
// w*32 + i, + kWarps*32, ...: a warp's loads are consecutive (coalesced). Quantized rows (a
// block of 32 is only 16-34 bytes): lane i of a warp takes blocks i, i + 32, ..., so that each
// thread has several loads in flight; one token runs matvec_q1 (a warp per row), batches
// matvec_q (a warp per R rows, the same 32 streams per row). Each unit is read once and multiplied with all t activation rows (read through
// the cache). Per (token, row) the arithmetic is the same sequence of operations for any batch
// size T (per thread in unit order, then a butterfly over lanes, then warps in order), so
// results are batch invariant: tokens beyond n_tok are skipped by a predicate, never change
// the order.
#include "cuda/dequant.cuh"
#include "cuda/launch.h"
#include "cuda/pdl.cuh"

namespace apls::cuda {

namespace {

constexpr int kWarps = 4;
constexpr int kMaxJobs = 8;
constexpr int kPrefetchUnits = 8;  // per thread and row, before the wait for the previous kernel

// Several products in one launch (q, k and v; gate and up; the layers of a parallel group):
// same weight type and k, each with its own weight, input and output. Blocks [begin, end) of
// the grid belong to job j.
struct Job {
    const uint8_t* w;
    const float* x;
    QActs xq;
    float* y;
    int64_t rows, ldy;
    int begin;
    bool accumulate;
};
struct Jobs {
    Job job[kMaxJobs];
    int n;
    size_t row_bytes;
    int64_t k;
};

// Float kernels, rows per block: one for a single token (more blocks in flight); four for
// batches, so that each activation load (the batch's cost: T loads per weight unit) serves four
// rows (two or one: slower, measured).
__host__ __device__ constexpr int float_rows_per_block(int T) { return T == 1 ? 1 : 4; }
// Quantized kernels, rows per warp (a block has kWarps warps): the same trade, but two for 16
// tokens, where four would hold 64 accumulators per thread (verify of 9 tokens on a 7B Q4_0:
// 2.81x -> 2.57x of one token with the L1 bypass, docs/BENCHMARKS.md).
__host__ __device__ constexpr int q_rows_per_warp(int T) { return T == 1 ? 1 : T == 2 || T == 16 ? 2 : 4; }

// This block's job and first row (rows r .. r + R - 1). The block's kWarps warps split the row
// (split-K): warp w takes units w*32 + lane, + kWarps*32, ...; their sums are added in warp order.
template <int R>
__device__ __forceinline__ const Job* locate(const Jobs& jobs, int64_t& r) {
    int j = 0;
    while (j + 1 < jobs.n && static_cast<int>(blockIdx.x) >= jobs.job[j + 1].begin) ++j;
    const Job* job = &jobs.job[j];
    r = static_cast<int64_t>(blockIdx.x - job->begin) * R;
    return job;
}

// Before waiting for the previous kernel (weights depend on none): this thread's first units of
// each of its rows toward L2, so that the block's loads after the wait hit L2 (pdl.cuh).
template <int R>
__device__ __forceinline__ void prefetch_units(const uint8_t* const (&wr)[R], int64_t first, int64_t n_units,
                                               int64_t unit_bytes, int stride = kWarps * 32) {
#pragma unroll
    for (int q = 0; q < R; ++q)
#pragma unroll
        for (int i = 0; i < kPrefetchUnits; ++i) {
            const int64_t u = first + static_cast<int64_t>(i) * stride;
            if (u < n_units) prefetch_l2(wr[q] + u * unit_bytes);
        }
}

// Lanes' sums (butterfly), then the warps' sums in warp order, then out (+)= the total.
template <int T, int R>
__device__ __forceinline__ void store(float (&acc)[R][T], int n_tok, int64_t r0, int64_t rows, float* y, int64_t ldy,
                                      bool accumulate) {
    __shared__ float part[kWarps][R][T];
    const int warp = threadIdx.x / 32;
#pragma unroll
    for (int q = 0; q < R; ++q)
#pragma unroll
        for (int t = 0; t < T; ++t) {  // every slot (zeros past the batch): chains that interleave
            const float s = warp_sum(acc[q][t]);
            if ((threadIdx.x & 31) == 0) part[warp][q][t] = s;
        }
    __syncthreads();
    for (int u = threadIdx.x; u < R * T; u += blockDim.x) {
        const int q = u / T, t = u % T;
        if (t >= n_tok || r0 + q >= rows) continue;
        float s = part[0][q][t];
#pragma unroll
        for (int w = 1; w < kWarps; ++w) s += part[w][q][t];
        float* o = y + t * ldy + r0 + q;
        *o = accumulate ? *o + s : s;
    }
}

// 16 bytes of weights. A block reads each weight once, so they are loaded without allocating in
// L1: a batch's activations, read again for every row of the block, stay there.
__device__ __forceinline__ uint4 load_weights16(const void* p) {
    uint4 r;
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
        : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
        : "l"(p));
    return r;
}

// Block ib of a quantized device row of nb blocks (weight_layout.h) as 8 packed int8x4 words
// (w[i] holds elements 4i..4i+3), its scale and offset: the quants in one (Q4) or two (Q8)
// aligned 128-bit loads. Q4 nibbles stay unsigned (0..15); the -8 of Q4_0 is applied in floats.
template <int TY>
__device__ __forceinline__ void load_block(const uint8_t* row, int64_t nb, int64_t ib, int (&w)[8], float& d,
                                           float& m) {
    const uint4* q = reinterpret_cast<const uint4*>(row + ib * quant_bytes<TY>());
    const uint8_t* dm = row + scale_at<TY>(nb, ib);
    d = half_at(dm);
    m = TY == 3 ? half_at(dm + 2) : 0.0f;
    const uint4 a = load_weights16(q);
    if (TY == 8) {
        const uint4 b = load_weights16(q + 1);
        w[0] = static_cast<int>(a.x), w[1] = static_cast<int>(a.y), w[2] = static_cast<int>(a.z),
        w[3] = static_cast<int>(a.w);
        w[4] = static_cast<int>(b.x), w[5] = static_cast<int>(b.y), w[6] = static_cast<int>(b.z),
        w[7] = static_cast<int>(b.w);
    } else {
        const unsigned v[4] = {a.x, a.y, a.z, a.w};
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            w[i] = static_cast<int>(v[i] & 0x0F0F0F0Fu);  // elements 4i..4i+3
            w[i + 4] = static_cast<int>((v[i] >> 4) & 0x0F0F0F0Fu);  // elements 16+4i..
        }
    }
}

// The CPU kernels' float expression for block b of a quantized row (Q8_0 = 8, Q4_0 = 2,
// Q4_1 = 3) and one token: isum = the exact integer dot product of the block's quants with the
// token's Q8 activations (scale xd, xs = xd * their sum); d, m: the block's scale and offset.
template <int TY>
__device__ __forceinline__ float block_part(float d, float m, float xd, float xs, int isum) {
    if (TY == 8) return __fmul_rn(__fmul_rn(d, xd), static_cast<float>(isum));
    if (TY == 2) return __fmul_rn(d, __fsub_rn(__fmul_rn(xd, static_cast<float>(isum)), __fmul_rn(8.0f, xs)));
    return __fadd_rn(__fmul_rn(__fmul_rn(d, xd), static_cast<float>(isum)), __fmul_rn(m, xs));
}

// One token times quantized rows: one warp per row; lane i sums the parts of blocks i, i + 32,
// ... in order (stream i), then a butterfly over the lanes adds the 32 streams. The batch
// kernel (matvec_q) keeps exactly this order, so a token's result is the same bits
// alone or in a batch.
template <int TY>
__global__ void __launch_bounds__(kWarps * 32) matvec_q1(Jobs jobs, int n_tok) {
    pdl_trigger();
    const int lane = threadIdx.x & 31;
    int64_t r0;
    const Job* job = locate<kWarps>(jobs, r0);
    const int64_t r = r0 + threadIdx.x / 32;
    const int64_t k = jobs.k, nb = k / 32;
    const QActs xq = job->xq;
    const uint8_t* wr[1] = {job->w + min(r, job->rows - 1) * jobs.row_bytes};  // past the end: reread, not stored
    prefetch_units<1>(wr, lane, nb, quant_bytes<TY>(), 32);
    pdl_wait();
    float acc = 0.0f;
#pragma unroll 4
    for (int64_t ib = lane; ib < nb; ib += 32) {
        int wq[8];
        float d, m;
        load_block<TY>(wr[0], nb, ib, wq, d, m);
        const int4* xv = reinterpret_cast<const int4*>(xq.qs + ib * 32);
        const int4 a = __ldg(xv), b = __ldg(xv + 1);
        int isum = 0;
        isum = __dp4a(wq[0], a.x, isum);
        isum = __dp4a(wq[1], a.y, isum);
        isum = __dp4a(wq[2], a.z, isum);
        isum = __dp4a(wq[3], a.w, isum);
        isum = __dp4a(wq[4], b.x, isum);
        isum = __dp4a(wq[5], b.y, isum);
        isum = __dp4a(wq[6], b.z, isum);
        isum = __dp4a(wq[7], b.w, isum);
        acc = __fadd_rn(acc, block_part<TY>(d, m, __ldg(xq.d + ib), TY == 8 ? 0.0f : __ldg(xq.s + ib), isum));
    }
    acc = warp_sum(acc);
    if (lane == 0 && r < job->rows) {
        float* o = job->y + r;
        *o = job->accumulate ? *o + acc : acc;
    }
}

// Batches (2 <= t <= 16) of quantized rows: per block an exact integer dot product (dp4a), then
// block_part. Warp w of the block computes rows r0 + w*R .. + R-1; lane i takes blocks i,
// i + 32, ... (matvec_q1's streams, then its butterfly).
template <int TY, int T>
__global__ void __launch_bounds__(kWarps * 32) matvec_q(Jobs jobs, int n_tok) {
    constexpr int R = q_rows_per_warp(T);
    pdl_trigger();
    const int lane = threadIdx.x & 31;
    int64_t r0;
    const Job* job = locate<kWarps * R>(jobs, r0);
    r0 += (threadIdx.x / 32) * R;
    const int64_t k = jobs.k;
    const QActs xq = job->xq;
    const int64_t nb = k / 32;
    const uint8_t* wr[R];
#pragma unroll
    for (int q = 0; q < R; ++q)
        wr[q] = job->w + min(r0 + q, job->rows - 1) * jobs.row_bytes;  // past the end: row reread, not stored
    prefetch_units<R>(wr, lane, nb, quant_bytes<TY>(), 32);
    pdl_wait();
    float acc[R][T];
#pragma unroll
    for (int q = 0; q < R; ++q)
#pragma unroll
        for (int t = 0; t < T; ++t) acc[q][t] = 0.0f;
#pragma unroll 4
    for (int64_t ib = lane; ib < nb; ib += 32) {
        int wq[R][8];
        float d[R], m[R];
#pragma unroll
        for (int q = 0; q < R; ++q) load_block<TY>(wr[q], nb, ib, wq[q], d[q], m[q]);
#pragma unroll
        for (int t = 0; t < T; ++t) {
            if (t >= n_tok) break;
            const int4* xv = reinterpret_cast<const int4*>(xq.qs + t * k + ib * 32);
            const int4 a = __ldg(xv), b = __ldg(xv + 1);
            const float xd = __ldg(xq.d + t * nb + ib);
            const float xs = TY == 8 ? 0.0f : __ldg(xq.s + t * nb + ib);
#pragma unroll
            for (int q = 0; q < R; ++q) {
                int isum = 0;
                isum = __dp4a(wq[q][0], a.x, isum);
                isum = __dp4a(wq[q][1], a.y, isum);
                isum = __dp4a(wq[q][2], a.z, isum);
                isum = __dp4a(wq[q][3], a.w, isum);
                isum = __dp4a(wq[q][4], b.x, isum);
                isum = __dp4a(wq[q][5], b.y, isum);
                isum = __dp4a(wq[q][6], b.z, isum);
                isum = __dp4a(wq[q][7], b.w, isum);
                acc[q][t] = __fadd_rn(acc[q][t], block_part<TY>(d[q], m[q], xd, xs, isum));
            }
        }
    }
    // The lanes' sums (butterflies, every slot: independent chains the compiler interleaves;
    // slots past the batch hold zeros); lane 0 stores the batch's.
    float sum[R][T];
#pragma unroll
    for (int q = 0; q < R; ++q)
#pragma unroll
        for (int t = 0; t < T; ++t) sum[q][t] = warp_sum(acc[q][t]);
    if (lane != 0) return;
#pragma unroll
    for (int q = 0; q < R; ++q) {
        if (r0 + q >= job->rows) break;
#pragma unroll
        for (int t = 0; t < T; ++t) {
            if (t >= n_tok) break;
            float* o = job->y + t * job->ldy + r0 + q;
            *o = job->accumulate ? *o + sum[q][t] : sum[q][t];
        }
    }
}

// One warp per block of 32 activations (lane = element).
__global__ void quantize_q8_kernel(const float* __restrict__ x, int64_t n_blocks, QActs out) {
    pdl_enter();
    const int64_t b = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;  // over (t, k/32)
    if (b >= n_blocks) return;
    quantize32(x[b * 32 + (threadIdx.x & 31)], out.qs + b * 32, out.d + b, out.s + b);
}

// 8 consecutive weights as floats. TY: F32 = 0, F16 = 1, BF16 = 30.
template <int TY>
__device__ __forceinline__ void load8(const uint8_t* p, float (&v)[8]) {
    if (TY == 0) {
        const uint4 a = load_weights16(p), b = load_weights16(p + 16);
        v[0] = __uint_as_float(a.x);
        v[1] = __uint_as_float(a.y);
        v[2] = __uint_as_float(a.z);
        v[3] = __uint_as_float(a.w);
        v[4] = __uint_as_float(b.x);
        v[5] = __uint_as_float(b.y);
        v[6] = __uint_as_float(b.z);
        v[7] = __uint_as_float(b.w);
    } else {
        const uint4 u = load_weights16(p);
        const unsigned int w4[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const unsigned short lo = static_cast<unsigned short>(w4[i] & 0xFFFF),
                                 hi = static_cast<unsigned short>(w4[i] >> 16);
            if (TY == 1) {
                v[2 * i] = __half2float(__ushort_as_half(lo));
                v[2 * i + 1] = __half2float(__ushort_as_half(hi));
            } else {
                v[2 * i] = bf16_bits_to_float(lo);
                v[2 * i + 1] = bf16_bits_to_float(hi);
            }
        }
    }
}

// Float rows; k % 8 == 0 (the launcher checks; other k use matvec_scalar).
template <int TY, int T>
__global__ void __launch_bounds__(kWarps * 32) matvec_f(Jobs jobs, int n_tok) {
    constexpr int esize = TY == 0 ? 4 : 2;
    constexpr int R = float_rows_per_block(T);
    pdl_trigger();
    const int lane = threadIdx.x & 31;
    int64_t r0;
    const Job* job = locate<R>(jobs, r0);
    const int64_t k = jobs.k;
    const float* __restrict__ x = job->x;
    const uint8_t* wr[R];
#pragma unroll
    for (int q = 0; q < R; ++q) wr[q] = job->w + min(r0 + q, job->rows - 1) * jobs.row_bytes;
    const int64_t nc = k / 8;
    prefetch_units<R>(wr, (threadIdx.x / 32) * 32 + lane, nc, 8 * esize);
    pdl_wait();
    float acc[R][T];
#pragma unroll
    for (int q = 0; q < R; ++q)
#pragma unroll
        for (int t = 0; t < T; ++t) acc[q][t] = 0.0f;
#pragma unroll 4
    for (int64_t c = (threadIdx.x / 32) * 32 + lane; c < nc; c += kWarps * 32) {
        float wv[R][8];
#pragma unroll
        for (int q = 0; q < R; ++q) load8<TY>(wr[q] + c * 8 * esize, wv[q]);
#pragma unroll
        for (int t = 0; t < T; ++t) {
            if (t >= n_tok) break;
            const float4* xv = reinterpret_cast<const float4*>(x + t * k + c * 8);
            const float4 a = __ldg(xv), b = __ldg(xv + 1);
#pragma unroll
            for (int q = 0; q < R; ++q) {
                float s = acc[q][t];
                s = fmaf(wv[q][0], a.x, s);
                s = fmaf(wv[q][1], a.y, s);
                s = fmaf(wv[q][2], a.z, s);
                s = fmaf(wv[q][3], a.w, s);
                s = fmaf(wv[q][4], b.x, s);
                s = fmaf(wv[q][5], b.y, s);
                s = fmaf(wv[q][6], b.z, s);
                s = fmaf(wv[q][7], b.w, s);
                acc[q][t] = s;
            }
        }
    }
    store<T, R>(acc, n_tok, r0, job->rows, job->y, job->ldy, job->accumulate);
}

}  // namespace
}  // namespace apls::cuda

#include "cuda/matvec_tc.cuh"

namespace apls::cuda {

// Whether F16 rows take matvec_tc (see matvec_tc.cuh) rather than matvec_f: APLS_CUDA_TC "1" or
// "0" decides; otherwise the tensor cores where the device's peak memory bandwidth is at least
// 4 TB/s. There matvec_f's one-token walk falls behind and matvec_tc is faster at every batch
// size (H200: 7B F16 decode +2%); below it matvec_f keeps the bandwidth and matvec_tc costs the
// single token 3.4% (H100), so it is the choice for verify-heavy work only (docs/CUDA.md). Either
// way the kernel needs the f16 mma (compute capability >= 8.0). Decided once per process.
bool f16_on_tensor_cores() {
    static const bool on = [] {
        cudaFuncAttributes fa{};
        if (cudaFuncGetAttributes(&fa, matvec_tc<8>) != cudaSuccess || fa.ptxVersion < 80) return false;
        const char* env = std::getenv("APLS_CUDA_TC");
        if (env && std::strcmp(env, "0") == 0) return false;
        if (env && std::strcmp(env, "1") == 0) return true;
        int dev = 0, khz = 0, bits = 0;
        if (cudaGetDevice(&dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&khz, cudaDevAttrMemoryClockRate, dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&bits, cudaDevAttrGlobalMemoryBusWidth, dev) != cudaSuccess) {
            cudaGetLastError();
            return false;
        }
        const double peak = 2.0 * khz * 1e3 * bits / 8;  // bytes/s (double data rate)
        return peak >= 4e12;
    }();
    return on;
}

namespace {

// Any float type and k (slow path: element by element).
template <int T>
__global__ void matvec_scalar(int type, Jobs jobs, int n_tok) {
    pdl_enter();
    const int lane = threadIdx.x & 31;
    int64_t r;
    const Job* job = locate<1>(jobs, r);
    const int64_t k = jobs.k;
    const float* __restrict__ x = job->x;
    const uint8_t* wr = job->w + r * jobs.row_bytes;
    float acc[1][T];
#pragma unroll
    for (int t = 0; t < T; ++t) acc[0][t] = 0.0f;
    for (int64_t j = (threadIdx.x / 32) * 32 + lane; j < k; j += kWarps * 32) {
        const float wv = dequant_elem(type, wr, k, j);
#pragma unroll
        for (int t = 0; t < T; ++t) {
            if (t >= n_tok) break;
            acc[0][t] = fmaf(wv, x[t * k + j], acc[0][t]);
        }
    }
    store<T, 1>(acc, n_tok, r, job->rows, job->y, job->ldy, job->accumulate);
}

template <int T>
void launch(TensorType type, Jobs jobs, int n_tok, bool vec, cudaStream_t stream) {
    // Blocks per job for the kernel that will run (rows per warp differ between kernels).
    const bool scalar = !is_quantized(type) && !vec;
    const bool tc = type == TensorType::F16 && vec && f16_on_tensor_cores();
    const int64_t rows_per_block = is_quantized(type) ? kWarps * q_rows_per_warp(T)
                                   : scalar           ? 1
                                   : tc               ? kTcBlockRows
                                                      : float_rows_per_block(T);
    int blocks = 0;
    for (int j = 0; j < jobs.n; ++j) {
        jobs.job[j].begin = blocks;
        blocks += static_cast<int>((jobs.job[j].rows + rows_per_block - 1) / rows_per_block);
    }
    if (blocks == 0) return;
    const dim3 grid(static_cast<unsigned>(blocks)), block((tc ? kTcWarps : kWarps) * 32);
    switch (type) {
        case TensorType::Q8_0:
            if constexpr (T == 1) launch_kernel(matvec_q1<8>, grid, block, 0, stream, jobs, n_tok);
            else launch_kernel(matvec_q<8, T>, grid, block, 0, stream, jobs, n_tok);
            break;
        case TensorType::Q4_0:
            if constexpr (T == 1) launch_kernel(matvec_q1<2>, grid, block, 0, stream, jobs, n_tok);
            else launch_kernel(matvec_q<2, T>, grid, block, 0, stream, jobs, n_tok);
            break;
        case TensorType::Q4_1:
            if constexpr (T == 1) launch_kernel(matvec_q1<3>, grid, block, 0, stream, jobs, n_tok);
            else launch_kernel(matvec_q<3, T>, grid, block, 0, stream, jobs, n_tok);
            break;
        case TensorType::F16:
            // Without PDL: launched early, its blocks wait beside the previous kernel's and the
            // grid no longer fits in one wave (7B F16 decode 172 against 210 tok/s, H200).
            if (tc) launch_kernel_with(false, matvec_tc<(T <= 8 ? 8 : 16)>, grid, block, 0, stream, jobs, n_tok);
            else if (vec) launch_kernel(matvec_f<1, T>, grid, block, 0, stream, jobs, n_tok);
            else launch_kernel(matvec_scalar<T>, grid, block, 0, stream, static_cast<int>(type), jobs, n_tok);
            break;
        case TensorType::BF16:
            if (vec) launch_kernel(matvec_f<30, T>, grid, block, 0, stream, jobs, n_tok);
            else launch_kernel(matvec_scalar<T>, grid, block, 0, stream, static_cast<int>(type), jobs, n_tok);
            break;
        case TensorType::F32:
            if (vec) launch_kernel(matvec_f<0, T>, grid, block, 0, stream, jobs, n_tok);
            else launch_kernel(matvec_scalar<T>, grid, block, 0, stream, static_cast<int>(type), jobs, n_tok);
            break;
        default:
            fail(APLS_STATUS_UNSUPPORTED, "CUDA: no matrix kernel for type ", type_name(type));
    }
}

}  // namespace

void quantize_q8(const float* x, int n_tok, int64_t k, const QActs& out, cudaStream_t stream) {
    const int64_t n_blocks = static_cast<int64_t>(n_tok) * (k / 32);
    if (n_blocks == 0) return;
    launch_kernel(quantize_q8_kernel, static_cast<unsigned>((n_blocks + 7) / 8), 256, 0, stream, x, n_blocks, out);
}

void matvec_multi(const MatvecJob* jobs, int n_jobs, int n_tok, cudaStream_t stream) {
    if (n_jobs <= 0 || n_tok <= 0) return;
    if (n_jobs > kMaxJobs) {  // more than one launch's worth: split
        matvec_multi(jobs, kMaxJobs, n_tok, stream);
        return matvec_multi(jobs + kMaxJobs, n_jobs - kMaxJobs, n_tok, stream);
    }
    const DeviceWeight& w0 = *jobs[0].w;
    Jobs js{};
    js.n = n_jobs;
    js.row_bytes = w0.row_bytes;
    js.k = w0.k;
    bool vec = w0.k % 8 == 0 && w0.row_bytes % 16 == 0;
    for (int j = 0; j < n_jobs; ++j) {
        const MatvecJob& m = jobs[j];
        if (m.w->type != w0.type || m.w->k != w0.k)
            fail(APLS_STATUS_INTERNAL, "CUDA matvec_multi: jobs differ in type or k");
        if (is_quantized(w0.type) && !m.xq.qs)
            fail(APLS_STATUS_INTERNAL, "CUDA matvec: quantized weights need Q8 activations");
        vec = vec && reinterpret_cast<uintptr_t>(m.w->data) % 16 == 0;
        js.job[j] = Job{m.w->data, m.x, m.xq, m.y, m.rows, m.ldy, 0, m.accumulate};
    }
    // Batch sizes share instantiations (T = 1, 2, 4, 8, 16): only the predicate t < n_tok differs.
    if (n_tok == 1) launch<1>(w0.type, js, n_tok, vec, stream);
    else if (n_tok == 2) launch<2>(w0.type, js, n_tok, vec, stream);
    else if (n_tok <= 4) launch<4>(w0.type, js, n_tok, vec, stream);
    else if (n_tok <= 8) launch<8>(w0.type, js, n_tok, vec, stream);
    else if (n_tok <= kMaxMatvecTokens) launch<16>(w0.type, js, n_tok, vec, stream);
    else fail(APLS_STATUS_INTERNAL, "CUDA matvec called with ", n_tok, " tokens (max ", kMaxMatvecTokens, ")");
}

void matvec(const DeviceWeight& w, int64_t rows, const float* x, const QActs& xq, int n_tok, float* y, int64_t ldy,
            bool accumulate, cudaStream_t stream) {
    const MatvecJob job{&w, rows, x, xq, y, ldy, accumulate};
    matvec_multi(&job, 1, n_tok, stream);
}

}  // namespace apls::cuda
