# The load generator, the `limit` broadcaster and their tests (included by
# CMakeLists.txt here). Both need only libcrypto (SHA-1, base64,
# RAND_bytes): they speak WebSocket on raw sockets to stay cheaper than the
# servers they measure.
add_executable(loadgen loadgen.c lg_client.c lg_conn.c lg_proto.c lg_ws.c lg_hist.c)
target_link_libraries(loadgen PRIVATE PkgConfig::CRYPTO lk_warnings)

add_executable(limit limit.c lg_ws.c)
target_link_libraries(limit PRIVATE PkgConfig::CRYPTO lk_warnings)

add_executable(loadgen_test loadgen_test.c lg_client.c lg_conn.c lg_proto.c lg_ws.c lg_hist.c)
target_include_directories(loadgen_test PRIVATE ${LK_TESTS_DIR}/unit)
target_link_libraries(loadgen_test PRIVATE PkgConfig::CRYPTO lk_warnings)
add_test(NAME bench.loadgen_unit COMMAND loadgen_test)

# loadgen against an independent WebSocket implementation (Python
# websockets) playing a minimal latchkey.v1 peer.
add_test(NAME bench.loadgen_peer
  COMMAND ${LK_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/loadgen_peer_test.py $<TARGET_FILE:loadgen>)
set_tests_properties(bench.loadgen_unit bench.loadgen_peer PROPERTIES LABELS bench TIMEOUT 60)

# limit on its own: upgrade and refusals, fan-out, batching, frame limits.
add_test(NAME bench.limit
  COMMAND ${LK_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/limit_test.py $<TARGET_FILE:limit>)
# loadgen against limit, nats-server and mosquitto (skipped, 77, when one of
# the last two is not installed) with the config templates here.
add_test(NAME bench.loadgen_servers
  COMMAND ${LK_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/loadgen_servers_test.py
    $<TARGET_FILE:loadgen> $<TARGET_FILE:limit> ${CMAKE_CURRENT_SOURCE_DIR})
set_tests_properties(bench.limit bench.loadgen_servers PROPERTIES LABELS bench TIMEOUT 60)
set_tests_properties(bench.loadgen_servers PROPERTIES SKIP_RETURN_CODE 77 RUN_SERIAL TRUE)

# The comparative benchmark (tests/bench/run) in --quick mode: checks that it
# runs to the end and writes both result files, with no performance
# thresholds. nats-server and mosquitto come from PATH or /usr/sbin; one that
# is missing is reported as not installed, not as a failure.
if(TARGET latchkey-broker AND TARGET latchkey)
  set(_lk_bench_limit)
  if(TARGET limit)
    set(_lk_bench_limit --limit $<TARGET_FILE:limit>)
  endif()
  add_test(NAME bench.quick
    COMMAND /bin/sh -c "out=\"$0\"; shift; \"$@\" && test -s \"$out/bench-results.json\" && test -s \"$out/bench-results.md\""
      ${CMAKE_CURRENT_BINARY_DIR}/quick
      ${LK_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/run --quick --no-build
      --broker $<TARGET_FILE:latchkey-broker> --cli $<TARGET_FILE:latchkey>
      --loadgen $<TARGET_FILE:loadgen> ${_lk_bench_limit}
      --out ${CMAKE_CURRENT_BINARY_DIR}/quick)
  set_tests_properties(bench.quick PROPERTIES LABELS bench TIMEOUT 300 RUN_SERIAL TRUE)
endif()
