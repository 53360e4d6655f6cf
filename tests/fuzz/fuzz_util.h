// fuzz_util.h — shared by the fuzz targets in tests/fuzz: a reader that turns the fuzzer's bytes
// into typed values, and the reporting used when a target finds an invariant broken.
//
// The targets are libFuzzer entry points (LLVMFuzzerTestOneInput). Built with APLS_FUZZ=ON
// (clang, -fsanitize=fuzzer) they are fuzzers; built without it they link replay_main.cpp and
// run the files or directories given on the command line once each (the corpus and the
// regression files as a CTest test, under whatever sanitizers the build has).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace apls_fuzz {

// Consumes the input from the front; once it runs out every read returns zeros, so a target
// never needs to check lengths.
class Bytes {
public:
    Bytes(const uint8_t* data, size_t size) : p_(data), n_(size) {}
    size_t left() const { return n_; }
    template <typename T>
    T get() {
        T v{};
        size_t k = n_ < sizeof(T) ? n_ : sizeof(T);
        std::memcpy(&v, p_, k);
        p_ += k;
        n_ -= k;
        return v;
    }
    uint8_t byte() { return get<uint8_t>(); }
    bool flag() { return byte() & 1; }
    // A value in [0, n) (n > 0).
    uint32_t below(uint32_t n) { return get<uint16_t>() % n; }
    // An int32 that is usually small and sometimes anything: fuzzers find boundaries faster
    // when most values land near them.
    int32_t small_or_any(int32_t span) {
        uint8_t mode = byte();
        if (mode < 200) return static_cast<int32_t>(get<uint8_t>() % (2 * span + 1)) - span;
        return get<int32_t>();
    }
    // Up to max_len bytes (the length is the next byte, scaled), as a string.
    std::string text(size_t max_len) {
        size_t k = byte();
        if (k > max_len) k = max_len;
        if (k > n_) k = n_;
        std::string s(reinterpret_cast<const char*>(p_), k);
        p_ += k;
        n_ -= k;
        return s;
    }
    // Everything that is left.
    std::string rest() {
        std::string s(reinterpret_cast<const char*>(p_), n_);
        p_ += n_;
        n_ = 0;
        return s;
    }

private:
    const uint8_t* p_;
    size_t n_;
};

// A broken invariant: print and abort, so that libFuzzer (or the replay driver) reports it.
[[noreturn]] inline void broken(const char* file, int line, const std::string& what) {
    std::fprintf(stderr, "%s:%d: invariant broken: %s\n", file, line, what.c_str());
    std::fflush(stderr);
    std::abort();
}

}  // namespace apls_fuzz

#define FUZZ_CHECK(cond, msg)                                                                    \
    do {                                                                                         \
        if (!(cond)) ::apls_fuzz::broken(__FILE__, __LINE__, std::string(#cond) + ": " + (msg)); \
    } while (0)
