"""Kubernetes mode: the operator that feeds Knative's custom resources from a kube-apiserver to the same pure
``reconcile()`` as local mode, and writes topics, the contract and statuses back.

``kinds`` says which API each kind is served at; ``objects`` converts between API objects and keventing's
resource models (pure); ``operator`` is the kopf adapter (watches, finalizers, status patches); ``leader`` elects one replica on a
Lease, and ``runner`` runs the operator on the replica that leads.
"""
