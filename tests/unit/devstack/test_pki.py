"""The local cluster's CA: certificates chain to it, say who they are, and are reissued only
when what they must say changed."""

from __future__ import annotations

import subprocess
from pathlib import Path

from annostack.devstack.pki import CertRequest, ClusterCA

NODE = CertRequest("system:node:n1", ("system:nodes",), ip_addresses=("10.244.0.1",), server=True)


def text(cert: Path) -> str:
    return subprocess.run(
        ["openssl", "x509", "-in", str(cert), "-noout", "-text"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_issued_certificates_chain_to_the_ca_and_carry_identity_and_addresses(
    tmp_path: Path,
) -> None:
    ca = ClusterCA(tmp_path)
    pair = ca.issue("kubelet", NODE)
    verified = subprocess.run(
        ["openssl", "verify", "-CAfile", str(ca.pair.cert), str(pair.cert)],
        capture_output=True,
        text=True,
    )
    assert verified.returncode == 0, verified.stderr
    details = text(pair.cert)
    assert "O = system:nodes, CN = system:node:n1" in details
    assert "IP Address:10.244.0.1" in details
    assert "TLS Web Server Authentication" in details and "TLS Web Client Authentication" in details
    assert oct(pair.key.stat().st_mode & 0o777) == "0o600"


def test_a_certificate_is_reissued_only_when_its_request_changes(tmp_path: Path) -> None:
    ca = ClusterCA(tmp_path)
    first = ca.issue("kubelet", NODE).cert.read_bytes()
    assert ca.issue("kubelet", NODE).cert.read_bytes() == first
    moved = CertRequest(NODE.common_name, NODE.organizations, ("10.244.1.1",), server=True)
    assert "IP Address:10.244.1.1" in text(ca.issue("kubelet", moved).cert)


def test_the_ca_survives_a_new_instance(tmp_path: Path) -> None:
    first = ClusterCA(tmp_path).pair.cert.read_bytes()
    assert ClusterCA(tmp_path).pair.cert.read_bytes() == first
