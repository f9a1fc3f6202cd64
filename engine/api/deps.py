"""Request-scoped dependencies as ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from engine.commands import Engine


def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def get_actor(x_caseflow_user: Annotated[str | None, Header(max_length=255)] = None) -> str | None:
    return x_caseflow_user


EngineDep = Annotated[Engine, Depends(get_engine)]
ActorDep = Annotated[str | None, Depends(get_actor)]
