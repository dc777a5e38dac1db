"""The source adapters: runs every PingSource schedule and ContainerSource process in the contract.

Several runners share the work through a Kafka consumer group: each source hashes to a partition of
``<instance>.source-assignments`` and only that partition's owner schedules or runs it, so a tick is sent
once and a container runs once however many runners there are. Events go to the resolved sink over HTTP,
like any other producer's.
"""
