# Man pages, installed with the binary (`cmake --install`, the Debian package):
#   butler(1)       docs/man/butler.1, written by hand; the project's version
#                   filled in at configure time;
#   butler.yaml(5)  generated from the key table by the binary itself
#                   (`butler --config-reference man`, config/reference.c), so the
#                   page and the keys cannot drift apart.
# In the build tree they sit in man/man1 and man/man5: `man -M build/man butler`
# reads them, and scripts/verify-systemd.sh finds the unit's Documentation= there.
configure_file(${CMAKE_SOURCE_DIR}/docs/man/butler.1 ${CMAKE_BINARY_DIR}/man/man1/butler.1 @ONLY)
file(MAKE_DIRECTORY ${CMAKE_BINARY_DIR}/man/man5)
add_custom_command(OUTPUT ${CMAKE_BINARY_DIR}/man/man5/butler.yaml.5
  COMMAND butler --config-reference man > ${CMAKE_BINARY_DIR}/man/man5/butler.yaml.5
  DEPENDS butler
  COMMENT "Generating butler.yaml(5) from the key table"
  VERBATIM)
add_custom_target(butler_man ALL DEPENDS ${CMAKE_BINARY_DIR}/man/man5/butler.yaml.5)
install(FILES ${CMAKE_BINARY_DIR}/man/man1/butler.1 DESTINATION share/man/man1)
install(FILES ${CMAKE_BINARY_DIR}/man/man5/butler.yaml.5 DESTINATION share/man/man5)
