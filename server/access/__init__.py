"""Access control on the server: buildings, persons, registrations and the
credentials issued under them (``registry``), each gateway's allowlist built
from them (``allowlists``), signed (``keys``) and pushed over MQTT
(``publisher``), and the HTTP API for all of it (``routes``)."""
