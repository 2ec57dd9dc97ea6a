# The broker load generator and its tests (included by CMakeLists.txt here).
# loadgen needs only libcrypto (SHA-1, base64, RAND_bytes): it speaks
# WebSocket on raw sockets to stay cheaper than the broker it measures.
add_executable(loadgen loadgen.c lg_conn.c lg_ws.c lg_hist.c)
target_link_libraries(loadgen PRIVATE PkgConfig::CRYPTO lk_warnings)

add_executable(loadgen_test loadgen_test.c lg_ws.c lg_hist.c)
target_include_directories(loadgen_test PRIVATE ${LK_TESTS_DIR}/unit)
target_link_libraries(loadgen_test PRIVATE PkgConfig::CRYPTO lk_warnings)
add_test(NAME bench.loadgen_unit COMMAND loadgen_test)

# loadgen against an independent WebSocket implementation (Python
# websockets) playing a minimal latchkey.v1 peer.
add_test(NAME bench.loadgen_peer
  COMMAND ${LK_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/loadgen_peer_test.py $<TARGET_FILE:loadgen>)
set_tests_properties(bench.loadgen_unit bench.loadgen_peer PROPERTIES LABELS bench TIMEOUT 60)

# The broker benchmark in --quick mode: checks that it runs to the end and
# writes its result file, with no performance thresholds.
if(TARGET latchkey-broker AND TARGET latchkey)
  add_test(NAME bench.broker_quick
    COMMAND /bin/sh -c "\"$0\" --quick --broker \"$1\" --cli \"$2\" --loadgen \"$3\" --out \"$4\" && test -s \"$4/broker-bench.json\" && test -s \"$4/broker-bench.md\""
      ${CMAKE_CURRENT_SOURCE_DIR}/run-broker $<TARGET_FILE:latchkey-broker>
      $<TARGET_FILE:latchkey> $<TARGET_FILE:loadgen> ${CMAKE_CURRENT_BINARY_DIR}/quick)
  set_tests_properties(bench.broker_quick PROPERTIES LABELS bench TIMEOUT 240 RUN_SERIAL TRUE)
endif()
