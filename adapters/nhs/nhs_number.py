"""The NHS number check digit (modulus 11), as the NHS Data Dictionary defines it."""

from __future__ import annotations


def is_valid_nhs_number(value: str) -> bool:
    """Ten digits (spaces allowed as written: ``943 476 5919``) whose last is the check digit.

    Weights 10..2 over the first nine digits; check = 11 - (sum mod 11); 11 means 0 and
    10 means the number is invalid (no such number is ever issued).
    """
    digits = value.replace(" ", "")
    if len(digits) != 10 or not digits.isascii() or not digits.isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(digits[:9], range(10, 1, -1), strict=True))
    check = 11 - total % 11
    if check == 11:
        check = 0
    return check != 10 and check == int(digits[9])
