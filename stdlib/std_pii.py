"""Detectors of personal data in text, behind std/filters' redact_pii and std/validators' no_pii.

Each kind has a candidate pattern and a check that a candidate must pass:

- EMAIL    local@domain.tld
- IBAN     country code, check digits, account: the country's length and the mod-97 check
- CARD     13–19 digits, written whole or in the groups cards are printed in (4-4-4-4,
           4-6-5, …); the Luhn check and an issuer prefix (Visa, Mastercard, Amex,
           Discover, JCB, Diners, UnionPay, Maestro); a bare digit run right after a
           word such as "order" or "tracking" is an id, not a card
- SSN      a US social security number, 3-2-4 digits with dashes
- IP       IPv4 (four octets 0–255; not after "version", "v", "section" …) and IPv6
           (validated by the ipaddress module)
- PHONE    "+" or "00" international numbers (8–15 digits, E.164), North American
           (NXX) NXX-XXXX, national numbers with a trunk 0 (10–12 digits, grouped),
           and looser digit runs only right after a word such as "phone", "call", "tel"
- ADDRESS  street lines: "221B Baker Street", "1600 Pennsylvania Avenue NW, Washington,
           DC 20500", "Hauptstraße 5, 10115 Berlin", "12 rue de Rivoli, 75001 Paris",
           "Calle Mayor 3", "P.O. Box 123"

Ordinary numbers are left alone by construction: dates, times, prices, version
numbers, years and order ids either do not fit a candidate pattern or fail its
check (digit counts, separators, checksums, context words).

When candidates overlap, the kind listed first above wins. Everything is
linear in the text's length (every pattern is anchored on a cheap first
character and bounded in its repetitions).
"""

from __future__ import annotations

import bisect
import ipaddress
import re
from dataclasses import dataclass

KINDS = ("EMAIL", "IBAN", "CARD", "SSN", "IP", "PHONE", "ADDRESS")
TOKENS = {kind: f"[{kind}]" for kind in KINDS}
_PRIORITY = {kind: i for i, kind in enumerate(KINDS)}


@dataclass(frozen=True)
class Found:
    """One piece of personal data: its kind and where it is (``text[start:end]``)."""

    kind: str
    start: int
    end: int


def find_pii(text: str) -> list[Found]:
    """Every piece of personal data in ``text``, in order, never overlapping."""
    numbers = _zones(text, _DIGIT_RUN)
    candidates = [found for detect in _DETECTORS for found in detect(text, numbers)]
    candidates += _emails(text, _zones(text, _AT))
    return _resolve(candidates)


# Every kind but EMAIL holds a digit, and every e-mail address an "@": the patterns run only
# on the text around those (Python's regex engine scans about 30 MB/s per pattern, so scanning
# long stretches of prose once per pattern would cost more than everything else).
_DIGIT_RUN = re.compile(r"\d+")
_AT = re.compile(r"@")
_REACH = 160  # characters of a match that may lie before its first or after its last digit


def _zones(text: str, seed: re.Pattern) -> list[tuple[int, int]]:
    zones: list[list[int]] = []
    for m in seed.finditer(text):
        start, end = max(0, m.start() - _REACH), min(len(text), m.end() + _REACH)
        if zones and start <= zones[-1][1]:
            zones[-1][1] = end
        else:
            zones.append([start, end])
    return [(start, end) for start, end in zones]


def _matches(pattern: re.Pattern, text: str, zones: list[tuple[int, int]]):
    for start, end in zones:
        yield from pattern.finditer(text, start, end)


def redact(text: str, tokens: dict[str, str] | None = None) -> str:
    """``text`` with each piece of personal data replaced by its kind's token (``[EMAIL]`` …)."""
    tokens = tokens or TOKENS
    out, last = [], 0
    for found in find_pii(text):
        out.append(text[last:found.start])
        out.append(tokens[found.kind])
        last = found.end
    out.append(text[last:])
    return "".join(out)


def _resolve(candidates: list[Found]) -> list[Found]:
    """Higher-priority kinds first, then earlier and longer; a candidate overlapping one kept is dropped."""
    kept: list[Found] = []
    taken: list[tuple[int, int]] = []  # sorted, disjoint
    for found in sorted(candidates, key=lambda f: (_PRIORITY[f.kind], f.start, f.start - f.end)):
        i = bisect.bisect_left(taken, (found.start, found.start))
        before = taken[i - 1] if i > 0 else None
        after = taken[i] if i < len(taken) else None
        if (before and before[1] > found.start) or (after and after[0] < found.end):
            continue
        taken.insert(i, (found.start, found.end))
        kept.append(found)
    return sorted(kept, key=lambda f: f.start)


def _preceding(text: str, start: int, width: int = 28) -> str:
    """The lower-cased text just before ``start`` on the same line."""
    head = text[max(0, start - width):start]
    return head[head.rfind("\n") + 1:].lower()


def _digits(s: str) -> str:
    return "".join(ch for ch in s if ch.isdigit())


# ----------------------------------------------------------------------------- email
_EMAIL = re.compile(
    r"(?<![\w.+%'-])[A-Za-z0-9][A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{0,63}@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,8}[A-Za-z]{2,24}(?![\w-])")


def _emails(text: str, zones):
    return [Found("EMAIL", m.start(), m.end()) for m in _matches(_EMAIL, text, zones)]


# ------------------------------------------------------------------------------ iban
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22,
    "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25,
    "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27,
    "ST": 25, "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}
# Written whole, or in groups of four separated by one space (the last group shorter).
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?:[A-Za-z0-9]{11,30}|(?: [A-Za-z0-9]{4}){2,7}(?: [A-Za-z0-9]{1,3})?)"
                   r"(?![A-Za-z0-9])")


def iban_valid(compact: str) -> bool:
    """The country's length and the ISO 13616 mod-97 check."""
    compact = compact.upper()
    if IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact.isalnum():
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _ibans(text: str, zones):
    for m in _matches(_IBAN, text, zones):
        written = m.group()
        compact = written.replace(" ", "")
        length = IBAN_LENGTHS.get(compact[:2].upper())
        if length is None or len(compact) < length:
            continue
        # The pattern may run on into a following group of letters or digits: cut at the
        # country's length, when that falls at the end of a group.
        end, seen = 0, 0
        while seen < length:
            if written[end] != " ":
                seen += 1
            end += 1
        if end < len(written) and written[end] != " ":
            continue
        if iban_valid(compact[:length]):
            yield Found("IBAN", m.start(), m.start() + end)


# ------------------------------------------------------------------------------ card
_CARD = re.compile(r"(?<![\w+.,/-])(?:\d{13,19}|\d{4}([ -])\d{4}\1\d{4}\1\d{4}(?:\1\d{1,3})?|\d{4}([ -])\d{6}\2\d{4,5})"
                   r"(?![\w-]|[.,/]\d)")
_ID_WORDS = re.compile(r"\b(?:order|invoice|tracking|shipment|parcel|ticket|case|booking|confirmation|reference|ref"
                       r"|sku|isbn|ean|upc|gtin|barcode|serial|account id|customer id|transaction|txn|id|code|product|item|part|model"
                       r"|lot|batch|article)\W{0,4}(?:no\.?|"
                       r"number|nr\.?|#)?\W{0,3}$")
_CARD_WORDS = re.compile(r"card|visa|mastercard|amex|discover|credit|debit|\bcc\b|pan\b")


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _issuer_known(digits: str) -> bool:
    """An issuer identification prefix of a payment card network with a length it issues."""
    n, p2, p4, p6 = len(digits), int(digits[:2]), int(digits[:4]), int(digits[:6])
    return any((
        digits[0] == "4" and n in (13, 16, 19),                         # Visa
        (51 <= p2 <= 55 or 2221 <= p4 <= 2720) and n == 16,             # Mastercard
        p2 in (34, 37) and n == 15,                                     # American Express
        (p4 == 6011 or p2 == 65 or 644 <= int(digits[:3]) <= 649 or 622126 <= p6 <= 622925) and 16 <= n <= 19,
        3528 <= p4 <= 3589 and 16 <= n <= 19,                           # JCB
        (300 <= int(digits[:3]) <= 305 or p2 in (36, 38, 39)) and 14 <= n <= 19,  # Diners Club
        p2 == 62 and 16 <= n <= 19,                                     # UnionPay
        (p2 in (50, 56, 57, 58) or p2 == 67 or p2 == 63) and 12 <= n <= 19,  # Maestro
    ))


def _cards(text: str, zones):
    for m in _matches(_CARD, text, zones):
        digits = _digits(m.group())
        if not (luhn_valid(digits) and _issuer_known(digits)):
            continue
        before = _preceding(text, m.start())
        grouped = not m.group().isdigit()
        if not grouped and _ID_WORDS.search(before) and not _CARD_WORDS.search(before):
            continue
        yield Found("CARD", m.start(), m.end())


# ------------------------------------------------------------------------------- ssn
_SSN = re.compile(r"(?<![\w-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-])")


def _ssns(text: str, zones):
    for m in _matches(_SSN, text, zones):
        yield Found("SSN", m.start(), m.end())


# -------------------------------------------------------------------------------- ip
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?![\w]|\.\d)")
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3}|:)?"
                   r"(?![\w:]|\.\d)")
_VERSION_WORDS = re.compile(r"(?:\bv|version|ver\.?|release|build|firmware|section|chapter|§|rule|clause|"
                            r"step|item|figure|fig\.?|table|no\.?)\s?$")


def _ips(text: str, zones):
    for m in _matches(_IPV4, text, zones):
        if not _VERSION_WORDS.search(_preceding(text, m.start(), 16)):
            yield Found("IP", m.start(), m.end())
    for m in _matches(_IPV6, text, zones):
        candidate = m.group()
        if candidate.startswith("::") and candidate != "::1" and candidate.count(":") < 3:
            continue  # a slice such as x[::2], not an address
        try:
            ipaddress.IPv6Address(candidate)
        except ValueError:
            continue
        yield Found("IP", m.start(), m.end())


# ----------------------------------------------------------------------------- phone
_SEP = r"[ .\-/]"
_INTERNATIONAL = re.compile(rf"(?<![\w+])\+\d{{1,3}}(?:{_SEP}?\(0\))?(?:{_SEP}?\(?\d{{1,5}}\)?){{1,6}}"
                            rf"(?![\w]|[.\-/]\d)")
# "00" then a country code: only with spaces between the groups ("0044 20 7946 0958"), as part
# numbers and ids with leading zeros are written with dashes.
_DOUBLE_ZERO = re.compile(r"(?<![\w+.\-/])(?<!\d )00[1-9]\d{0,2}(?: \d{1,5}){2,5}(?![\w]|[.\-/]\d)")
_NANP = re.compile(r"(?<![\w+.\-/])(?<!\d )(?:1[ .\-]?)?(?:\([2-9]\d\d\) ?|[2-9]\d\d[ .\-])\d{3}[ .\-]\d{4}"
                   r"(?![\w]|[.\-/]\d)")
_NATIONAL = re.compile(rf"(?<![\w+.\-/])(?<!\d )(?:\(0[1-9]\d{{0,3}}\) ?|0[1-9]\d{{0,3}}{_SEP})\d{{2,8}}(?:{_SEP}\d{{2,8}}){{0,4}}"
                       r"(?![\w]|[.\-/]\d)")
_LOOSE = re.compile(r"(?<![\w+.\-/])\+?\(?\d[\d .\-()]{5,18}\d(?![\w]|[.\-/]\d)")
_PHONE_WORDS = re.compile(r"\b(?:phone|tel|telephone|mobile|cell|call|fax|whatsapp|sms|text me|ring|ph|contact|"
                          r"hotline|reach me|dial|tél|telefon|teléfono|telefono|handy|portable)"
                          r"\b[\w ]{0,12}?[:.]?\s*(?:at|on|is|:)?\s*$")
_PAIRS = re.compile(r"\d\d(?:[ .\-]\d\d)+")
_DATE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}")


def _phones(text: str, zones):
    for pattern, low, high in ((_INTERNATIONAL, 8, 15), (_DOUBLE_ZERO, 11, 15), (_NANP, 10, 11), (_NATIONAL, 10, 12)):
        for m in _matches(pattern, text, zones):
            written = m.group()
            digits = _digits(written.replace("(0)", ""))
            if not low <= len(digits) <= high or _DATE.fullmatch(written) or _pairs_not_french(written):
                continue
            if written[0] != "+" and _ID_WORDS.search(_preceding(text, m.start())):
                continue  # "invoice 0012 3456 7890" is an id
            yield Found("PHONE", m.start(), m.end())
    for m in _matches(_LOOSE, text, zones):
        digits = _digits(m.group())
        if 7 <= len(digits) <= 15 and not _DATE.fullmatch(m.group()) and _PHONE_WORDS.search(
                _preceding(text, m.start(), 40)):
            yield Found("PHONE", m.start(), m.end())


def _pairs_not_french(written: str) -> bool:
    """Digits in pairs are a phone number as France writes them (five pairs), not six lottery numbers."""
    return bool(_PAIRS.fullmatch(written)) and len(_digits(written)) != 10


# --------------------------------------------------------------------------- address
_NAME = r"[A-ZÀ-Ý][a-zà-ÿ'’]+\.?"
_STREET_SUFFIX = (r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|"
                  r"Square|Sq|Parkway|Pkwy|Highway|Hwy|Circle|Cir|Close|Crescent|Gardens|Grove|Row|Trail|Alley|Mews|"
                  r"Hill|Walk|Plaza|Loop)\b\.?")
_UNIT = r"(?:,? (?:Apt|Apartment|Suite|Ste|Unit|Flat|Floor|Fl|Room|#)\.? ?#?[\w-]{1,6})?"
_US_TAIL = r",? [A-Z][a-zA-Z]+(?: [A-Z][a-zA-Z]+){0,3},? [A-Z]{2} \d{5}(?:-\d{4})?"
_UK_TAIL = r", [A-Z][a-zA-Z]+(?: [A-Z][a-zA-Z]+){0,2},? [A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}"
_EU_TAIL = r"(?:, (?:[A-Z]{1,2}-)?\d{4,5} [A-ZÀ-Ý][\wÀ-ÿ-]+(?: [A-ZÀ-Ý][\wÀ-ÿ-]+)?)?"
_ADDRESSES = [
    # 221B Baker Street · 1600 Pennsylvania Avenue NW, Washington, DC 20500
    re.compile(rf"(?<![\w.,-])\d{{1,5}}[A-Za-z]?(?:-\d{{1,5}})? (?:[NSEW]\.? )?(?:{_NAME} ){{1,4}}{_STREET_SUFFIX}"
               rf"(?: (?:N|S|E|W|NE|NW|SE|SW)\b)?{_UNIT}(?:{_US_TAIL}|{_UK_TAIL})?"),
    # Hauptstraße 5, 10115 Berlin · Karl-Marx-Allee 34 · Keizersgracht 123 · Storgatan 12
    re.compile(r"(?<![\w-])[A-ZÄÖÜÅØÆ][\wäöüßåøæé-]*?(?i:straße|strasse|str\.|weg|gasse|platz|allee|ring|damm|ufer|"
               r"gracht|laan|straat|plein|steeg|kade|vej|gade|gatan|vägen|veien|gata)"
               rf" \d{{1,4}}[a-z]?(?:-\d{{1,4}})?\b{_EU_TAIL}"),
    # 12 rue de Rivoli, 75001 Paris · 5 avenue des Champs-Élysées
    re.compile(r"(?<![\w.,-])\d{1,4}(?: ?(?:bis|ter))?,? (?i:rue|avenue|av\.|boulevard|bd|place|chemin|allée|impasse|"
               r"quai|route|cours|square) (?:de la |de l'|du |des |de |d')?[A-ZÀ-Ý][\wÀ-ÿ'-]+"
               rf"(?: [A-ZÀ-Ý][\wÀ-ÿ'-]+){{0,3}}{_EU_TAIL}"),
    # Calle Mayor 3 · Via Roma 10, 00184 Roma · Rua Augusta 274
    re.compile(r"(?<![\w-])(?:Calle|C/|Avenida|Avda\.|Plaza|Paseo|Carrer|Via|Viale|Piazza|Corso|Largo|Rua|Travessa)"
               rf" (?:de la |del |de |della |dei |delle |degli |di |da |do |dos |das )?[A-ZÀ-Ý][\wÀ-ÿ'-]+"
               rf"(?: [A-ZÀ-Ý][\wÀ-ÿ'-]+){{0,3}},? (?:n\.? ?|nº ?)?\d{{1,4}}[A-Za-z]?\b{_EU_TAIL}"),
    re.compile(r"(?<![\w.])P\.? ?O\.? Box \d{1,6}\b", re.IGNORECASE),
]


def _addresses(text: str, zones):
    for pattern in _ADDRESSES:
        for m in _matches(pattern, text, zones):
            yield Found("ADDRESS", m.start(), m.end())


_DETECTORS = (_ibans, _cards, _ssns, _ips, _phones, _addresses)
