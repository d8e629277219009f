"""How the `rapport` CLI reaches a secured cluster from the environment (tools/kafka_ops.Conn)."""

from rapport_shared.settings import KafkaSecurity
from rapport_tools.kafka_ops import Conn


def test_a_username_alone_means_sasl_plain_like_the_services(monkeypatch):
    monkeypatch.setenv("RAPPORT_KAFKA_SASL_USERNAME", "admin")
    monkeypatch.setenv("RAPPORT_KAFKA_SASL_PASSWORD", "pw")
    for var in ("RAPPORT_KAFKA_SASL_MECHANISM", "RAPPORT_KAFKA_SECURITY_PROTOCOL"):
        monkeypatch.delenv(var, raising=False)
    c = Conn.from_env("broker:9092")
    services = KafkaSecurity(sasl_username="admin", sasl_password="pw")
    assert (c.security_protocol, c.sasl_mechanism) == (services.protocol, services.mechanism) == ("SASL_PLAINTEXT", "PLAIN")
    monkeypatch.setenv("RAPPORT_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    assert Conn.from_env("broker:9092").sasl_mechanism == "SCRAM-SHA-512"


def test_no_username_means_plaintext(monkeypatch):
    for var in ("RAPPORT_KAFKA_SASL_USERNAME", "RAPPORT_KAFKA_SASL_MECHANISM", "RAPPORT_KAFKA_SECURITY_PROTOCOL"):
        monkeypatch.delenv(var, raising=False)
    c = Conn.from_env("broker:9092")
    assert (c.security_protocol, c.sasl_mechanism) == ("PLAINTEXT", None) and "sasl_mechanism" not in c.kwargs()
