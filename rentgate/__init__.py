"""rentgate: rental-housing access control, door plates and registration reconciliation.

This package holds what every part shares: the wire contract (``rentgate.wire``),
the supervised MQTT link (``rentgate.mqtt``), the command line, the embedded
broker and the demo. The edge agent is in ``gateway``, protocol code in
``devices``, the city's server in ``server`` and simulators in ``firmware_sim``.
"""

__version__ = "0.1.0"
