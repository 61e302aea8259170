"""Simulated hardware: card readers on real ptys and a building full of
tenants swiping them, so the gateway can be run and tested exactly as in
production without a device on the desk."""
