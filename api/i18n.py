"""Portal texts and number/date formats in Bosnian (Latin script, the default) and English.

A language is chosen by ``?lang=bs|en`` (remembered in a cookie) and otherwise is
Bosnian. Numbers follow the language: ``1.234,56 KM`` in Bosnian, ``1,234.56 KM`` in
English. A text missing in English falls back to Bosnian, a missing key shows the key.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import Decimal

from rating.money import format_km, format_price

LANGS = ("bs", "en")
DEFAULT_LANG = "bs"
LANG_COOKIE = "portal_lang"

MONTHS = {
    "bs": ("januar", "februar", "mart", "april", "maj", "juni", "juli", "august",
           "septembar", "oktobar", "novembar", "decembar"),
    "en": ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"),
}
MONTHS_SHORT = {
    "bs": ("jan", "feb", "mar", "apr", "maj", "jun", "jul", "aug", "sep", "okt", "nov", "dec"),
    "en": ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
}

TEXTS: dict[str, tuple[str, str]] = {  # key: (bosanski, English)
    "app_name": ("Komunalno Brčko – portal kupaca", "Komunalno Brčko – customer portal"),
    "skip": ("Preskoči na sadržaj", "Skip to content"),
    "nav": ("Glavni meni", "Main menu"),
    "language": ("Jezik", "Language"),
    "nav_overview": ("Pregled", "Overview"),
    "nav_invoices": ("Računi", "Invoices"),
    "nav_self_read": ("Očitanje", "Readings"),
    "logout": ("Odjava", "Log out"),
    "login_title": ("Prijava", "Log in"),
    "login_intro": ("Prijavite se brojem kupca (šifra potrošača) sa uplatnice i lozinkom.",
                    "Log in with the customer ID printed on your payment slip and your password."),
    "customer_id": ("Broj kupca", "Customer ID"),
    "password": ("Lozinka", "Password"),
    "login_button": ("Prijavi se", "Log in"),
    "login_failed": ("Pogrešan broj kupca ili lozinka.", "Wrong customer ID or password."),
    "required": ("obavezno polje", "required"),
    "form_expired": ("Obrazac je istekao. Pokušajte ponovo.",
                     "The form has expired. Please try again."),
    "logged_out": ("Odjavljeni ste.", "You have logged out."),
    "session_over": ("Sesija je istekla. Prijavite se ponovo.",
                     "Your session has expired. Please log in again."),
    "overview_title": ("Pregled računa", "Account overview"),
    "customer": ("Kupac", "Customer"),
    "balance": ("Stanje duga", "Balance"),
    "balance_owes": ("Iznos za uplatu", "Amount due"),
    "balance_credit": ("Preplata", "Credit"),
    "balance_zero": ("Nemate dugovanja.", "Nothing is due."),
    "last_payment": ("Zadnja uplata", "Last payment"),
    "no_payment": ("Nema evidentiranih uplata.", "No payments recorded."),
    "by_service": ("Potrošnja po uslugama", "Consumption by service"),
    "service": ("Usluga", "Service"),
    "change": ("Promjena", "Change"),
    "no_invoices_yet": ("Još nema izdatih računa.", "No invoices have been issued yet."),
    "history": ("Potrošnja zadnja 24 mjeseca", "Consumption over the last 24 months"),
    "chart_table": ("Prikaži podatke kao tabelu", "Show the data as a table"),
    "month": ("Mjesec", "Month"),
    "quantity": ("Količina", "Quantity"),
    "amount": ("Iznos", "Amount"),
    "amount_vat": ("Iznos sa PDV-om", "Amount incl. VAT"),
    "no_data": ("nema podataka", "no data"),
    "chart_desc": ("Stubični dijagram, jedan stub po mjesecu, od {first} do {last}; najveća "
                   "vrijednost {max}.", "Bar chart, one bar per month, from {first} to "
                   "{last}; highest value {max}."),
    "invoices_title": ("Računi", "Invoices"),
    "number": ("Broj računa", "Invoice number"),
    "period": ("Obračunski period", "Billing period"),
    "issued_on": ("Datum izdavanja", "Issued on"),
    "due_on": ("Rok plaćanja", "Due on"),
    "total": ("Ukupno za platiti", "Total due"),
    "status": ("Status", "Status"),
    "pdf": ("PDF", "PDF"),
    "pdf_download": ("Preuzmi PDF", "Download PDF"),
    "pdf_label": ("Preuzmi račun {number} kao PDF", "Download invoice {number} as PDF"),
    "details": ("Detalji", "Details"),
    "details_label": ("Detalji računa {number}", "Details of invoice {number}"),
    "status_paid": ("Plaćen", "Paid"),
    "status_credited": ("Storniran", "Credited"),
    "status_partly_paid": ("Djelimično plaćen", "Partly paid"),
    "status_overdue": ("Dospio, nije plaćen", "Overdue"),
    "status_open": ("Otvoren", "Open"),
    "invoice_title": ("Račun {number}", "Invoice {number}"),
    "back_to_invoices": ("Nazad na račune", "Back to invoices"),
    "lines": ("Stavke računa", "Invoice lines"),
    "description": ("Opis", "Description"),
    "metering_point": ("Mjerno mjesto", "Metering point"),
    "register": ("Tarifa / registar", "Register"),
    "unit_price": ("Jedinična cijena (KM)", "Unit price (KM)"),
    "vat_rate": ("PDV %", "VAT %"),
    "vat_recap": ("Rekapitulacija PDV-a", "VAT summary"),
    "net": ("Iznos bez PDV-a", "Net amount"),
    "vat": ("PDV", "VAT"),
    "base": ("Osnovica", "Base"),
    "how_to_pay": ("Podaci za uplatu", "How to pay"),
    "recipient_account": ("Račun primaoca", "Recipient account"),
    "reference": ("Poziv na broj", "Payment reference"),
    "not_found": ("Stranica nije pronađena", "Page not found"),
    "no_such_invoice": ("Taj račun ne postoji ili nije vaš.",
                        "That invoice does not exist or is not yours."),
    "self_read_title": ("Očitanje brojila", "Meter reading"),
    "self_read_intro": ("Upišite stanje koje pokazuje brojilo (cijeli broj, a ako brojilo "
                        "pokazuje i decimale, najviše tri). Vrijeme očitanja je trenutak "
                        "slanja. Polja koja ostavite prazna se ne šalju.",
                        "Type what the meter shows (whole units and, if the meter shows "
                        "them, up to three decimals). The reading is taken at the moment "
                        "you send it. Empty fields are not sent."),
    "meter": ("Brojilo", "Meter"),
    "last_read": ("Zadnje očitanje: {value}, {day}", "Last reading: {value}, {day}"),
    "no_last_read": ("Još nema očitanja.", "No reading yet."),
    "reg_1.8.1": ("Viša tarifa (VT)", "Day rate (VT)"),
    "reg_1.8.2": ("Niža tarifa (MT)", "Night rate (MT)"),
    "reg_1.8.0": ("Ukupno", "Total"),
    "reg_8.0": ("Stanje vodomjera", "Water meter"),
    "submit_reads": ("Pošalji očitanje", "Send the reading"),
    "no_meters": ("Na vašim mjernim mjestima nema brojila koja možete očitati.",
                  "There is no meter you can read at your metering points."),
    "read_accepted": ("Primljeno: {value}.", "Received: {value}."),
    "read_advance": ("Potrošnja od zadnjeg očitanja: {advance}.",
                     "Consumption since the last reading: {advance}."),
    "read_duplicate": ("Ovo očitanje je već zabilježeno.", "This reading is already recorded."),
    "read_rejected": ("Nije prihvaćeno: {reason}", "Not accepted: {reason}"),
    "reason_backwards": ("vrijednost je manja od zadnjeg očitanja ({last}).",
                         "the value is lower than the last reading ({last})."),
    "reason_spike": ("vrijednost daje potrošnju mnogo veću od uobičajene za ovo brojilo. "
                     "Provjerite upisani broj (npr. da nema cifre viška).",
                     "the value gives far more consumption than usual for this meter. "
                     "Check the number you typed (e.g. for an extra digit)."),
    "read_invalid": ("Upišite broj sa najviše tri decimale, npr. 12345,678.",
                     "Type a number with at most three decimals, e.g. 12345.678."),
    "nothing_entered": ("Upišite barem jedno stanje brojila.", "Type at least one reading."),
    "svc_electricity": ("Električna energija", "Electricity"),
    "svc_water": ("Voda i kanalizacija", "Water and sewage"),
    "svc_waste": ("Odvoz smeća", "Waste collection"),
    "svc_interest": ("Zatezna kamata", "Late-payment interest"),
    "unit_month": ("mj.", "mo."),
    "nav_password": ("Lozinka", "Password"),
    "nav_notifications": ("Obavještenja", "Notifications"),
    "nav_reports": ("Prijave", "Reports"),
    "nav_account": ("Moj račun", "My account"),
    "export_csv": ("Preuzmi potrošnju i račune (CSV)", "Download consumption and invoices (CSV)"),
    "export_hint": ("Tabela za Excel: razdvojeno znakom „;“, decimalni zarez.",
                    "Spreadsheet for Excel: separated by ';', decimal comma."),
    "export_espi": ("Preuzmi dnevnu potrošnju (Green Button XML)",
                    "Download daily consumption (Green Button XML)"),
    "export_espi_hint": ("Standard ESPI za aplikacije za praćenje potrošnje, zadnja 24 mjeseca.",
                         "The ESPI standard read by energy apps, the last 24 months."),
    "ops_login_title": ("Prijava operatera", "Operator login"),
    "ops_login_intro": ("Prijavite se korisničkim imenom i lozinkom operatera.",
                        "Log in with your operator username and password."),
    "ops_username": ("Korisničko ime", "Username"),
    "ops_login_failed": ("Pogrešno korisničko ime ili lozinka.", "Wrong username or password."),
    "ops_throttled": ("Previše neuspjelih prijava. Pokušajte ponovo za {minutes} min.",
                      "Too many failed logins. Try again in {minutes} min."),
    "pw_title": ("Promjena lozinke", "Change password"),
    "pw_intro": ("Nova lozinka mora imati najmanje 10 znakova. Nakon promjene odjavljeni ste "
                 "na svim drugim uređajima.",
                 "The new password needs at least 10 characters. After the change you are "
                 "logged out on every other device."),
    "pw_current": ("Trenutna lozinka", "Current password"),
    "pw_new": ("Nova lozinka", "New password"),
    "pw_repeat": ("Nova lozinka (ponovo)", "New password (again)"),
    "pw_button": ("Promijeni lozinku", "Change password"),
    "pw_changed": ("Lozinka je promijenjena.", "The password has been changed."),
    "pw_wrong_current": ("Trenutna lozinka nije tačna.", "The current password is wrong."),
    "pw_too_short": ("Nova lozinka mora imati najmanje 10 znakova.",
                     "The new password needs at least 10 characters."),
    "pw_too_long": ("Nova lozinka je preduga.", "The new password is too long."),
    "pw_mismatch": ("Nove lozinke se ne poklapaju.", "The new passwords do not match."),
    "pw_throttled": ("Previše pogrešnih pokušaja. Pokušajte ponovo kasnije.",
                     "Too many wrong attempts. Try again later."),
    "prefs_title": ("Obavještenja", "Notifications"),
    "prefs_intro": ("Izaberite kako želite biti obaviješteni.",
                    "Choose how you want to be notified."),
    "prefs_button": ("Sačuvaj", "Save"),
    "prefs_saved": ("Postavke su sačuvane.", "Your settings have been saved."),
    "event_invoice_issued": ("Izdat novi račun", "Invoice issued"),
    "event_payment_received": ("Primljena uplata", "Payment received"),
    "event_reminder": ("Opomena i podsjetnik", "Reminder"),
    "channel_email": ("E-mail", "E-mail"),
    "channel_sms": ("SMS", "SMS"),
    "reports_title": ("Prijave problema", "Problem reports"),
    "report_new": ("Nova prijava", "New report"),
    "report_category": ("Vrsta", "Category"),
    "report_body": ("Opis", "Description"),
    "report_button": ("Pošalji prijavu", "Send the report"),
    "report_sent": ("Prijava je poslana.", "Your report has been sent."),
    "report_too_long": ("najviše 2.000 znakova", "at most 2,000 characters"),
    "report_bad_point": ("To mjerno mjesto nije vaše.", "That metering point is not yours."),
    "report_status": ("Status", "Status"),
    "reports_mine": ("Moje prijave", "My reports"),
    "reports_none": ("Nemate prijava.", "You have no reports."),
    "optional": ("nije obavezno", "optional"),
    "cat_meter": ("Brojilo", "Meter"),
    "cat_invoice": ("Račun", "Invoice"),
    "cat_supply": ("Isporuka (nestanak struje, vode)", "Supply (outage)"),
    "cat_other": ("Ostalo", "Other"),
    "rstatus_new": ("Nova", "New"),
    "rstatus_in_progress": ("U obradi", "In progress"),
    "rstatus_resolved": ("Riješena", "Resolved"),
}
UNITS = {"m3": "m³", "m2": "m²"}


def pick_lang(query: str | None, cookie: str | None) -> str:
    """The page language: a valid ``?lang=`` wins, then the cookie, then Bosnian."""
    for candidate in (query, cookie):
        if candidate in LANGS:
            return str(candidate)
    return DEFAULT_LANG


def text(lang: str, key: str, **values: object) -> str:
    """The text ``key`` in ``lang`` with ``{name}`` placeholders filled in."""
    pair = TEXTS.get(key)
    if pair is None:
        return key
    template = pair[1] if lang == "en" and pair[1] else pair[0]
    return template.format(**values) if values else template


def _localize(plain: str, lang: str) -> str:
    """'1234.56' → '1.234,56' (bs) or '1,234.56' (en)."""
    sign, digits = ("-", plain[1:]) if plain.startswith("-") else ("", plain)
    whole, _, frac = digits.partition(".")
    groups: list[str] = []
    while len(whole) > 3:
        groups.insert(0, whole[-3:])
        whole = whole[:-3]
    groups.insert(0, whole)
    thousands, decimal = (",", ".") if lang == "en" else (".", ",")
    out = sign + thousands.join(groups)
    return out + (decimal + frac if frac else "")


def money(fen: int, lang: str) -> str:
    """Feninga as KM text: 123456 → '1.234,56 KM' (bs), '1,234.56 KM' (en)."""
    return f"{_localize(format_km(fen), lang)} KM"


def quantity(milli: int, lang: str, decimals: int = 3) -> str:
    """Thousandths as text with ``decimals`` decimals: 412345 → '412,345' (bs)."""
    return number(milli, 1000, lang, decimals)


def number(value: int, scale: int, lang: str, decimals: int) -> str:
    """``value`` minor units (``scale`` per unit) with exactly ``decimals`` decimals, rounded
    half up: number(412345, 1000, 'bs', 1) → '412,3'."""
    if scale < 1 or decimals < 0:
        raise ValueError("scale must be ≥ 1 and decimals ≥ 0")
    quantum = 10**decimals
    scaled = (abs(value) * quantum * 2 + scale) // (2 * scale)
    whole, frac = divmod(scaled, quantum)
    plain = ("-" if value < 0 and scaled else "") + str(whole)
    if decimals:
        plain += f".{frac:0{decimals}d}"
    return _localize(plain, lang)


def unit(name: str, lang: str) -> str:
    if name == "month":
        return text(lang, "unit_month")
    return UNITS.get(name, name)


def percent(value: float | None, lang: str) -> str:
    """+3.7 → '+3,7 %' (bs) or '+3.7%' (en); None → '–'."""
    if value is None:
        return "–"
    body = _localize(f"{abs(value):.1f}", lang)
    sign = "+" if value > 0 else "−" if value < 0 else "±"
    return f"{sign}{body} %" if lang == "bs" else f"{sign}{body}%"


def day(d: date, lang: str) -> str:
    """'20.04.2026.' (bs) or '20 Apr 2026' (en)."""
    if lang == "en":
        return f"{d.day} {MONTHS_SHORT['en'][d.month - 1]} {d.year}"
    return f"{d.day:02d}.{d.month:02d}.{d.year}."


def period_name(period: str, lang: str, *, short: bool = False) -> str:
    """'2026-03' → 'mart 2026' / 'March 2026'; short: 'mar 26' / 'Mar 26'."""
    year, month = period.split("-")
    names = (MONTHS_SHORT if short else MONTHS)[lang if lang in LANGS else DEFAULT_LANG]
    name = names[int(month) - 1]
    return f"{name} {year[2:]}" if short else f"{name} {year}"


def translator(lang: str) -> Callable[..., str]:
    """``t(key, **values)`` bound to one language, for the templates."""

    def t(key: str, **values: object) -> str:
        return text(lang, key, **values)

    return t


class Formats:
    """The formatting functions of one language, handed to the templates as ``f``."""

    def __init__(self, lang: str) -> None:
        self.lang = lang

    def money(self, fen: int) -> str:
        return money(fen, self.lang)

    def plain(self, fen: int) -> str:
        """Machine-readable KM ('76.86') for ``<data value=…>``."""
        return format_km(fen)

    def qty(self, milli: int, unit_name: str | None = None) -> str:
        """Exact, without trailing zeros: 300000 → '300', 12500 → '12,5'."""
        shown = quantity(milli, self.lang)
        if "," in shown or "." in shown:
            sep = "," if self.lang != "en" else "."
            whole, _, frac = shown.rpartition(sep)
            frac = frac.rstrip("0")
            shown = f"{whole}{sep}{frac}" if frac else whole
        return f"{shown} {unit(unit_name, self.lang)}" if unit_name else shown

    def unit(self, name: str) -> str:
        return unit(name, self.lang)

    def register(self, obis: str) -> str:
        """A register's name ('Viša tarifa (VT)' for 1.8.1), else its OBIS code."""
        key = f"reg_{obis}"
        return text(self.lang, key) if key in TEXTS else obis

    def price(self, micro: int) -> str:
        """A unit price as printed on the invoice (up to 6 decimals): '0,1578'."""
        return _localize(format_price(micro), self.lang)

    def rate(self, rate: Decimal) -> str:
        """A VAT rate: Decimal('17.00') → '17'; Decimal('8.50') → '8,5'."""
        return _localize(f"{rate.normalize():f}", self.lang)

    def day(self, d: date) -> str:
        return day(d, self.lang)

    def period(self, period: str) -> str:
        return period_name(period, self.lang)

    def pct(self, value: float | None) -> str:
        return percent(value, self.lang)
