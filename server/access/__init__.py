"""Access control on the server: each gateway's allowlist built from the
registry's credentials (``allowlists``), signed (``keys``) and pushed over
MQTT (``publisher``); the service that commits a change and then publishes
it (``service``); a change's ``Outcome`` and pointing a gateway at a building
(``registry``); and the HTTP API for gateways and allowlists (``routes``).
The registry itself (buildings, persons, registrations, credentials) is
written by server/registry/service.py, every change with its history row."""
