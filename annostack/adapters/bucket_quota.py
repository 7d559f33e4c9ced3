"""Bucket quotas, which the S3 API has no call for: SeaweedFS through `weed shell`.

SeaweedFS keeps a bucket's quota on its filer entry (`s3.bucket.quota -op=set -sizeMB=N`) and
its S3 gateway enforces it by itself: about once a minute it compares each bucket's size with
its quota and makes a bucket over quota read-only (then PUTs fail) until it is under again
(verified on 4.48; `s3.bucket.quota.enforce` is the same check on demand). `weed shell` is the
supported client for that entry (the filer's gRPC API is the alternative, with generated
protobuf code). On MinIO the equivalent is `mc quota set`; stores without quotas get
`NoQuotas`, and the tenant's condition says the quota is not enforced.
"""

from __future__ import annotations

import re
import subprocess
import time
from typing import Protocol

from annostack.domain.errors import Backend, BackendRejected, BackendUnavailable

SHELL_TIMEOUT_SECONDS = 30
RECHECK_SECONDS = 600.0
QUOTA_LINE = re.compile(r"bucket quota:\s*(-?\d+)MiB")


class BucketQuotas(Protocol):
    enforced: bool

    def ensure(self, bucket: str, size_bytes: int) -> bool:
        """The bucket's quota is `size_bytes` (rounded up to MiB); True if it changed."""

    def forget(self, bucket: str) -> None: ...

    def remove(self, bucket: str) -> None:
        """No quota (and writable again): before the bucket's objects are deleted."""


class NoQuotas:
    enforced = False

    def ensure(self, bucket: str, size_bytes: int) -> bool:
        return False

    def forget(self, bucket: str) -> None:
        pass

    def remove(self, bucket: str) -> None:
        pass


class SeaweedShellQuotas:
    enforced = True

    def __init__(self, weed: str, master: str, filer: str) -> None:
        self.command = [weed, "shell", f"-master={master}", f"-filer={filer}"]
        # bucket -> (MiB, when it was last read): a `weed shell` costs ~0.3 s of CPU, and the
        # drift pass visits every tenant every minute, so a known quota is re-read only now
        # and then (someone changing it by hand is repaired within RECHECK_SECONDS).
        self._known: dict[str, tuple[int, float]] = {}

    def _shell(self, line: str) -> str:
        try:
            done = subprocess.run(
                self.command,
                input=line + "\n",
                capture_output=True,
                text=True,
                timeout=SHELL_TIMEOUT_SECONDS,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise BackendUnavailable(Backend.OBJECT_STORE, f"weed shell: {error}") from error
        output = done.stdout + done.stderr
        if done.returncode != 0 or "error" in output.lower():
            raise BackendUnavailable(Backend.OBJECT_STORE, f"weed shell: {output.strip()[-300:]}")
        return output

    def ensure(self, bucket: str, size_bytes: int) -> bool:
        wanted = -(-size_bytes // 2**20)
        known = self._known.get(bucket)
        if known and known[0] == wanted and time.monotonic() - known[1] < RECHECK_SECONDS:
            return False
        found = QUOTA_LINE.search(self._shell(f"s3.bucket.quota -name={bucket} -op=get"))
        if found is None:
            raise BackendRejected(Backend.OBJECT_STORE, f"no quota reported for {bucket}")
        changed = int(found.group(1)) != wanted
        if changed:
            self._shell(f"s3.bucket.quota -name={bucket} -op=set -sizeMB={wanted}")
        self._known[bucket] = (wanted, time.monotonic())
        return changed

    def forget(self, bucket: str) -> None:
        """The bucket is gone (or re-created): read its quota again next time."""
        self._known.pop(bucket, None)

    def remove(self, bucket: str) -> None:
        # A bucket over its quota is read-only, deletes included: lift it before emptying it.
        # `-op=remove` also clears the read-only flag the enforcement set.
        self.forget(bucket)
        self._shell(f"s3.bucket.quota -name={bucket} -op=remove")
