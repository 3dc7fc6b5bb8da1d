"""Phone numbers: parsed and normalised to E.164 by Google's libphonenumber port."""

from __future__ import annotations

import re

import phonenumbers

from shared.errors import InvalidNumber

MAX_INPUT = 64
# What a vanity number like "+1 415 CALL-NOW" is written with.
VANITY = re.compile(r"[+0-9A-Za-z ().-]+")


def normalise_number(
    raw: object, default_region: str | None = None, *, form_encoded: bool = False
) -> str:
    """E.164 for a valid number, or ``InvalidNumber`` saying what is wrong.

    ``form_encoded``: ``raw`` came from an ``application/x-www-form-urlencoded`` body, where
    an unencoded ``+`` (``curl -d number=+1415…``) arrives as a space. Such a number is
    refused with the way to send it, rather than read as a national number or refused for
    lacking a country code.

    Letters are refused too: libphonenumber would dial "+1 415 CALL-NOW" as its keypad
    digits, which the caller may not have meant.
    """
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise InvalidNumber("The 'number' parameter is required.")
    if not isinstance(raw, str):
        raise InvalidNumber("The 'number' must be a string such as '+14155550123'.")
    text = raw.strip()
    if len(text) > MAX_INPUT:
        raise InvalidNumber(f"The number is longer than {MAX_INPUT} characters.")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise InvalidNumber("The number contains control characters.")
    if form_encoded and raw.startswith(" ") and text[:1].isdigit():
        raise InvalidNumber(
            f"The number arrived as '{raw}', starting with a space: in a form-encoded body an "
            f"unencoded '+' means a space. URL-encode the plus as %2B, for example "
            f"curl --data-urlencode 'number=+{text}'."
        )
    letters = any(ch.isalpha() for ch in text)
    try:
        parsed = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as exc:
        if letters and any(ch.isdigit() for ch in text):
            raise InvalidNumber("Letters are not accepted in numbers; dial the digits.") from None
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
    if letters and not parsed.extension:  # "ext." before an extension is not a vanity number
        keypad = phonenumbers.convert_alpha_characters_in_number(text)
        instead = f" instead: {keypad}" if VANITY.fullmatch(text) else ""
        raise InvalidNumber(f"Letters are not accepted in numbers; dial the digits{instead}.")
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
