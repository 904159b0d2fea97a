"""The police records system's codes, as the occurrence export writes them, and their canonical values."""

from __future__ import annotations

CJ_STATUS = {
    "UNDER_INVESTIGATION": "under_investigation",
    "ARRESTED": "arrested",
    "BAILED": "bailed",
    "CHARGED": "charged",
    "NFA": "nfa",
    "CONVICTED": "convicted",
    "SENTENCED": "sentenced",
    "RELEASED": "released",
    "RECALLED": "recalled",
}
#: status an event puts the suspect in, when the event does not say
EVENT_STATUS = {
    "ARREST": "arrested",
    "BAIL": "bailed",
    "CHARGE": "charged",
    "NFA": "nfa",
    "CONVICTION": "convicted",
    "SENTENCE": "sentenced",
}
SPO_EVENTS = {
    "SPO_APPLIED": "applied",
    "SPO_GRANTED": "full",
    "SPO_INTERIM": "interim",
    "SPO_VARIED": "varied",
    "SPO_DISCHARGED": "discharged",
    "SPO_BREACHED": "breached",
}
ORDER_KIND = {
    "SPO": "spo",
    "INTERIM_SPO": "interim_spo",
    "RESTRAINING_ORDER": "restraining_order",
    "NON_MOLESTATION_ORDER": "non_molestation_order",
    "DAPO": "domestic_abuse_protection_order",
}
ORDER_STATUS = {v.upper(): v for v in ("applied", "interim", "full", "varied", "discharged", "breached")}
BAIL_KIND = {
    "PRE_CHARGE": "pre_charge_police_bail",
    "POST_CHARGE": "post_charge_police_bail",
    "COURT": "court_bail",
}
CONCERN = {"LOW": "low", "MEDIUM": "medium", "STANDARD": "low", "HIGH": "high"}
SDASH = {"Y": "yes", "YES": "yes", "N": "no", "NO": "no", "NK": "not_known", "NOT_KNOWN": "not_known"}
RELATIONSHIP = {
    "EX_PARTNER": "ex_partner",
    "CURRENT_PARTNER": "current_partner",
    "FAMILY": "family_member",
    "FRIEND": "friend",
    "ACQUAINTANCE": "acquaintance",
    "COLLEAGUE": "colleague",
    "NEIGHBOUR": "neighbour",
    "ONLINE": "online_contact",
    "STRANGER": "stranger",
    "OTHER": "other",
}
HEALTH = {
    "MENTAL_HEALTH": "mental_health",
    "DRUGS": "substance_misuse",
    "ALCOHOL": "alcohol_misuse",
    "SELF_HARM": "self_harm_or_suicidal_ideation",
    "OTHER": "other",
}
HEALTH_SOURCE = {
    "SELF_REPORTED": "self_reported",
    "OFFICER_OBSERVATION": "referrer_observation",
    "RECORDS": "professional_record",
}
CONSENT_PURPOSES = {
    "VICTIM_SUPPORT": "victim_support",
    "SAFEGUARDING": "safeguarding",
    "RISK_MANAGEMENT": "risk_management",
}
SHARE_WITH = {"ADVOCACY": "advocacy", "PROBATION": "probation"}
PNC = r"[0-9]{2}(?:[0-9]{2})?/[0-9]{1,7}[A-Za-z]"

#: canonical field -> where it comes from in the export, for reports
SOURCES = {
    "perpetrator_name": "occurrence.suspect.forenames/surname",
    "perpetrator_police_id": "occurrence.suspect.pnc_id",
    "perpetrator_date_of_birth": "occurrence.suspect.dob",
    "perpetrator_address": "occurrence.suspect.address",
    "perpetrator_description": "occurrence.suspect.description",
    "victim_name": "occurrence.victim.forenames/surname",
    "victim_address": "occurrence.victim.address",
    "victim_phone": "occurrence.victim.phone",
    "victim_email": "occurrence.victim.email",
    "victim_workplace": "occurrence.victim.workplace",
    "victim_safe_contact_times": "occurrence.victim.safe_contact",
    "victim_views": "occurrence.victim.views",
    "offence_codes": "offences[].ho_code",
    "crime_reference": "crime_references",
    "behaviour_summary": "occurrence.mo_summary",
    "sdash_yes_count": "occurrence.risk.sdash.answers",
    "sdash_answers": "occurrence.risk.sdash.answers",
    "sash_concern_level": "occurrence.risk.sash_concern",
    "orders": "orders",
    "bail_conditions": "bail",
    "exclusion_zones": "exclusion_zones",
    "next_hearing": "next_hearing",
    "children": "occurrence.children",
    "referrer": "occurrence.officer_in_case",
    "victim_consent": "occurrence.victim.consent",
    "event_summary": "summary",
    "effective_date": "date",
}
