"""A partner whose own system is compromised, against the whole broker.

The attacker is one agency's system: it holds that agency's real keys and credentials and
nothing else, and signs and seals whatever it likes (``hostile.forge``). The broker is the
real one (``env``: RabbitMQ, SQLite and PostgreSQL, the four adapters). Every check is
black-box: what a recipient can read is what it decrypts with its own keys, searched
recursively (JWT header and payload, every disclosure, the delivery token); what the log
holds is the leaves' text; what changed is the rows of the working-state tables.

What the broker must hold against such a partner:

1. Consent is recorded and withdrawn only by the agencies the DSA names as recorders of
   that kind of consent, only for references they own, and applies only to its subject; a
   forged consent_change is refused whole and changes nothing.
2. Every clear claim has a schema (case_id, purpose, subjects, consent_ref; nothing else),
   refused at ingress as malformed before policy; nhs never receives a victim identifier;
   consent_ref goes only where consent is needed; no audit leaf and no problem document
   holds text the sender chose; every refusal is audited.
3. The broker does not run a DSA that ``masp policy lint`` refuses, and the engine denies
   overlapping clauses that disagree (``clause.overlap``).
4. SD-JWTs are parsed as strictly as RFC 9901 and RFC 4648 say: one digest once in ``_sd``,
   no characters outside the base64url alphabet.

Flooding the AMQP ingress is covered by its own tests; nothing here depends on volume.
Places that assume the wire of docs/spec/ (to adapt when subjects and consent_ref become
selectively disclosable) are marked ``WIRE:`` in ``tests/security/hostile.py``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from broker import policy, wire
from broker.errors import MaspError
from broker.policy import DsaInvalid
from broker.service import BrokerService, init_state
from schemas import MESSAGE_TYPES
from tests.integration import conftest as integration
from tests.integration.conftest import REPO, Env, make_settings
from tests.security.hostile import (
    AGENCY_IDS,
    CONSENT_RECORDERS,
    ENVELOPE,
    PURPOSE,
    Envelope,
    Forged,
    Outcome,
    QuietEnv,
    Tamper,
    Victim,
    audit_head,
    body_for,
    code_ok,
    consent_body,
    corpus,
    delivery_rows,
    forge_as,
    found_in,
    honest,
    leaves,
    leaves_holding,
    marker,
    new_tag,
    quiesce,
    refusal_entries,
    snapshot,
    state_diff,
    subjects_ok,
    submit,
)

# The integration suite's whole broker (real RabbitMQ, SQLite and PostgreSQL, four adapters).
amqp_url = integration.amqp_url
broker_clock = integration.broker_clock
database_url = integration.database_url
env = integration.env
agency_users = integration.agency_users


@pytest.fixture
def quiet_env(env: Env) -> Env:
    """``env`` for hypothesis tests, which print their arguments when an example fails."""
    return QuietEnv.of(env)


PERPETRATOR = {"ref": "19-4471023K", "category": "suspect"}
CASE_ID = "HIOW-MASP-2026-0147"
#: The codes an ingress refusal of a malformed envelope may carry.
MALFORMED = {"malformed", "schema-invalid"}
#: Other agencies' identifiers a hostile partner knows and may plant anywhere.
FOREIGN_REFS = ("X482913", "943 476 5919", "19/4471023K", "44/2026/118734", "ADV-2026-0031")
_EXAMPLES = settings(deadline=None, database=None, phases=(Phase.explicit, Phase.generate),
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def examples(n: int) -> settings:
    """Few examples, each through the whole broker; no shrinking (each step is a submission)."""
    return settings(_EXAMPLES, max_examples=n)


def _purposes(env: Env) -> set[str]:
    return {p for a in env.service.exchange.bundle.agreements for p in a.purposes}


def _clause_types(env: Env, sender: str) -> list[str]:
    return sorted({t for _, c in env.service.exchange.bundle.clauses() if c.from_ == sender
                   for t in c.message_types})


def _clause_purposes(env: Env, sender: str, masp_type: str) -> list[str]:
    return sorted({p for _, c in env.service.exchange.bundle.clauses()
                   if c.from_ == sender and masp_type in c.message_types for p in c.purposes})


_counter = iter(range(1, 1_000_000))


def _victim() -> Victim:
    return Victim.make(new_tag(), next(_counter))


# --- the case every test starts from ------------------------------------------------------


@dataclass
class Case:
    victim: Victim
    consent_ref: str  # the victim's consent, recorded by police
    referral_id: str  # police's case referral

    @property
    def subjects(self) -> list[dict[str, str]]:
        return [PERPETRATOR, self.victim.subject()]

    @property
    def owned(self) -> dict[str, str]:
        return {self.consent_ref: "police"}


@pytest.fixture
async def case(env: Env) -> Case:
    """Police record the victim's consent and refer the case, through police's own adapter."""
    victim = _victim()
    ref = f"CONSENT-{victim.tag.upper()}-1"
    subjects = [PERPETRATOR, victim.subject()]
    given = await submit(env, "police", honest(
        env, "police", "consent_change", _advocacy_consent("given"), case_id=CASE_ID,
        purpose="case_management", subjects=subjects, consent_ref=ref).jwe)
    assert given.accepted, given.brief()
    referral = honest(env, "police", "case_referral", body_for("case_referral", victim), case_id=CASE_ID,
                      purpose="risk_management", subjects=subjects)
    sent = await submit(env, "police", referral.jwe)
    assert sent.accepted, sent.brief()
    await quiesce(env)
    return Case(victim, ref, referral.jti)


def _advocacy_consent(status: str, message_types: list[str] | None = None) -> dict[str, Any]:
    return consent_body("victim", status, recipients=["advocacy"],
                        purposes=["victim_support", "safeguarding", "risk_management"],
                        message_types=message_types)


async def _advocacy_referral(env: Env, victim: Victim, consent_ref: str,
                             subjects: list[dict[str, str]] | None = None) -> str:
    """Police's victim_advocacy_referral citing ``consent_ref``: what advocacy is decided."""
    sent = await submit(env, "police", honest(
        env, "police", "victim_advocacy_referral", body_for("victim_advocacy_referral", victim),
        case_id=CASE_ID, purpose="victim_support", subjects=subjects or [PERPETRATOR, victim.subject()],
        consent_ref=consent_ref).jwe)
    assert sent.accepted, sent.brief()
    return sent.decisions["advocacy"]


# --- what every hostile submission is held to -----------------------------------------------


async def assert_refused_cleanly(env: Env, forged: Forged, outcome: Outcome, head: int,
                                 before: dict[str, list[tuple[str, ...]]], *, ingress: bool = False) -> None:
    """Refused as a whole: audited, nothing delivered, no working state changed."""
    assert outcome.refused, f"not refused: {outcome.brief()}"
    if ingress:
        assert outcome.status in (400, 422), outcome.brief()
        assert outcome.doc.get("code") in MALFORMED, outcome.brief()
    assert await refusal_entries(env, head, forged), "the refusal is not in the audit log"
    assert not await delivery_rows(env, forged.jti), "a refused message was queued for delivery"
    await quiesce(env)
    assert state_diff(before, await snapshot(env)) == {}, "a refused message changed working state"


async def assert_not_recorded(env: Env, outcome: Outcome, *texts: str) -> None:
    """No audit leaf and no problem document holds text the sender chose."""
    docs = await leaves(env)
    for text in texts:
        assert text.lower() not in outcome.text.lower(), f"{text!r} echoed in the response"
        assert not leaves_holding(docs, text), f"{text!r} written into audit leaves"


async def assert_nhs_never_saw(env: Env, *victims: Victim) -> None:
    await quiesce(env)
    text = await corpus(env, "nhs")
    secret = env.service.exchange.pseudonym_secret
    for victim in victims:
        assert not found_in(text, victim.needles(secret)), \
            f"nhs received the victim's {found_in(text, victim.needles(secret))}"


async def _ready(env: Env) -> tuple[int, dict[str, list[tuple[str, ...]]]]:
    await quiesce(env)
    return await audit_head(env), await snapshot(env)


# === controls: the honest path, and the forger itself ========================================


async def test_the_forger_makes_what_an_honest_adapter_makes(env: Env) -> None:
    """Control: the forger's untampered output is accepted and delivered like the adapter's, and
    the black-box search finds what each partner is meant to get."""
    victim = _victim()
    forged = forge_as(env, "police", "case_referral", body_for("case_referral", victim),
                      Envelope(case_id=CASE_ID, subjects=[PERPETRATOR]))
    outcome = await submit(env, "police", forged.jwe)
    assert outcome.accepted, outcome.brief()
    assert outcome.delivered_to == {"probation", "nhs"}
    await quiesce(env)
    assert found_in(await corpus(env, "probation"), [victim.address_line, victim.postcode])
    nhs = await corpus(env, "nhs")
    assert "marsh" in nhs  # the perpetrator's name: nhs's corpus is read
    assert not found_in(nhs, victim.needles(env.service.exchange.pseudonym_secret))


async def test_honest_referral_is_minimised_for_each_partner(env: Env) -> None:
    """Control: police's own adapter refers a case; nhs gets the perpetrator, never the
    victim's whereabouts; advocacy is refused until consent exists (P6)."""
    victim = _victim()
    sent = await submit(env, "police", honest(
        env, "police", "case_referral", body_for("case_referral", victim), case_id=CASE_ID,
        purpose="risk_management", subjects=[PERPETRATOR, victim.subject()]).jwe)
    assert sent.accepted and sent.decisions["advocacy"] == "deny", sent.brief()
    assert sent.delivered_to == {"probation", "nhs"}
    await quiesce(env)
    assert victim.address_line.lower() in await corpus(env, "probation")
    nhs = await corpus(env, "nhs")
    assert "marsh" in nhs
    assert not found_in(nhs, victim.locations())


async def test_honest_consent_recorders_still_record(env: Env) -> None:
    """Control: each agency the DSA names as a recorder records consent of its kind under its
    own reference; police's consent opens the advocacy referral, its withdrawal closes it."""
    victim = _victim()
    subjects = [PERPETRATOR, victim.subject()]
    for agency, kind in (("advocacy", "victim"), ("nhs", "intervention"), ("probation", "intervention")):
        _, before = await _ready(env)
        body = consent_body(kind, "given", recipients=["police"], purposes=["case_management"])
        sent = await submit(env, agency, honest(env, agency, "consent_change", body, case_id=CASE_ID,
                                                purpose="case_management", subjects=subjects,
                                                consent_ref=f"CONSENT-{agency.upper()}-{victim.tag.upper()}").jwe)
        assert sent.accepted and sent.delivered_to, sent.brief()
        await quiesce(env)
        assert any("consent" in t for t in state_diff(before, await snapshot(env))), \
            f"{agency}'s own consent was not recorded"
    ref = f"CONSENT-POLICE-{victim.tag.upper()}"
    assert await _advocacy_referral(env, victim, ref) == "deny"
    for status, expected in (("given", "permit"), ("withdrawn", "deny")):
        sent = await submit(env, "police", honest(env, "police", "consent_change", _advocacy_consent(status),
                                                  case_id=CASE_ID, purpose="case_management",
                                                  subjects=subjects, consent_ref=ref).jwe)
        assert sent.accepted, sent.brief()
        assert await _advocacy_referral(env, victim, ref) == expected


# === finding 1: consent forged or withdrawn by another agency =================================


async def test_nhs_cannot_forge_consent_with_a_ref_it_was_sent(env: Env) -> None:
    """Police record the victim's consent for case updates only and cite it on a cj_status_update
    every partner gets; nhs then 'records' a wider consent under that reference, about unrelated
    subjects. It must be refused whole, and police's advocacy referral must stay refused."""
    victim = _victim()
    ref = f"CONSENT-{victim.tag.upper()}-N"
    subjects = [PERPETRATOR, victim.subject()]
    narrow = _advocacy_consent("given", message_types=["cj_status_update", "case_closure"])
    assert (await submit(env, "police", honest(env, "police", "consent_change", narrow, case_id=CASE_ID,
                                               purpose="case_management", subjects=subjects,
                                               consent_ref=ref).jwe)).accepted
    update = await submit(env, "police", honest(env, "police", "cj_status_update",
                                                body_for("cj_status_update", victim), case_id=CASE_ID,
                                                purpose="risk_management", subjects=subjects,
                                                consent_ref=ref).jwe)
    assert "nhs" in update.delivered_to, update.brief()
    assert await _advocacy_referral(env, victim, ref) == "deny"  # out of the consent's scope

    head, before = await _ready(env)
    forged = honest(env, "nhs", "consent_change", _advocacy_consent("given"), case_id="NHS-CASE-0001",
                    purpose="case_management", subjects=[{"ref": "NHS-PT-000112", "category": "other"}],
                    consent_ref=ref)
    outcome = await submit(env, "nhs", forged.jwe)
    await assert_refused_cleanly(env, forged, outcome, head, before)
    assert await _advocacy_referral(env, victim, ref) == "deny", "nhs's forged consent opened the referral"


@pytest.mark.parametrize("attacker", ["probation", "nhs", "advocacy"])
async def test_forged_withdrawal_leaves_a_real_consent_in_force(env: Env, attacker: str) -> None:
    """Another agency 'withdraws' the consent police recorded (same reference, same subjects):
    refused whole; the victim's referral to advocacy still goes."""
    victim = _victim()
    ref = f"CONSENT-{victim.tag.upper()}-W"
    subjects = [PERPETRATOR, victim.subject()]
    assert (await submit(env, "police", honest(env, "police", "consent_change", _advocacy_consent("given"),
                                               case_id=CASE_ID, purpose="case_management",
                                               subjects=subjects, consent_ref=ref).jwe)).accepted
    assert await _advocacy_referral(env, victim, ref) == "permit"

    head, before = await _ready(env)
    forged = honest(env, attacker, "consent_change", _advocacy_consent("withdrawn"), case_id=CASE_ID,
                    purpose="case_management", subjects=subjects, consent_ref=ref)
    outcome = await submit(env, attacker, forged.jwe)
    await assert_refused_cleanly(env, forged, outcome, head, before)
    assert await _advocacy_referral(env, victim, ref) == "permit", f"{attacker} withdrew police's consent"


async def test_consent_covers_only_its_own_subject(env: Env) -> None:
    """P6 matches the message's subjects, not just the reference: a consent one victim gave
    does not open a referral about another."""
    victim, other = _victim(), _victim()
    ref = f"CONSENT-{victim.tag.upper()}-S"
    assert (await submit(env, "police", honest(env, "police", "consent_change", _advocacy_consent("given"),
                                               case_id=CASE_ID, purpose="case_management",
                                               subjects=[PERPETRATOR, victim.subject()],
                                               consent_ref=ref).jwe)).accepted
    assert await _advocacy_referral(env, victim, ref) == "permit"
    assert await _advocacy_referral(env, other, ref, [PERPETRATOR, other.subject()]) == "deny", \
        "one victim's consent opened a referral about another victim"


@examples(12)
@given(data=st.data())
async def test_only_the_recording_agency_may_change_a_consent(quiet_env: Env, data: st.DataObject) -> None:
    """Any agency, either kind of consent, given or withdrawn, about the same or unrelated
    subjects, under a reference another agency owns or a fresh one, over HTTP or AMQP:
    refused whole (state unchanged) unless the sender records that kind, owns the ref and
    names the person the decision is about."""
    env = quiet_env
    kind = data.draw(st.sampled_from(sorted(CONSENT_RECORDERS)), "kind")
    owner = data.draw(st.sampled_from(sorted(CONSENT_RECORDERS[kind])), "owner")
    attacker = data.draw(st.sampled_from(AGENCY_IDS), "attacker")
    target = data.draw(st.sampled_from(["owned", "fresh"]), "target")
    status = data.draw(st.sampled_from(["given", "withdrawn"]), "status")
    same_subjects = data.draw(st.booleans(), "same subjects")
    via = data.draw(st.sampled_from(["http", "amqp"]), "via")
    victim = _victim()
    subjects = [PERPETRATOR, victim.subject()]
    body_given = consent_body(kind, "given", recipients=["police", "probation", "advocacy"],
                              purposes=["case_management", "victim_support", "risk_management"])
    owned = f"CONSENT-{owner.upper()}-{victim.tag.upper()}"
    assert (await submit(env, owner, honest(env, owner, "consent_change", body_given, case_id=CASE_ID,
                                            purpose="case_management", subjects=subjects,
                                            consent_ref=owned).jwe)).accepted
    ref = owned if target == "owned" else f"CONSENT-{attacker.upper()}-{victim.tag.upper()}-F"
    # a decision must be about a subject of its kind (the victim, or the perpetrator)
    allowed = attacker in CONSENT_RECORDERS[kind] and (target == "fresh" or attacker == owner) \
        and same_subjects

    head, before = await _ready(env)
    body = consent_body(kind, status, recipients=["police", "probation", "advocacy", "nhs"],
                        purposes=["case_management", "victim_support", "risk_management"])
    forged = honest(env, attacker, "consent_change", body, case_id=CASE_ID, purpose="case_management",
                    subjects=subjects if same_subjects else [{"ref": "X482913", "category": "other"}],
                    consent_ref=ref)
    outcome = await submit(env, attacker, forged.jwe, via)
    if allowed:
        assert outcome.accepted and outcome.delivered_to, outcome.brief()
    else:
        await assert_refused_cleanly(env, forged, outcome, head, before)


# === finding 2: envelope claims unvalidated, unminimised, copied into the log ================


def _clear_claim_cases(tag: str, victim: Victim) -> dict[str, Envelope]:
    text = marker(tag)
    subjects = [PERPETRATOR, victim.subject()]
    return {
        "case_id": Envelope(case_id=text, subjects=subjects),
        "purpose": Envelope(case_id=CASE_ID, purpose=text, subjects=subjects),
        "consent_ref": Envelope(case_id=CASE_ID, subjects=subjects, consent_ref=text),
        "subject ref": Envelope(case_id=CASE_ID, subjects=[PERPETRATOR, {"ref": text, "category": "victim"}]),
        "subject category": Envelope(case_id=CASE_ID, subjects=[PERPETRATOR, {"ref": victim.ref,
                                                                              "category": text}]),
        "subject extra member": Envelope(case_id=CASE_ID, subjects=[
            PERPETRATOR, {**victim.subject(), "name": text}]),
        "unknown clear claim": Envelope(case_id=CASE_ID, subjects=subjects, extra={"note": text}),
        "victim address as a clear claim": Envelope(case_id=CASE_ID, subjects=subjects, extra={
            "victim_address": {"lines": [text], "town": "Southampton", "postcode": victim.postcode}}),
    }


@pytest.mark.parametrize("claim", list(_clear_claim_cases("t", Victim.make("t", 0))))
async def test_free_text_in_a_clear_claim_is_refused_and_never_recorded(env: Env, claim: str) -> None:
    """'Jane Smith, 14 Larkspur Road' in any clear claim: refused at ingress as malformed,
    audited, delivered to no one, and neither the log nor the problem document holds it."""
    tag, victim = new_tag(), _victim()
    envelope = _clear_claim_cases(tag, victim)[claim]
    head, before = await _ready(env)
    forged = forge_as(env, "police", "case_referral", body_for("case_referral", victim), envelope)
    outcome = await submit(env, "police", forged.jwe)
    await assert_not_recorded(env, outcome, tag, marker(tag))
    await assert_refused_cleanly(env, forged, outcome, head, before, ingress=True)
    assert tag not in await corpus(env, "nhs")


@pytest.mark.parametrize("where", ["unsigned disclosure", "signed unknown disclosure"])
async def test_disclosure_names_are_never_echoed(env: Env, where: str) -> None:
    """A disclosure named with the sender's own text is refused; the refusal reason in the log
    and the problem document name no part of it."""
    tag, victim = new_tag(), _victim()
    name = marker(tag)
    body = body_for("case_referral", victim)
    tamper = Tamper(unsigned=[(name, "x")]) if where == "unsigned disclosure" else None
    if where == "signed unknown disclosure":
        body[name] = "x"
    head, before = await _ready(env)
    forged = forge_as(env, "police", "case_referral", body,
                      Envelope(case_id=CASE_ID, subjects=[PERPETRATOR, victim.subject()]), tamper)
    outcome = await submit(env, "police", forged.jwe)
    assert outcome.status in (400, 422), outcome.brief()
    await assert_not_recorded(env, outcome, tag, name)
    await assert_refused_cleanly(env, forged, outcome, head, before)


async def test_nhs_never_receives_the_victim_reference(env: Env, case: Case) -> None:
    """In normal use (police's own adapter) nhs gets the perpetrator's reference at most: no
    victim subject, neither her police reference nor the broker's pseudonym of it."""
    await assert_nhs_never_saw(env, case.victim)


async def test_consent_ref_goes_only_where_consent_is_needed(env: Env, case: Case) -> None:
    """Police cite the victim's consent on a cj_status_update (as police's adapter does on every
    one): advocacy's flow needs it, nhs's does not and must not learn it."""
    sent = await submit(env, "police", honest(
        env, "police", "cj_status_update", body_for("cj_status_update", case.victim), case_id=CASE_ID,
        purpose="risk_management", subjects=case.subjects, consent_ref=case.consent_ref).jwe)
    assert "nhs" in sent.delivered_to, sent.brief()
    await quiesce(env)
    nhs = await corpus(env, "nhs")
    assert case.consent_ref.lower() not in nhs, "nhs received the victim's consent reference"


@pytest.mark.parametrize("claim", ["case_id", "consent_ref"])
async def test_victim_reference_in_a_code_shaped_claim_never_reaches_nhs(env: Env, claim: str) -> None:
    """The victim's reference is a valid code; police put it in case_id or consent_ref as well
    as in subjects. nhs must still not receive it (refused, or not delivered to nhs)."""
    victim = _victim()
    code = f"VIC-{victim.tag.upper()}-1"
    subject = {"ref": code, "category": "victim"}
    envelope = Envelope(case_id=CASE_ID, subjects=[PERPETRATOR, subject])
    setattr(envelope, claim, code)
    forged = forge_as(env, "police", "case_referral", body_for("case_referral", victim), envelope)
    await submit(env, "police", forged.jwe)
    await quiesce(env)
    assert code.lower() not in await corpus(env, "nhs")


def _override(**changes: Any) -> dict[str, Any]:
    override: dict[str, Any] = {
        "justification": {"risk_to": "victim", "harm": "serious_harm",
                          "consent_not_sought_reason": "would_increase_risk"},
        "legal_basis": "DPA 2018 s35(5) + Sch 8 para 4",
        "authoriser": {"id": "a-1", "role": "caldicott_guardian"},
        "subject_informed": False, "expires_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
        "data_classes": ["children"], "recipients": ["probation"]}
    override.update(changes)
    return override


@pytest.mark.parametrize("kind", ["names victim location for nhs", "victim data in its text"])
async def test_override_cannot_carry_victim_data_to_nhs(env: Env, kind: str) -> None:
    """An override asking for victim_location for nhs denies nhs's flow (the hard rule); an
    override whose free text holds the victim's address and phone must not carry them to nhs
    either; and neither its text nor a marker in its codes is recorded."""
    tag, victim = new_tag(), _victim()
    if kind == "names victim location for nhs":
        override = _override(data_classes=["victim_location", "victim_safety_plan"], recipients=["nhs"])
    else:
        override = _override(legal_basis=f"{victim.address_line}, {victim.postcode}",
                             authoriser={"id": victim.phone, "role": "caldicott_guardian"},
                             justification={"risk_to": "victim", "harm": marker(tag),
                                            "consent_not_sought_reason": marker(tag)})
    forged = forge_as(env, "police", "case_referral", body_for("case_referral", victim),
                      Envelope(case_id=CASE_ID, subjects=[PERPETRATOR], override=override))
    outcome = await submit(env, "police", forged.jwe)
    await assert_not_recorded(env, outcome, tag)
    await assert_nhs_never_saw(env, victim)


@pytest.mark.parametrize("attacker", ["probation", "nhs", "advocacy"])
async def test_correction_of_another_agencys_message_is_refused(env: Env, case: Case, attacker: str) -> None:
    """A correction_notice of police's referral, by anyone but police: refused (P10), audited,
    nothing delivered, nothing changed."""
    head, before = await _ready(env)
    body = body_for("correction_notice", case.victim, corrects_message_id=case.referral_id,
                    corrects_masp_type="case_referral")
    forged = forge_as(env, attacker, "correction_notice", body,
                      Envelope(case_id=CASE_ID, subjects=case.subjects))
    outcome = await submit(env, attacker, forged.jwe)
    await assert_refused_cleanly(env, forged, outcome, head, before)


# --- the same, with everything at once -------------------------------------------------------


def _hostile_value(tag: str, victim: Victim) -> st.SearchStrategy[Any]:
    return st.sampled_from([
        marker(tag), victim.address_line, victim.postcode, victim.phone, victim.email, victim.ref,
        *FOREIGN_REFS, "hiow-masp-2026-0147", "A1-" * 20 + "B", "", "HIOW\u20102026", 2026,
        ["HIOW-1"], {"ref": marker(tag)}, None])


def _must_refuse(env: Env, attacker: str, masp_type: str, members: dict[str, Any],
                 body: dict[str, Any], case: Case) -> tuple[str | None, bool]:
    """Why the fixed broker must refuse this, and whether at ingress (malformed)."""
    if set(members) - ENVELOPE:
        return "unknown clear claim", True
    if not code_ok(members.get("case_id"), 40):
        return "case_id", True
    purpose = members.get("purpose")
    if not (isinstance(purpose, str) and PURPOSE.match(purpose) and purpose in _purposes(env)):
        return "purpose", True
    if not subjects_ok(members.get("subjects")):
        return "subjects", True
    if "consent_ref" in members and not code_ok(members["consent_ref"], 64):
        return "consent_ref", True
    if masp_type == "consent_change":
        kind = "victim" if "victim_consent" in body else "intervention"
        ref = members.get("consent_ref")
        if ref is None:
            return "consent_change without consent_ref", False
        if attacker not in CONSENT_RECORDERS[kind]:
            return f"{attacker} does not record {kind} consent", False
        if case.owned.get(str(ref), attacker) != attacker:
            return "consent_ref owned by another agency", False
    if masp_type == "correction_notice" and not (
            attacker == "police" and body.get("corrects_message_id") == case.referral_id):
        return "correction of a message the sender did not send", False
    return None, False


@examples(25)
@given(data=st.data())
async def test_a_compromised_partner_cannot_leak_through_the_envelope(quiet_env: Env, case: Case,
                                                                      data: st.DataObject) -> None:
    """Each agency in turn as the attacker, every message type, random envelopes: free text,
    the victim's address and phone, other agencies' references in every clear claim, unknown
    claims, overrides with free text or naming victim_location for nhs, forged consent and
    corrections of others' messages; over HTTP or AMQP. Whatever happens: nhs never gets the
    victim's reference or whereabouts; no leaf and no problem holds the sender's text; what
    the fixed envelope refuses is refused (at ingress when malformed); every refusal is
    audited and changes no working state."""
    env = quiet_env
    tag, victim = new_tag(), _victim()
    attacker = data.draw(st.sampled_from(AGENCY_IDS), "attacker")
    own = _clause_types(env, attacker)
    masp_type = data.draw(st.one_of(st.sampled_from(own), st.sampled_from(sorted(MESSAGE_TYPES))), "type")
    hostile = _hostile_value(tag, victim)
    subjects: Any = [PERPETRATOR, victim.subject()]
    changes: dict[str, Any] = {}
    if masp_type == "consent_change":
        kind = data.draw(st.sampled_from(sorted(CONSENT_RECORDERS)), "consent kind")
        changes = consent_body(kind, data.draw(st.sampled_from(["given", "withdrawn"]), "status"),
                               recipients=["advocacy", "nhs"], purposes=["case_management", "victim_support"])
    if masp_type == "correction_notice":
        changes = {"corrects_message_id": data.draw(st.sampled_from([case.referral_id, wire.new_id()]),
                                                    "corrects"),
                   "corrects_masp_type": "case_referral"}
    body = body_for(masp_type, victim, **changes)

    purposes = _clause_purposes(env, attacker, masp_type) or ["risk_management"]
    envelope = Envelope(case_id=CASE_ID, purpose=data.draw(st.sampled_from(purposes), "purpose"),
                        subjects=subjects)
    corrupted = data.draw(st.sets(st.sampled_from(["case_id", "purpose", "consent_ref"])), "corrupted")
    if "consent_ref" not in corrupted:
        envelope.consent_ref = data.draw(st.sampled_from(
            [None, case.consent_ref, f"CONSENT-{next(_counter):06d}"]), "consent_ref")
    for claim in sorted(corrupted):
        setattr(envelope, claim, data.draw(hostile, claim))
    mutation = data.draw(st.sampled_from(["none", "ref", "category", "extra member", "extra subject",
                                          "not a list"]), "subjects")
    if mutation == "ref":
        envelope.subjects = [*subjects, {"ref": data.draw(hostile, "subject ref"), "category": "other"}]
    elif mutation == "category":
        envelope.subjects = [PERPETRATOR, {"ref": victim.ref, "category": data.draw(
            st.sampled_from([marker(tag), "Victim", "victim ", "perpetrator"]), "category")}]
    elif mutation == "extra member":
        envelope.subjects = [PERPETRATOR, {**victim.subject(), "name": marker(tag)}]
    elif mutation == "extra subject":
        envelope.subjects = [*subjects, {"ref": "X482913", "category": "other"}]
    elif mutation == "not a list":
        envelope.subjects = marker(tag)
    envelope.extra = data.draw(st.sampled_from([
        {}, {}, {"note": marker(tag)}, {"victim_phone": victim.phone},
        {"victim_address": {"lines": [victim.address_line], "postcode": victim.postcode}}]), "extra")
    envelope.override = data.draw(st.sampled_from([
        None, None, _override(),
        _override(data_classes=["victim_location", "victim_safety_plan"], recipients=["nhs", "probation"]),
        _override(legal_basis=f"{victim.address_line} {victim.postcode}", recipients=["nhs"]),
        _override(justification={"risk_to": marker(tag), "harm": marker(tag),
                                 "consent_not_sought_reason": marker(tag)}),
        _override(authoriser={"id": victim.email, "role": marker(tag)})]), "override")
    via = data.draw(st.sampled_from(["http", "amqp"]), "via")

    head, before = await _ready(env)
    forged = forge_as(env, attacker, masp_type, body, envelope)
    outcome = await submit(env, attacker, forged.jwe, via)

    await assert_not_recorded(env, outcome, tag, victim.tag)  # the marker, and this victim's values
    why, ingress = _must_refuse(env, attacker, masp_type, envelope.claims(), body, case)
    if why is not None:
        assert outcome.refused, f"accepted although {why}: {outcome.brief()}"
        if ingress:
            assert outcome.status in (400, 422) and outcome.doc.get("code") in MALFORMED, \
                f"{why}: {outcome.brief()}"
    if why is not None or not outcome.accepted:
        await assert_refused_cleanly(env, forged, outcome, head, before)
    await assert_nhs_never_saw(env, victim, case.victim)


# === finding 3: a DSA lint refuses must not run ===============================================


def _overlapping_dsa(folder: Path) -> Path:
    """The shipped agreement plus an addendum whose clause aa-police-advocacy overlaps
    cr-police-advocacy (same flow and purposes, other classes) without requires_consent."""
    folder.mkdir()
    shipped = REPO / "deploy" / "dsa" / "hiow-masp.yaml"
    shutil.copy(shipped, folder / "hiow-masp.yaml")
    base = yaml.safe_load(shipped.read_text("utf-8"))
    clause = next(c for c in base["clauses"] if c["id"] == "cr-police-advocacy")
    addendum = {
        "id": "hiow-aa-addendum", "version": 1, "title": "Addendum: police referrals to advocacy",
        "status": "active", "valid_from": base["valid_from"], "valid_until": base["valid_until"],
        "review_date": base["review_date"], "parties": ["police", "advocacy"],
        "purposes": clause["purposes"],
        "clauses": [{"id": "aa-police-advocacy", "from": "police", "to": ["advocacy"],
                     "message_types": ["case_referral"], "purposes": clause["purposes"],
                     "regime": clause["regime"], "lawful_basis": clause["lawful_basis"],
                     "data_classes": ["victim_identity", "victim_location", "risk_screening"],
                     "retention_days": clause["retention_days"]}]}
    (folder / "hiow-aa-addendum.yaml").write_text(yaml.safe_dump(addendum, sort_keys=False), "utf-8")
    findings = policy.lint(policy.load_bundle(folder))
    assert any(f.severity == "error" and f.rule == "clause.overlap" for f in findings)  # what lint says
    return folder


async def test_broker_refuses_to_open_on_a_dsa_lint_rejects(tmp_path: Path, database_url: str) -> None:
    """The broker refuses to open on a DSA bundle with a lint error (any MaspError or DsaInvalid):
    it would otherwise rank the overlapping clauses and run one of them."""
    settings_ = make_settings(tmp_path, database_url).model_copy(
        update={"dsa_dir": _overlapping_dsa(tmp_path / "dsa")})
    init_state(settings_, datetime.now(UTC).date())
    try:
        service = await BrokerService.open(settings_)
    except (MaspError, DsaInvalid):
        return
    await service.close()
    pytest.fail("the broker opened on a DSA that `masp policy lint` refuses")


async def test_overlapping_clause_cannot_skip_consent(env: Env, tmp_path: Path) -> None:
    """Were such a bundle loaded anyway, police's referral must not reach advocacy without the
    victim's consent: the engine denies a flow two disagreeing clauses cover (clause.overlap)."""
    env.service.exchange.bundle = policy.load_bundle(_overlapping_dsa(tmp_path / "dsa"))
    victim = _victim()
    head = await audit_head(env)
    sent = await submit(env, "police", honest(
        env, "police", "case_referral", body_for("case_referral", victim), case_id=CASE_ID,
        purpose="risk_management", subjects=[PERPETRATOR, victim.subject()]).jwe)
    assert sent.accepted, sent.brief()
    await quiesce(env)
    assert victim.address_line.lower() not in await corpus(env, "advocacy"), \
        "advocacy received the victim's address without her consent"
    assert sent.decisions.get("advocacy") == "deny"
    entry = next(d for d in await leaves(env, head) if d.get("recipient") == "advocacy"
                 and d.get("kind") in ("refused", "disclosed"))
    assert "clause.overlap" in entry.get("rules", []), entry.get("rules")


# === finding 4: SD-JWT parsing as strict as RFC 9901 ==========================================


async def test_duplicate_digest_in_sd_is_refused(env: Env) -> None:
    """An issuer-signed ``_sd`` listing one digest twice: RFC 9901 says a digest met more than once
    rejects the SD-JWT; the broker must not pick one of them."""
    victim = _victim()
    head, before = await _ready(env)
    forged = forge_as(env, "police", "case_referral", body_for("case_referral", victim),
                      Envelope(case_id=CASE_ID, subjects=[PERPETRATOR]), Tamper(duplicate_digest=True))
    outcome = await submit(env, "police", forged.jwe)
    assert outcome.status == 400, outcome.brief()
    await assert_refused_cleanly(env, forged, outcome, head, before)


_NOT_BASE64URL = "!*$%&()@,;: \t"


@pytest.mark.parametrize("where", ["disclosure", "jwt payload"])
@examples(3)
@given(junk=st.lists(st.sampled_from(_NOT_BASE64URL), min_size=1, max_size=2).map(lambda c: "".join(c) * 4))
async def test_characters_outside_base64url_are_refused(quiet_env: Env, where: str, junk: str) -> None:
    """A segment with characters outside the base64url alphabet (RFC 4648 §5) is refused,
    not decoded by skipping them, even where the signature or digest covers the odd text."""
    env = quiet_env
    victim = _victim()
    tamper = Tamper(junk_in_disclosure=junk) if where == "disclosure" else Tamper(junk_in_jwt_payload=junk)
    head, before = await _ready(env)
    forged = forge_as(env, "police", "case_referral", body_for("case_referral", victim),
                      Envelope(case_id=CASE_ID, subjects=[PERPETRATOR]), tamper)
    outcome = await submit(env, "police", forged.jwe)
    assert outcome.status in (400, 401), f"{where} with {junk!r}: {outcome.brief()}"
    await assert_refused_cleanly(env, forged, outcome, head, before)
