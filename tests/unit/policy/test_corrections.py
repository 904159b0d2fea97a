"""P10 scoping: a correction never carries a field its recipient did not receive before."""

from __future__ import annotations

from datetime import UTC, datetime
from types import MappingProxyType

from broker.policy import Classification, Decision, Outcome
from broker.policy.corrections import RULE, correction_recipients, scope_correction


def _decision(outcome: Outcome, disclosed: tuple[str, ...], withheld: dict[str, str]) -> Decision:
    return Decision(recipient="nhs", outcome=outcome, rules=(), clause=None, lawful_basis=None,
                    special_category_condition=None, regime=None, disclosed=disclosed,
                    withheld=tuple(sorted(withheld)), withheld_reasons=MappingProxyType(withheld),
                    retention_until=datetime(2027, 1, 1, tzinfo=UTC),
                    classification=Classification.OFFICIAL, override_used=False, warnings=(),
                    reason="permitted")


def test_recipients_are_those_that_had_a_touched_field() -> None:
    earlier = {"nhs": {"offence_codes"}, "probation": {"offence_codes", "victim_phone"}, "advocacy": set()}
    assert correction_recipients(earlier, {"victim_phone"}) == ("probation",)
    assert correction_recipients(earlier, {"offence_codes"}) == ("nhs", "probation")
    assert correction_recipients(earlier, {"children"}) == ()


def test_fields_not_received_before_are_withheld_under_p10() -> None:
    d = _decision(Outcome.PERMIT, ("corrects_message_id", "offence_codes", "crime_reference"), {})
    scoped = scope_correction(d, {"offence_codes"}, {"corrects_message_id"})
    assert scoped.disclosed == ("corrects_message_id", "offence_codes")
    assert scoped.withheld_reasons == {"crime_reference": RULE}
    assert scoped.outcome is Outcome.PERMIT_WITH_REDACTION and RULE in scoped.rules


def test_nothing_changes_when_everything_was_received_or_denied() -> None:
    d = _decision(Outcome.PERMIT, ("corrects_message_id", "offence_codes"), {})
    assert scope_correction(d, {"offence_codes"}, {"corrects_message_id"}) is d
    denied = _decision(Outcome.DENY, (), {"offence_codes": "P2.purpose"})
    assert scope_correction(denied, set(), set()) is denied
