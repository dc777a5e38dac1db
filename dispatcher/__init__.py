"""The egress: for every Trigger (and later Subscription and KafkaSource) in the contract, a Kafka consumer
group that filters events, delivers them over HTTP, handles replies, retries, dead-letters, and commits
offsets only after delivery finished."""
