"""Bearer-key authentication and scope checks: no key -> 401, a key without the route's scope -> 403, a hirer key
on another company's project -> 403. `admin` may do everything.

The explorer pages (`jobmatch.web`) keep the key the person signed in with in an HttpOnly, SameSite=Strict cookie;
their scripts call the same /v1 routes with it. A cookie-authenticated request that changes something must also
carry the `X-Jobmatch-UI` header, which a page on another site cannot send without a CORS preflight this server
never grants: together with SameSite, the cookie cannot be used for cross-site request forgery."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from fastapi import HTTPException, Request

from jobmatch.serve.keys import ApiKey, KeyStore


def keys_file(home: Path, configured: Path | None) -> Path:
    return configured or home / "keys.sqlite"


COOKIE = "jobmatch_key"
UI_HEADER = "x-jobmatch-ui"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def authenticate(request: Request) -> ApiKey:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header and (cookie := request.cookies.get(COOKIE)):
        if request.method not in SAFE_METHODS and not request.headers.get(UI_HEADER):
            raise HTTPException(403, f"a request signed in by cookie must send the {UI_HEADER} header to change "
                                     "anything (use 'Authorization: Bearer KEY' from other clients)")
        scheme, token = "bearer", cookie
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(401, "missing API key: send 'Authorization: Bearer KEY' (jobmatch keys create)",
                            headers={"WWW-Authenticate": "Bearer"})
    keys: KeyStore = request.app.state.keys
    key = keys.verify(token.strip())
    if key is None:
        raise HTTPException(401, "unknown or revoked API key", headers={"WWW-Authenticate": "Bearer"})
    return key


def require(key: ApiKey, scopes: Iterable[str]) -> ApiKey:
    allowed = tuple(scopes)
    if key.scope != "admin" and key.scope not in allowed:
        raise HTTPException(403, f"key {key.key_id} has scope {key.scope!r}; this route needs "
                                 f"{' or '.join(repr(s) for s in allowed + ('admin',))}")
    return key


def check_company(key: ApiKey, project_id: int, company_id: int | None) -> None:
    """A hirer key may touch only its own company's projects (an unknown project is not its own either)."""
    if key.scope == "hirer" and (company_id is None or company_id != key.company_id):
        raise HTTPException(403, f"project {project_id} is not a project of company {key.company_id} (the "
                                 f"company key {key.key_id} is bound to)")
