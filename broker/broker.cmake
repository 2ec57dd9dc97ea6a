# latchkey-broker: the libwebsockets server (included by broker/CMakeLists.txt).
set(LK_BROKER_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/main.c
  ${CMAKE_CURRENT_LIST_DIR}/config.c
  ${CMAKE_CURRENT_LIST_DIR}/log.c
  ${CMAKE_CURRENT_LIST_DIR}/metrics.c
  ${CMAKE_CURRENT_LIST_DIR}/listener.c
  ${CMAKE_CURRENT_LIST_DIR}/prelude.c
  ${CMAKE_CURRENT_LIST_DIR}/gate.c
  ${CMAKE_CURRENT_LIST_DIR}/http.c
  ${CMAKE_CURRENT_LIST_DIR}/auth.c
  ${CMAKE_CURRENT_LIST_DIR}/keystore.c
  ${CMAKE_CURRENT_LIST_DIR}/session.c
  ${CMAKE_CURRENT_LIST_DIR}/channel.c
  ${CMAKE_CURRENT_LIST_DIR}/hub.c
  ${CMAKE_CURRENT_LIST_DIR}/timers.c
  ${CMAKE_CURRENT_LIST_DIR}/fanout.c
  ${CMAKE_CURRENT_LIST_DIR}/codec.c
  ${CMAKE_CURRENT_LIST_DIR}/api.c
  ${CMAKE_CURRENT_LIST_DIR}/apikey.c
  ${CMAKE_CURRENT_LIST_DIR}/ratelimit.c
  ${CMAKE_CURRENT_LIST_DIR}/tls.c)

add_executable(latchkey-broker ${LK_BROKER_SOURCES})
target_include_directories(latchkey-broker PRIVATE ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(latchkey-broker PRIVATE latchkey::mint PkgConfig::LWS
  PkgConfig::CJSON PkgConfig::CRYPTO PkgConfig::SSL Threads::Threads lk_warnings)
install(TARGETS latchkey-broker RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES ${CMAKE_CURRENT_LIST_DIR}/latchkey-broker.conf
  DESTINATION ${CMAKE_INSTALL_SYSCONFDIR}/latchkey)
# The systemd unit, with this build's installed paths written in.
set(LK_SYSTEMD_UNIT_DIR lib/systemd/system CACHE STRING
  "Where cmake --install puts latchkey-broker.service (relative to the prefix, or absolute)")
configure_file(${CMAKE_CURRENT_LIST_DIR}/latchkey-broker.service
  ${CMAKE_CURRENT_BINARY_DIR}/latchkey-broker.service @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/latchkey-broker.service
  DESTINATION ${LK_SYSTEMD_UNIT_DIR})
install(FILES ${CMAKE_CURRENT_LIST_DIR}/latchkey.sysusers
  DESTINATION ${CMAKE_INSTALL_PREFIX}/lib/sysusers.d RENAME latchkey.conf)

# Unit tests of the broker modules that work without a running loop. They
# live in tests/unit/broker and link the module sources directly.
if(LK_WITH_TESTS)
  enable_testing()
  set(lk_bt_dir ${PROJECT_SOURCE_DIR}/tests/unit/broker)
  set(lk_bt_prelude ${CMAKE_CURRENT_LIST_DIR}/prelude.c ${CMAKE_CURRENT_LIST_DIR}/gate.c
    ${CMAKE_CURRENT_LIST_DIR}/hub.c ${CMAKE_CURRENT_LIST_DIR}/channel.c)
  set(lk_bt_channel ${CMAKE_CURRENT_LIST_DIR}/channel.c ${CMAKE_CURRENT_LIST_DIR}/hub.c)
  set(lk_bt_config ${CMAKE_CURRENT_LIST_DIR}/config.c ${CMAKE_CURRENT_LIST_DIR}/log.c)
  set(lk_bt_ratelimit ${CMAKE_CURRENT_LIST_DIR}/ratelimit.c)
  set(lk_bt_timers ${CMAKE_CURRENT_LIST_DIR}/timers.c)
  set(lk_bt_apikey ${CMAKE_CURRENT_LIST_DIR}/apikey.c ${CMAKE_CURRENT_LIST_DIR}/keystore.c)
  foreach(t prelude channel config ratelimit apikey timers)
    if(EXISTS ${lk_bt_dir}/test_${t}.c)
      add_executable(test_broker_${t} ${lk_bt_dir}/test_${t}.c ${lk_bt_${t}})
      target_include_directories(test_broker_${t} PRIVATE ${CMAKE_CURRENT_LIST_DIR}
        ${PROJECT_SOURCE_DIR}/tests/unit)
      target_link_libraries(test_broker_${t} PRIVATE latchkey::mint PkgConfig::LWS
        PkgConfig::CRYPTO Threads::Threads lk_warnings)
      add_test(NAME unit.broker_${t} COMMAND test_broker_${t})
      set_tests_properties(unit.broker_${t} PROPERTIES LABELS unit)
    endif()
  endforeach()
endif()
