"""The demo storefront in a real headless Chromium, clicked through as a shopper would.

One `checkout-server serve --demo` (embedded database) serves every test here; each test
sets the demo customer's cart through the API first, so tests don't depend on each other.
The browser window is phone-sized. Each test leaves a screenshot in its tmp_path.

Needs Debian's `chromium` and `chromium-driver` (.ci/run installs them) and selenium (in
the test requirements); without them the whole file is skipped with one line saying why.
"""

import base64
import json
import re
import shutil
import urllib.error
import urllib.request

import pytest
from demo_process import missing_demo_providers, read_demo, start_demo, stop_process

from checkout_server.storage.embedded import free_port

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
CHROMEDRIVER = shutil.which("chromedriver")


def _why_no_browser() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -r requirements-test.txt)"
    if not (CHROMIUM and CHROMEDRIVER):
        return "no chromium and chromedriver on PATH (Debian: apt-get install chromium chromium-driver)"
    missing = missing_demo_providers()
    if missing:
        return f"the demo's providers are not installed ({', '.join(sorted(missing))}): pip install -r requirements.txt"
    return None


if (_reason := _why_no_browser()) is not None:
    pytest.skip(f"storefront browser tests skipped: {_reason}", allow_module_level=True)

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

ADMIN = "storefront-test-admin"
PHONE = (390, 844)  # CSS pixels of a common phone
WAIT = 15  # seconds any one expected change may take (a checkout on the embedded database)


class Demo:
    def __init__(self, base: str, token: str):
        self.base = base
        self.token = token

    def api(self, method: str, path: str, body=None, token: str | None = None):
        """(status, JSON answer) of the API, as the demo customer unless `token` says otherwise."""
        request = urllib.request.Request(self.base + path, method=method,
                                         data=None if body is None else json.dumps(body).encode())
        request.add_header("Authorization", f"Token {token or self.token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def product_id(self, name: str) -> int:
        products = self.api("GET", "/api/shop/products")[1]["products"]
        return next(p["id"] for p in products if p["name"] == name)

    def stock(self, name: str) -> int:
        return self.api("GET", f"/api/admin/products/{self.product_id(name)}", token=ADMIN)[1]["stock"]

    def set_cart(self, lines: dict[str, int]) -> None:
        """Exactly these lines (product name -> quantity) in the demo customer's cart."""
        for item in self.api("GET", "/api/shop/cart")[1]["items"]:
            assert self.api("DELETE", f"/api/shop/cart/items/{item['product']}")[0] == 200
        for name, quantity in lines.items():
            status, answer = self.api("PUT", f"/api/shop/cart/items/{self.product_id(name)}", {"quantity": quantity})
            assert status == 200, answer

    def cart(self) -> dict[str, int]:
        return {item["name"]: item["quantity"] for item in self.api("GET", "/api/shop/cart")[1]["items"]}

    def orders(self) -> list[dict]:
        return self.api("GET", "/api/shop/orders")[1]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("storefront") / "var"
    port = free_port()
    process = start_demo(data_dir, port, admin_token=ADMIN)
    try:
        token, printed = read_demo(process)
        assert f"open http://127.0.0.1:{port}/ in a browser" in printed
        yield Demo(f"http://127.0.0.1:{port}", token)
    finally:
        assert stop_process(process) == 0


@pytest.fixture(scope="module")
def chromium():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--lang=en-US", "--force-device-scale-factor=1", "--disable-extensions",
                     f"--window-size={PHONE[0]},{PHONE[1]}"):
        options.add_argument(argument)
    try:
        driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    except WebDriverException as exc:
        pytest.skip(f"storefront browser tests skipped: chromium did not start ({exc.msg})")
    try:
        # The window's outer size includes no browser chrome in headless mode: the page gets PHONE.
        driver.set_window_size(*PHONE)
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def browser(chromium, demo, tmp_path, request):
    """The browser on a fresh storefront tab state; a screenshot of the end state afterwards."""
    chromium.get(demo.base + "/")
    chromium.execute_script("sessionStorage.clear()")
    yield chromium
    save_full_page(chromium, tmp_path / f"{request.node.name}.png")


def save_full_page(browser, path) -> None:
    """A PNG of the whole page as the phone shows it, not only what fits on its screen."""
    width, height = browser.execute_script(
        "return [document.documentElement.clientWidth, document.documentElement.scrollHeight]")
    shot = browser.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}})
    path.write_bytes(base64.b64decode(shot["data"]))


# -- what a shopper sees and does

def wait_for(browser, condition, message: str):
    return WebDriverWait(browser, WAIT).until(lambda _: condition(), message=message)


def open_view(browser, demo, fragment: str, heading: str):
    browser.get(f"{demo.base}/#/{fragment}")
    browser.refresh()  # a new load even when only the fragment changed
    wait_for(browser, lambda: visible_text(browser, "h1") == heading, f"the {heading!r} view")
    wait_until_loaded(browser)


def wait_until_loaded(browser):
    """Until the view's data is in: the page marks <main> aria-busy while it loads."""
    main = browser.find_element(By.ID, "main")
    wait_for(browser, lambda: main.get_attribute("aria-busy") is None, "the view's data")


def visible_text(browser, css: str) -> str:
    return " ".join(e.text for e in browser.find_elements(By.CSS_SELECTOR, css) if e.is_displayed())


def notice(browser) -> str:
    return browser.find_element(By.ID, "notice").text


def product_button(browser, name: str):
    return browser.find_element(By.XPATH, f'//ul[@id="product-list"]/li[h2="{name}"]//button')


def choice(browser, kind: str, title: str):
    """(radio, its <li>) of a shipping or payment method, by title."""
    item = browser.find_element(By.XPATH, f'//ul[@id="{kind}-list"]/li[label[starts-with(., "{title}")]]')
    return item.find_element(By.CSS_SELECTOR, "input[type=radio]"), item


def wait_for_methods(browser):
    wait_for(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#payment-list input"),
             "the payment methods")


def checkout(browser, demo, shipping: str, payment: str, notes: str = ""):
    open_view(browser, demo, "checkout", "Checkout")
    wait_for_methods(browser)
    for kind, title in (("shipping", shipping), ("payment", payment)):
        radio, _ = choice(browser, kind, title)
        radio.send_keys(Keys.SPACE)  # the keyboard way to choose a radio button
        assert radio.is_selected()
    if notes:
        browser.find_element(By.ID, "notes").send_keys(notes)
    browser.find_element(By.ID, "place-order").click()


def order_page(browser, demo, result: str | None):
    query = rf"\?payment={result}$" if result else "$"
    wait_for(browser, lambda: re.search(rf"/orders/ORD-\d{{4}}-\d+{query}", browser.current_url),
             f"the storefront's order page ({result or 'direct'})")
    wait_for(browser, lambda: browser.find_element(By.ID, "order-result").is_displayed(), "the order's result")
    return re.search(r"/orders/(ORD-[\d-]+)", browser.current_url).group(1)


def sandbox_decide(browser, button: str) -> None:
    wait_for(browser, lambda: "/sandbox/pay/" in browser.current_url, "the sandbox payment page")
    browser.find_element(By.XPATH, f'//button[.="{button}"]').click()


# -- the tests

def test_add_to_cart_and_change_the_quantity(browser, demo):
    demo.set_cart({})
    browser.refresh()
    wait_for(browser, lambda: len(browser.find_elements(By.CSS_SELECTOR, "#product-list li")) == 5, "5 products")
    card = browser.find_element(By.XPATH, '//ul[@id="product-list"]/li[h2="Espresso cup"]')
    assert "€12.00" in card.text and "In stock" in card.text
    assert not browser.find_element(By.ID, "more-products").is_displayed()  # all 5 fit on one page
    assert "digital download" in browser.find_element(By.XPATH, '//li[h2="Brewing guide (e-book)"]').text

    add = product_button(browser, "Espresso cup")
    assert add.accessible_name == "Add Espresso cup to cart"
    add.send_keys(Keys.ENTER)  # a real button: the keyboard works it
    wait_for(browser, lambda: notice(browser) == "Espresso cup added: 1 in your cart.", "the first add")
    add.click()
    wait_for(browser, lambda: notice(browser) == "Espresso cup added: 2 in your cart.", "the second add")
    assert browser.find_element(By.ID, "cart-count").text == "(2)"

    browser.find_element(By.CSS_SELECTOR, 'nav a[data-view="cart"]').send_keys(Keys.ENTER)
    wait_for(browser, lambda: browser.switch_to.active_element.get_attribute("id") == "cart-title",
             "the focus on the cart's heading")
    quantity = browser.find_element(By.ID, f"quantity-{demo.product_id('Espresso cup')}")
    assert quantity.accessible_name == "Quantity of Espresso cup" and quantity.get_attribute("value") == "2"
    quantity.clear()
    quantity.send_keys("3", Keys.ENTER)
    wait_for(browser, lambda: notice(browser) == "Espresso cup: 3 in your cart.", "the new quantity")
    assert "Subtotal: €36.00" in browser.find_element(By.ID, "cart-subtotal").text
    assert demo.cart() == {"Espresso cup": 3}


def test_methods_change_with_the_cart(browser, demo):
    demo.set_cart({"Espresso cup": 2})
    open_view(browser, demo, "checkout", "Checkout")
    wait_for_methods(browser)
    standard, _ = choice(browser, "shipping", "Standard shipping")
    download, download_item = choice(browser, "shipping", "Download")
    cash, _ = choice(browser, "payment", "Pay on delivery")
    assert standard.is_enabled() and cash.is_enabled()
    assert not download.is_enabled()
    assert "Not available: only carts of digital goods can be delivered by download" in download_item.text
    assert "€4.90" in visible_text(browser, "#shipping-list")

    # The shopper swaps the cup for the e-book, in the cart and on the products page.
    open_view(browser, demo, "cart", "Your cart")
    browser.find_element(By.XPATH, '//li[h2="Espresso cup"]//button[starts-with(., "Remove")]').click()
    wait_for(browser, lambda: browser.find_element(By.ID, "cart-empty").is_displayed(), "the emptied cart")
    assert not browser.find_element(By.ID, "to-checkout").is_displayed()
    open_view(browser, demo, "", "Products")
    product_button(browser, "Brewing guide (e-book)").click()
    wait_for(browser, lambda: "added" in notice(browser), "the e-book in the cart")

    open_view(browser, demo, "checkout", "Checkout")
    wait_for(browser, lambda: choice(browser, "shipping", "Download")[0].is_enabled(), "download shipping offered")
    standard, standard_item = choice(browser, "shipping", "Standard shipping")
    cash, cash_item = choice(browser, "payment", "Pay on delivery")
    sandbox, _ = choice(browser, "payment", "Sandbox card")
    assert not standard.is_enabled() and not cash.is_enabled() and sandbox.is_enabled()
    assert "Not available: this cart holds only digital goods: nothing to ship" in standard_item.text
    assert "Not available: cash on delivery is not available for digital goods" in cash_item.text
    # The reason is what a screen reader reads with the greyed-out choice.
    assert cash.get_attribute("aria-describedby") == cash_item.find_element(By.CLASS_NAME, "reason").get_attribute("id")
    assert demo.cart() == {"Brewing guide (e-book)": 1}


def test_pay_on_delivery(browser, demo):
    demo.set_cart({"Espresso cup": 2})
    cups = demo.stock("Espresso cup")
    checkout(browser, demo, "Standard shipping", "Pay on delivery", notes="Ring twice, please")
    order_key = order_page(browser, demo, None)
    result = browser.find_element(By.ID, "order-result").text
    assert result == "Thank you: your order is confirmed."
    facts = browser.find_element(By.ID, "order-facts").text
    assert "Confirmed" in facts and "Ring twice, please" in facts and "Kaffeestraße 1" in facts
    assert "Total\n€28.90" in browser.find_element(By.ID, "order-totals").text  # 2 x 12.00 + 4.90

    status, order = demo.api("GET", f"/api/shop/orders/{order_key}")
    assert status == 200 and order["status"] == "PROCESSING" and order["total"] == 2890 and order["notes"] == "Ring twice, please"
    assert demo.stock("Espresso cup") == cups - 2 and demo.cart() == {}
    open_view(browser, demo, "orders", "Your orders")
    assert order_key in browser.find_element(By.ID, "order-list").text.splitlines()[0]


def test_sandbox_card_paid(browser, demo):
    demo.set_cart({"Coffee beans 1 kg": 1})
    checkout(browser, demo, "Standard shipping", "Sandbox card")
    sandbox_decide(browser, "Pay")
    order_key = order_page(browser, demo, "paid")
    assert browser.find_element(By.ID, "order-result").text == "Payment received. Thank you: your order is confirmed."
    assert "Confirmed" in browser.find_element(By.ID, "order-facts").text
    assert browser.find_element(By.ID, "order-title").text == f"Order {order_key}"
    assert demo.api("GET", f"/api/shop/orders/{order_key}")[1]["status"] == "PROCESSING"
    assert demo.cart() == {}
    assert browser.find_element(By.ID, "cart-count").text == ""


def test_sandbox_card_cancelled_gives_units_back_and_keeps_the_cart(browser, demo):
    demo.set_cart({"Hand grinder": 1})
    grinders = demo.stock("Hand grinder")
    checkout(browser, demo, "Standard shipping", "Sandbox card")
    wait_for(browser, lambda: "/sandbox/pay/" in browser.current_url, "the sandbox payment page")
    assert demo.stock("Hand grinder") == grinders - 1  # held while the shopper decides
    sandbox_decide(browser, "Cancel")
    order_key = order_page(browser, demo, "failed")
    result = browser.find_element(By.ID, "order-result").text
    assert result.startswith("The payment did not go through (cancelled on the sandbox page)")
    assert "your cart still holds the items" in result
    assert "Cancelled" in browser.find_element(By.ID, "order-facts").text
    assert demo.api("GET", f"/api/shop/orders/{order_key}")[1]["status"] == "CANCELLED"
    assert demo.stock("Hand grinder") == grinders
    open_view(browser, demo, "cart", "Your cart")
    assert demo.cart() == {"Hand grinder": 1}
    assert "Hand grinder" in browser.find_element(By.ID, "cart-lines").text


def test_checkout_of_an_emptied_cart_shows_the_validation_error(browser, demo):
    demo.set_cart({"Milk jug": 1})
    orders_before = len(demo.orders())
    open_view(browser, demo, "checkout", "Checkout")
    wait_for_methods(browser)
    # The cart is emptied elsewhere (another tab, another device) after the page showed it.
    demo.set_cart({})
    checkout_button = browser.find_element(By.ID, "place-order")
    for kind, title in (("shipping", "Standard shipping"), ("payment", "Pay on delivery")):
        choice(browser, kind, title)[0].click()
    checkout_button.click()
    problem = browser.find_element(By.ID, "problem")
    wait_for(browser, lambda: problem.is_displayed(), "the error")
    assert problem.text == "The order was not placed.\nCart: your cart is empty"
    assert browser.switch_to.active_element == problem  # announced and focused, not only painted
    wait_for(browser, lambda: browser.find_element(By.ID, "checkout-cart").text.startswith("Your cart is empty."),
             "the checkout showing the emptied cart")
    assert len(demo.orders()) == orders_before


def test_another_customer_by_token_and_a_refused_token(browser, demo):
    status, other = demo.api("POST", "/api/admin/customers", {"first_name": "Grace", "last_name": "Hopper"},
                             token=ADMIN)
    assert status == 201, other
    summary = browser.find_element(By.ID, "account-summary")
    wait_for(browser, lambda: summary.text == "Customer: Dana Demo (the demo customer)", "the demo customer")

    summary.click()
    field = browser.find_element(By.ID, "token-input")
    assert field.accessible_name == "Customer token"
    field.send_keys("not-a-real-token", Keys.ENTER)
    problem = browser.find_element(By.ID, "problem")
    wait_for(browser, lambda: problem.is_displayed(), "the refused token")
    assert "Your customer token was not accepted" in problem.text

    field.send_keys(other["token"], Keys.ENTER)
    wait_for(browser, lambda: summary.text == "Customer: Grace Hopper", "the pasted customer")
    open_view(browser, demo, "checkout", "Checkout")  # the tab keeps the pasted token
    assert "Still missing: E-mail, Phone." in browser.find_element(By.ID, "contact-summary").text
    assert browser.find_element(By.ID, "no-address").is_displayed()

    summary = browser.find_element(By.ID, "account-summary")  # a new page since the pasted token
    summary.click()
    browser.find_element(By.ID, "use-demo").click()
    wait_for(browser, lambda: summary.text == "Customer: Dana Demo (the demo customer)", "back to the demo customer")


def test_every_view_is_labelled_and_fits_a_phone(browser, demo):
    demo.set_cart({"Espresso cup": 1})
    unlabelled = """
        return [...document.querySelectorAll('input, textarea, button, a[href]')]
          .filter((e) => e.offsetParent !== null)
          .filter((e) => (e.type === 'radio' || e.tagName !== 'INPUT' && e.tagName !== 'TEXTAREA')
                         ? !(e.labels && e.labels.length) && !e.textContent.trim()
                         : !(e.labels && e.labels.length))
          .map((e) => e.outerHTML.slice(0, 80));"""
    for fragment, heading in (("", "Products"), ("cart", "Your cart"), ("checkout", "Checkout"),
                              ("orders", "Your orders")):
        open_view(browser, demo, fragment, heading)
        if fragment == "checkout":
            wait_for_methods(browser)
            browser.find_element(By.CSS_SELECTOR, "#add-address summary").click()
        assert browser.execute_script(unlabelled) == [], heading
        width = browser.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], f"{heading}: the page is wider than the phone's screen ({width})"
        size = browser.execute_script("return parseFloat(getComputedStyle(document.body).fontSize)")
        assert size >= 16, f"{heading}: body text of {size}px is too small to read on a phone"
    # The first Tab reaches the skip link, which leads past the navigation.
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    assert browser.switch_to.active_element.text == "Skip to the content"


def test_address_book_add_choose_and_delete(browser, demo):
    demo.set_cart({"Milk jug": 1})
    open_view(browser, demo, "checkout", "Checkout")
    wait_for_methods(browser)
    browser.find_element(By.CSS_SELECTOR, "#add-address summary").click()
    # A wrong country code: the API's answer is shown field by field, nothing is saved.
    fields = {"line1": "Rue du Café 3", "postal-code": "75002", "city": "Paris", "country": "XX"}
    for field, value in fields.items():
        browser.find_element(By.ID, field).send_keys(value)
    browser.find_element(By.ID, "address-form").submit()
    problem = browser.find_element(By.ID, "problem")
    wait_for(browser, lambda: problem.is_displayed(), "the refused address")
    assert problem.text.startswith("The address was not saved.\nCountry code: ")
    assert len(demo.api("GET", "/api/shop/addresses")[1]) == 1

    country = browser.find_element(By.ID, "country")
    country.clear()
    country.send_keys("fr", Keys.ENTER)  # Enter submits the form; the code is sent upper-case
    wait_for(browser, lambda: notice(browser).startswith("Address saved: Rue du Café 3, 75002 Paris, FR."),
             "the saved address")
    saved = demo.api("GET", "/api/shop/addresses")[1][-1]
    assert saved["country"] == "FR" and saved["city"] == "Paris"
    new_choice = browser.find_element(By.ID, f"address-{saved['id']}")
    assert new_choice.is_selected()  # a new address is the one orders go to
    wait_for_methods(browser)

    browser.find_element(By.XPATH, f'//li[input[@id="address-{saved["id"]}"]]//button').click()
    wait_for(browser, lambda: notice(browser).startswith("Address deleted: Rue du Café 3"), "the deletion")
    remaining = [a["id"] for a in demo.api("GET", "/api/shop/addresses")[1]]
    assert remaining and saved["id"] not in remaining
    assert browser.find_element(By.ID, f"address-{remaining[0]}").is_selected()  # back to the first


def test_an_unpaid_order_page_says_pending_and_leads_back_to_the_payment_page(browser, demo, tmp_path):
    demo.set_cart({"Espresso cup": 1})
    checkout(browser, demo, "Pick up in store", "Sandbox card")
    wait_for(browser, lambda: "/sandbox/pay/" in browser.current_url, "the sandbox payment page")
    payment_page = browser.current_url
    order_key = demo.orders()[0]["order_key"]
    # The shopper comes back without deciding (the gateway said "pending").
    browser.get(f"{demo.base}/orders/{order_key}?payment=pending")
    order_page(browser, demo, "pending")
    result = browser.find_element(By.ID, "order-result")
    assert result.text.startswith("The payment is not confirmed yet.")
    assert "Waiting for payment" in browser.find_element(By.ID, "order-facts").text
    save_full_page(browser, tmp_path / "pending.png")
    result.find_element(By.LINK_TEXT, "Go to the payment page").click()
    wait_for(browser, lambda: browser.current_url == payment_page, "back on the payment page")
    sandbox_decide(browser, "Pay")
    order_page(browser, demo, "paid")
    assert demo.api("GET", f"/api/shop/orders/{order_key}")[1]["status"] == "PROCESSING"
