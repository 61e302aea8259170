"""Field devices: pure protocol parsers (``em4100``) apart from the transports
that move their bytes (``serial_reader``). Nothing here imports a web
framework, an ORM or MQTT; the gateway glues these to its outbox."""
