"""A purpose no agreement names for this sender and message type is refused before policy,
listing the purposes that would do: every recipient denied would look like a silent
non-delivery. Audited; nothing delivered; a purpose that is agreed still goes through."""

from __future__ import annotations

from tests.security.conftest import Api

PROBLEMS = "https://masp.example/problems/"


async def test_a_purpose_not_agreed_for_the_flow_is_422_listing_the_agreed_ones(api: Api) -> None:
    head = await api.head()
    # declared by the agreements (for other flows), but no clause lets police refer for it
    _, jwe = api.referral("police", "intervention_referral", purpose="risk_management")
    resp = await api.post_message(jwe)
    assert resp.status_code == 422, resp.text
    problem = resp.json()
    assert problem["type"] == PROBLEMS + "purpose-not-agreed"
    assert problem["detail"] == ("no agreement lets police send a intervention_referral for this purpose; "
                                 "agreed purposes: intervention")
    assert await api.deliveries() == 0
    refused = [e for e in await api.entries(after=head) if e.kind == "refused"]
    assert len(refused) == 1 and refused[0].actor.agency == "police"
    assert refused[0].rules == ("ingress.purpose-not-agreed",)

    _, jwe = api.referral("police", "intervention_referral", purpose="intervention")
    assert (await api.post_message(jwe)).status_code == 202


async def test_a_mistyped_purpose_is_the_same_422_and_names_only_the_agreed_ones(api: Api) -> None:
    head = await api.head()
    _, jwe = api.referral("police", "case_referral", purpose="risk_managment")
    resp = await api.post_message(jwe)
    assert resp.status_code == 422, resp.text
    problem = resp.json()
    assert problem["code"] == "purpose-not-agreed" and problem["claim"] == "purpose"
    assert problem["agreed_purposes"] == ["case_management", "intervention", "risk_management",
                                          "safeguarding", "victim_support"]
    assert "managment" not in resp.text  # what the sender wrote is not repeated
    assert await api.deliveries() == 0
    assert [e.rules for e in await api.entries(after=head) if e.kind == "refused"] == [
        ("ingress.purpose-not-agreed",)]
