"""kev: the keventing program and its developer tooling.

The CLI, `kev up` and the local stack, the embedded-Kafka launcher, event-display, readiness helpers and
the test cluster live here. This package sits above the services: it may import `keventing` and every
service; nothing below it imports `kev`.
"""
