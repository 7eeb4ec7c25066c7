"""Audit the pinned dependencies (requirements/lock.txt) against PyPI's vulnerability data with pip-audit.

Prints how many packages were audited, how many could not be (and why), and every known vulnerability
with its fix versions. Fails (exit 1) on a vulnerability that requirements/audit-ignore.txt does not list
with a reason. Packages that could not be looked up (the vulnerability data out of reach, as on machines
that see only a package mirror) are reported loudly as NOT AUDITED; with FRESHCART_AUDIT_REQUIRED=1
(for CI that reaches pypi.org) they fail the audit too.

    .venv/bin/python scripts/audit_dependencies.py   (`make check` runs it)
"""

from __future__ import annotations

import json
import os
import subprocess  # nosec B404
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "lock.txt"
IGNORE = ROOT / "requirements" / "audit-ignore.txt"


def ignored() -> dict[str, str]:
    """Vulnerability id -> the reason it does not apply, from the ignore list."""
    found = {}
    for line in IGNORE.read_text().splitlines():
        entry, _, reason = line.partition("#")
        if entry.strip():
            if not reason.strip():
                raise SystemExit(f"{IGNORE}: {entry.strip()} has no reason; add '# why it does not apply'")
            found[entry.strip()] = reason.strip()
    return found


def main() -> int:
    pip_audit = Path(sys.executable).with_name("pip-audit")
    command = [str(pip_audit), "-r", str(LOCK), "--no-deps", "--disable-pip", "--progress-spinner", "off",
               "-f", "json"]
    skip = ignored()
    for vuln_id in skip:
        command += ["--ignore-vuln", vuln_id]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)  # nosec B603
    try:
        report = json.loads(result.stdout)
    except ValueError:
        print(f"pip-audit gave no report (exit {result.returncode}):\n{result.stderr[-2000:]}")
        return 1
    dependencies = report.get("dependencies", [])
    skipped = [d for d in dependencies if d.get("skip_reason")]
    audited = [d for d in dependencies if not d.get("skip_reason")]
    vulnerable = [(d, v) for d in audited for v in d.get("vulns", [])]
    print(f"pip-audit of {LOCK.relative_to(ROOT)}: {len(dependencies)} packages, {len(audited)} audited, "
          f"{len(skipped)} not audited, {len(vulnerable)} known vulnerabilities, {len(skip)} ignored with a reason")
    for dependency, vuln in vulnerable:
        fixes = ", ".join(vuln.get("fix_versions") or []) or "no fix yet"
        print(f"  {dependency['name']} {dependency['version']}: {vuln['id']} (fixed in {fixes}) "
              f"{(vuln.get('description') or '')[:160]}")
    if skipped:
        reasons = Counter(d["skip_reason"].split(":")[0] for d in skipped)
        print("  not audited: " + "; ".join(f"{n} x {reason}" for reason, n in reasons.most_common()))
        print(f"  e.g. {skipped[0]['name']}: {skipped[0]['skip_reason']}")
        required = os.environ.get("FRESHCART_AUDIT_REQUIRED", "").lower() in ("1", "true", "yes")
        print(f"  NOT AUDITED: the vulnerability data was not reachable for {len(skipped)} packages (PyPI's JSON "
              "API per version); " + ("FRESHCART_AUDIT_REQUIRED is set: the audit fails" if required else
                                      "set FRESHCART_AUDIT_REQUIRED=1 where pypi.org is reachable to make this fail"))
        if required:
            return 1
    return 1 if vulnerable else 0


if __name__ == "__main__":
    raise SystemExit(main())
