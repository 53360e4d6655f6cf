# Engine sources, one concern per file (see README "Code map").
set(APLS_SOURCES
  cpp/src/common.cpp
  cpp/src/ggml_types.cpp
  cpp/src/gguf.cpp
  cpp/src/unicode.cpp
  cpp/src/unicode_data.cpp
  cpp/src/pretokenize.cpp
  cpp/src/vocab.cpp
  cpp/src/arch.cpp
  cpp/src/hparams.cpp
  cpp/src/model.cpp
  cpp/src/kv_cache.cpp
  cpp/src/context.cpp
  cpp/src/forward_llama.cpp
  cpp/src/speculative.cpp
  cpp/src/capi.cpp
  cpp/src/capi_spec.cpp
  cpp/src/capi_kv.cpp
  cpp/src/sampling.cpp
  cpp/src/capi_sampling.cpp
  cpp/src/capi_vocab.cpp
  cpp/src/cpu/threadpool.cpp
  cpp/src/cpu/dispatch.cpp
  cpp/src/cpu/kernels_generic.cpp
  cpp/src/cpu/kernels_avx2.cpp
  cpp/src/cpu/kernels_avx512.cpp
  cpp/src/cpu/ops.cpp
  cpp/src/cpu/attention.cpp
)

set(APLS_PYTHON_SOURCES
  cpp/python/module.cpp
  cpp/python/bind_errors.cpp
  cpp/python/bind_gguf.cpp
  cpp/python/bind_kernels.cpp
  cpp/python/bind_model.cpp
  cpp/python/bind_vocab.cpp
  cpp/python/bind_speculative.cpp
  cpp/python/bind_sampling.cpp
)

# The SIMD kernels are compiled once per instruction set and chosen at run time
# (cpu/dispatch.cpp). With APLS_NATIVE the whole build is -march=native anyway.
function(apls_set_isa_flags)
  if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|amd64")
    set_source_files_properties(cpp/src/cpu/kernels_avx2.cpp TARGET_DIRECTORY apls_obj
      PROPERTIES COMPILE_OPTIONS "-mavx2;-mfma;-mf16c;-mbmi2")
    set_source_files_properties(cpp/src/cpu/kernels_avx512.cpp TARGET_DIRECTORY apls_obj
      PROPERTIES COMPILE_OPTIONS "-mavx512f;-mavx512bw;-mavx512vl;-mavx512dq;-mavx512vnni;-mavx2;-mfma;-mf16c;-mbmi2")
  endif()
endfunction()
