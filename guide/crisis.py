"""footer: crisis lines per country, as configured; each reader's footer; timezone → country."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass as plain_dataclass
from importlib import resources
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, Strict
from pydantic.dataclasses import dataclass

from guide.config_fields import HttpURL, Kind, OneLine, RequiredLine, Sentence, Word
from guide.config_reader import rule_error
from guide.text import ValidationError

_VALUES = ConfigDict(extra="forbid", allow_inf_nan=False)
COUNTRIES_LIMIT = 250  # about the number of ISO 3166 codes
LINES_LIMIT = 10  # lines of one country: a footer is not a directory
# A reader who said they live in a country the configuration does not list: the directory only.
# Not a code (codes are two capitals), so it never collides with one an operator adds.
ELSEWHERE = "other"

CountryCode = Annotated[
    str,
    Strict(),
    Field(pattern=r"^[A-Z]{2}$"),
    Kind("a two-letter country code in capitals (ISO 3166), such as US"),
]
EmergencyNumber = Annotated[
    OneLine,
    Field(min_length=1, max_length=40),
    Kind('the emergency number as quoted text, such as "911" or "999 or 112"'),
]


@dataclass(frozen=True, config=_VALUES)
class CrisisLine:
    """One help line: its name, the neutral name discreet emails use, how to reach it."""

    label: RequiredLine
    discreet_label: RequiredLine
    contact: RequiredLine
    url: HttpURL = ""
    # Discreet emails leave out `url`: an address such as thehotline.org names the topic.
    discreet_url: HttpURL = ""


@dataclass(frozen=True, config=_VALUES)
class Country:
    """The lines shown to readers who live in one country, and its emergency number."""

    code: CountryCode
    name: RequiredLine
    emergency: EmergencyNumber
    lines: Annotated[
        tuple[CrisisLine, ...], Field(max_length=LINES_LIMIT), Kind("a list of lines")
    ] = ()


def unique_codes(countries: tuple[Country, ...]) -> tuple[Country, ...]:
    """The countries, refused when one code is listed twice (which lines would a reader get?)."""
    seen: set[str] = set()
    for country in countries:
        if country.code in seen:
            raise rule_error(f"must list each country once: {country.code} is there twice")
        seen.add(country.code)
    return countries


# Shipped lines; config.yaml says where and when each was checked.
# One line in both the UK and Ireland: Samaritans answer 116 123 in each, free.
_SAMARITANS = CrisisLine(
    label="Samaritans",
    discreet_label="24-hour listening line",
    contact="call 116 123, free",
    url="https://www.samaritans.org",
)
DEFAULT_COUNTRIES = (
    Country(
        code="US",
        name="United States",
        emergency="911",
        lines=(
            CrisisLine(
                label="National Domestic Violence Hotline",
                discreet_label="24-hour support line",
                contact="call 1-800-799-7233, text START to 88788 or chat online; Deaf and "
                "hard-of-hearing readers can text or chat",
                url="https://www.thehotline.org",
            ),
            CrisisLine(
                label="988 Suicide & Crisis Lifeline",
                discreet_label="24-hour crisis line",
                contact="call or text 988, or chat online",
                url="https://988lifeline.org",
            ),
        ),
    ),
    Country(
        code="CA",
        name="Canada",
        emergency="911",
        lines=(
            CrisisLine(
                label="ShelterSafe (women's shelters with 24-hour lines, by area)",
                discreet_label="Local 24-hour support lines",
                contact="find the nearest shelter's 24-hour number on the map",
                url="https://sheltersafe.ca",
            ),
            CrisisLine(
                label="9-8-8 Suicide Crisis Helpline",
                discreet_label="24-hour crisis line",
                contact="call or text 9-8-8",
                url="https://988.ca",
            ),
        ),
    ),
    Country(
        code="GB",
        name="United Kingdom",
        emergency="999 or 112",
        lines=(
            CrisisLine(
                label="National Domestic Abuse Helpline (Refuge)",
                discreet_label="24-hour support line",
                contact="call 0808 2000 247, free",
                url="https://www.nationaldahelpline.org.uk",
            ),
            _SAMARITANS,
        ),
    ),
    Country(
        code="IE",
        name="Ireland",
        emergency="112 or 999",
        lines=(
            CrisisLine(
                label="Women's Aid 24hr National Freephone Helpline",
                discreet_label="24-hour support line",
                contact="call 1800 341 900, free",
                url="https://www.womensaid.ie",
            ),
            _SAMARITANS,
        ),
    ),
    Country(
        code="AU",
        name="Australia",
        emergency="000",
        lines=(
            CrisisLine(
                label="1800RESPECT",
                discreet_label="24-hour support line",
                contact="call 1800 737 732",
                url="https://www.1800respect.org.au",
            ),
            CrisisLine(
                label="Lifeline",
                discreet_label="24-hour crisis line",
                contact="call 13 11 14 or text 0477 13 11 14",
                url="https://www.lifeline.org.au",
            ),
        ),
    ),
    Country(
        code="NZ",
        name="New Zealand",
        emergency="111",
        lines=(
            CrisisLine(
                label="Women's Refuge crisis line",
                discreet_label="24-hour support line",
                contact="call 0800 733 843, free",
                url="https://womensrefuge.org.nz",
            ),
            CrisisLine(
                label="Need to talk? 1737",
                discreet_label="24-hour listening line",
                contact="call or text 1737, free",
                url="https://1737.org.nz",
            ),
        ),
    ),
)
DEFAULT_DIRECTORY = CrisisLine(
    label="Helplines in other countries",
    discreet_label="Helplines in other countries",
    contact="free, confidential lines in many countries, searchable by country",
    url="https://findahelpline.com",
    discreet_url="https://findahelpline.com",
)


def _replaced(value: object) -> object:
    # A config.yaml from before the per-country lines: say what took its place, not just
    # "unknown key", so an upgrade stops with the way forward.
    raise rule_error(
        "was replaced by footer.countries (lines per country) and footer.international: "
        "see the footer section of the shipped config.yaml"
    )


@dataclass(frozen=True, config=_VALUES)
class FooterConfig:
    """Safety text every email carries: help lines per country, then a directory for the rest."""

    countries: Annotated[
        tuple[Country, ...],
        Field(max_length=COUNTRIES_LIMIT),
        AfterValidator(unique_codes),
        Kind("a list of countries"),
    ] = DEFAULT_COUNTRIES
    # Lines every reader gets after their country's: a directory of helplines for the rest.
    international: Annotated[
        tuple[CrisisLine, ...],
        Field(min_length=1, max_length=LINES_LIMIT),
        Kind("a non-empty list of lines"),
    ] = (DEFAULT_DIRECTORY,)
    # Whose lines readers who never chose a country get (sign-ups from before the choice).
    default_country: Annotated[Word, Kind("a code listed in footer.countries, or empty")] = "US"
    # Shown in both modes, so worded as any newsletter's footer could word it.
    emergency: Sentence = "In an emergency, call your local emergency number."
    disclaimer: Sentence = (
        "This guide is educational. It is not a substitute for care from a licensed clinician "
        "or advocate."
    )
    crisis_resources: Annotated[None, BeforeValidator(_replaced), Field(repr=False)] = None

    def __post_init__(self) -> None:
        if self.default_country and self.default_country not in {c.code for c in self.countries}:
            raise rule_error(
                f"default_country {self.default_country} is not in countries: set it to one "
                "of their codes, or empty"
            )

    def crisis_footers(self) -> CrisisFooters:
        """Every footer these settings give, built once per process part that sends or serves."""
        return CrisisFooters(
            self.countries, self.international, self.default_country, self.emergency
        )


# --- what a footer shows ---------------------------------------------------------------------


@plain_dataclass(frozen=True)
class HelpLine:
    """One line as a footer shows it, in the reader's mode."""

    label: str
    contact: str
    url: str


@plain_dataclass(frozen=True)
class CrisisFooter:
    """The help lines and the emergency sentence of one (country, mode)."""

    lines: tuple[HelpLine, ...]
    emergency: str


def _shown(line: CrisisLine, discreet: bool) -> HelpLine:
    if discreet:
        return HelpLine(line.discreet_label, line.contact, line.discreet_url)
    return HelpLine(line.label, line.contact, line.url)


class CrisisFooters:
    """Every footer the configuration can produce, built once: a send only looks one up."""

    def __init__(
        self,
        countries: Iterable[Country],
        international: Iterable[CrisisLine],
        default_country: str,
        no_number: str,
    ) -> None:
        """`no_number`: the emergency sentence for readers without a country."""
        self.countries = {country.code: country for country in countries}
        self.default_country = default_country
        self._footers: dict[tuple[str, bool], CrisisFooter] = {}
        for code in [*self.countries, ""]:
            country = self.countries.get(code)
            for discreet in (False, True):
                lines = [_shown(line, discreet) for line in (country.lines if country else ())]
                lines += [_shown(line, discreet) for line in international]
                if country is None:
                    emergency = no_number
                elif discreet:
                    # "In danger" would tell an onlooker what kind of guide this is.
                    emergency = f"In an emergency, call {country.emergency}."
                else:
                    emergency = f"If you are in danger right now, call {country.emergency}."
                self._footers[(code, discreet)] = CrisisFooter(tuple(lines), emergency)

    def resolve(self, country: str) -> str:
        """The configured code whose lines a reader with `country` gets ('' for none)."""
        if not country:
            country = self.default_country
        return country if country in self.countries else ""

    def footer(self, country: str, discreet: bool) -> CrisisFooter:
        """The footer for a reader who chose `country` ('' = not chosen: the default)."""
        return self._footers[(self.resolve(country), discreet)]

    def resolved(self, code: str, discreet: bool) -> CrisisFooter:
        """The footer of a code `resolve` gave ('' = no country: the international lines)."""
        return self._footers[(code, discreet)]

    def choice(self, value: str) -> str | None:
        """A posted country answer as stored ('' none, ELSEWHERE, a code); None if unknown."""
        if value in ("", ELSEWHERE) or value in self.countries:
            return value
        return None

    def check(self, value: str) -> str:
        """A country typed by an operator (CLI, import file) as stored; ValidationError if not."""
        text = value.strip()
        found = self.choice(text if text.lower() == ELSEWHERE else text.upper())
        if found is None:
            listed = ", ".join([*self.countries, ELSEWHERE])
            raise ValidationError("country", f"{text!r} is not one of {listed} (footer.countries)")
        return found

    def for_zone(self, zone: str) -> str:
        """The answer a timezone suggests: its country if configured, else ELSEWHERE or ''."""
        code = country_of_zone(zone)
        if not code:
            return ""  # UTC and Etc/… say nothing about where someone lives
        return code if code in self.countries else ELSEWHERE

    def zones_of(self, code: str) -> tuple[str, ...]:
        """The timezones of a configured country, for the sign-up form's pre-selection."""
        return tuple(zone for zone, owner in _zone_table().items() if owner == code)


@functools.cache
def _zone_table() -> dict[str, str]:
    """Timezone → ISO 3166 code, from the tz database's zone.tab in the tzdata package."""
    # zone.tab gives one country per zone (zone1970.tab several), which is what a form
    # pre-selection needs; tzdata ships it, so this does not depend on the system's copy.
    text = resources.files("tzdata").joinpath("zoneinfo", "zone.tab").read_text("utf-8")
    table: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            parts = line.split("\t")
            if len(parts) >= 3:
                table[parts[2]] = parts[0]
    return table


def country_of_zone(zone: str) -> str:
    """The ISO 3166 code of the country a timezone is in ('' for UTC, Etc/… and unknowns)."""
    return _zone_table().get(zone, "")
