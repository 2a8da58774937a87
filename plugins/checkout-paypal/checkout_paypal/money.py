"""Integer minor units <-> PayPal's decimal strings, minding currencies without decimals."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

# ISO 4217 exponents that differ from 2 (minor units per major unit = 10 ** exponent).
ISO_EXPONENT = {
    **dict.fromkeys(["BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX",
                     "VND", "VUV", "XAF", "XOF", "XPF"], 0),
    **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
}
# The currencies PayPal's REST API takes; HUF, JPY and TWD only in whole units.
PAYPAL_CURRENCIES = frozenset(["AUD", "BRL", "CAD", "CNY", "CZK", "DKK", "EUR", "HKD", "HUF", "ILS", "JPY", "MYR", "MXN", "TWD", "NZD", "NOK", "PHP", "PLN", "GBP", "SGD", "SEK", "CHF", "THB", "USD"])
WHOLE_UNITS_ONLY = frozenset({"HUF", "JPY", "TWD"})


class MoneyError(ValueError):
    pass


def exponent(currency: str) -> int:
    return ISO_EXPONENT.get(currency, 2)


def paypal_decimals(currency: str) -> int:
    return 0 if currency in WHOLE_UNITS_ONLY else exponent(currency)


def to_paypal(minor: int, currency: str) -> str:
    """12345 EUR -> "123.45"; 1500 JPY -> "1500"; 150000 HUF -> "1500" (refuses 150050 HUF)."""
    drop = exponent(currency) - paypal_decimals(currency)
    if minor % (10 ** drop):
        raise MoneyError(f"PayPal takes {currency} in whole units only")
    value = Decimal(minor).scaleb(-exponent(currency))
    return f"{value:.{paypal_decimals(currency)}f}"


def from_paypal(value: str, currency: str) -> int:
    """PayPal's "123.45" EUR -> 12345 minor units; anything not a plain amount is an error."""
    if not isinstance(value, str):
        raise MoneyError(f"not a PayPal amount: {value!r}")
    try:
        minor = Decimal(value).scaleb(exponent(currency))
    except InvalidOperation:
        raise MoneyError(f"not a PayPal amount: {value!r}") from None
    if not minor.is_finite() or minor != minor.to_integral_value():
        raise MoneyError(f"not a whole number of minor units: {value!r} {currency}")
    return int(minor)
