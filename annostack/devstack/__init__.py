"""The local stack: real servers as plain processes, for development and the test suite.

etcd and kube-apiserver + kube-controller-manager (built from the Go module proxy), MariaDB or
TiDB, SeaweedFS (S3), Pulsar standalone (Maven Central jars) and Redis. No containers: the
machines this runs on have no container engine. See docs/local-stack.md.
"""
