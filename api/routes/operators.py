"""Operator accounts over HTTP: login (bearer token), logout, me, create, change roles, and
the audit log.

* ``POST /api/v1/operators/login`` → ``{"token": ..., "username", "roles", "expires_at"}``;
  throttled per username and per IP like the portal login (429 + ``Retry-After``).
* ``POST /api/v1/operators/logout`` / ``GET /api/v1/operators/me`` — any operator.
* ``POST /api/v1/operators`` (create), ``POST /api/v1/operators/{username}`` (roles,
  active), ``GET /api/v1/operators/audit?limit=`` — admin (``api.operators.RULES``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from api import ApiError, NotAuthenticated, NotFound, Unprocessable, throttle
from api.deps import AppSettings, Conn, Now, Operator
from api.operators import (
    audit_rows,
    check_operator_login,
    create_operator,
    end_operator_session,
    start_operator_session,
    update_operator,
    write_audit,
)

router = APIRouter(prefix="/api/v1/operators", tags=["operators"])
LOGIN_FAILED = "wrong username or password"
_USER = r"^[a-z0-9][a-z0-9._-]{0,63}$"


class Conflict(ApiError):
    status_code = 409


class Login(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class NewOperator(BaseModel):
    username: str = Field(pattern=_USER)
    password: str = Field(min_length=12, max_length=1024)
    roles: list[str] = Field(min_length=1, max_length=4)


class Change(BaseModel):
    roles: list[str] | None = Field(default=None, min_length=1, max_length=4)
    active: bool | None = None


@router.post("/login")
def login(body: Login, request: Request, conn: Conn, now: Now,
          settings: AppSettings) -> dict[str, Any]:
    """Same answer and cost for an unknown operator and a wrong password."""
    ip = throttle.client_ip(request)
    username = body.username.lower()
    with conn.transaction():
        throttle.check(conn, "operator", username, ip, now)
        roles = check_operator_login(conn, username, body.password)
        if roles is None:
            throttle.record_failure(conn, "operator", username, ip, now,
                                    throttle.policy_of(request.app.state))
    if roles is None:
        raise NotAuthenticated(LOGIN_FAILED)
    with conn.transaction():
        throttle.record_success(conn, "operator", username)
        token = start_operator_session(conn, username, now, settings)
        write_audit(conn, at=now, operator=username, action="login", target=None,
                    detail={}, ip=ip)
    return {
        "token": token,
        "username": username,
        "roles": sorted(roles),
        "expires_at": (now + timedelta(hours=settings.session_absolute_hours)).isoformat(),
    }


@router.post("/logout", status_code=204)
def logout(who: Operator, conn: Conn) -> Response:
    if who.token is not None:
        end_operator_session(conn, who.token)
    return Response(status_code=204)


@router.get("/me")
def me(who: Operator) -> dict[str, Any]:
    return {"username": who.username, "roles": sorted(who.roles)}


@router.get("/audit")
def audit(_who: Operator, conn: Conn,
          limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    """The newest audit rows first."""
    return {"audit": audit_rows(conn, limit)}


@router.post("", status_code=201)
def create(body: NewOperator, _who: Operator, conn: Conn, now: Now) -> dict[str, Any]:
    try:
        with conn.transaction():
            roles = create_operator(conn, body.username, body.password, body.roles, now=now)
    except ValueError as exc:
        if "already exists" in str(exc):
            raise Conflict(str(exc)) from exc
        raise Unprocessable(str(exc)) from exc
    return {"username": body.username, "roles": roles, "active": True}


@router.post("/{username}")
def change(username: str, body: Change, _who: Operator, conn: Conn) -> dict[str, Any]:
    """Set roles and/or active; the operator's sessions end (new rights apply at once)."""
    try:
        with conn.transaction():
            found = update_operator(conn, username, roles=body.roles, active=body.active)
    except ValueError as exc:
        raise Unprocessable(str(exc)) from exc
    if found is None:
        raise NotFound(f"no operator {username}")
    return {"username": username, "roles": found[0], "active": found[1]}
