"""Password hashing and tokens of the HTTP side."""

from __future__ import annotations

import time

import pytest
from argon2 import PasswordHasher

from api.main import validation_detail
from api.security import (
    dummy_hash,
    hash_password,
    new_gateway_token,
    new_token,
    password_needs_rehash,
    same_secret,
    token_sha256,
    verify_password,
)


def test_hash_is_argon2id_salted_and_verifies() -> None:
    h1 = hash_password("Korektna lozinka 1")
    h2 = hash_password("Korektna lozinka 1")
    assert h1.startswith("$argon2id$")
    assert h1 != h2  # own salt per hash
    assert verify_password(h1, "Korektna lozinka 1")
    assert verify_password(h2, "Korektna lozinka 1")
    assert not verify_password(h1, "korektna lozinka 1")
    assert not verify_password(h1, "")


def test_verify_never_raises_on_a_broken_hash() -> None:
    assert not verify_password("not a hash", "x")
    assert not verify_password("", "x")
    assert not verify_password("$argon2id$v=19$m=65536,t=3,p=4$broken", "x")


def test_empty_password_cannot_be_hashed() -> None:
    with pytest.raises(ValueError, match="password"):
        hash_password("")


def test_weaker_parameters_need_rehash() -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("pw")
    assert verify_password(weak, "pw")
    assert password_needs_rehash(weak)
    assert not password_needs_rehash(hash_password("pw"))
    assert password_needs_rehash("garbage")


def test_dummy_hash_is_stable_and_costs_like_a_real_one() -> None:
    assert dummy_hash() == dummy_hash()
    real = hash_password("secret")
    dummy_hash()  # make sure it is built before timing
    t0 = time.perf_counter()
    verify_password(real, "wrong")
    t_real = time.perf_counter() - t0
    t0 = time.perf_counter()
    verify_password(dummy_hash(), "wrong")
    t_dummy = time.perf_counter() - t0
    assert t_dummy > t_real / 4  # same parameters: same order of cost (not a no-op)


def test_tokens_are_random_32_bytes_and_stored_as_sha256() -> None:
    tokens = {new_token() for _ in range(200)} | {new_gateway_token() for _ in range(200)}
    assert len(tokens) == 400
    assert all(len(t) == 43 for t in tokens)  # 32 bytes, URL-safe base64 without padding
    digest = token_sha256("abc")
    assert digest == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert same_secret("abc", "abc")
    assert not same_secret("abc", "abd")
    assert not same_secret("abc", "abcd")


def test_validation_errors_name_the_field() -> None:
    status, detail = validation_detail(
        [{"type": "less_than_equal", "loc": ("query", "months"), "msg": "Input should be <= 60"}]
    )
    assert (status, detail) == (422, "months: Input should be <= 60")
    status, detail = validation_detail(
        [{"type": "json_invalid", "loc": ("body", 1), "msg": "JSON decode error",
          "ctx": {"error": "Expecting value"}}]
    )
    assert (status, detail) == (400, "malformed JSON: Expecting value")
