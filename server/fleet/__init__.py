"""The fleet of gateways: enrolment by landlords, one broker identity per
gateway (Mosquitto's dynamic security), remote configuration with staged
rollout, revocation and fleet health (docs/fleet.md)."""
