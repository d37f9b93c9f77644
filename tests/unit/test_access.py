"""Who may read whose sessions and usage."""

from __future__ import annotations

import uuid

import pytest

from core import access
from core.accounts import Identity
from core.errors import Forbidden

ANN = Identity(uuid.uuid4(), "ann", "Ann", "user")
ROOT = Identity(uuid.uuid4(), "root", "Root", "admin")
OTHER = uuid.uuid4()


def test_a_user_always_gets_their_own_scope() -> None:
    assert access.scope(ANN) == ANN.id
    assert access.scope(ANN, user_id=ANN.id) == ANN.id


@pytest.mark.parametrize("kwargs", [{"user_id": OTHER}, {"all_users": True}])
def test_a_user_cannot_ask_for_others(kwargs: dict[str, object]) -> None:
    with pytest.raises(Forbidden):
        access.scope(ANN, **kwargs)  # type: ignore[arg-type]


def test_an_admin_chooses_self_another_user_or_everyone() -> None:
    assert access.scope(ROOT) == ROOT.id
    assert access.scope(ROOT, user_id=OTHER) == OTHER
    assert access.scope(ROOT, all_users=True) is None
