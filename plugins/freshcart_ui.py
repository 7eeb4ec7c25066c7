"""The FreshCart page in the Airflow UI: a FastAPI app under /freshcart and a "FreshCart" entry in the nav.

Every route needs a user logged in to Airflow (the API server's own user dependency:
the JWT cookie of the UI or a bearer token) whom the auth manager lets see the
custom view ``FreshCart``; anything else gets 401 or 403. What the page shows is
gathered and rendered by ``freshcart.monitoring.page`` and ``page_html``.
"""

from __future__ import annotations

from typing import Any

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.core_api.security import GetUserDep
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, status
from fastapi.responses import FileResponse, HTMLResponse

VIEW = "FreshCart"


def allowed_user(user: GetUserDep) -> None:
    """Refuse users whom Airflow's auth manager does not let see the FreshCart view."""
    if not get_auth_manager().is_authorized_custom_view(method="GET", resource_name=VIEW, user=user):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"user {user.get_name()!r} may not see the {VIEW} page")


app = FastAPI(title="FreshCart", description="Champion, promotions, monitoring verdicts and the retraining cooldown",
              dependencies=[Depends(allowed_user)])


@app.get("/", response_class=HTMLResponse)
def page() -> str:
    from freshcart.monitoring.page import gather_page
    from freshcart.monitoring.page_html import render_page
    from freshcart.settings import load_settings

    return render_page(gather_page(load_settings()))


@app.get("/state.json")
def state() -> dict[str, Any]:
    from freshcart.monitoring.page import gather_page
    from freshcart.settings import load_settings

    return gather_page(load_settings()).as_json()


@app.get("/reports/{window}", response_class=FileResponse)
def report(window: str) -> FileResponse:
    from freshcart.monitoring.page import report_file
    from freshcart.settings import load_settings

    try:
        return FileResponse(report_file(load_settings(), window), media_type="text/html")
    except ValueError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    except FileNotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None


class FreshCartPlugin(AirflowPlugin):
    name = "freshcart"
    fastapi_apps = [{"app": app, "url_prefix": "/freshcart", "name": VIEW}]
    external_views = [{"name": VIEW, "href": "freshcart/", "url_route": "freshcart", "destination": "nav"}]
