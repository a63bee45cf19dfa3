"""The world's PKI: the certificates Kubernetes components need, generated once and reused."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from retrainer_world import certs


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> certs.Pki:
    return certs.ensure_pki(tmp_path_factory.mktemp("pki"))


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_apiserver_cert_names_every_in_cluster_address(pki: certs.Pki) -> None:
    sans = _cert(pki.apiserver_cert).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    dns = set(sans.value.get_values_for_type(x509.DNSName))
    ips = {str(ip) for ip in sans.value.get_values_for_type(x509.IPAddress)}
    assert {
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
    } <= dns
    assert {"127.0.0.1", "10.0.0.1"} <= ips
    assert all(ipaddress.ip_address(ip) for ip in ips)


def test_apiserver_cert_is_for_serving_and_admin_cert_for_clients(pki: certs.Pki) -> None:
    def usages(path: Path) -> list[x509.ObjectIdentifier]:
        return list(_cert(path).extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)

    assert usages(pki.apiserver_cert) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert usages(pki.admin_cert) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_admin_cert_is_a_system_masters_user_named_admin(pki: certs.Pki) -> None:
    subject = _cert(pki.admin_cert).subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "admin"
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"


def test_leaf_certs_are_signed_by_the_world_ca(pki: certs.Pki) -> None:
    ca = _cert(pki.ca_cert)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for leaf in (pki.apiserver_cert, pki.admin_cert):
        _cert(leaf).verify_directly_issued_by(ca)  # raises when not signed by the CA


def test_service_account_public_key_matches_its_signing_key(pki: certs.Pki) -> None:
    private = serialization.load_pem_private_key(pki.sa_key.read_bytes(), password=None)
    public = serialization.load_pem_public_key(pki.sa_pub.read_bytes())
    fmt = (serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert private.public_key().public_bytes(*fmt) == public.public_bytes(*fmt)


def test_private_keys_are_readable_by_their_owner_only(pki: certs.Pki) -> None:
    for key in (pki.ca_key, pki.apiserver_key, pki.admin_key, pki.sa_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key


def test_an_existing_pki_is_reused_unchanged(tmp_path: Path) -> None:
    first = certs.ensure_pki(tmp_path)
    before = {p.name: p.read_bytes() for p in first.files()}
    second = certs.ensure_pki(tmp_path)
    assert {p.name: p.read_bytes() for p in second.files()} == before


def test_a_half_written_pki_is_generated_again(tmp_path: Path) -> None:
    pki = certs.ensure_pki(tmp_path)
    old_ca = pki.ca_cert.read_bytes()
    pki.admin_key.unlink()
    certs.ensure_pki(tmp_path)
    assert pki.admin_key.is_file()
    assert pki.ca_cert.read_bytes() != old_ca
    _cert(pki.admin_cert).verify_directly_issued_by(_cert(pki.ca_cert))


def test_a_leaf_from_another_ca_is_not_reused(tmp_path: Path) -> None:
    pki = certs.ensure_pki(tmp_path / "a")
    other = certs.ensure_pki(tmp_path / "b")
    pki.admin_cert.write_bytes(other.admin_cert.read_bytes())
    certs.ensure_pki(tmp_path / "a")
    _cert(pki.admin_cert).verify_directly_issued_by(_cert(pki.ca_cert))
