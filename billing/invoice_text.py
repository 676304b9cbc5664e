"""Words printed on the invoice PDF, in Bosnian (Latin script) and English."""

from __future__ import annotations

LABELS: dict[str, dict[str, str]] = {
    "bs": {
        "invoice": "Račun br.", "customer": "Kupac", "customer_code": "Šifra kupca",
        "period": "Obračunski period", "issued_on": "Datum izdavanja", "due_on": "Rok plaćanja",
        "reference": "Poziv na broj", "metering_points": "Mjerna mjesta",
        "description": "Opis", "metering_point": "Mjerno mjesto", "register": "Tarifa",
        "quantity": "Količina", "unit": "J. mj.", "price": "Cijena KM", "amount": "Iznos KM",
        "vat_rate": "PDV %", "vat_base": "Osnovica PDV", "vat": "PDV", "net": "Iznos bez PDV-a",
        "total": "UKUPNO ZA UPLATU", "slip": "UPLATNICA", "payer": "Uplatilac",
        "recipient": "Primalac", "recipient_account": "Račun primaoca",
        "purpose_label": "Svrha uplate", "purpose": "Račun", "amount_km": "Iznos KM",
        "id_number": "ID broj", "vat_number": "PDV broj", "invoice_total": "UKUPNO RAČUN",
        "credit_applied": "Umanjeno za preplatu (kredit kupca)",
    },
    "en": {
        "invoice": "Invoice No.", "customer": "Customer", "customer_code": "Customer code",
        "period": "Billing period", "issued_on": "Issued on", "due_on": "Due date",
        "reference": "Payment reference", "metering_points": "Metering points",
        "description": "Description", "metering_point": "Metering point", "register": "Register",
        "quantity": "Quantity", "unit": "Unit", "price": "Price BAM", "amount": "Amount BAM",
        "vat_rate": "VAT %", "vat_base": "VAT base", "vat": "VAT", "net": "Amount before VAT",
        "total": "TOTAL TO PAY", "slip": "PAYMENT SLIP", "payer": "Payer",
        "recipient": "Recipient", "recipient_account": "Recipient account",
        "purpose_label": "Purpose of payment", "purpose": "Invoice", "amount_km": "Amount BAM",
        "id_number": "ID No.", "vat_number": "VAT No.", "invoice_total": "INVOICE TOTAL",
        "credit_applied": "Less your credit (overpayment)",
    },
}

SERVICES: dict[str, dict[str, str]] = {
    "bs": {"electricity": "Električna energija", "water": "Voda i kanalizacija",
           "waste": "Odvoz smeća", "interest": "Zatezna kamata"},
    "en": {"electricity": "Electricity", "water": "Water and sewage",
           "waste": "Waste collection", "interest": "Late-payment interest"},
}

REGISTERS: dict[str, dict[str, str]] = {
    "bs": {"1.8.1": "VT", "1.8.2": "MT", "1.8.0": "jednotarifno"},
    "en": {"1.8.1": "high", "1.8.2": "low", "1.8.0": "single"},
}

UNITS: dict[str, dict[str, str]] = {
    "bs": {"m3": "m³", "m2": "m²", "month": "mj."},
    "en": {"m3": "m³", "m2": "m²", "month": "month"},
}
