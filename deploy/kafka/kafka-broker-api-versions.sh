#!/bin/bash
# What apache/kafka's script of this name does, for docker-compose.yml's healthcheck.
exec java -Xmx64m -XX:TieredStopAtLevel=1 -cp '/opt/kafka/libs/*' \
  org.apache.kafka.tools.BrokerApiVersionsCommand "$@"
