"""The local world's PKI: a CA, the apiserver's serving cert, the admin client cert and the
service-account key pair, generated once with `cryptography` and reused while still valid.

Kubernetes components speak TLS with client-cert authentication, so the world needs its own
small PKI; nothing here touches the network.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["APISERVER_DNS_NAMES", "APISERVER_IPS", "Pki", "ensure_pki", "write_private"]

APISERVER_DNS_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
APISERVER_IPS = ("127.0.0.1", "10.0.0.1")
ADMIN_CN = "admin"
ADMIN_ORG = "system:masters"

# Long enough that a developer's cache never expires mid-week; renewed once within a day of it.
VALIDITY = datetime.timedelta(days=365)
RENEW_BEFORE = datetime.timedelta(days=1)
KEY_SIZE = 2048


@dataclass(frozen=True)
class Pki:
    """Paths of every PEM file the world's components read."""

    dir: Path

    @property
    def ca_cert(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def apiserver_cert(self) -> Path:
        return self.dir / "apiserver.crt"

    @property
    def apiserver_key(self) -> Path:
        return self.dir / "apiserver.key"

    @property
    def admin_cert(self) -> Path:
        return self.dir / "admin.crt"

    @property
    def admin_key(self) -> Path:
        return self.dir / "admin.key"

    @property
    def sa_key(self) -> Path:
        return self.dir / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.dir / "sa.pub"

    def files(self) -> tuple[Path, ...]:
        return (
            self.ca_cert,
            self.ca_key,
            self.apiserver_cert,
            self.apiserver_key,
            self.admin_cert,
            self.admin_key,
            self.sa_key,
            self.sa_pub,
        )


def ensure_pki(directory: Path, extra_ips: tuple[str, ...] = ()) -> Pki:
    """Create the PKI under `directory`, or reuse it when every file is present and valid.

    `extra_ips` join the apiserver certificate's addresses (the world's `kubernetes` Service
    address, which containers reach it by)."""
    pki = Pki(directory)
    if _reusable(pki, APISERVER_IPS + extra_ips):
        return pki
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    ca_key = _new_key()
    ca_cert = _ca_certificate(ca_key)
    _write_key(pki.ca_key, ca_key)
    _write_cert(pki.ca_cert, ca_cert)

    api_key = _new_key()
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in APISERVER_DNS_NAMES]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in APISERVER_IPS + extra_ips]
    api_cert = _leaf_certificate(
        ca_cert, ca_key, api_key, _name("kube-apiserver"), ExtendedKeyUsageOID.SERVER_AUTH, sans
    )
    _write_key(pki.apiserver_key, api_key)
    _write_cert(pki.apiserver_cert, api_cert)

    admin_key = _new_key()
    admin_cert = _leaf_certificate(
        ca_cert,
        ca_key,
        admin_key,
        _name(ADMIN_CN, ADMIN_ORG),
        ExtendedKeyUsageOID.CLIENT_AUTH,
        [],
    )
    _write_key(pki.admin_key, admin_key)
    _write_cert(pki.admin_cert, admin_cert)

    sa_key = _new_key()
    _write_key(pki.sa_key, sa_key)
    pki.sa_pub.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return pki


def _reusable(pki: Pki, ips: tuple[str, ...]) -> bool:
    if not all(p.is_file() for p in pki.files()):
        return False
    try:
        ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
        leaves = [
            x509.load_pem_x509_certificate(p.read_bytes())
            for p in (pki.apiserver_cert, pki.admin_cert)
        ]
        serialization.load_pem_private_key(pki.sa_key.read_bytes(), password=None)
    except ValueError:
        return False
    names = leaves[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    have = set(names.get_values_for_type(x509.IPAddress))
    if not {ipaddress.ip_address(ip) for ip in ips} <= have:
        return False
    deadline = datetime.datetime.now(datetime.UTC) + RENEW_BEFORE
    for cert in (ca, *leaves):
        if cert.not_valid_after_utc < deadline:
            return False
    # A leaf signed by another CA (half-written PKI) means start over.
    try:
        for leaf in leaves:
            leaf.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=KEY_SIZE)


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attrs)


def _validity() -> tuple[datetime.datetime, datetime.datetime]:
    # Backdated a little so a clock skew between components never rejects a fresh cert.
    now = datetime.datetime.now(datetime.UTC)
    return now - datetime.timedelta(hours=1), now + VALIDITY


def _builder(
    subject: x509.Name, issuer: x509.Name, key: rsa.RSAPrivateKey, *, ca: bool
) -> x509.CertificateBuilder:
    """What the CA and every leaf share; `ca` picks the constraints and key usages."""
    not_before, not_after = _validity()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=not ca,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )


def _ca_certificate(key: rsa.RSAPrivateKey) -> x509.Certificate:
    subject = _name("retrainer-world-ca")
    return (
        _builder(subject, subject, key, ca=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _leaf_certificate(
    ca_cert: x509.Certificate,
    ca_key: rsa.RSAPrivateKey,
    key: rsa.RSAPrivateKey,
    subject: x509.Name,
    usage: x509.ObjectIdentifier,
    sans: list[x509.GeneralName],
) -> x509.Certificate:
    builder = (
        _builder(subject, ca_cert.subject, key, ca=False)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    write_private(path, data)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def write_private(path: Path, data: bytes | str) -> None:
    """Write a secret file readable by its owner only, never world-readable even briefly."""
    if isinstance(data, str):
        data = data.encode()
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
