"""The local cluster's certificate authority and the certificates signed by it.

A cluster with a node needs more than the apiserver's self-signed serving certificate: kubelet
authenticates to the apiserver as ``system:node:<name>`` (the Node authorizer and
NodeRestriction key on that name), the apiserver authenticates to kubelet for logs, exec and
port-forward, kube-proxy and the scheduler log in as their built-in users, and pods verify the
apiserver through the CA that the controller manager publishes in every namespace. So the stack
keeps one CA (``ca.crt``/``ca.key``) and issues each identity a certificate from it, with the
``openssl`` command line (no Python crypto library is a dependency of the product).

Certificates are issued once and kept; one whose request changed (another address, another
group) is issued again, because its parameters are part of its file name's sidecar.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

CA_DAYS = 3650
CERT_DAYS = 3650  # a local stack lives as long as its cache; no rotation to manage


@dataclass(frozen=True)
class CertRequest:
    """What a certificate says: who (CN, O = groups), where (SANs), and for what."""

    common_name: str
    organizations: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    dns_names: tuple[str, ...] = ()
    client: bool = True
    server: bool = False

    def subject(self) -> str:
        orgs = "".join(f"/O={org}" for org in self.organizations)
        return f"{orgs}/CN={self.common_name}"

    def extensions(self) -> str:
        usages = [u for u, on in (("clientAuth", self.client), ("serverAuth", self.server)) if on]
        lines = [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            f"extendedKeyUsage={','.join(usages)}",
        ]
        sans = [f"IP:{ip}" for ip in self.ip_addresses] + [f"DNS:{d}" for d in self.dns_names]
        if sans:
            lines.append(f"subjectAltName={','.join(sans)}")
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path


@dataclass
class ClusterCA:
    """A CA in `directory`, created on first use; `common_name` names it in its certificate."""

    directory: Path
    common_name: str = "annostack-local-ca"
    pair: KeyPair = field(init=False)

    def __post_init__(self) -> None:
        self.pair = KeyPair(self.directory / "ca.crt", self.directory / "ca.key")
        if not self.pair.cert.exists():
            self._create()

    def _create(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        _new_key(self.pair.key)
        _openssl(
            "req", "-x509", "-new", "-key", str(self.pair.key), "-sha256",
            "-days", str(CA_DAYS), "-subj", f"/CN={self.common_name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
            "-out", str(self.pair.cert),
        )  # fmt: skip

    def issue(self, name: str, request: CertRequest) -> KeyPair:
        """The certificate `name` for `request`, issued again only when the request changed."""
        pair = KeyPair(self.directory / f"{name}.crt", self.directory / f"{name}.key")
        recorded = self.directory / f"{name}.request.json"
        wanted = json.dumps(asdict(request), sort_keys=True)
        if pair.cert.exists() and recorded.exists() and recorded.read_text() == wanted:
            return pair
        if not pair.key.exists():
            _new_key(pair.key)
        csr = self.directory / f"{name}.csr"
        ext = self.directory / f"{name}.ext"
        ext.write_text(request.extensions())
        _openssl("req", "-new", "-key", str(pair.key), "-subj", request.subject(), "-out", str(csr))
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(self.pair.cert),
            "-CAkey", str(self.pair.key), "-CAcreateserial", "-sha256",
            "-days", str(CERT_DAYS), "-extfile", str(ext), "-out", str(pair.cert),
        )  # fmt: skip
        csr.unlink()
        ext.unlink()
        recorded.write_text(wanted)
        return pair


def _new_key(path: Path) -> None:
    path.touch(mode=0o600)
    _openssl("genrsa", "-out", str(path), "2048")


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)
