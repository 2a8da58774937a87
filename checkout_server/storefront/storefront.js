// The demo storefront: a shopper's side of checkout-server, using only its public JSON API
// with the customer's token. No framework, no build step: plain DOM, text never parsed as HTML.
"use strict";

(function () {
  const TOKEN_KEY = "checkout-server.customer-token";
  const demoMeta = document.querySelector('meta[name="demo-token"]');
  const demoToken = demoMeta ? demoMeta.content : "";

  const state = {
    token: sessionStorage.getItem(TOKEN_KEY) || demoToken,
    profile: null,
    cart: null,
    addresses: [],
    address: null,        // the chosen address id
    methods: null,        // the last GET /checkout/methods answer
    shipping: null,       // the chosen shipping method id
    payment: null,        // the chosen payment method id
    products: [],
    ordersShown: 0,
    idempotencyKey: null, // kept only while a checkout's answer is unknown (network error)
  };

  const FIELD_NAMES = {
    cart: "Cart", profile: "Contact details", address: "Address", payment_method: "Payment",
    shipping_method: "Shipping", notes: "Notes", quantity: "Quantity", product: "Product",
    first_name: "First name", last_name: "Last name", email: "E-mail", phone: "Phone",
    line1: "Street and number", line2: "Address line 2", city: "City", postal_code: "Postal code",
    country: "Country code",
  };
  const STATUS_WORDS = {HOLD: "Waiting for payment", PROCESSING: "Confirmed", CANCELLED: "Cancelled"};
  const STOCK_WORDS = {in_stock: "In stock", low_stock: "Only a few left", out_of_stock: "Out of stock"};
  const PAGE = 50;

  // -- small DOM helpers

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const hidden = (text) => el("span", {class: "visually-hidden"}, text);

  function money(minor, currency) {
    if (typeof minor !== "number") return "–";
    try {
      const format = new Intl.NumberFormat(undefined, {style: "currency", currency});
      const digits = format.resolvedOptions().maximumFractionDigits;
      return format.format(minor / 10 ** digits);
    } catch (error) {  // an unknown currency code: show the plain minor units
      return `${minor} ${currency} (minor units)`;
    }
  }

  function when(iso) {
    const date = new Date(iso);
    return isNaN(date) ? String(iso || "") : date.toLocaleString();
  }

  // -- the API

  class ApiError extends Error {
    constructor(status, message, fields) {
      super(message);
      this.status = status;
      this.fields = fields || null;
    }
  }

  async function api(method, path, body, headers) {
    if (!state.token) {
      throw new ApiError(401, "No customer token yet: paste one under “Customer” at the top.");
    }
    const init = {method, cache: "no-store", headers: {Authorization: `Token ${state.token}`, ...headers}};
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (error) {
      throw new ApiError(0, "The shop did not answer: check that checkout-server is running, then try again.");
    }
    if (response.status === 204) return null;
    let data = null;
    try {
      data = await response.json();
    } catch (error) {
      if (response.ok) throw new ApiError(response.status, `The shop answered ${response.status} with something that is not JSON.`);
    }
    if (!response.ok) {
      const message = data && typeof data.error === "string" ? data.error : `The shop answered ${response.status}.`;
      throw new ApiError(response.status, message, data && data.fields);
    }
    return data;
  }

  // -- messages: a polite status line, and a problem box that takes the focus

  function notify(text) {
    const box = $("notice");
    box.textContent = text;
    box.hidden = !text;
  }

  function clearProblem() {
    const box = $("problem");
    box.replaceChildren();
    box.hidden = true;
  }

  function explain(error) {
    if (!(error instanceof ApiError)) return `Something went wrong in this page: ${error.message}`;
    if (error.status === 401) {
      return `Your customer token was not accepted (${error.message}). ` +
        "Paste a customer token under “Customer” at the top" + (demoToken ? ", or use the demo customer." : ".");
    }
    if (error.status === 503) {
      return `The service is unavailable right now: ${error.message}. Nothing was charged; try again in a moment.`;
    }
    if (error.status === 409) return `${error.message}. Wait a moment, then try again.`;
    return error.message.charAt(0).toUpperCase() + error.message.slice(1) + (/[.!?]$/.test(error.message) ? "" : ".");
  }

  function showProblem(error, heading) {
    const box = $("problem");
    const parts = [el("p", {class: "problem-title"}, heading || "That did not work.")];
    const fields = error instanceof ApiError && error.fields;
    if (fields && Object.keys(fields).length) {
      parts.push(el("ul", {}, Object.entries(fields).flatMap(([field, messages]) =>
        messages.map((message) => el("li", {}, el("strong", {}, `${FIELD_NAMES[field] || field}: `), message)))));
    } else {
      parts.push(el("p", {}, explain(error)));
    }
    if (error instanceof ApiError && error.status === 401) {
      $("account").open = true;
    }
    box.replaceChildren(...parts);
    box.hidden = false;
    box.focus();
  }

  // Runs an action; any error is shown to the shopper, never swallowed.
  async function attempt(action, heading) {
    try {
      return await action();
    } catch (error) {
      showProblem(error, heading);
      if (!(error instanceof ApiError)) console.error(error);
      return undefined;
    }
  }

  // -- the customer and the token

  function setToken(token) {
    state.token = token;
    if (token && token !== demoToken) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
    Object.assign(state, {profile: null, cart: null, addresses: [], address: null, methods: null,
                          shipping: null, payment: null});
  }

  async function loadProfile() {
    state.profile = await api("GET", "/api/shop/profile");
    renderAccount();
  }

  function renderAccount() {
    const profile = state.profile;
    const who = profile ? ([profile.first_name, profile.last_name].filter(Boolean).join(" ") || `customer ${profile.id}`) : "not signed in";
    const demo = profile && state.token === demoToken ? " (the demo customer)" : "";
    $("account-summary").textContent = `Customer: ${who}${demo}`;
    $("use-demo").hidden = !demoToken || state.token === demoToken;
  }

  // -- the cart (kept fresh from every answer that carries it)

  function setCart(cart) {
    state.cart = cart;
    const units = cart.items.reduce((sum, item) => sum + item.quantity, 0);
    $("cart-count").textContent = units ? `(${units})` : "";
    $("cart-count").setAttribute("aria-label", units ? `${units} items` : "empty");
  }

  async function loadCart() {
    setCart(await api("GET", "/api/shop/cart"));
  }

  function cartLine(item, currency) {
    const inputId = `quantity-${item.product}`;
    return el("li", {class: "line"},
      el("h2", {class: "line-name"}, item.name),
      el("p", {}, `${money(item.unit_price, currency)} each · `, el("strong", {}, money(item.line_total, currency))),
      el("form", {class: "quantity", novalidate: true, onsubmit: (event) => {
        event.preventDefault();
        const raw = $(inputId).value.trim();
        if (!/^\d+$/.test(raw)) {
          showProblem(new Error("the quantity must be a whole number from 0 to 999"), `${item.name}: not changed.`);
          return;
        }
        changeQuantity(item, Number(raw));
      }},
        el("label", {for: inputId}, "Quantity", hidden(` of ${item.name}`)),
        el("input", {id: inputId, type: "number", inputmode: "numeric", min: "0", max: "999",
                     value: String(item.quantity), required: true}),
        el("button", {type: "submit"}, "Update", hidden(` ${item.name}`)),
        el("button", {type: "button", class: "secondary", onclick: () => changeQuantity(item, 0)},
           "Remove", hidden(` ${item.name}`))));
  }

  async function changeQuantity(item, quantity) {
    clearProblem();
    await attempt(async () => {
      const path = `/api/shop/cart/items/${item.product}`;
      setCart(quantity === 0 ? await api("DELETE", path) : await api("PUT", path, {quantity}));
      notify(quantity === 0 ? `${item.name} removed from your cart.` : `${item.name}: ${quantity} in your cart.`);
      renderCart();
      $(quantity === 0 ? "cart-title" : `quantity-${item.product}`)?.focus();
    }, `${item.name}: not changed.`);
  }

  function renderCart() {
    const cart = state.cart;
    const empty = !cart.items.length;
    $("cart-empty").hidden = !empty;
    $("cart-lines").replaceChildren(...cart.items.map((item) => cartLine(item, cart.currency)));
    const subtotal = $("cart-subtotal");
    subtotal.hidden = empty;
    subtotal.textContent = `Subtotal: ${money(cart.subtotal, cart.currency)} (shipping is chosen at checkout)`;
    const unavailable = cart.unavailable || [];
    const warning = $("cart-unavailable");
    warning.hidden = !unavailable.length;
    warning.replaceChildren(...unavailable.map((product) => el("p", {},
      `Product ${product} in your cart is no longer for sale. `,
      el("button", {type: "button", class: "secondary",
                    onclick: () => changeQuantity({product, name: `Product ${product}`}, 0)},
         "Remove it", hidden(` (product ${product})`)))));
    $("to-checkout").hidden = empty;
  }

  // -- products

  function productCard(product, currency) {
    const soldOut = product.stock_state === "out_of_stock";
    const stockId = `stock-${product.id}`;
    return el("li", {class: "card"},
      el("h2", {}, product.name),
      el("p", {class: "price"}, money(product.price, currency)),
      el("p", {id: stockId, class: `stock ${product.stock_state}`},
         STOCK_WORDS[product.stock_state] || product.stock_state,
         product.digital ? " · digital download" : ""),
      el("button", {type: "button", disabled: soldOut, "aria-describedby": stockId,
                    onclick: () => addToCart(product)},
         "Add ", hidden(`${product.name} `), "to cart"));
  }

  async function loadProducts(more) {
    const after = more && state.products.length ? state.products[state.products.length - 1].id : 0;
    const page = await api("GET", `/api/shop/products?limit=${PAGE}&after=${after}`);
    state.products = more ? state.products.concat(page.products) : page.products;
    state.currency = page.currency;
    $("product-list").replaceChildren(...state.products.map((p) => productCard(p, page.currency)));
    $("more-products").hidden = page.products.length < PAGE;
    if (!state.products.length) $("product-list").replaceChildren(el("li", {}, "No products are for sale yet."));
  }

  async function addToCart(product) {
    clearProblem();
    await attempt(async () => {
      setCart(await api("POST", "/api/shop/cart/items", {product: product.id, quantity: 1}));
      const line = state.cart.items.find((item) => item.product === product.id);
      notify(`${product.name} added: ${line ? line.quantity : 1} in your cart.`);
    }, `${product.name} was not added to your cart.`);
  }

  // -- checkout: contact details, address book, methods, notes

  function renderCheckoutCart() {
    const cart = state.cart;
    const units = cart.items.reduce((sum, item) => sum + item.quantity, 0);
    const box = $("checkout-cart");
    box.replaceChildren(units
      ? `${units} ${units === 1 ? "item" : "items"} in your cart, ${money(cart.subtotal, cart.currency)}. `
      : "Your cart is empty. ",
      el("a", {href: "/#/cart"}, units ? "Change the cart" : "See the cart"));
  }

  function renderContact() {
    const profile = state.profile;
    const names = ["first_name", "last_name", "email", "phone"];
    const missing = names.filter((name) => !profile[name]);
    const known = [[profile.first_name, profile.last_name].filter(Boolean).join(" "), profile.email, profile.phone]
      .filter(Boolean).join(" · ");
    $("contact-summary").textContent = missing.length
      ? `${known ? known + ". " : ""}Still missing: ${missing.map((n) => FIELD_NAMES[n]).join(", ")}.`
      : known;
    const form = $("profile-form");
    for (const name of names) form.elements[name].value = profile[name] || "";
    $("contact-details").open = missing.length > 0;  // open only when something must be filled in
  }

  async function saveProfile(event) {
    event.preventDefault();
    clearProblem();
    const form = event.target;
    const changes = {};
    for (const name of ["first_name", "last_name", "email", "phone"]) {
      const value = form.elements[name].value.trim();
      if (value !== (state.profile[name] || "")) changes[name] = value;
    }
    await attempt(async () => {
      state.profile = await api("PATCH", "/api/shop/profile", changes);
      renderAccount();
      renderContact();
      $("contact-details").open = false;
      notify("Contact details saved.");
    }, "Your contact details were not saved.");
  }

  function addressText(address) {
    return [address.line1, address.line2, `${address.postal_code} ${address.city}`, address.country]
      .filter(Boolean).join(", ");
  }

  function renderAddresses() {
    const list = $("address-list");
    $("no-address").hidden = state.addresses.length > 0;
    if (!state.addresses.some((a) => a.id === state.address)) {
      state.address = state.addresses.length ? state.addresses[0].id : null;
    }
    list.replaceChildren(...state.addresses.map((address) => {
      const id = `address-${address.id}`;
      return el("li", {class: "choice"},
        el("input", {type: "radio", name: "address", id, value: String(address.id),
                     checked: address.id === state.address,
                     onchange: () => { state.address = address.id; loadMethods(); }}),
        el("label", {for: id}, addressText(address)),
        el("button", {type: "button", class: "secondary small", onclick: () => deleteAddress(address)},
           "Delete", hidden(` the address ${addressText(address)}`)));
    }));
  }

  async function loadAddresses() {
    state.addresses = await api("GET", "/api/shop/addresses");
    renderAddresses();
  }

  async function saveAddress(event) {
    event.preventDefault();
    clearProblem();
    const form = event.target;
    const address = {};
    for (const name of ["line1", "line2", "postal_code", "city", "country"]) {
      address[name] = form.elements[name].value.trim();
    }
    address.country = address.country.toUpperCase();
    await attempt(async () => {
      const saved = await api("POST", "/api/shop/addresses", address);
      state.addresses.push(saved);
      state.address = saved.id;
      form.reset();
      $("add-address").open = false;
      renderAddresses();
      notify(`Address saved: ${addressText(saved)}. Orders now go there.`);
      await loadMethods();
    }, "The address was not saved.");
  }

  async function deleteAddress(address) {
    clearProblem();
    await attempt(async () => {
      await api("DELETE", `/api/shop/addresses/${address.id}`);
      state.addresses = state.addresses.filter((a) => a.id !== address.id);
      renderAddresses();
      notify(`Address deleted: ${addressText(address)}.`);
      await loadMethods();
    }, "The address was not deleted.");
  }

  function methodChoice(kind, method, currency) {
    const id = `${kind}-${method.id}`;
    const reasonId = `${id}-reason`;
    const available = method.available !== false;
    const chosen = kind === "shipping" ? state.shipping : state.payment;
    const detail = kind === "shipping"
      ? (typeof method.cost === "number" ? (method.cost ? money(method.cost, currency) : "free") : "")
      : (method.flow === "redirect" ? "you pay on the payment provider's page" : "");
    return el("li", {class: available ? "choice" : "choice unavailable"},
      el("input", {type: "radio", name: kind, id, value: String(method.id), disabled: !available,
                   checked: available && method.id === chosen,
                   "aria-describedby": available ? null : reasonId,
                   onchange: () => { state[kind] = method.id; renderEstimate(); }}),
      el("label", {for: id}, method.title, detail ? el("span", {class: "detail"}, ` — ${detail}`) : ""),
      available ? "" : el("p", {id: reasonId, class: "reason"}, `Not available: ${method.reason}`));
  }

  function renderMethods() {
    const methods = state.methods;
    const hint = $("methods-hint");
    if (!methods) {
      $("shipping-list").replaceChildren();
      $("payment-list").replaceChildren();
      hint.textContent = "Choose an address to see the shipping and payment methods for it.";
      renderEstimate();
      return;
    }
    // A choice that this cart and address no longer allow is dropped, never kept silently.
    for (const kind of ["shipping", "payment"]) {
      const list = methods[`${kind}_methods`];
      if (!list.some((m) => m.id === state[kind] && m.available !== false)) state[kind] = null;
    }
    hint.textContent = "Methods that cannot serve this cart or address are greyed out, with the reason.";
    $("shipping-list").replaceChildren(...methods.shipping_methods.map((m) => methodChoice("shipping", m, methods.currency)));
    $("payment-list").replaceChildren(...methods.payment_methods.map((m) => methodChoice("payment", m, methods.currency)));
    if (!methods.shipping_methods.length) $("shipping-list").replaceChildren(el("li", {}, "The shop has no shipping methods."));
    if (!methods.payment_methods.length) $("payment-list").replaceChildren(el("li", {}, "The shop has no payment methods."));
    renderEstimate();
  }

  async function loadMethods() {
    if (state.address === null) {
      state.methods = null;
    } else {
      state.methods = await api("GET", `/api/shop/checkout/methods?address=${state.address}&include_unavailable=1`);
    }
    renderMethods();
  }

  function renderEstimate() {
    const cart = state.cart;
    const shipping = state.methods && state.methods.shipping_methods.find((m) => m.id === state.shipping);
    const box = $("estimate");
    if (!cart || !cart.items.length) {
      box.textContent = "";
      return;
    }
    box.textContent = shipping && typeof shipping.cost === "number"
      ? `To pay: ${money(cart.subtotal + shipping.cost, cart.currency)} (goods ${money(cart.subtotal, cart.currency)}, shipping ${money(shipping.cost, cart.currency)})`
      : `Goods: ${money(cart.subtotal, cart.currency)}, plus shipping`;
  }

  function randomKey() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  async function placeOrder(event) {
    event.preventDefault();
    clearProblem();
    const missing = [];
    if (state.address === null) missing.push("an address");
    if (state.shipping === null) missing.push("a shipping method");
    if (state.payment === null) missing.push("a payment method");
    if (missing.length) {
      showProblem(new Error(`choose ${missing.join(", ")} first`), "The order was not placed.");
      return;
    }
    const button = $("place-order");
    button.disabled = true;
    notify("Placing your order…");
    // One key per order attempt: a retry after a lost answer replays it instead of ordering twice.
    state.idempotencyKey = state.idempotencyKey || randomKey();
    const body = {address: state.address, shipping_method: state.shipping, payment_method: state.payment};
    const notes = $("notes").value.trim();
    if (notes) body.notes = notes;
    try {
      const answer = await api("POST", "/api/shop/checkout/cart", body, {"Idempotency-Key": state.idempotencyKey});
      state.idempotencyKey = null;
      if (answer.next_step) {
        notify("Taking you to the payment page…");
        window.location.assign(answer.next_step);
        return;
      }
      $("notes").value = "";
      window.location.assign(`/orders/${encodeURIComponent(answer.order_key)}`);
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 0) state.idempotencyKey = null;
      notify("");
      showProblem(error, "The order was not placed.");
      // What the shop said may come from a changed cart: show the current one.
      await attempt(async () => { await loadCart(); renderCheckoutCart(); await loadMethods(); });
    } finally {
      button.disabled = false;
    }
  }

  // -- orders

  function orderLine(order) {
    const href = `/orders/${encodeURIComponent(order.order_key)}`;
    return el("li", {class: "line"},
      el("h2", {class: "line-name"}, el("a", {href}, order.order_key)),
      el("p", {}, `${when(order.created_at)} · `, el("span", {class: `status ${order.status}`}, STATUS_WORDS[order.status] || order.status),
         ` · ${money(order.total, order.currency)}`));
  }

  async function loadOrders(more) {
    const skip = more ? state.ordersShown : 0;
    const orders = await api("GET", `/api/shop/orders?limit=${PAGE}&skip=${skip}`);
    const list = $("order-list");
    if (more) list.append(...orders.map(orderLine));
    else list.replaceChildren(...orders.map(orderLine));
    state.ordersShown = skip + orders.length;
    $("orders-empty").hidden = state.ordersShown > 0;
    $("more-orders").hidden = orders.length < PAGE;
  }

  // The query string only says which way the shopper came back; the order's status is the truth.
  function resultMessage(order, payment) {
    if (order.status === "PROCESSING") {
      return ["paid", payment === "paid"
        ? "Payment received. Thank you: your order is confirmed."
        : "Thank you: your order is confirmed."];
    }
    if (order.status === "CANCELLED") {
      const last = order.history.length ? order.history[order.history.length - 1] : null;
      const why = last && last.reason ? ` (${last.reason})` : "";
      return ["failed", `The payment did not go through${why}, so this order is cancelled. ` +
        "Nothing was charged, and your cart still holds the items: you can check out again."];
    }
    return ["pending", payment === "pending" || payment === "failed"
      ? "The payment is not confirmed yet. Check the status again in a moment."
      : "This order is waiting for your payment."];
  }

  function fact(name, ...value) {
    return [el("dt", {}, name), el("dd", {}, ...value)];
  }

  async function loadOrder(orderKey, payment) {
    const order = await api("GET", `/api/shop/orders/${encodeURIComponent(orderKey)}`);
    const currency = order.currency;
    $("order-title").textContent = `Order ${order.order_key}`;
    document.title = `Order ${order.order_key} · Demo shop`;
    const [kind, message] = resultMessage(order, payment);
    const result = $("order-result");
    result.className = `result ${kind}`;
    result.replaceChildren(el("p", {}, message));
    if (order.status === "HOLD" && order.next_step) {
      result.append(el("p", {}, el("a", {class: "button", href: order.next_step}, "Go to the payment page")));
    }
    result.hidden = false;
    const address = order.address ? addressText(order.address) : "–";
    $("order-facts").replaceChildren(
      ...fact("Status", el("span", {class: `status ${order.status}`}, STATUS_WORDS[order.status] || order.status)),
      ...fact("Placed", when(order.created_at)),
      ...fact("Deliver to", address),
      ...(order.notes ? fact("Notes", order.notes) : []));
    $("order-items").replaceChildren(...order.items.map((item) => el("li", {class: "line"},
      `${item.quantity} × ${item.name} · ${money(item.line_total, currency)}`)));
    $("order-totals").replaceChildren(
      ...fact("Goods", money(order.subtotal, currency)),
      ...fact("Shipping", money(order.shipping_cost, currency)),
      ...fact("Total", el("strong", {}, money(order.total, currency))));
    $("order-history").replaceChildren(...order.history.map((entry) => el("li", {},
      `${when(entry.at)}: ${STATUS_WORDS[entry.status] || entry.status}`, entry.reason ? ` (${entry.reason})` : "")));
  }

  // -- routing: hash views on /, and the order page at /orders/{key} (the shop's return_url)

  function route() {
    const path = location.pathname.match(/^\/orders\/([^/]+)$/);
    if (path) {
      return {view: "order", key: decodeURIComponent(path[1]),
              payment: new URLSearchParams(location.search).get("payment")};
    }
    const hash = location.hash.replace(/^#\/?/, "");
    const order = hash.match(/^orders\/(.+)$/);
    if (order) return {view: "order", key: decodeURIComponent(order[1]), payment: null};
    if (["cart", "checkout", "orders"].includes(hash)) return {view: hash};
    return {view: "products"};
  }

  const TITLES = {products: "Products", cart: "Your cart", checkout: "Checkout", orders: "Your orders", order: "Order"};

  const LOADERS = {
    products: () => loadProducts(false),
    cart: async () => { await loadCart(); renderCart(); },
    checkout: async () => {
      await Promise.all([loadCart(), loadAddresses(), state.profile ? null : loadProfile()]);
      renderCheckoutCart();
      renderContact();
      await loadMethods();
    },
    orders: () => loadOrders(false),
    order: (where) => loadOrder(where.key, where.payment),
  };

  async function show(moveFocus) {
    const where = route();
    for (const view of document.querySelectorAll(".view")) view.hidden = view.id !== `view-${where.view}`;
    for (const link of document.querySelectorAll("nav a[data-view]")) {
      if (link.dataset.view === where.view) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    document.title = `${TITLES[where.view]} · Demo shop`;
    clearProblem();
    // Busy while the view's data loads: assistive technology (and the browser tests) wait for it.
    $("main").setAttribute("aria-busy", "true");
    try {
      await attempt(() => LOADERS[where.view](where), "This page could not be loaded.");
    } finally {
      $("main").removeAttribute("aria-busy");
    }
    const heading = document.querySelector(`#view-${where.view} h1`);
    // Keyboard and screen-reader users start at the new view's heading, not the old view's spot.
    if (moveFocus && heading && $("problem").hidden) heading.focus();
  }

  async function start() {
    $("token-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const token = $("token-input").value.trim();
      if (!token) {
        showProblem(new Error("paste a customer token first"), "The token was not changed.");
        return;
      }
      setToken(token);
      $("token-input").value = "";
      await signIn();
    });
    $("use-demo").addEventListener("click", async () => {
      setToken(demoToken);
      await signIn();
    });
    $("more-products").addEventListener("click", () => attempt(() => loadProducts(true)));
    $("more-orders").addEventListener("click", () => attempt(() => loadOrders(true)));
    $("profile-form").addEventListener("submit", saveProfile);
    $("address-form").addEventListener("submit", saveAddress);
    $("checkout-form").addEventListener("submit", placeOrder);
    $("order-refresh").addEventListener("click", () => {
      const where = route();
      clearProblem();
      notify("");
      attempt(async () => {
        await loadOrder(where.key, null);
        notify("Status updated.");
      });
    });
    window.addEventListener("hashchange", () => { notify(""); show(true); });
    await signIn(false);
  }

  async function signIn(announce = true) {
    renderAccount();
    const ok = await attempt(async () => {
      await Promise.all([loadProfile(), loadCart()]);
      return true;
    }, "You are not signed in.");
    if (ok) {
      $("account").open = false;
      if (announce) notify(`Signed in as ${$("account-summary").textContent.replace(/^Customer: /, "")}.`);
      await show(announce);
    } else {
      $("main").removeAttribute("aria-busy");
      $("account").open = true;
      $("token-input").focus();
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
