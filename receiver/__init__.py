"""The ingress: accepts CloudEvents over HTTP for every Broker (and later Channel and KafkaSink) in the
contract and produces them to the resource's topic, answering 202 only once Kafka has acknowledged."""
