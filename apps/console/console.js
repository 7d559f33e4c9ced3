// The annostack console: browse a tenant's datasets, upload files and edit annotation
// documents. It talks to the tenant API for everything but file bytes; those go straight
// between the browser and object storage through pre-signed URLs, the way the seed's editor
// works: an upload is a PUT (or one PUT per part). An annotation save PUTs a new revision (its
// URL writes once) and then commits it with If-Match, so a stale save is refused (412) and
// overwrites nothing, exactly as the API's own save.

const PAGE_SIZE = 50;
const PREVIEWS = ["thumb-200.jpg", "bev.png"]; // shown on a card when processing wrote them
const EMPTY_DOCUMENT = '{\n  "objects": []\n}\n';
const PENDING = ["uploading", "uploaded"]; // statuses whose previews may still come

const state = { token: null, dataset: null, next: null, item: null, etag: null, loads: 0 };
const $ = (id) => document.getElementById(id);

class ApiError extends Error {}

function say(message, isError = false) {
  $("status").textContent = message;
  $("status").classList.toggle("error", isError);
}

function reason(body) {
  // The API answers {"detail": "..."} or, for a 422, {"detail": [{"loc": .., "msg": ..}]}.
  const detail = body && body.detail;
  if (Array.isArray(detail)) return detail.map((e) => `${e.loc.join(".")}: ${e.msg}`).join("; ");
  return detail || "no reason given";
}

async function api(path, { method = "GET", body } = {}) {
  const headers = { Authorization: `Bearer ${state.token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(`/v1${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const answer = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(`${method} ${path}: ${response.status} ${reason(answer)}`);
  return answer;
}

function element(tag, properties = {}, ...children) {
  const node = Object.assign(document.createElement(tag), properties);
  node.append(...children);
  return node;
}

// Datasets

async function connect(token) {
  state.token = token;
  sessionStorage.setItem("annostack-token", token);
  const page = await api("/datasets?limit=100");
  $("datasets").replaceChildren(...page.items.map(datasetEntry));
  $("connect").hidden = true;
  $("tenant").hidden = false;
  $("tenant").textContent = `${page.items.length} dataset(s)`;
  say(page.items.length ? "Connected. Pick a dataset." : "Connected; this tenant has no datasets.");
}

function datasetEntry(dataset) {
  const button = element(
    "button",
    { type: "button", onclick: () => run(() => openDataset(dataset, button)) },
    dataset.displayName,
    element("small", {}, `${dataset.dataType} · ${dataset.itemCount} items`),
  );
  button.dataset.id = dataset.id;
  return element("li", {}, button);
}

async function openDataset(dataset, button) {
  for (const other of document.querySelectorAll("nav button")) other.ariaCurrent = "false";
  button.ariaCurrent = "true";
  state.dataset = dataset;
  $("dataset").hidden = false;
  $("editor").hidden = true;
  $("dataset-name").textContent = `${dataset.displayName} (${dataset.name})`;
  $("items").replaceChildren();
  state.next = null;
  await loadItems();
}

async function loadItems() {
  const after = state.next ? `&after=${encodeURIComponent(state.next)}` : "";
  const page = await api(`/datasets/${state.dataset.id}/items?limit=${PAGE_SIZE}${after}`);
  $("items").append(...page.items.map(itemCard));
  state.next = page.next;
  $("more").hidden = !page.next;
  say(`${$("items").children.length} item(s) of ${state.dataset.displayName}.`);
}

// Items

function itemCard(item) {
  const links = item.derived.filter((link) => PREVIEWS.includes(link.name));
  const previews = links.length
    ? links.map((link) =>
        element("img", { src: link.url, alt: `${link.name} of ${item.name}`, loading: "lazy" }),
      )
    : [element("span", { className: "none" }, PENDING.includes(item.status) ? "…" : "no preview")];
  const sources = item.annotations.map((a) => `${a.source} v${a.version} (${a.objectCount})`);
  const card = element(
    "li",
    { className: "card", onclick: () => run(() => openItem(item, card)) },
    element("div", { className: "previews" }, ...previews),
    element(
      "div",
      { className: "meta" },
      element("div", { className: "name" }, item.name),
      element("span", { className: `badge ${item.status}` }, item.status),
      ` ${item.kind || "?"} · ${item.size.toLocaleString()} B`,
      item.statusReason ? element("div", { className: "reason" }, item.statusReason) : "",
      element("div", {}, sources.join(", ") || "no annotations"),
    ),
  );
  card.dataset.id = item.id;
  return card;
}

async function upload(file) {
  const ticket = await api(`/datasets/${state.dataset.id}/uploads`, {
    method: "POST",
    body: { name: file.name, size: file.size, contentType: file.type || "application/octet-stream" },
  });
  const parts = ticket.multipart ? await putParts(ticket, file) : await putWhole(ticket.url, file);
  const item = await api(`/items/${ticket.itemId}/complete`, { method: "POST", body: { parts } });
  say(`Uploaded ${item.name} (item ${item.id}); processing it.`);
  $("items").prepend(itemCard({ ...item, kind: item.kind, annotations: [], derived: [] }));
}

async function putWhole(url, blob) {
  const response = await fetch(url, { method: "PUT", body: blob });
  if (!response.ok) throw new ApiError(`object store refused the upload: ${response.status}`);
  return [];
}

async function putParts(ticket, file) {
  const { partSize, partCount } = ticket.multipart;
  const uploaded = [];
  let page = ticket.multipart;
  while (page) {
    for (const part of page.parts) {
      const start = (part.partNumber - 1) * partSize;
      const response = await fetch(part.url, {
        method: "PUT",
        body: file.slice(start, start + partSize),
      });
      if (!response.ok) throw new ApiError(`part ${part.partNumber}: ${response.status}`);
      uploaded.push({ partNumber: part.partNumber, etag: response.headers.get("ETag") });
      say(`Uploading ${file.name}: part ${part.partNumber} of ${partCount}`);
    }
    page = page.nextPartNumber
      ? await api(`/items/${ticket.itemId}/upload/parts?first=${page.nextPartNumber}`)
      : null;
  }
  return uploaded;
}

// Annotations, through pre-signed URLs

async function openItem(item, card) {
  for (const other of document.querySelectorAll(".card")) other.ariaSelected = "false";
  card.ariaSelected = "true";
  state.item = item;
  $("editor").hidden = false;
  $("item-name").textContent = item.name;
  await loadDocument();
}

async function signed() {
  const source = $("source").value;
  const answer = await api("/annotations/presign", {
    method: "POST",
    body: { source, itemIds: [state.item.id] },
  });
  return answer.urls[0];
}

async function loadDocument() {
  // Only the latest load fills the editor: an earlier one answering late (another item or
  // source picked meanwhile) must not overwrite it.
  const load = ++state.loads;
  const response = await fetch((await signed()).get);
  if (load !== state.loads) return;
  if (response.status === 404) {
    state.etag = null;
    $("document").value = EMPTY_DOCUMENT;
    $("etag").textContent = "not saved yet";
    say(`No ${$("source").value} annotations for ${state.item.name} yet.`);
    return;
  }
  if (!response.ok) throw new ApiError(`loading the annotations: ${response.status}`);
  const text = await response.text();
  if (load !== state.loads) return;
  state.etag = response.headers.get("ETag");
  $("document").value = readable(text);
  $("etag").textContent = `ETag ${state.etag}`;
  say(`Loaded the ${$("source").value} annotations of ${state.item.name}.`);
}

function readable(text) {
  // Indented for a person; what is saved is whatever the editor then holds.
  try {
    return JSON.stringify(JSON.parse(text), null, 2) + "\n";
  } catch {
    return text; // not JSON (saved by hand?): shown as stored, and Save will say so
  }
}

async function saveDocument() {
  const text = $("document").value;
  try {
    JSON.parse(text);
  } catch (error) {
    throw new ApiError(`not saved: the document is not JSON (${error.message})`);
  }
  const urls = await signed();
  // The URL is signed with If-None-Match: * and writes a revision nobody else has.
  const uploaded = await fetch(urls.put, {
    method: "PUT",
    headers: { "Content-Type": "application/json", "If-None-Match": "*" },
    body: text,
  });
  if (!uploaded.ok) throw new ApiError(`not saved: the object store answered ${uploaded.status}`);
  // If-Match: only over the version this editor loaded; If-None-Match: only if still absent.
  const condition = state.etag ? { ifMatch: state.etag } : { ifNoneMatch: true };
  const answer = await api("/annotations/commit", {
    method: "POST",
    body: {
      source: $("source").value,
      uploads: [{ itemId: state.item.id, revision: urls.revision, ...condition }],
    },
  });
  const result = answer.results[0];
  if (result.status === 412) {
    throw new ApiError(
      "not saved: someone saved these annotations after you loaded them; " +
        "copy your changes, load again and reapply them",
    );
  }
  if (result.status !== 200) throw new ApiError(`not saved: ${result.status} ${result.error}`);
  state.etag = `"${result.etag}"`;
  $("etag").textContent = `ETag ${state.etag}`;
  say(`Saved the ${$("source").value} annotations of ${state.item.name}.`);
}

// Wiring

async function run(action) {
  try {
    await action();
  } catch (error) {
    say(error instanceof ApiError ? error.message : `Failed: ${error}`, true);
  }
}

function tokenFromFragment() {
  // #token=… keeps the token out of server logs and Referer headers; drop it from the bar.
  const token = new URLSearchParams(location.hash.slice(1)).get("token");
  if (token) history.replaceState(null, "", location.pathname);
  return token || sessionStorage.getItem("annostack-token");
}

$("connect").addEventListener("submit", (event) => {
  event.preventDefault();
  run(() => connect($("token").value.trim()));
});
$("upload").addEventListener("submit", (event) => {
  event.preventDefault();
  run(() => upload($("file").files[0]));
});
$("more").addEventListener("click", () => run(loadItems));
$("load").addEventListener("click", () => run(loadDocument));
$("save").addEventListener("click", () => run(saveDocument));

const token = tokenFromFragment();
if (token) run(() => connect(token));
