#!/bin/bash
# Entry point of the test Kafka image: writes server.properties from KAFKA_* variables (apache/kafka's rules:
# _ is ., __ is _, ___ is -), formats the KRaft log dir once with $CLUSTER_ID, then execs the broker, which
# is PID 1 and shuts down cleanly on SIGTERM.
set -euo pipefail
: "${CLUSTER_ID:?set CLUSTER_ID (a KRaft cluster id)}"
props=/tmp/server.properties
: >"$props"
while IFS='=' read -r name value; do
  case $name in
    KAFKA_HEAP_OPTS | KAFKA_OPTS | KAFKA_JVM_PERFORMANCE_OPTS) continue ;;
    KAFKA_*) ;;
    *) continue ;;
  esac
  key=${name#KAFKA_}
  key=${key,,}
  key=${key//___/-}
  key=${key//__/@}
  key=${key//_/.}
  key=${key//@/_}
  printf '%s=%s\n' "$key" "$value" >>"$props"
done < <(env)
java=(java ${KAFKA_HEAP_OPTS:--Xmx512m} ${KAFKA_JVM_PERFORMANCE_OPTS:--XX:+UseG1GC -XX:MaxGCPauseMillis=20}
  -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true
  -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.xml ${KAFKA_OPTS:-} -cp '/opt/kafka/libs/*')
"${java[@]}" kafka.tools.StorageTool format --ignore-formatted --cluster-id "$CLUSTER_ID" --config "$props"
exec "${java[@]}" kafka.Kafka "$props"
