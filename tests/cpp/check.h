// check.h — a minimal assertion harness for the C++ tests (no framework dependency).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

namespace apls_test {

inline int& failures() {
    static int n = 0;
    return n;
}

struct Case {
    const char* name;
    std::function<void()> fn;
};
inline std::vector<Case>& cases() {
    static std::vector<Case> v;
    return v;
}
struct Register {
    Register(const char* n, std::function<void()> f) { cases().push_back({n, std::move(f)}); }
};

inline int run_all() {
    int passed = 0;
    for (auto& c : cases()) {
        int before = failures();
        try {
            c.fn();
        } catch (const std::exception& e) {
            std::fprintf(stderr, "FAIL %s: unexpected exception: %s\n", c.name, e.what());
            failures()++;
        }
        if (failures() == before) passed++;
        else std::fprintf(stderr, "FAIL %s\n", c.name);
    }
    std::printf("%d passed, %d failed\n", passed, static_cast<int>(cases().size()) - passed);
    return passed == static_cast<int>(cases().size()) ? 0 : 1;
}

}  // namespace apls_test

#define APLS_TEST(name)                                 \
    static void name();                                 \
    static apls_test::Register reg_##name(#name, name); \
    static void name()

#define CHECK(cond)                                                                       \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            std::fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
            apls_test::failures()++;                                                      \
        }                                                                                 \
    } while (0)

// CHECK_THROWS(expr, status, "substring of the message")
#define CHECK_THROWS(expr, st, substr)                                                                            \
    do {                                                                                                          \
        bool thrown_ = false;                                                                                     \
        try {                                                                                                     \
            expr;                                                                                                 \
        } catch (const apls::Error& e_) {                                                                         \
            thrown_ = true;                                                                                       \
            if (e_.status() != (st) || std::string(e_.what()).find(substr) == std::string::npos) {                \
                std::fprintf(stderr, "%s:%d: %s threw status %d \"%s\", wanted %d containing \"%s\"\n", __FILE__, \
                             __LINE__, #expr, (int)e_.status(), e_.what(), (int)(st), substr);                    \
                apls_test::failures()++;                                                                          \
            }                                                                                                     \
        }                                                                                                         \
        if (!thrown_) {                                                                                           \
            std::fprintf(stderr, "%s:%d: %s did not throw\n", __FILE__, __LINE__, #expr);                         \
            apls_test::failures()++;                                                                              \
        }                                                                                                         \
    } while (0)

#define APLS_TEST_MAIN() \
    int main() { return apls_test::run_all(); }
