# latchkey-broker: the libwebsockets server (included by broker/CMakeLists.txt).
set(LK_BROKER_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/main.c
  ${CMAKE_CURRENT_LIST_DIR}/config.c
  ${CMAKE_CURRENT_LIST_DIR}/log.c
  ${CMAKE_CURRENT_LIST_DIR}/metrics.c
  ${CMAKE_CURRENT_LIST_DIR}/listener.c
  ${CMAKE_CURRENT_LIST_DIR}/prelude.c
  ${CMAKE_CURRENT_LIST_DIR}/http.c
  ${CMAKE_CURRENT_LIST_DIR}/auth.c
  ${CMAKE_CURRENT_LIST_DIR}/keystore.c
  ${CMAKE_CURRENT_LIST_DIR}/session.c
  ${CMAKE_CURRENT_LIST_DIR}/channel.c
  ${CMAKE_CURRENT_LIST_DIR}/fanout.c
  ${CMAKE_CURRENT_LIST_DIR}/codec.c)

add_executable(latchkey-broker ${LK_BROKER_SOURCES})
target_include_directories(latchkey-broker PRIVATE ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(latchkey-broker PRIVATE latchkey::mint PkgConfig::LWS
  PkgConfig::CJSON PkgConfig::CRYPTO lk_warnings)
install(TARGETS latchkey-broker RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES ${CMAKE_CURRENT_LIST_DIR}/latchkey-broker.conf
  DESTINATION ${CMAKE_INSTALL_SYSCONFDIR}/latchkey)
