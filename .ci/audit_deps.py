"""Audit the locked dependencies (uv.lock, every group) for known vulnerabilities.

``uv export`` gives the exact pins; ``pip-audit --disable-pip --no-deps`` checks each against
PyPI's vulnerability data (``--vulnerability-service``, default pypi). Exit 1 if any pin has a
known vulnerability (named with its fix); exit 2 if some pins could not be audited at all
while others could (a partial answer is not a pass). When *no* pin could be audited, the
service is unreachable from this machine: that is reported loudly and fails only with
``MASP_AUDIT_STRICT=1``, so an offline build machine can still run the tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    uv = os.environ.get("UV", "uv")
    pins = subprocess.run(
        [uv, "export", "--frozen", "--format", "requirements-txt", "--no-hashes", "--all-groups",
         "--no-emit-project"], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    service = os.environ.get("MASP_AUDIT_SERVICE", "pypi")
    run = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "pip-audit"), "-r", "/dev/stdin", "--disable-pip", "--no-deps",
         "--progress-spinner", "off", "-f", "json", "-s", service],
        input=pins, capture_output=True, text=True, check=False)
    strict = os.environ.get("MASP_AUDIT_STRICT") == "1"
    try:
        report = json.loads(run.stdout)
    except json.JSONDecodeError:
        print(f"audit-deps: pip-audit gave no report (exit {run.returncode}):\n{run.stderr[-2000:]}")
        unreachable = any(s in run.stderr for s in ("ConnectionError", "NameResolutionError", "Timeout"))
        if unreachable and not strict:
            print(f"audit-deps: WARNING: the {service} vulnerability service is unreachable from here; "
                  "nothing was audited")
            return 0
        return 2
    deps = report["dependencies"]
    skipped = [d for d in deps if "skip_reason" in d]
    vulnerable = [d for d in deps if d.get("vulns")]
    for dep in vulnerable:
        for vuln in dep["vulns"]:
            fixed = ", ".join(vuln.get("fix_versions") or ()) or "no fixed release"
            print(f"audit-deps: {dep['name']} {dep['version']}: {vuln['id']} (fixed in {fixed})")
    audited = len(deps) - len(skipped)
    print(f"audit-deps: {len(deps)} locked dependencies, {audited} audited against {service}, "
          f"{len(vulnerable)} with known vulnerabilities, {len(skipped)} not audited")
    if vulnerable:
        return 1
    if skipped and audited == 0:
        print(f"audit-deps: WARNING: the {service} vulnerability service answered for no dependency "
              f"(unreachable from here?): e.g. {skipped[0]['skip_reason']}")
        return 2 if strict else 0
    if skipped:
        for dep in skipped:
            print(f"audit-deps: not audited: {dep['skip_reason']}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
