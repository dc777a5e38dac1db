"""``kev console``: a read-only web page of the topology, live tails, resources and dead letters.

It lives in ``kev/`` beside ``kev get``, whose resource client it shares (the local store, or an API
server), and imports no service: ``topology`` and ``render`` are pure, ``state`` and ``app`` the shell,
``main`` wires them together.
"""
