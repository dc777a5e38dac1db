"""The test cluster: a real etcd + kube-apiserver + kube-controller-manager built from Go sources.

``toolchain`` builds and caches the binaries, ``launcher`` runs them as :class:`LocalCluster`, and ``cli``
is ``kev cluster up|down|kubectl|build``. No kubelet: pods are created but never run.
"""
