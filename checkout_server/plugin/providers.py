"""What plugin authors subclass and return: provider base classes and their value types.

A provider class is registered by a plugin under its `name`; the config file turns it into
one or more *methods* (an integer id, a title, `active`, and settings checked by the
provider's `settings_schema`). Money is always an integer in minor units.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from marshmallow import RAISE, Schema

from checkout_server.storage.plugin_documents import PluginDocuments

__all__ = [
    "MAX_MONEY",
    "Address",
    "Cart",
    "CartLine",
    "GatewayError",
    "Method",
    "NoSettings",
    "Notification",
    "NotificationError",
    "OrderInfo",
    "PaymentCheck",
    "PaymentProvider",
    "PaymentStart",
    "PaymentState",
    "PaymentUrls",
    "Provider",
    "ProviderError",
    "Refund",
    "RefundNotSupported",
    "RefundRequest",
    "RefundState",
    "ShippingProvider",
    "Site",
    "Support",
]


# The largest amount of money the service handles, in minor units: a price, a shipping cost,
# an order total. Far below 2**53, so every JSON client and the database store it exactly.
MAX_MONEY = 10**12


class NoSettings(Schema):
    """A provider without settings: any key in the config is an error."""

    class Meta:
        unknown = RAISE


# -- what providers are shown

@dataclass(frozen=True)
class CartLine:
    product: int
    name: str
    quantity: int
    unit_price: int
    line_total: int
    digital: bool = False
    weight: int = 0  # grams per unit


@dataclass(frozen=True)
class Cart:
    """A cart as providers see it.

    `shipping_cost` is 0 when payment methods are listed (they are listed for the goods);
    at checkout the chosen shipping is quoted first and the payment method is asked again
    with its cost, so `total` is what the shopper pays.
    """

    customer_id: int
    lines: tuple[CartLine, ...]
    currency: str
    shipping_cost: int = 0

    @property
    def subtotal(self) -> int:
        return sum(line.line_total for line in self.lines)

    @property
    def total(self) -> int:
        """The goods plus shipping: what the order will charge."""
        return self.subtotal + self.shipping_cost

    @property
    def weight(self) -> int:
        """Grams of the physical lines; digital goods weigh nothing in a parcel."""
        return sum(line.weight * line.quantity for line in self.lines if not line.digital)

    @property
    def has_digital(self) -> bool:
        return any(line.digital for line in self.lines)

    @property
    def all_digital(self) -> bool:
        return bool(self.lines) and all(line.digital for line in self.lines)


@dataclass(frozen=True)
class Address:
    id: int
    line1: str
    city: str
    postal_code: str
    country: str  # ISO 3166 alpha-2
    line2: str = ""


@dataclass(frozen=True)
class Method:
    """A configured method as its provider sees it."""

    id: int
    title: str
    kind: str  # "payment" or "shipping"


@dataclass(frozen=True)
class Site:
    """The shop a method serves, from the config's `[site]` table."""

    # This service's public address (no trailing slash): where a provider that serves its
    # own pages (through `register_routes`) sends the shopper.
    base_url: str = "http://localhost:8888"
    currency: str = "EUR"


@dataclass(frozen=True)
class Support:
    ok: bool
    reason: str = ""

    @classmethod
    def yes(cls) -> Support:
        return cls(True)

    @classmethod
    def no(cls, reason: str) -> Support:
        return cls(False, reason)

    def __bool__(self) -> bool:
        return self.ok


@dataclass(frozen=True)
class OrderInfo:
    """An order as a payment provider sees it."""

    order_key: str
    total: int
    currency: str
    customer_id: int
    email: str | None
    phone: str | None
    name: str
    description: str
    # What this provider stored when it started the payment (PaymentStart.data).
    payment: Mapping[str, Any] = field(default_factory=dict)
    # Random, one per order: order keys repeat after a database reset or restore, so a key
    # the gateway remembers (an idempotency key) is built from both. "" for older orders.
    attempt_id: str = ""


@dataclass(frozen=True)
class PaymentUrls:
    """Where the gateway sends the shopper back, and where it posts notifications."""

    return_url: str  # already carries ?order=<order_key>&rt=<return token>; append, never drop
    notify_url: str


# -- what providers answer

@dataclass(frozen=True)
class PaymentStart:
    """The answer of `PaymentProvider.start`.

    Redirect flow: `redirect_url` for the shopper, and `reference` (the gateway's id for
    the payment) plus any `data` needed later to verify it. Direct flow: `settled=True`
    when the order is settled now (pay on delivery), with no redirect.
    """

    redirect_url: str | None = None
    reference: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    settled: bool = False


class PaymentState(enum.Enum):
    PAID = "paid"
    FAILED = "failed"  # declined, cancelled by the shopper, or refused by the gateway
    PENDING = "pending"  # not decided yet: leave the order on HOLD


@dataclass(frozen=True)
class PaymentCheck:
    """What the gateway said, server-side, about a payment.

    The core settles PAID only if `amount` and `currency` equal the order's.
    """

    state: PaymentState
    amount: int | None = None
    currency: str | None = None
    reference: str | None = None
    detail: str = ""


class RefundState(enum.Enum):
    SUCCEEDED = "succeeded"  # the money is on its way back to the shopper
    PENDING = "pending"  # accepted; the gateway finishes it later (a notification or `check_refund` says how)
    FAILED = "failed"  # refused or reversed by the gateway: nothing refunded


@dataclass(frozen=True)
class RefundRequest:
    """What the core asks `PaymentProvider.refund` for.

    `attempt_id` is new for each refund the admin asks for and the same when that refund is
    tried again (a repeat after a timeout): build the gateway's idempotency key from it and
    `OrderInfo.attempt_id`, so the gateway refunds each attempt at most once.
    """

    amount: int  # minor units, at most what is left of the captured payment
    currency: str  # the captured payment's currency (the order's)
    attempt_id: str
    reason: str = ""


@dataclass(frozen=True)
class Refund:
    """A refund as the gateway reports it."""

    state: RefundState
    amount: int
    currency: str
    reference: str | None = None  # the gateway's id for the refund
    detail: str = ""
    # The core's `RefundRequest.attempt_id`, where the gateway gives it back (metadata).
    attempt_id: str = ""


@dataclass(frozen=True)
class Notification:
    """A verified gateway notification: which order, and the payment's state."""

    order_key: str | None
    # None: the core asks `check()`, which may end the payment (see `PaymentProvider.check`):
    # a provider whose `check` has side effects always fills this in.
    check: PaymentCheck | None = None
    event_id: str | None = None  # for de-duplication
    # The payment it is about, as `PaymentStart.reference` named it: one that differs from
    # the order's is about another payment (say from before a database restore): ignored.
    reference: str | None = None
    # Refunds of the order's payment as the gateway has them now (a refund notification):
    # the core records each on the order once, by its `reference`.
    refunds: tuple[Refund, ...] = ()


# -- errors

class ProviderError(Exception):
    """A provider could not do what was asked; message is safe to show."""


class GatewayError(ProviderError):
    """The gateway timed out, was unreachable, answered 5xx or garbage: a 503."""


class NotificationError(ProviderError):
    """A notification that is forged, stale or malformed: a 400."""


class RefundNotSupported(ProviderError):
    """This method cannot refund through its gateway (the message says why): a 400.

    The admin then refunds the shopper some other way and records it as a manual refund.
    """


# -- providers

class Provider:
    """Common base of payment and shipping providers."""

    name: ClassVar[str]
    settings_schema: ClassVar[type[Schema]] = NoSettings
    kind: ClassVar[str]

    # Set by the core when it binds a configured method to this provider, before `startup()`:
    # the shop it serves, and its plugin's own documents (`PluginDocuments`, shared with the
    # plugin's routes). None outside the service, say in a unit test that passes none.
    site: Site = Site()
    documents: PluginDocuments | None = None

    def __init__(self, method: Method, settings: Mapping[str, Any]):
        self.method = method
        self.settings = settings

    async def startup(self) -> None:
        """Open long-lived resources (an HTTP session); called once before use."""

    async def close(self) -> None:
        """Release what `startup` opened."""


class ShippingProvider(Provider):
    kind = "shipping"

    def supports(self, cart: Cart, address: Address) -> Support:
        return Support.yes()

    def quote(self, cart: Cart, address: Address) -> int:
        """The shipping cost in minor units (a non-negative integer)."""
        raise NotImplementedError


class PaymentProvider(Provider):
    kind = "payment"
    flow: ClassVar[str]  # "redirect" or "direct"

    def supports(self, cart: Cart) -> Support:
        return Support.yes()

    async def start(self, order: OrderInfo, urls: PaymentUrls) -> PaymentStart:
        raise NotImplementedError

    async def verify_return(self, order: OrderInfo, params: Mapping[str, str]) -> PaymentCheck:
        """The shopper came back with `params`; ask the gateway, never trust them."""
        return await self.check(order)

    async def check(self, order: OrderInfo) -> PaymentCheck:
        """Ask the gateway about this order's payment; what it answers is acted on at once.

        The core calls it when a hold expires (the sweeper, right before it would cancel the
        order), from the default `verify_return`, and for a verified `Notification` whose
        `check` is None. At hold expiry the payment must be decided, so `check` may end it at
        the gateway: expire a checkout session still open (Stripe), capture an order the
        shopper approved but never came back from (PayPal). A provider whose `check` does so
        must override `verify_return` and always fill `Notification.check`, so that only hold
        expiry reaches it.

        Return FAILED when the payment will never complete; PENDING keeps the hold (the
        sweeper asks again on its next pass: an asynchronous payment still in flight), and
        so does a `GatewayError`. This base version answers PENDING meaning "cannot ask":
        for a provider that does not override `check`, an expired hold is cancelled.
        """
        return PaymentCheck(PaymentState.PENDING)

    async def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        """Verify and read a server-to-server notification."""
        raise NotificationError("this payment method takes no notifications")

    async def cancel_payment(self, order: OrderInfo) -> PaymentCheck:
        """An admin cancels the order while it is on HOLD: end its payment, and say how it stands.

        Close the payment at the gateway where it can be closed, so the shopper can no longer
        pay an order about to be cancelled (expire a checkout session, void an order), then
        report it as `check` does: PAID (paid after all: the core settles it and refuses the
        cancel), FAILED (the core cancels), PENDING (money in flight: the cancel is refused).
        Never take money here (no capture). The default asks `check`, as hold expiry does.
        """
        return await self.check(order)

    async def refund(self, order: OrderInfo, request: RefundRequest) -> Refund:
        """Refund `request.amount` of the order's captured payment through the gateway.

        Optional. Return the gateway's `Refund` (SUCCEEDED, PENDING, or FAILED when the
        gateway refused it); raise `GatewayError` when the gateway could not be asked or its
        answer was lost (the core records nothing as refunded and the same attempt may be
        tried again with the same `attempt_id`: it must not refund twice), and
        `RefundNotSupported` when this method cannot refund (this default).
        """
        raise RefundNotSupported(f"payment method {self.method.id} ({self.name}) cannot refund "
                                 f"through its gateway")

    async def check_refund(self, order: OrderInfo, refund: Refund) -> Refund:
        """Ask the gateway how a PENDING refund (`refund.reference`) stands now.

        Optional; the default answers `refund` unchanged (cannot ask: a notification must
        finish it).
        """
        return refund
