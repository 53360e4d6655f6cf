# third_party/cuda.cmake — the CUDA toolkit (nvcc, cudart) and cuBLAS, from the system or from
# package registries. Nothing is vendored.
#
# APLS_CUDA = AUTO (default) | ON | OFF; the environment variable APLS_CUDA overrides the cache
# value (so `APLS_CUDA=OFF pip install .` forces a CPU-only build).
#   AUTO: build the CUDA backend when nvcc and the cuBLAS headers are found.
#   ON:   the same, failing when either is missing.
# cudart is linked statically and cuBLAS is opened at run time (cuda/cublas_loader.cpp), so the
# library and the Python module load on machines without a GPU or without cuBLAS; the CUDA backend
# then reports why it is unavailable.
#
# cuBLAS headers are looked up in the CUDA toolkit, then in APLS_CUBLAS_ROOT (cache or
# environment), then in the PyPI wheel `nvidia-cublas` (site-packages/nvidia/cu13) of the Python
# interpreters on PATH.

set(APLS_CUDA_ARCHITECTURES "90" CACHE STRING "CUDA architectures (sm_XX list; PTX is embedded for the last)")

function(apls_find_cublas_include out)
  set(_hints "")
  if(DEFINED ENV{APLS_CUBLAS_ROOT})
    list(APPEND _hints "$ENV{APLS_CUBLAS_ROOT}/include")
  endif()
  if(APLS_CUBLAS_ROOT)
    list(APPEND _hints "${APLS_CUBLAS_ROOT}/include")
  endif()
  list(APPEND _hints ${CUDAToolkit_INCLUDE_DIRS})
  foreach(_py python3 python)
    find_program(_apls_py_${_py} ${_py})
    if(_apls_py_${_py})
      execute_process(
        COMMAND ${_apls_py_${_py}} -c "import nvidia, os; print(';'.join(os.path.join(p, 'cu13', 'include') for p in nvidia.__path__))"
        OUTPUT_VARIABLE _wheel OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
      list(APPEND _hints ${_wheel})
    endif()
  endforeach()
  find_path(APLS_CUBLAS_INCLUDE_DIR cublas_v2.h HINTS ${_hints} NO_DEFAULT_PATH)
  set(${out} "${APLS_CUBLAS_INCLUDE_DIR}" PARENT_SCOPE)
endfunction()

set(APLS_CUDA "AUTO" CACHE STRING "Build the CUDA backend: AUTO, ON or OFF")
if(DEFINED ENV{APLS_CUDA})
  set(APLS_CUDA "$ENV{APLS_CUDA}" CACHE STRING "Build the CUDA backend: AUTO, ON or OFF" FORCE)
endif()
string(TOUPPER "${APLS_CUDA}" _apls_cuda_mode)
if(_apls_cuda_mode MATCHES "^(1|TRUE|YES)$")
  set(_apls_cuda_mode ON)
elseif(_apls_cuda_mode MATCHES "^(0|FALSE|NO)$")
  set(_apls_cuda_mode OFF)
endif()

set(APLS_WITH_CUDA OFF)
if(NOT _apls_cuda_mode STREQUAL "OFF")
  include(CheckLanguage)
  if(NOT CMAKE_CUDA_COMPILER)
    find_program(_apls_nvcc nvcc HINTS /usr/local/cuda/bin /usr/local/cuda-13.0/bin)
    if(_apls_nvcc)
      set(CMAKE_CUDA_COMPILER "${_apls_nvcc}")
    endif()
  endif()
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    if(NOT CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES ${APLS_CUDA_ARCHITECTURES})
    endif()
    enable_language(CUDA)
    find_package(CUDAToolkit REQUIRED)
    apls_find_cublas_include(_apls_cublas_inc)
    if(_apls_cublas_inc)
      set(APLS_WITH_CUDA ON)
      message(STATUS "APLS: CUDA backend ON (nvcc ${CMAKE_CUDA_COMPILER_VERSION}, archs ${CMAKE_CUDA_ARCHITECTURES}, cuBLAS headers ${_apls_cublas_inc})")
    elseif(_apls_cuda_mode STREQUAL "ON")
      message(FATAL_ERROR "APLS_CUDA=ON but cublas_v2.h was not found: install the CUDA toolkit's cuBLAS or `pip install nvidia-cublas` (or set APLS_CUBLAS_ROOT)")
    else()
      message(STATUS "APLS: CUDA backend OFF (nvcc found, cuBLAS headers not found; pip install nvidia-cublas)")
    endif()
  elseif(_apls_cuda_mode STREQUAL "ON")
    message(FATAL_ERROR "APLS_CUDA=ON but no CUDA compiler (nvcc) was found")
  else()
    message(STATUS "APLS: CUDA backend OFF (no nvcc)")
  endif()
endif()
