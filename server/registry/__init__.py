"""The people-and-houses registry (一标三实): areas, buildings, units,
persons with protected identity numbers, residence registrations and their
history."""
