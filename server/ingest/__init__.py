"""Events off MQTT into the database, acknowledged after commit.

``store`` commits a batch of raw messages in one transaction, ``gaps`` is the
pure arithmetic of missing sequence numbers, ``consumer`` is the service around
the MQTT link, and ``metrics`` counts what happened.
"""
