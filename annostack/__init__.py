"""annostack: a Kubernetes-native platform for a multi-tenant data-annotation SaaS.

Import scheme: one import root, ``annostack``. Shared layers live in this folder
(``annostack.domain``, ``annostack.adapters``, ``annostack.services``, ``annostack.settings``,
``annostack.cli``, ``annostack.devstack``); the process-type folders at the top of the
repository are mapped under it — ``operator/`` is ``annostack.operator``, ``apps/`` is
``annostack.apps``, ``workers/`` is ``annostack.workers`` — through symlinks in this folder,
so no module is ever importable as a bare ``operator`` that would shadow the standard library.
"""

__version__ = "0.1.0.dev0"
