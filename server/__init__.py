"""The city's server: stores every gateway event exactly once and serves them.

``ingest`` takes events off MQTT into the database and acknowledges them after
commit, ``db`` holds the schema and engine, ``migrations`` its Alembic history,
``api`` the HTTP routes, and ``app`` wires them together.
"""
