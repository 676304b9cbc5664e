"""Topic contracts: the schemas are valid, examples pass, bad messages fail naming the path,
and the reads schema agrees with ``schemas.meter_reads.decode_read``."""

from __future__ import annotations

import copy
import json
import typing
from typing import Any

import jsonschema
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from schemas import SchemaError
from schemas.contracts import READ_AT_PATTERN, TOPICS, TYPES, validate
from schemas.meter_reads import decode_read

EXPECTED_TOPICS = {
    "meter.reads.v1",
    "meter.reads.dlq.v1",
    "consumption.intervals.v1",
    "consumption.rated.v1",
    "meter.alerts.v1",
    "billing.invoices.v1",
    "billing.payments.v1",
    "ledger.entries.v1",
}


def test_every_topic_has_a_valid_2020_12_schema() -> None:
    assert set(TOPICS) == EXPECTED_TOPICS
    for name, doc in TOPICS.items():
        assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema", name
        jsonschema.Draft202012Validator.check_schema(doc)
        assert doc["x-key"], name


@pytest.mark.parametrize("topic", sorted(EXPECTED_TOPICS))
def test_examples_pass_both_validators(topic: str) -> None:
    doc = TOPICS[topic]
    assert doc["examples"]
    for ex in doc["examples"]:
        validate(topic, ex)
        jsonschema.Draft202012Validator(doc).validate(ex)


def test_shared_definitions_are_identical_in_every_file() -> None:
    seen: dict[str, Any] = {}
    for name, doc in TOPICS.items():
        for key, definition in doc.get("$defs", {}).items():
            assert seen.setdefault(key, definition) == definition, f"{name}: $defs.{key} drifted"


@pytest.mark.parametrize("topic", sorted(TYPES))
def test_python_types_match_the_schema(topic: str) -> None:
    td = TYPES[topic]
    hints = typing.get_type_hints(td)
    doc = TOPICS[topic]
    assert set(hints) == set(doc["properties"]), topic
    assert set(td.__required_keys__) == set(doc["required"]), topic  # type: ignore[attr-defined]


def _example(topic: str) -> dict[str, Any]:
    return copy.deepcopy(TOPICS[topic]["examples"][0])


BAD: list[tuple[str, str, Any, str]] = [
    # topic, dotted field (or "-field" to delete), new value, expected error path
    ("meter.reads.v1", "-unit", None, "$.unit: is required"),
    ("meter.reads.v1", "value", "12.3456", "$.value: has the wrong form"),
    ("meter.reads.v1", "read_at", "2026-02-29T00:00:00Z", "$.read_at: has the wrong form"),
    ("meter.reads.v1", "register", "1.8", "$.register"),  # valid: see next assert
    ("meter.reads.dlq.v1", "original_b64", "not base64!", "$.original_b64: has the wrong form"),
    ("meter.reads.dlq.v1", "kafka_partition", -1, "$.kafka_partition"),
    ("consumption.intervals.v1", "quantity", 3.25, "$.quantity: must be string"),
    ("consumption.intervals.v1", "local_day", "2026-13-01", "$.local_day: has the wrong form"),
    ("consumption.rated.v1", "amount", "0.51285", "$.amount: has the wrong form"),
    ("consumption.rated.v1", "-tariff_code", None, "$.tariff_code: is required"),
    ("meter.alerts.v1", "kind", "fire", "$.kind: must be one of"),
    ("meter.alerts.v1", "opened_at", "2026-03-02T03:00:00+01:00", "$.opened_at"),
    ("billing.invoices.v1", "lines.0.amount", "4", "$.lines[0].amount: has the wrong form"),
    ("billing.invoices.v1", "currency", "EUR", "$.currency"),
    ("billing.invoices.v1", "payment_reference", "26-0000-01", "$.payment_reference"),
    ("billing.payments.v1", "amount", "0.00", "$.amount: has the wrong form"),
    ("billing.payments.v1", "amount", 8.78, "$.amount: must be string"),
    ("billing.payments.v1", "status", "paid", "$.status: must be one of"),
    ("ledger.entries.v1", "lines.1.credit", "-7.50", "$.lines[1].credit: has the wrong form"),
    ("ledger.entries.v1", "source_document.type", "memo", "$.source_document.type"),
]


def _mutate(doc: dict[str, Any], field: str, value: Any) -> None:
    delete = field.startswith("-")
    parts = field.lstrip("-").split(".")
    target: Any = doc
    for p in parts[:-1]:
        target = target[int(p)] if isinstance(target, list) else target[p]
    if delete:
        del target[parts[-1]]
    else:
        target[parts[-1]] = value


@pytest.mark.parametrize(("topic", "field", "value", "path"), BAD)
def test_bad_messages_fail_naming_the_path(topic: str, field: str, value: Any, path: str) -> None:
    doc = _example(topic)
    _mutate(doc, field, value)
    if field == "register":  # "1.8" is a valid OBIS short code: the schema must accept it
        validate(topic, doc)
        return
    with pytest.raises(SchemaError) as err:
        validate(topic, doc)
    assert str(err.value).startswith(path), str(err.value)
    with pytest.raises(jsonschema.ValidationError):  # the reference implementation agrees
        jsonschema.Draft202012Validator(TOPICS[topic]).validate(doc)


def test_ledger_entry_must_balance() -> None:
    doc = _example("ledger.entries.v1")
    doc["lines"][1]["credit"] = "7.49"
    with pytest.raises(SchemaError, match=r"^\$\.lines: debits 8\.78 ≠ credits 8\.77"):
        validate("ledger.entries.v1", doc)
    doc = _example("ledger.entries.v1")
    doc["lines"].append({"account": "1000", "debit": "0.00", "credit": "0.00"})
    with pytest.raises(SchemaError, match=r"^\$\.lines\[3\]: exactly one of debit and credit"):
        validate("ledger.entries.v1", doc)


def test_invoice_total_is_net_plus_vat() -> None:
    doc = _example("billing.invoices.v1")
    doc["total"] = "8.79"
    with pytest.raises(SchemaError, match=r"^\$\.total: 8\.79 ≠ net 7\.50 \+ vat 1\.28"):
        validate("billing.invoices.v1", doc)


def test_nan_and_infinity_are_refused_with_their_path() -> None:
    doc = _example("meter.reads.v1")
    for bad in (float("inf"), float("nan")):
        doc["value"] = bad
        with pytest.raises(SchemaError, match=r"^\$\.value: must be a finite number"):
            validate("meter.reads.v1", doc)


def test_unknown_topic_and_non_object() -> None:
    with pytest.raises(SchemaError, match="unknown topic 'meter.reads'"):
        validate("meter.reads", {})
    with pytest.raises(SchemaError, match=r"^\$: must be object"):
        validate("billing.payments.v1", [])


def test_gateway_dead_letters_follow_the_contract() -> None:
    pytest.importorskip("confluent_kafka")
    from ingest.kafka_producer import dead_letter_record

    for original, topic in ((b"\xff\x00not json", "amr/gw-001/E1"), (b"x" * 600_000, None)):
        doc = json.loads(
            dead_letter_record(
                original, source="gw-001", reason="not JSON", topic=topic, received_at=1772323200.25
            )
        )
        validate("meter.reads.dlq.v1", doc)


def test_worker_dead_letters_follow_the_contract() -> None:
    pytest.importorskip("confluent_kafka")
    from stream.dead_letters import DeadLetter, encode_dead_letter

    letter = DeadLetter("meter.reads.v1", 2, 41, b"E1", b"not json", "not JSON")
    validate("meter.reads.dlq.v1", json.loads(encode_dead_letter(letter, rejected_at=1772323200)))


# --- the reads schema and decode_read agree ----------------------------------------------


def _schema_accepts(obj: Any) -> bool:
    try:
        validate("meter.reads.v1", obj)
    except SchemaError:
        return False
    return True


def _decode_accepts(obj: Any) -> bool:
    try:
        decode_read(obj)
    except SchemaError:
        return False
    return True


LENIENT_VALUES = ["-0", "5.", ".5", "+5", " 5", "5\n", "1e3", "1_000", "\u0661", "1.2340"]


def _two(lo: int, hi: int) -> st.SearchStrategy[str]:
    return st.integers(lo, hi).map(lambda n: f"{n:02d}")


_offsets = st.one_of(
    st.sampled_from(["Z", "z", "", "+01:00", "+02:00", "-00:00", "+24:00"]),
    st.tuples(st.sampled_from("+-"), _two(0, 25), _two(0, 61)).map(
        lambda t: f"{t[0]}{t[1]}:{t[2]}"
    ),
)
_seconds = st.one_of(
    st.just(""),
    _two(0, 61).map(lambda s: f":{s}"),
    st.tuples(_two(0, 61), st.text("0123456789", min_size=1, max_size=12)).map(
        lambda t: f":{t[0]}.{t[1]}"
    ),
)
# RFC 3339 shaped timestamps with every part pushed in and out of range.
read_at_strings = st.builds(
    lambda y, mo, d, h, mi, s, off: f"{y:04d}-{mo}-{d}T{h}:{mi}{s}{off}",
    st.one_of(st.integers(0, 9999), st.sampled_from([1900, 2000, 2024, 2026, 2100])),
    _two(0, 13),
    _two(0, 32),
    _two(0, 25),
    _two(0, 61),
    _seconds,
    _offsets,
)
# decimal strings in and out of contract: too many decimals, too large, signs, trailing zeros
value_strings = st.one_of(
    st.from_regex(r"\A-?[0-9]{1,16}(\.[0-9]{1,5})?\Z"), st.sampled_from(LENIENT_VALUES)
)
values = st.one_of(
    value_strings,
    st.integers(-5, 10**13),
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.decimals(places=3, min_value=0, max_value=10**12 - 1).map(float),
    st.booleans(),
    st.none(),
)
_meter_ids = st.one_of(
    st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}\Z"),
    st.text(max_size=70),
    st.just("E-100001\n"),
    st.integers(),
    st.none(),
)
_registers = st.one_of(
    st.from_regex(r"\A[0-9]{1,4}(\.[0-9]{1,4}){0,4}\Z"), st.just("1.8.1"), st.just(""), st.none()
)


_valid = {
    "meter_id": st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}\Z"),
    "register": st.from_regex(r"\A[0-9]{1,3}(\.[0-9]{1,3}){1,3}\Z"),
    "read_at": st.builds(
        lambda d, h, mi, s, off: f"{d.isoformat()}T{h:02d}:{mi:02d}{s}{off}",
        st.dates(),
        st.integers(0, 23),
        st.integers(0, 59),
        st.sampled_from(["", ":00", ":59", ":30.5", ":07.123456789"]),
        st.sampled_from(["Z", "+01:00", "+02:00", "-05:30", "-00:00", "+23:59"]),
    ),
    "value": st.one_of(
        st.from_regex(r"\A[0-9]{1,12}(\.[0-9]{1,3})?\Z"),
        st.integers(0, 10**12 - 1),
        st.decimals(places=3, min_value=0, max_value=10**12 - 1).map(float),
    ),
    "unit": st.sampled_from(["kWh", "kvarh", "kW", "m3"]),
    "source": st.sampled_from(["amr", "manual", "self", "estimate"]),
}
_mutated = {
    "meter_id": _meter_ids,
    "register": _registers,
    "read_at": st.one_of(read_at_strings, st.text(max_size=30), st.integers()),
    "value": values,
    "unit": st.one_of(st.sampled_from(["kWh", "kvarh", "kW", "m3", "kwh", "l", ""]), st.none()),
    "source": st.sampled_from(["amr", "manual", "self", "estimate", "AMR", None]),
}


@st.composite
def read_objects(draw: st.DrawFn) -> dict[str, Any]:
    """A valid read, or one with up to two fields mutated (out of range, wrong type, missing)."""
    obj: dict[str, Any] = {k: draw(strategy) for k, strategy in _valid.items()}
    for key in draw(st.sets(st.sampled_from(sorted(obj)), max_size=2)):
        if draw(st.integers(0, 4)) == 0:
            del obj[key]
        else:
            obj[key] = draw(_mutated[key])
    if draw(st.booleans()):
        obj["gateway_id"] = draw(st.sampled_from(["gw-001", "simulator-1"]))
    if draw(st.booleans()):
        obj["extra_field"] = draw(st.one_of(st.none(), st.integers(), st.text(max_size=5)))
    return obj


@settings(max_examples=3000, deadline=None)
@given(read_objects())
@example(
    {
        "meter_id": "E1",
        "register": "1.8.1",
        "read_at": "2026-03-02T00:00+01:00",
        "value": 0.3,
        "unit": "kWh",
    }
)
@example(
    {
        "meter_id": "E1",
        "register": "1.8.1",
        "read_at": "2024-02-29T23:59:59.1234567Z",
        "value": "999999999999.9990",
        "unit": "m3",
        "source": "self",
    }
)
@example(
    {
        "meter_id": "E1",
        "register": "1.8.1",
        "read_at": "2100-02-29T00:00Z",
        "value": "1",
        "unit": "kWh",
    }
)
def test_reads_schema_and_decode_read_agree(obj: dict[str, Any]) -> None:
    assert _schema_accepts(obj) == _decode_accepts(obj), obj


@settings(max_examples=1000, deadline=None)
@given(st.text(max_size=40))
def test_read_at_pattern_never_accepts_what_python_refuses(text: str) -> None:
    if READ_AT_PATTERN.match(text):
        obj = {"meter_id": "E1", "register": "1.8.1", "read_at": text, "value": "1", "unit": "kWh"}
        assert _decode_accepts(obj), text


# Forms that Python's own parsers (fromisoformat, Decimal, re's "$") would take but the
# contract (RFC 3339, ECMA-262 patterns) does not: schema and decode_read both refuse them.
LENIENT_FORMS = [
    ("read_at", "2026-03-01 00:00:00+01:00"),  # any separator instead of T
    ("read_at", "20260301T000000Z"),  # ISO 8601 basic format
    ("read_at", "2026-03-01T00Z"),  # hour only
    ("read_at", "2026-03-01T00:00:00+0100"),  # offset without colon
    ("read_at", "2026-W09-7T00:00Z"),  # week date
    ("read_at", "2026-03-01T00:00:00,5Z"),  # decimal comma
    ("read_at", "2026-03-01T00:00+01:60"),  # offset minutes ≥ 60
    ("meter_id", "E-100001\n"),  # Python's $ matches before a final newline
    ("register", "1.8.1\n"),
    ("value", "5\n"),
    ("value", " 5"),
    ("value", "5."),
    ("value", ".5"),
    ("value", "+5"),
    ("value", "-0"),
    ("value", "1e3"),
    ("value", "1_000"),
    ("value", "\u0661\u0662"),  # Arabic-Indic digits
    ("gateway_id", 42),  # decode_read ignores gateway_id
]


def _read_with(field: str, value: Any) -> dict[str, Any]:
    return {
        "meter_id": "E1",
        "register": "1.8.1",
        "read_at": "2026-03-01T00:00:00+01:00",
        "value": "1.000",
        "unit": "kWh",
        field: value,
    }


@pytest.mark.parametrize(("field", "value"), LENIENT_FORMS)
def test_contract_refuses_lenient_forms(field: str, value: Any) -> None:
    assert not _schema_accepts(_read_with(field, value))


@pytest.mark.parametrize(("field", "value"), LENIENT_FORMS)
def test_decode_read_refuses_lenient_forms(field: str, value: Any) -> None:
    assert not _decode_accepts(_read_with(field, value))


@pytest.mark.parametrize("field", ["unit", "source"])
def test_unhashable_unit_or_source_is_a_schema_error(field: str) -> None:
    obj = {
        "meter_id": "E1",
        "register": "1.8.1",
        "read_at": "2026-03-01T00:00:00Z",
        "value": "1",
        "unit": "kWh",
        field: ["kWh"],
    }
    assert not _schema_accepts(obj)
    assert not _decode_accepts(obj)


def test_topics_reference_is_up_to_date() -> None:
    from schemas.docs import DOC, render

    assert DOC.read_text(encoding="utf-8") == render(), "run: python -m schemas.docs"
    for topic in EXPECTED_TOPICS:
        assert f"\n## {topic}\n" in render()


def test_invoice_carries_interest_and_corrections_of_earlier_periods() -> None:
    # #4/#5 lines: late-payment interest (its own service) and a correction with a
    # negative quantity; bank ids up to 140 characters in payments and ledger entries
    doc = _example("billing.invoices.v1")
    line = copy.deepcopy(doc["lines"][0])
    line["service"], line["quantity"] = "interest", "-1.500"
    doc["lines"].append(line)
    validate("billing.invoices.v1", doc)
    line["service"] = "gas"
    with pytest.raises(SchemaError, match=r"^\$\.lines\[\d+\]\.service"):
        validate("billing.invoices.v1", doc)
    pay = _example("billing.payments.v1")
    pay["payment_id"] = "X" * 140
    validate("billing.payments.v1", pay)
    pay["payment_id"] = "X" * 141
    with pytest.raises(SchemaError, match=r"^\$\.payment_id"):
        validate("billing.payments.v1", pay)


@pytest.mark.parametrize(("kind", "amount", "error"), [
    (None, "8.78", None),  # every payment event before `kind` existed stays valid
    ("payment", "8.78", None),
    ("reversal", "-8.78", None),
    ("refund", "-0.01", None),
    (None, "-8.78", "$.amount: has the wrong form (Amount in KM greater than zero"),
    ("payment", "-8.78", "$.amount: has the wrong form (Amount in KM greater than zero"),
    ("reversal", "8.78", "$.amount: has the wrong form (Amount in KM below zero"),
    ("refund", "-0.00", "$.amount: has the wrong form (Amount in KM below zero"),
    ("refund", "0.00", "$.amount: has the wrong form (Amount in KM below zero"),
    ("storno", "-8.78", "$.kind: must be one of"),
])
def test_payment_kind_and_the_sign_of_its_amount(kind: str | None, amount: str,
                                                 error: str | None) -> None:
    # #5: reversals and refunds are negative payment rows; only they may be negative
    doc = _example("billing.payments.v1")
    doc["amount"] = amount
    if kind is not None:
        doc["kind"] = kind
    reference = jsonschema.Draft202012Validator(TOPICS["billing.payments.v1"])
    if error is None:
        validate("billing.payments.v1", doc)
        reference.validate(doc)
        return
    with pytest.raises(SchemaError) as err:
        validate("billing.payments.v1", doc)
    assert str(err.value).startswith(error), str(err.value)
    with pytest.raises(jsonschema.ValidationError):
        reference.validate(doc)
