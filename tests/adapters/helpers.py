"""Shared helpers: an in-process service, and a check that answers match the OpenAPI document."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import jsonschema
from servermode.adapters.bootstrap import Service, build_service
from servermode.adapters.cli.settings import Settings
from servermode.adapters.http.openapi import response_schema
from servermode.adapters.store.factory import MEMORY
from starlette.testclient import TestClient


@contextmanager
def serving(**settings: Any) -> Iterator[tuple[TestClient, Service]]:
    """The whole service (gate, admin routes, demo app) in process, lifespan included."""
    service = build_service(replace(Settings(demo_delay=0.0, state=MEMORY), **settings))
    with TestClient(service.app) as client:
        yield client, service


def assert_documented(response: Any, path: str, method: str) -> Any:
    """The answer's status and body are the ones the OpenAPI document gives; returns the body."""
    schema = response_schema(path, method, response.status_code)
    assert schema is not None, f"{method} {path} {response.status_code} has no documented body"
    body = response.json()
    jsonschema.validate(body, schema, cls=jsonschema.Draft202012Validator)
    return body
