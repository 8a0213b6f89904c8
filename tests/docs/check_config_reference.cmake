# ctest docs/configuration_reference: docs/configuration.md must be exactly what
# the binary generates from the key table (config/keys.c), so the reference and
# the code cannot drift. Run with -D BUTLER=<binary> -D EXPECTED=<committed page>.
execute_process(COMMAND ${BUTLER} --config-reference markdown
  OUTPUT_VARIABLE generated RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "butler --config-reference markdown failed (${result}): a key without .doc?")
endif()
file(READ ${EXPECTED} committed)
if(NOT generated STREQUAL committed)
  file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/configuration.generated.md "${generated}")
  message(FATAL_ERROR
    "${EXPECTED} differs from what the binary generates "
    "(written to ${CMAKE_CURRENT_BINARY_DIR}/configuration.generated.md).\n"
    "Regenerate it: cmake --build <build dir> --target config-reference")
endif()
