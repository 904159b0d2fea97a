"""The clear ``subjects`` claim: pseudonyms and categories only."""

from __future__ import annotations

import pydantic
import pytest

from schemas import Subject, SubjectCategory


def test_subject_categories() -> None:
    assert [c.value for c in SubjectCategory] == [
        "suspect",
        "convicted",
        "victim",
        "witness",
        "child",
        "other",
    ]


def test_subject_is_a_pseudonym_and_a_category() -> None:
    subject = Subject.model_validate({"ref": "psn:3f9a1c2b7d", "category": "victim"})
    assert subject.category is SubjectCategory.VICTIM
    assert subject.model_dump(mode="json") == {"ref": "psn:3f9a1c2b7d", "category": "victim"}


@pytest.mark.parametrize(
    "raw",
    [
        {"ref": "psn:3f9a1c2b7d", "category": "perpetrator"},
        {"ref": "Claire Hutton", "category": "victim"},
        {"ref": "psn:3f9a1c2b7d", "category": "victim", "name": "Claire"},
        {"category": "victim"},
    ],
)
def test_bad_subjects_are_refused(raw: dict[str, str]) -> None:
    with pytest.raises(pydantic.ValidationError):
        Subject.model_validate(raw)
