"""Phone numbers: parsed and normalised to E.164 by Google's libphonenumber port."""

from __future__ import annotations

import phonenumbers

from shared.errors import InvalidNumber

MAX_INPUT = 64


def normalise_number(raw: object, default_region: str | None = None) -> str:
    """E.164 for a valid number, or ``InvalidNumber`` saying what is wrong."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise InvalidNumber("The 'number' parameter is required.")
    if not isinstance(raw, str):
        raise InvalidNumber("The 'number' must be a string such as '+14155550123'.")
    text = raw.strip()
    if len(text) > MAX_INPUT:
        raise InvalidNumber(f"The number is longer than {MAX_INPUT} characters.")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise InvalidNumber("The number contains control characters.")
    try:
        parsed = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as exc:
        reasons = {
            phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: (
                "it has no valid country code; write it in international form, e.g. +14155550123"
            ),
            phonenumbers.NumberParseException.NOT_A_NUMBER: "it is not a phone number",
            phonenumbers.NumberParseException.TOO_SHORT_NSN: "it is too short",
            phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "it is too short",
            phonenumbers.NumberParseException.TOO_LONG: "it is too long",
        }
        reason = reasons.get(exc.error_type, str(exc))
        raise InvalidNumber(f"The number cannot be called: {reason}.") from None
    if not phonenumbers.is_possible_number(parsed):
        raise InvalidNumber("The number cannot be called: it has the wrong length for its country.")
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidNumber("The number cannot be called: it is not a valid number in its country.")
    if parsed.extension:
        raise InvalidNumber(
            "The number has an extension, which a call session cannot dial; "
            "send the main number only."
        )
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
