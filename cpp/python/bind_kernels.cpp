// bind_kernels.cpp — the CPU kernel tables exposed for tests and benchmarks: every ISA this CPU
// and build have can be called by name, so tests compare them against NumPy and each other.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <ctime>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "common.h"
#include "cpu/kernels.h"

namespace py = pybind11;
using apls::TensorType;
using apls::cpu::BlockQ8A;
using apls::cpu::KernelTable;

namespace {

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;
using ByteArray = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>;

const KernelTable& table(const std::string& isa) {
    const KernelTable* t = apls::cpu::kernels_for(isa.c_str());
    if (!t) apls::fail(APLS_STATUS_INVALID_ARGUMENT, "kernel ISA '", isa, "' is not available on this CPU or build");
    return *t;
}

TensorType parse_type(const std::string& name) {
    for (TensorType t :
         {TensorType::F32, TensorType::F16, TensorType::BF16, TensorType::Q4_0, TensorType::Q4_1, TensorType::Q5_0,
          TensorType::Q5_1, TensorType::Q8_0, TensorType::Q4_K, TensorType::Q5_K, TensorType::Q6_K})
        if (name == apls::type_name(t)) return t;
    apls::fail(APLS_STATUS_INVALID_ARGUMENT, "matmul: type '", name,
               "' is not one of F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K");
}

bool is_quantized(TensorType t) { return apls::type_traits(t).block > 1; }

// Rows of a weight buffer of `bytes` bytes, checking k and the size.
int64_t weight_rows(TensorType type, int64_t k, size_t bytes) {
    const int64_t block = apls::type_traits(type).block;
    if (k <= 0 || k % block != 0)
        apls::fail(APLS_STATUS_INVALID_ARGUMENT, "matmul: k=", k, " is not a positive multiple of ", block, " for ",
                   apls::type_name(type));
    const uint64_t rb = apls::cpu::row_bytes(type, k);
    if (bytes % rb != 0)
        apls::fail(APLS_STATUS_INVALID_ARGUMENT, "matmul: weight size ", bytes, " is not a multiple of the row size ",
                   rb);
    return static_cast<int64_t>(bytes / rb);
}

py::tuple quantize_act(const std::string& isa, FloatArray x) {
    const KernelTable& kt = table(isa);
    if (x.ndim() != 1 || x.shape(0) % apls::QK != 0)
        apls::fail(APLS_STATUS_INVALID_ARGUMENT, "quantize_act: x must be 1-D with a length that is a multiple of 32");
    const int64_t k = x.shape(0), nb = k / apls::QK;
    std::vector<BlockQ8A> blocks(static_cast<size_t>(nb));
    kt.quantize_act(x.data(), blocks.data(), k);
    py::array_t<float> d(nb), s(nb);
    py::array_t<int8_t> qs({nb, static_cast<int64_t>(apls::QK)});
    for (int64_t b = 0; b < nb; ++b) {
        d.mutable_at(b) = blocks[b].d;
        s.mutable_at(b) = blocks[b].s;
        std::memcpy(qs.mutable_data(b, 0), blocks[b].qs, apls::QK);
    }
    return py::make_tuple(d, s, qs);
}

// The ISA's packed kernels for type (cpu/kernels.h), or fail.
void require_packed(const KernelTable& kt, TensorType type, int64_t k) {
    if (!apls::cpu::packs(kt, type) || apls::cpu::packed_bytes(type, k, 1) == 0)
        apls::fail(APLS_STATUS_INVALID_ARGUMENT, "matmul: kernel ISA '", kt.isa, "' has no packed layout for ",
                   apls::type_name(type));
}

// w (rows, GGUF row bytes) in the packed layout.
std::vector<uint8_t> pack(TensorType type, const uint8_t* w, int64_t k, int64_t rows) {
    std::vector<uint8_t> out(static_cast<size_t>(apls::cpu::packed_bytes(type, k, rows)));
    apls::cpu::pack_rows(type, w, k, rows, out.data());
    return out;
}

py::array_t<float> matmul(const std::string& isa, const std::string& type_name, ByteArray w, int64_t k, FloatArray x,
                          int64_t r0, int64_t r1, bool packed) {
    const KernelTable& kt = table(isa);
    const TensorType type = parse_type(type_name);
    const int64_t rows = weight_rows(type, k, static_cast<size_t>(w.size()));
    if (x.ndim() != 2 || x.shape(1) != k)
        apls::fail(APLS_STATUS_INVALID_ARGUMENT, "matmul: x must have shape (n_tok, k=", k, ")");
    if (r1 < 0) r1 = rows;
    if (r0 < 0 || r0 > r1 || r1 > rows)
        apls::fail(APLS_STATUS_INVALID_ARGUMENT, "matmul: bad row range [", r0, ", ", r1, ") for ", rows, " rows");
    const int64_t n_tok = x.shape(0);
    py::array_t<float> y({n_tok, rows});
    float* yp = y.mutable_data();
    std::fill(yp, yp + n_tok * rows, std::numeric_limits<float>::quiet_NaN());  // unwritten outputs show
    if (packed) require_packed(kt, type, k);
    if (n_tok == 0) return y;
    if (is_quantized(type)) {  // the packed types are quantized: both take Q8 activations
        const int64_t nb = k / apls::QK;
        std::vector<BlockQ8A> xq(static_cast<size_t>(n_tok * nb));
        for (int64_t t = 0; t < n_tok; ++t) kt.quantize_act(x.data(t, 0), xq.data() + t * nb, k);
        const std::vector<uint8_t> wp = packed ? pack(type, w.data(), k, rows) : std::vector<uint8_t>{};
        py::gil_scoped_release nogil;
        if (packed) kt.matmul_q_packed(type, wp.data(), k, xq.data(), n_tok, yp, rows, r0, r1);
        else kt.matmul_q(type, w.data(), k, xq.data(), n_tok, yp, rows, r0, r1);
    } else {
        py::gil_scoped_release nogil;
        kt.matmul_f(type, w.data(), k, x.data(), n_tok, yp, rows, r0, r1);
    }
    return y;
}

// k: float32 or float16 (1-D, same length as q).
bool kv_is_f16(const py::array& a, int64_t n, const char* what) {
    if (a.ndim() != 1 || a.shape(0) != n)
        apls::fail(APLS_STATUS_INVALID_ARGUMENT, what, ": arrays must be 1-D of the same length");
    if (!(a.flags() & py::array::c_style))
        apls::fail(APLS_STATUS_INVALID_ARGUMENT, what, ": arrays must be contiguous");
    if (a.dtype().is(py::dtype::of<float>())) return false;
    if (a.dtype().kind() == 'f' && a.dtype().itemsize() == 2) return true;
    apls::fail(APLS_STATUS_INVALID_ARGUMENT, what, ": cached keys/values must be float32 or float16");
}

float dot_kv(const std::string& isa, FloatArray q, const py::array& k) {
    const KernelTable& kt = table(isa);
    if (q.ndim() != 1) apls::fail(APLS_STATUS_INVALID_ARGUMENT, "dot_kv: q must be 1-D");
    const bool f16 = kv_is_f16(k, q.shape(0), "dot_kv");
    return kt.dot_kv(q.data(), k.data(), q.shape(0), f16);
}

py::array_t<float> axpy_kv(const std::string& isa, float a, const py::array& v, FloatArray y) {
    const KernelTable& kt = table(isa);
    if (y.ndim() != 1) apls::fail(APLS_STATUS_INVALID_ARGUMENT, "axpy_kv: y must be 1-D");
    const int64_t n = y.shape(0);
    const bool f16 = kv_is_f16(v, n, "axpy_kv");
    py::array_t<float> out(n);
    std::memcpy(out.mutable_data(), y.data(), static_cast<size_t>(n) * sizeof(float));
    kt.axpy_kv(a, v.data(), out.mutable_data(), n, f16);
    return out;
}

py::array_t<uint16_t> f32_to_f16_row(const std::string& isa, FloatArray x) {
    const KernelTable& kt = table(isa);
    if (x.ndim() != 1) apls::fail(APLS_STATUS_INVALID_ARGUMENT, "f32_to_f16_row: x must be 1-D");
    py::array_t<uint16_t> out(x.shape(0));
    kt.f32_to_f16_row(x.data(), out.mutable_data(), x.shape(0));
    return out;
}

// Benchmark helper: time passes over a list of matrices (type name, weights, k), each pass
// calling the ISA's matmul on every matrix in turn with n_tok tokens, rows split over n_threads
// threads in chunks that are multiples of 16 rows like the engine. Returns seconds per pass for
// each of `reps` passes (after one warm-up pass).
// Seconds: wall clock, or this process's CPU time (all threads) when the machine is shared.
double now(bool cpu_clock) {
    if (cpu_clock) return static_cast<double>(std::clock()) / CLOCKS_PER_SEC;
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::vector<double> bench_matmuls(const std::string& isa, const std::vector<py::tuple>& mats, int64_t n_tok, int reps,
                                  int n_threads, bool cpu_clock, bool packed) {
    const KernelTable& kt = table(isa);
    struct Mat {
        TensorType type;
        const uint8_t* w;
        int64_t k, rows;
        std::vector<BlockQ8A> xq;
        std::vector<float> xf;
        std::vector<uint8_t> wp;  // the packed copy, when packed and the ISA packs this type
    };
    std::vector<ByteArray> keep;
    std::vector<Mat> ms;
    int64_t max_rows = 0;
    for (const py::tuple& m : mats) {
        const TensorType type = parse_type(m[0].cast<std::string>());
        keep.push_back(m[1].cast<ByteArray>());
        const int64_t k = m[2].cast<int64_t>();
        Mat mm{type, keep.back().data(), k, weight_rows(type, k, keep.back().size()), {}, {}};
        mm.xf.resize(static_cast<size_t>(n_tok * k));
        for (size_t i = 0; i < mm.xf.size(); ++i) mm.xf[i] = std::sin(0.37f * static_cast<float>(i % 1000));
        if (is_quantized(type)) {
            mm.xq.resize(static_cast<size_t>(n_tok * k / apls::QK));
            for (int64_t t = 0; t < n_tok; ++t)
                kt.quantize_act(mm.xf.data() + t * k, mm.xq.data() + t * k / apls::QK, k);
        }
        if (packed && apls::cpu::packs(kt, type) && apls::cpu::packed_bytes(type, k, 1) > 0)
            mm.wp = pack(type, mm.w, k, mm.rows);
        max_rows = std::max(max_rows, mm.rows);
        ms.push_back(std::move(mm));
    }
    n_threads = std::max(1, n_threads);
    std::vector<float> y(static_cast<size_t>(n_tok * max_rows));
    auto run_part = [&](const Mat& m, int ith) {
        const int64_t chunk = (m.rows / n_threads + 15) / 16 * 16;
        const int64_t r0 = std::min(m.rows, chunk * ith),
                      r1 = ith == n_threads - 1 ? m.rows : std::min(m.rows, r0 + chunk);
        if (r0 >= r1) return;
        if (!m.wp.empty()) kt.matmul_q_packed(m.type, m.wp.data(), m.k, m.xq.data(), n_tok, y.data(), m.rows, r0, r1);
        else if (is_quantized(m.type)) kt.matmul_q(m.type, m.w, m.k, m.xq.data(), n_tok, y.data(), m.rows, r0, r1);
        else kt.matmul_f(m.type, m.w, m.k, m.xf.data(), n_tok, y.data(), m.rows, r0, r1);
    };
    // Helper threads follow the main thread matrix by matrix through a spinning barrier.
    std::atomic<int64_t> arrived{0};
    std::atomic<bool> stop{false};
    std::atomic<int64_t> go{0};
    const int64_t n_mats = static_cast<int64_t>(ms.size());
    auto barrier = [&](int64_t& phase) {
        ++phase;
        if (arrived.fetch_add(1) + 1 == phase * n_threads) go.store(phase);
        // Spin, then yield: on a shared machine a spinning thread must not hold a core that the
        // thread it waits for needs.
        for (int spins = 0; go.load() < phase; ++spins)
            if (spins > 4096) std::this_thread::yield();
    };
    std::vector<double> times;
    {
        py::gil_scoped_release nogil;
        std::vector<std::thread> helpers;
        for (int ith = 1; ith < n_threads; ++ith)
            helpers.emplace_back([&, ith] {
                int64_t phase = 0;
                for (;;) {
                    barrier(phase);  // start of a pass
                    if (stop.load()) return;
                    for (int64_t i = 0; i < n_mats; ++i) {
                        run_part(ms[i], ith);
                        barrier(phase);
                    }
                }
            });
        int64_t phase = 0;
        for (int rep = 0; rep <= reps; ++rep) {
            const double t0 = now(cpu_clock);
            barrier(phase);
            for (int64_t i = 0; i < n_mats; ++i) {
                run_part(ms[i], 0);
                barrier(phase);
            }
            const double dt = now(cpu_clock) - t0;
            if (rep > 0) times.push_back(dt);
        }
        stop.store(true);
        barrier(phase);
        for (auto& h : helpers) h.join();
    }
    return times;
}

}  // namespace

void bind_kernels(py::module_& m) {
    m.def(
        "kernel_isas",
        [] {
            std::vector<std::string> out;
            for (const char* isa : {"generic", "avx2", "avx512"})
                if (apls::cpu::kernels_for(isa)) out.emplace_back(isa);
            return out;
        },
        "Kernel ISAs available on this CPU and build.");
    m.def(
        "kernel_isa", [] { return std::string(apls::cpu::kernels().isa); },
        "The kernel ISA the engine uses (the best available, or APLS_ISA).");
    m.def("quantize_act", &quantize_act, py::arg("isa"), py::arg("x"),
          "Quantize activations (k floats) to Q8 blocks: returns (d[nb], s[nb], qs[nb, 32]).");
    m.def("matmul", &matmul, py::arg("isa"), py::arg("type_name"), py::arg("w"), py::arg("k"), py::arg("x"),
          py::arg("r0") = 0, py::arg("r1") = -1, py::arg("packed") = false,
          "y[t, r] = W[r] . x[t] with the ISA's kernels for rows [r0, r1); other rows are NaN. packed: W "
          "(GGUF bytes) is packed first and goes through the ISA's packed kernels (Q5_0, Q5_1; an error "
          "where the ISA has none).");
    m.def(
        "kernel_packs",
        [](const std::string& isa, const std::string& type_name) {
            const KernelTable& kt = table(isa);
            return apls::cpu::packs(kt, parse_type(type_name));
        },
        py::arg("isa"), py::arg("type_name"), "Whether the ISA has packed kernels for the weight type.");
    m.def(
        "cpu_repack_enabled", [] { return apls::cpu::repack_enabled(apls::cpu::kernels()); },
        "Whether the engine packs weights for its CPU kernels (APLS_CPU_REPACK is not 0 and the ISA packs).");
    m.def("dot_kv", &dot_kv, py::arg("isa"), py::arg("q"), py::arg("k"));
    m.def("f32_to_f16_row", &f32_to_f16_row, py::arg("isa"), py::arg("x"),
          "The ISA's float -> half conversion of a row (the F16 KV cache's stores), as uint16 bits.");
    m.def("axpy_kv", &axpy_kv, py::arg("isa"), py::arg("a"), py::arg("v"), py::arg("y"),
          "Returns y + a * v (y is not modified).");
    m.def("bench_matmuls", &bench_matmuls, py::arg("isa"), py::arg("mats"), py::arg("n_tok"), py::arg("reps"),
          py::arg("n_threads") = 1, py::arg("cpu_clock") = false, py::arg("packed") = false,
          "Seconds per pass over [(type_name, w, k), ...] for each of reps passes (benchmarks); packed: "
          "the types the ISA packs go through its packed kernels, as the engine runs them.");
}
