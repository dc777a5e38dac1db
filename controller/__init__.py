"""The control plane: reads Knative resources, creates topics, publishes the contract, writes statuses.

``reconciler`` is a pure function from resources to desired state; ``local`` is the adapter that drives it
from the local resource store and applies its result to Kafka.
"""
