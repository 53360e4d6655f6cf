// cores_module.cpp — the default thread count behind a C entry point, built as a shared library
// with its own static libstdc++ (as the Python module was built on the H200 machine, issue 23) for
// test_cores_static.c to load.
#include "cpu/cores.h"

extern "C" __attribute__((visibility("default"))) int apls_test_physical_cores() { return apls::cpu::physical_cores(); }
