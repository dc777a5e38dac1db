"""keventing's shared core: resource models, CloudEvents bindings, filters, the contract, Kafka helpers.

Every service (receiver, dispatcher, controller, sources) imports this package; nothing in it knows about
Starlette handlers or consumer loops.
"""

__version__ = "0.1.0"
