"""The shopper's profile and address book."""

from __future__ import annotations

from checkout_server.plugin.api_docs import PATH_ID, api_operation
from checkout_server.plugin.web import APIError, BaseHandler
from checkout_server.response_schemas import AddressAnswer, ProfileAnswer
from checkout_server.schemas import AddressSchema, ProfileSchema
from checkout_server.storage.customers import ADDRESS_FIELDS, PROFILE_FIELDS

# An address book is part of the customer document: keep it small.
MAX_ADDRESSES = 50


def profile_json(customer: dict) -> dict:
    profile = {field: customer.get(field) for field in PROFILE_FIELDS}
    return {"id": customer["_id"], **profile, "complete": all(profile.values())}


def email_taken_error() -> APIError:
    """Emails are unique, compared case-insensitively (checked, not atomic: see README)."""
    message = "a customer with this email already exists"
    return APIError(400, message, {"email": [message]})


def address_json(address: dict) -> dict:
    return {field: address.get(field, "") for field in ADDRESS_FIELDS}


class ProfileHandler(BaseHandler):
    auth = "customer"

    @api_operation("The customer's profile", answers={200: ProfileAnswer})
    async def get(self):
        self.send(profile_json(self.customer))

    @api_operation("Change any of first_name, last_name, email, phone", body=ProfileSchema(partial=True),
                   answers={200: ProfileAnswer})
    async def patch(self):
        changes = self.json_body(ProfileSchema(), partial=True)
        if changes.get("email") and await self.storage.customers.email_taken(changes["email"],
                                                                             except_id=self.customer["_id"]):
            raise email_taken_error()
        customer = await self.storage.customers.update_profile(self.customer["_id"], changes)
        self.send(profile_json(customer))


class AddressesHandler(BaseHandler):
    auth = "customer"

    @api_operation("The customer's addresses", answers={200: AddressAnswer(many=True)})
    async def get(self):
        addresses = (self.customer.get("addresses") or {}).values()
        self.send([address_json(a) for a in sorted(addresses, key=lambda a: a["id"])])

    @api_operation("Add an address", body=AddressSchema, answers={201: AddressAnswer})
    async def post(self):
        address = self.json_body(AddressSchema())
        if len(self.customer.get("addresses") or {}) >= MAX_ADDRESSES:
            raise APIError(400, f"an address book holds at most {MAX_ADDRESSES} addresses")
        stored = await self.storage.customers.add_address(self.customer["_id"], address)
        self.send(address_json(stored), status=201)


class AddressHandler(BaseHandler):
    auth = "customer"

    @api_operation("Delete an address", answers={204: None}, path={"address_id": PATH_ID})
    async def delete(self, address_id: str):
        # Another customer's address answers exactly as a missing one.
        address_id = self.int_argument(address_id, "address")
        if not await self.storage.customers.delete_address(self.customer["_id"], address_id):
            raise APIError(404, "address not found")
        self.send(None, status=204)


default_handlers = [
    (r"/api/shop/profile", ProfileHandler),
    (r"/api/shop/addresses", AddressesHandler),
    (r"/api/shop/addresses/([^/]+)", AddressHandler),
]
