// test_limits.cpp — absurd sizes are refused before anything is allocated for them.
//
// A file (or a caller) that claims a 2^40-entry array, a 10 GB string, a 2^60-element tensor or
// a 2^40 tensor count must get a clear error *without* the engine first reserving memory for the
// claim. This test replaces the global operator new with a counting one and checks the peak of
// live heap bytes during each refused call: a check placed after a reserve()/resize() would show
// up here as gigabytes (or as bad_alloc), not as the expected error.
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "apls/apls.h"
#include "check.h"
#include "common.h"
#include "gguf.h"

// ---- counting allocator ----------------------------------------------------------------------

namespace {
std::atomic<int64_t> g_live{0}, g_peak{0};
constexpr size_t kHeader = 16;  // keeps the returned pointer 16-byte aligned

void* counted_alloc(size_t n) {
    void* p = std::malloc(n + kHeader);
    if (!p) throw std::bad_alloc();
    std::memcpy(p, &n, sizeof(n));
    int64_t live = g_live.fetch_add(static_cast<int64_t>(n)) + static_cast<int64_t>(n);
    int64_t peak = g_peak.load();
    while (live > peak && !g_peak.compare_exchange_weak(peak, live)) {}
    return static_cast<char*>(p) + kHeader;
}

void counted_free(void* q) noexcept {
    if (!q) return;
    void* p = static_cast<char*>(q) - kHeader;
    size_t n;
    std::memcpy(&n, p, sizeof(n));
    g_live.fetch_sub(static_cast<int64_t>(n));
    std::free(p);
}
}  // namespace

void* operator new(size_t n) { return counted_alloc(n); }
void* operator new[](size_t n) { return counted_alloc(n); }
void operator delete(void* p) noexcept { counted_free(p); }
void operator delete[](void* p) noexcept { counted_free(p); }
void operator delete(void* p, size_t) noexcept { counted_free(p); }
void operator delete[](void* p, size_t) noexcept { counted_free(p); }

namespace {

constexpr int64_t kBudget = 1 << 20;  // 1 MiB: far above what parsing a small image needs

// Peak heap bytes (above the level at the start) while f runs.
template <typename F>
int64_t peak_during(F&& f) {
    const int64_t base = g_live.load();
    g_peak.store(base);
    f();
    return g_peak.load() - base;
}

// ---- GGUF images -----------------------------------------------------------------------------

struct Bytes {
    std::vector<uint8_t> b;
    template <typename T>
    Bytes& put(T v) {
        uint8_t t[sizeof(T)];
        std::memcpy(t, &v, sizeof(T));
        b.insert(b.end(), t, t + sizeof(T));
        return *this;
    }
    Bytes& str(const std::string& s) {
        put<uint64_t>(s.size());
        b.insert(b.end(), s.begin(), s.end());
        return *this;
    }
};

// Header claiming n_tensors / n_kv, then `body` (metadata and tensor infos as raw bytes).
std::vector<uint8_t> image(uint64_t n_tensors, uint64_t n_kv, const std::vector<uint8_t>& body) {
    Bytes h;
    h.put<uint32_t>(0x46554747).put<uint32_t>(3).put<uint64_t>(n_tensors).put<uint64_t>(n_kv);
    h.b.insert(h.b.end(), body.begin(), body.end());
    h.b.resize(h.b.size() + 64, 0);  // some slack, so that only the claim is absurd
    return h.b;
}

// The refusal must be FORMAT, name the problem, and stay within the allocation budget.
void refused_cheaply(const std::vector<uint8_t>& img, const char* message) {
    bool threw = false;
    const int64_t peak = peak_during([&] {
        try {
            apls::gguf::File::from_memory(img.data(), img.size());
        } catch (const apls::Error& e) {
            threw = true;
            if (e.status() != APLS_STATUS_FORMAT || std::string(e.what()).find(message) == std::string::npos) {
                std::fprintf(stderr, "refused with \"%s\", wanted \"%s\"\n", e.what(), message);
                apls_test::failures()++;
            }
        }
    });
    if (!threw) std::fprintf(stderr, "not refused: wanted \"%s\"\n", message);
    CHECK(threw);
    if (peak > kBudget)
        std::fprintf(stderr, "\"%s\": %lld bytes allocated before the refusal\n", message,
                     static_cast<long long>(peak));
    CHECK(peak <= kBudget);
}

}  // namespace

APLS_TEST(the_counting_allocator_counts) {
    // The instrument works: a 2 MiB reserve shows up in the peak.
    const int64_t peak = peak_during([] {
        std::vector<uint64_t> v;
        v.reserve(1 << 18);
    });
    CHECK(peak >= (int64_t(1) << 21));
}

APLS_TEST(absurd_counts_are_refused_before_allocation) {
    refused_cheaply(image(uint64_t(1) << 40, 0, {}), "tensor count 1099511627776 is absurd");
    refused_cheaply(image(0, uint64_t(1) << 40, {}), "metadata count 1099511627776 is absurd");
    refused_cheaply(image(~uint64_t(0), 0, {}), "tensor count 18446744073709551615 is absurd");
}

APLS_TEST(absurd_arrays_are_refused_before_allocation) {
    // A 2^40-entry array of every element kind (1-byte, 8-byte, strings, nested arrays).
    for (uint32_t et : {0u, 10u, 8u, 9u}) {
        Bytes kv;
        kv.str("big").put<uint32_t>(9).put<uint32_t>(et).put<uint64_t>(uint64_t(1) << 40);
        refused_cheaply(image(0, 1, kv.b), "array of 1099511627776 ");
    }
}

APLS_TEST(absurd_strings_are_refused_before_allocation) {
    Bytes kv;
    kv.str("s").put<uint32_t>(8).put<uint64_t>(10000000000ull);  // a 10 GB string value
    refused_cheaply(image(0, 1, kv.b), "string length 10000000000 past the end of the file at key 's'");
    Bytes key;
    key.put<uint64_t>(uint64_t(1) << 62);  // a 2^62-byte key
    refused_cheaply(image(0, 1, key.b), "string length 4611686018427387904 past the end of the file");
    Bytes name;
    name.put<uint64_t>(10000000000ull);  // a 10 GB tensor name
    refused_cheaply(image(1, 0, name.b), "string length 10000000000 past the end of the file of tensor info 0");
}

APLS_TEST(absurd_tensors_are_refused_before_allocation) {
    // A 2^60-element F32 tensor in a small file, and dimensions whose product overflows.
    Bytes ti;
    ti.str("t").put<uint32_t>(1).put<uint64_t>(uint64_t(1) << 60).put<uint32_t>(0).put<uint64_t>(0);
    refused_cheaply(image(1, 0, ti.b), "tensor 't' data [0, 0+4611686018427387904) past the end of the data section");
    Bytes ov;
    ov.str("t")
        .put<uint32_t>(3)
        .put<uint64_t>(1ull << 32)
        .put<uint64_t>(1ull << 32)
        .put<uint64_t>(2)
        .put<uint32_t>(0)
        .put<uint64_t>(0);
    refused_cheaply(image(1, 0, ov.b), "tensor 't' dimension overflow");
}

APLS_TEST(absurd_caller_sizes_are_refused_before_allocation) {
    // A penalty window of INT32_MAX tokens is legal ("the whole history"), but must not reserve
    // 8 GB up front: the window grows with the tokens actually accepted.
    apls_sampler_params p = apls_sampler_default_params();
    p.penalty_last_n = INT32_MAX;
    p.repeat_penalty = 1.1f;
    apls_sampler* s = nullptr;
    const int64_t peak = peak_during([&] {
        CHECK(apls_sampler_init(&p, &s) == APLS_STATUS_OK);
        const float logits[4] = {0.f, 1.f, 2.f, 3.f};
        int32_t tok = -1;
        for (int i = 0; i < 100; ++i) {
            CHECK(apls_sampler_sample(s, logits, 4, &tok) == APLS_STATUS_OK);
            CHECK(apls_sampler_accept(s, tok) == APLS_STATUS_OK);
        }
        apls_sampler_free(s);
    });
    if (peak > kBudget) std::fprintf(stderr, "sampler: %lld bytes\n", static_cast<long long>(peak));
    CHECK(peak <= kBudget);
}

APLS_TEST_MAIN()
