"""plugins/ loads in Airflow's plugin manager without import errors: the FreshCart app and its nav entry.

Run in a fresh interpreter (the plugin manager caches what it loaded once per process)
with AIRFLOW__CORE__PLUGINS_FOLDER pointing at plugins/, as `make airflow` sets it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROBE = """
import json
from airflow import plugins_manager
plugins, errors = plugins_manager._get_plugins()
apps, _ = plugins_manager.get_fastapi_plugins()
views, _ = plugins_manager._get_ui_plugins()
app = next(a for a in apps if a["url_prefix"] == "/freshcart")["app"]
print(json.dumps({"plugins": [p.name for p in plugins], "errors": {str(k): str(v) for k, v in errors.items()},
                  "routes": sorted(r.path for r in app.routes if r.path.startswith(("/state", "/reports")) or r.path == "/"),
                  "guarded": [d.dependency.__name__ for d in app.router.dependencies],
                  "views": [{k: v.get(k) for k in ("name", "href", "url_route", "destination")} for v in views]}))
"""


def test_the_freshcart_plugin_loads_with_its_app_and_nav_entry(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({"AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags")})
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["errors"] == {}
    assert "freshcart" in found["plugins"]
    assert found["routes"] == ["/", "/reports/{window}", "/state.json"]
    assert found["guarded"] == ["allowed_user"]  # every route needs an Airflow user allowed to see the view
    assert found["views"] == [{"name": "FreshCart", "href": "freshcart/", "url_route": "freshcart", "destination": "nav"}]
