"""The control plane: reads Knative resources, creates topics, publishes the contract, writes statuses.

``reconciler`` is a pure function from resources to the desired state, built by one phase module per kind
(``brokers``, ``sinks``, ``channels``, ``flows``, ``sources``, ``eventtypes``) with ``conditions``,
``children`` and ``resolver``; ``adapter`` is the seam its adapters implement, and ``local`` is the adapter
that drives it from the local resource store and applies its result to Kafka.
"""
