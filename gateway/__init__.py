"""The edge gateway: device glue, a durable SQLite outbox, and the sender that
forwards the outbox over MQTT until the server acknowledges each event.

Follow an event through ``devices/`` (a read becomes an event), ``outbox``
(committed to disk before anything else), ``sender`` (published, replayed,
deleted only on the server's ack) and ``app`` (the tasks that tie them)."""
