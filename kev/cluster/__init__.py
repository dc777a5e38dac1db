"""The test cluster: a real etcd + kube-apiserver + kube-controller-manager built from Go sources.

``toolchain`` builds and caches the binaries, ``launcher`` runs them as :class:`LocalCluster`, and ``cli``
is ``kev cluster up|down|kubectl|build``. Without a node pods are created but never run; ``up --node`` adds
one (``node``: containerd, kubelet, kube-proxy in a network namespace; ``dns``: Service names for pods).
"""
