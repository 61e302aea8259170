"""Remote configuration on the gateway: signed versions from the server,
checked, applied behind a health gate and rolled back when the gate fails
(docs/config-rollback.md). The runner (runner.py) owns the GatewayApp."""
