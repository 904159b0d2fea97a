"""The DSA policy engine: what each partner may see of a message, and why.

Callers use this surface only; YAML parsing and the individual rules are plumbing::

    bundle = load_enforced_bundle(settings.dsa_dir, today)  # DsaRejected on any lint error
    for recipient in candidate_recipients(bundle, sender, masp_type):
        decision = evaluate(bundle, PolicyRequest(sender, recipient, ...))

`load_bundle` reads files without judging them, for lint and explain; anything that
enforces a DSA loads it with `load_enforced_bundle`.
"""

from broker.policy.dsa import (
    Clause,
    ConsentKind,
    DataSharingAgreement,
    DsaBundle,
    DsaInvalid,
    load_bundle,
)
from broker.policy.engine import (
    Classification,
    ClauseRef,
    Decision,
    Explanation,
    Outcome,
    candidate_recipients,
    evaluate,
    explain,
    receivable_classes,
)
from broker.policy.envelope import SubjectView, sees_consent_ref, subject_view
from broker.policy.lint import DsaRejected, LintFinding, lint, load_enforced_bundle
from broker.policy.rules import (
    Authoriser,
    ConsentState,
    ConsentStatus,
    Justification,
    Override,
    PolicyRequest,
)

__all__ = [
    "Authoriser",
    "Classification",
    "Clause",
    "ClauseRef",
    "ConsentKind",
    "ConsentState",
    "ConsentStatus",
    "DataSharingAgreement",
    "Decision",
    "DsaBundle",
    "DsaInvalid",
    "DsaRejected",
    "Explanation",
    "Justification",
    "LintFinding",
    "Outcome",
    "Override",
    "PolicyRequest",
    "SubjectView",
    "candidate_recipients",
    "evaluate",
    "explain",
    "lint",
    "load_bundle",
    "load_enforced_bundle",
    "receivable_classes",
    "sees_consent_ref",
    "subject_view",
]
