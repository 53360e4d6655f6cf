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
  cpp/src/batch.cpp
  cpp/src/plan.cpp
  cpp/src/split.cpp
  cpp/src/context.cpp
  cpp/src/runner.cpp
  cpp/src/rope.cpp
  cpp/src/forward.cpp
  cpp/src/forward_llama.cpp
  cpp/src/forward_qwen2.cpp
  cpp/src/forward_qwen3.cpp
  cpp/src/speculative.cpp
  cpp/src/speculative_tree.cpp
  cpp/src/draft/token_tree.cpp
  cpp/src/draft/acceptance.cpp
  cpp/src/draft/prompt_lookup.cpp
  cpp/src/draft/suffix_index.cpp
  cpp/src/draft/recycle.cpp
  cpp/src/draft/layer_skip.cpp
  cpp/src/draft/drafter.cpp
  cpp/src/capi.cpp
  cpp/src/capi_spec.cpp
  cpp/src/capi_kv.cpp
  cpp/src/sampling.cpp
  cpp/src/sampling_tree.cpp
  cpp/src/capi_sampling.cpp
  cpp/src/capi_vocab.cpp
  cpp/src/quantize.cpp
  cpp/src/capi_quantize.cpp
  cpp/src/cpu/threadpool.cpp
  cpp/src/cpu/cores.cpp
  cpp/src/cpu/dispatch.cpp
  cpp/src/cpu/repack.cpp
  cpp/src/cpu/kernels_generic.cpp
  cpp/src/cpu/kernels_avx2.cpp
  cpp/src/cpu/kernels_avx512.cpp
  cpp/src/cpu/ops.cpp
  cpp/src/cpu/attention.cpp
  cpp/src/cpu/kv_store.cpp
  cpp/src/cpu/forward_ops.cpp
  cpp/src/cpu/cpu_runner.cpp
)

# The CUDA backend (third_party/cuda.cmake decides), or the stub that reports its absence.
if(APLS_WITH_CUDA)
  list(APPEND APLS_SOURCES
    cpp/cuda/device_model.cpp
    cpp/cuda/weight_layout.cpp
    cpp/cuda/runner.cpp
    cpp/cuda/kv_store.cpp
    cpp/cuda/step_inputs.cpp
    cpp/cuda/graphs.cpp
    cpp/cuda/forward_ops.cpp
    cpp/cuda/gemm.cpp
    cpp/cuda/cublas_loader.cpp
    cpp/cuda/matvec.cu
    cpp/cuda/attention.cu
    cpp/cuda/prompt_attention.cu
    cpp/cuda/ops.cu
  )
  # cudart linked statically; cuBLAS opened at run time (cublas_loader.cpp).
  set(APLS_CUDA_LIBS CUDA::cudart_static ${CMAKE_DL_LIBS})
else()
  list(APPEND APLS_SOURCES cpp/src/device_stub.cpp)
  set(APLS_CUDA_LIBS "")
endif()

set(APLS_PYTHON_SOURCES
  cpp/python/module.cpp
  cpp/python/bind_errors.cpp
  cpp/python/bind_gguf.cpp
  cpp/python/bind_kernels.cpp
  cpp/python/bind_model.cpp
  cpp/python/bind_plan.cpp
  cpp/python/bind_vocab.cpp
  cpp/python/bind_speculative.cpp
  cpp/python/bind_draft.cpp
  cpp/python/bind_sampling.cpp
  cpp/python/bind_quantize.cpp
)

# The SIMD kernels are compiled once per instruction set and chosen at run time
# (cpu/dispatch.cpp). With APLS_NATIVE the whole build is -march=native anyway.
function(apls_set_isa_flags)
  # The reference quantizers must round as gguf.quants does: no fused multiply-add (quantize.cpp).
  set_source_files_properties(cpp/src/quantize.cpp TARGET_DIRECTORY apls_obj PROPERTIES COMPILE_OPTIONS "-ffp-contract=off")
  if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|amd64")
    set_source_files_properties(cpp/src/cpu/kernels_avx2.cpp TARGET_DIRECTORY apls_obj
      PROPERTIES COMPILE_OPTIONS "-mavx2;-mfma;-mf16c;-mbmi2")
    set_source_files_properties(cpp/src/cpu/kernels_avx512.cpp TARGET_DIRECTORY apls_obj
      PROPERTIES COMPILE_OPTIONS "-mavx512f;-mavx512bw;-mavx512vl;-mavx512dq;-mavx512vnni;-mavx2;-mfma;-mf16c;-mbmi2")
  endif()
endfunction()

# CUDA compile settings for the engine objects: cuBLAS headers, the toolkit's library directory
# (where cuBLAS is looked for at run time), hidden host symbols, device code for the chosen archs.
function(apls_setup_cuda target)
  target_include_directories(${target} PRIVATE ${PROJECT_SOURCE_DIR}/cpp ${CUDAToolkit_INCLUDE_DIRS} ${APLS_CUBLAS_INCLUDE_DIR})
  target_compile_definitions(${target} PRIVATE APLS_CUDA_TOOLKIT_LIBDIR="${CUDAToolkit_LIBRARY_DIR}")
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-fvisibility=hidden --expt-relaxed-constexpr -lineinfo>)
  set_target_properties(${target} PROPERTIES CUDA_ARCHITECTURES "${CMAKE_CUDA_ARCHITECTURES}")
endfunction()
