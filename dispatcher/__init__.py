"""The egress: for every Trigger, Subscription and KafkaSource in the contract, a Kafka consumer group that
filters events, delivers them over HTTP, handles replies, retries, dead-letters, and commits offsets only
after delivery finished.

Read it top to bottom: ``manager`` (the contract → one consumer per egress) → ``consumer`` (Kafka records
and offsets; Triggers' records come from ``sharedfetch``, one read per Broker partition, split by
``fanout``) → ``scheduling`` (what to deliver next, what to commit) → ``dispatch`` (one event's trip:
subscriber, reply, dead letter, give up) → ``delivery`` (one HTTP attempt) → ``transport`` (the HTTP seam).
"""
