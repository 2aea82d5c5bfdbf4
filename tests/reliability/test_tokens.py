"""Forged, expired, misdirected and missing credentials: 401 on every route, never a 5xx."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import msgspec
import pytest

from tests.conftest import JWT_SECRET
from tests.reliability.conftest import Figures
from tests.support.processes import Server
from threadline.http.auth import issue_stream_token, issue_token

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
PROBES = (("GET", "/chat/history"), ("GET", "/chat/sessions"), ("POST", "/chat"))
PUBLIC = {"/", "/health", "/ready", "/metrics"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(**extra: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {"sub": "mallory", "iat": int(now.timestamp()), "exp": int((now + timedelta(hours=1)).timestamp()),
            **extra}  # fmt: skip


def _unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    parts = (msgspec.json.encode(header), msgspec.json.encode(claims))
    return ".".join([*(_b64(p) for p in parts), _b64(signature)])


def _hs512(claims: dict[str, Any]) -> str:
    signing = ".".join(_b64(msgspec.json.encode(p)) for p in ({"alg": "HS512", "typ": "JWT"}, claims))
    signature = hmac.new(JWT_SECRET.encode(), signing.encode(), hashlib.sha512).digest()
    return f"{signing}.{_b64(signature)}"


def forged_tokens() -> dict[str, str]:
    valid = issue_token(JWT_SECRET, "mallory")
    head, _, signature = valid.split(".")
    tampered_body = _b64(msgspec.json.encode(_claims(sub="alice", roles=["admin"])))
    past = datetime.now(UTC) - timedelta(hours=2)
    return {
        "alg none": _unsigned({"alg": "none", "typ": "JWT"}, _claims()),
        "alg None, signature kept": _unsigned({"alg": "None", "typ": "JWT"}, _claims(), b"x" * 32),
        # Signed by hand: PyJWT rightly warns that this secret is short for HS512.
        "HS512 with the right secret": _hs512(_claims()),
        "RS256 header, HMAC signature": _unsigned({"alg": "RS256", "typ": "JWT"}, _claims(), b"y" * 256),
        "expired": jwt.encode(
            _claims(iat=int(past.timestamp()), exp=int((past + timedelta(minutes=5)).timestamp())),
            JWT_SECRET,
            algorithm="HS256",
        ),
        "wrong audience": jwt.encode(_claims(aud="someone-else"), JWT_SECRET, algorithm="HS256"),
        "a run's stream token on other routes": issue_stream_token(
            JWT_SECRET, "mallory", uuid.uuid4(), ttl_s=60
        ),
        "tampered claims (sub, roles)": f"{head}.{tampered_body}.{signature}",
        "wrong secret": jwt.encode(_claims(), "not-the-secret-" + "z" * 40, algorithm="HS256"),
        "no sub": jwt.encode(
            {k: v for k, v in _claims().items() if k != "sub"}, JWT_SECRET, algorithm="HS256"
        ),
        "oversized (16 KiB), wrong secret": jwt.encode(
            _claims(pad="p" * 16_384), "not-the-secret-" + "z" * 40, algorithm="HS256"
        ),
        "garbage": "not.a.jwt",
        "nothing after the scheme": "",
    }


@pytest.mark.case("JWT negatives")
async def test_forged_tokens_are_401_on_every_probe(
    servers: tuple[Server, Server], http: httpx.AsyncClient, figures: Figures
) -> None:
    a, _ = servers
    answers: dict[str, list[int]] = {}
    for name, token in forged_tokens().items():
        headers = {"Authorization": f"Bearer {token}" if token else "Bearer"}
        for method, path in PROBES:
            body = {"message": "hi"} if method == "POST" else None
            response = await http.request(method, f"{a.url}{path}", headers=headers, json=body)
            answers.setdefault(name, []).append(response.status_code)
    wrong = {name: codes for name, codes in answers.items() if set(codes) != {401}}
    probes = sum(len(codes) for codes in answers.values())
    figures.record(
        "JWT negatives",
        f"{len(answers)} forged or invalid tokens (alg none, wrong algorithm, expired, wrong audience, "
        f"tampered, oversized, ...) on {len(PROBES)} routes: all 401",
        f"{probes - sum(len(c) for c in wrong.values())}/{probes} answered 401"
        + (f"; not 401: {wrong}" if wrong else ""),
    )
    assert not wrong


@pytest.mark.case("unauthenticated access")
async def test_every_protected_operation_is_401_without_a_token(
    servers: tuple[Server, Server], http: httpx.AsyncClient, figures: Figures
) -> None:
    a, _ = servers
    schema = (await http.get(f"{a.url}/schema/openapi.json")).json()
    answers: dict[str, int] = {}
    for path, operations in schema["paths"].items():
        if path in PUBLIC or path.startswith("/schema"):
            continue
        concrete = "/".join(str(uuid.uuid4()) if part.startswith("{") else part for part in path.split("/"))
        for method in operations:
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            body: dict[str, str] | None = {} if method in {"post", "put", "patch"} else None
            response = await http.request(method.upper(), f"{a.url}{concrete}", json=body)
            answers[f"{method.upper()} {path}"] = response.status_code
    wrong = {operation: code for operation, code in answers.items() if code != 401}
    figures.record(
        "unauthenticated access",
        "every operation in the OpenAPI schema but health, readiness, metrics, docs and the playground: "
        "401 without a token",
        f"{len(answers) - len(wrong)}/{len(answers)} operations answered 401"
        + (f"; not 401: {wrong}" if wrong else ""),
    )
    assert not wrong
