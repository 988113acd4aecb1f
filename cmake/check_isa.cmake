# Post-build proof that the per-ISA kernel objects are what they claim (run by CMakeLists.txt):
#  - the baseline object has no AVX (ymm/zmm) instructions and the AVX2 object no AVX-512 (zmm);
#  - no object has a static initialiser (it would run at import on every CPU);
#  - no object exports a weak symbol the linker could merge across ISAs (only cnnbp::isa_<tag>).
# Inputs: OBJDUMP, NM, TAG, OBJECTS (;-list).
foreach(obj IN LISTS OBJECTS)
  execute_process(COMMAND ${OBJDUMP} -d --no-show-raw-insn ${obj} OUTPUT_VARIABLE asm RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "check_isa: objdump failed on ${obj}")
  endif()
  if(TAG STREQUAL "baseline" AND asm MATCHES "%[yz]mm")
    message(FATAL_ERROR "check_isa: baseline kernels contain AVX instructions (${obj})")
  endif()
  if(TAG STREQUAL "avx2" AND asm MATCHES "%zmm")
    message(FATAL_ERROR "check_isa: AVX2 kernels contain AVX-512 instructions (${obj})")
  endif()
  execute_process(COMMAND ${OBJDUMP} -h ${obj} OUTPUT_VARIABLE sections)
  if(sections MATCHES "init_array|\\.ctors")
    message(FATAL_ERROR "check_isa: ${TAG} kernels have a static initialiser (${obj})")
  endif()
  execute_process(COMMAND ${NM} -C ${obj} OUTPUT_VARIABLE syms)
  string(REPLACE "\n" ";" lines "${syms}")
  foreach(line IN LISTS lines)
    if(line MATCHES "^[0-9a-f]+ [WVTDBR] (.*)$")
      set(sym "${CMAKE_MATCH_1}")
      # DW.ref.__gxx_personality_v0: the exception-handling personality pointer, data that is
      # the same in every object (no code).
      if(NOT sym MATCHES "^cnnbp::isa_${TAG}::" AND NOT sym MATCHES "^\\." AND NOT sym STREQUAL "DW.ref.__gxx_personality_v0")
        message(FATAL_ERROR "check_isa: ${TAG} kernels export '${sym}' outside cnnbp::isa_${TAG} (${obj})")
      endif()
    endif()
  endforeach()
endforeach()
message(STATUS "check_isa: ${TAG} kernel objects verified")
