# Man pages (docs/man), installed with the binary (`cmake --install`, the
# Debian package): butler(1), written by hand, with the project's version
# filled in at configure time.
configure_file(${CMAKE_SOURCE_DIR}/docs/man/butler.1 ${CMAKE_BINARY_DIR}/man/butler.1 @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/man/butler.1 DESTINATION share/man/man1)
