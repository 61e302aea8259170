"""The fleet_broker fixture itself: a Mosquitto as production runs it."""

from __future__ import annotations

import ssl

from tests.services import Mosquitto, MqttProbe


def test_only_known_logins_get_in_and_gateways_need_a_certificate(fleet_broker: Mosquitto) -> None:
    assert fleet_broker.dynsec is not None
    anonymous = MqttProbe(fleet_broker.host, fleet_broker.port)
    assert anonymous.try_connect() == "Not authorized"
    server = MqttProbe(fleet_broker.host, fleet_broker.port, username="rentgate-server",
                       password=fleet_broker.dynsec.server_password)
    assert server.try_connect() == "Success"
    server.close()
    # TLS without a client certificate: the handshake itself fails.
    tls = ssl.create_default_context(cafile=str(fleet_broker.dynsec.ca_file))
    no_cert = MqttProbe(fleet_broker.host, fleet_broker.tls_port, username="rentgate-server",
                        password=fleet_broker.dynsec.server_password, tls=tls)
    assert no_cert.try_connect().startswith("no CONNACK")
