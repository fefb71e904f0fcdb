// A Cosmos DB compatible HTTPS server for the turnstate-cosmos tests.
//
// Usage: node server.js <certificate.pem> <key.pem>
// Listens on a free loopback port with keep-alive and prints "listening <port>" once ready.
//
// It runs @vercel/cosmosdb-server and makes it answer like Cosmos DB where CosmosStorage depends on it:
//
// * A point read of a missing item answers 404 with Cosmos DB's error body ({"code": "NotFound", ...},
//   sub-status 0) instead of the package's 500, which the SDK retries. Any item operation in a missing
//   database or container answers 404 with sub-status 1003 ("owner resource does not exist").
// * Items expire by their ttl when the container has a default TTL (defaultTtl set: -1 means items
//   expire only by their own ttl; an item ttl of -1 means never), counted from the item's _ts in whole
//   seconds as Cosmos DB does. An expired item reads as 404, is left out of queries and is gone for
//   creates, replaces and deletes.
// * A container created without an indexing policy gets Cosmos DB's default one (automatic, consistent,
//   "/*" included), and "/\"_etag\"/?" is always excluded, as Cosmos DB reports it.
// * Every response carries x-ms-request-charge from this fixed model (RU = request units):
//     point read        1 RU per started KB of the item returned; 1 RU when not found
//     create, replace,  5.7 RU per started KB of the item sent
//       upsert, patch
//     delete            5.7 RU
//     query             2.5 RU per page, plus 1 RU per full KB the page returns
//     refused (4xx)     1 RU for an item operation that failed (409, 412, 404 ...)
//     anything else     1 RU (account, database and container requests)
//   The model follows Cosmos DB's published figure (a point read of a 1 KB item costs 1 RU) and the
//   rough cost of writes under the default indexing policy; it does not model indexing itself.
//
// GET /__turnstate/requests answers the requests seen so far:
//   {"count": n, "requests": [{"method", "path", "operation", "status", "charge"}, ...]}
// with operation one of read, create, replace, upsert, patch, delete, query, batch, other;
// POST /__turnstate/requests/reset clears them.
"use strict";

const fs = require("fs");

const LIB = "@vercel/cosmosdb-server/lib";
const NOT_FOUND_MESSAGE =
  "Entity with the specified id does not exist in the system. More info: https://aka.ms/cosmosdb-tsg-not-found";
const OWNER_MISSING_MESSAGE = "Owner resource does not exist";
const OWNER_RESOURCE_NOT_FOUND = 1003;
const ETAG_PATH = '/"_etag"/?';

function notFound(res, subStatus, message) {
  res.statusCode = 404;
  res.setHeader("x-ms-substatus", String(subStatus));
  return { code: "NotFound", message };
}

// -- item operations in a missing container, and point reads of missing items: 404 -------------------
// The package's routes keep the handler functions they load, so these are replaced before it loads.

function containerOf(account, params) {
  return account.database(params.dbId).collection(params.collId);
}

for (const name of [
  "read-document",
  "create-document",
  "replace-document",
  "upsert-document",
  "delete-document",
  "patch-document",
  "query-documents",
  "batch-documents",
]) {
  const handler = require(`${LIB}/handler/${name}`);
  const original = handler.default;
  handler.default = (account, req, res, params) => {
    if (!containerOf(account, params).read()) {
      return notFound(res, OWNER_RESOURCE_NOT_FOUND, OWNER_MISSING_MESSAGE);
    }
    return original(account, req, res, params);
  };
}

const readDocument = require(`${LIB}/handler/read-document`);
const { parsePartitionKey } = require(`${LIB}/utils/get-partition-from-header`);
const readContainerChecked = readDocument.default;
readDocument.default = (account, req, res, params) => {
  const container = containerOf(account, params);
  const header = req.headers["x-ms-documentdb-partitionkey"];
  if (container.read() && header !== undefined) {
    let partition;
    try {
      partition = parsePartitionKey(Array.isArray(header) ? header[0] : header, params.docId);
    } catch {
      partition = undefined; // a malformed header: the package answers it
    }
    if (partition !== undefined && !container.document(params.docId, partition).read()) {
      return notFound(res, 0, NOT_FOUND_MESSAGE);
    }
  }
  return readContainerChecked(account, req, res, params);
};

// -- expiry by ttl ------------------------------------------------------------------------------------

const Documents = require(`${LIB}/account/documents`).default;

function expired(container, item, nowSeconds) {
  const defaultTtl = container ? container.defaultTtl : undefined;
  if (typeof defaultTtl !== "number") return false; // TTL is off for the container
  const ttl = typeof item.ttl === "number" ? item.ttl : defaultTtl;
  return ttl !== -1 && nowSeconds >= item._ts + ttl;
}

const itemAsStored = Documents.prototype._item;
const removeAsStored = Documents.prototype.delete;

function removeExpired(documents, item) {
  documents._removing = true; // delete() looks the item up again: let it see the expired item
  try {
    removeAsStored.call(documents, item.id, documents._getPartition(item));
  } finally {
    documents._removing = false;
  }
}

Documents.prototype._item = function (keyPath, value, partition) {
  const found = itemAsStored.call(this, keyPath, value, partition);
  const item = this._removing ? undefined : found.read();
  if (item && expired(this._parent.read(), item, Date.now() / 1000)) {
    removeExpired(this, item);
    return itemAsStored.call(this, keyPath, value, partition);
  }
  return found;
};

function sweep(documents) {
  const container = documents._parent.read();
  const now = Date.now() / 1000;
  for (const entry of [...documents._data.values()]) {
    const item = entry.read();
    if (item && expired(container, item, now)) removeExpired(documents, item);
  }
}

for (const method of ["query", "read"]) {
  const original = Documents.prototype[method];
  Documents.prototype[method] = function (...args) {
    sweep(this);
    return original.apply(this, args);
  };
}

// -- Cosmos DB's default indexing policy --------------------------------------------------------------

const Collections = require(`${LIB}/account/collections`).default;
const setContainer = Collections.prototype._set;
Collections.prototype._set = function (data) {
  const policy = { automatic: true, ...(data.indexingPolicy || {}) };
  const excluded = Array.isArray(policy.excludedPaths) ? [...policy.excludedPaths] : [];
  if (!Array.isArray(policy.includedPaths)) {
    policy.includedPaths = excluded.some(p => p.path === "/*") ? [] : [{ path: "/*" }];
  }
  if (!excluded.some(p => p.path === ETAG_PATH)) excluded.push({ path: ETAG_PATH });
  policy.excludedPaths = excluded;
  return setContainer.call(this, { ...data, indexingPolicy: policy });
};

// -- the server, its request charges and its request log ----------------------------------------------

const { createHttpsServer } = require(LIB);

const [certPath, keyPath] = process.argv.slice(2);
if (!certPath || !keyPath) {
  console.error("usage: node server.js <certificate.pem> <key.pem>");
  process.exit(2);
}

const server = createHttpsServer({
  cert: fs.readFileSync(certPath),
  key: fs.readFileSync(keyPath),
  keepAlive: true,
});

function isTrue(value) {
  return String(value).toLowerCase() === "true";
}

function operationOf(req) {
  const path = (req.url || "").split("?")[0].replace(/\/+$/, "");
  const onItem = /\/docs\/[^/]+$/.test(path);
  const onItems = /\/docs$/.test(path);
  const { method, headers } = req;
  if (method === "POST" && (isTrue(headers["x-ms-documentdb-isquery"]) ||
      headers["content-type"] === "application/query+json")) {
    return onItems ? "query" : "other";
  }
  if (onItem) {
    return { GET: "read", PUT: "replace", DELETE: "delete", PATCH: "patch" }[method] || "other";
  }
  if (onItems && method === "POST") {
    if (isTrue(headers["x-ms-documentdb-is-upsert"])) return "upsert";
    if (isTrue(headers["x-ms-cosmos-is-batch-request"])) return "batch";
    return "create";
  }
  return "other";
}

function startedKb(bytes) {
  return Math.max(1, Math.ceil(bytes / 1024));
}

function chargeOf(operation, status, requestBytes, responseBytes) {
  if (operation === "other") return 1;
  if (status >= 400) return 1;
  switch (operation) {
    case "read":
      return startedKb(responseBytes);
    case "delete":
      return 5.7;
    case "query":
      return 2.5 + Math.floor(responseBytes / 1024);
    default:
      return 5.7 * startedKb(requestBytes);
  }
}

const cosmosHandlers = server.listeners("request");
server.removeAllListeners("request");
let seen = [];

server.on("request", (req, res) => {
  if (req.url === "/__turnstate/requests") {
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ count: seen.length, requests: seen }));
    return;
  }
  if (req.url === "/__turnstate/requests/reset") {
    seen = [];
    res.statusCode = 204;
    res.end();
    return;
  }
  const operation = operationOf(req);
  const requestBytes = Number(req.headers["content-length"]) || 0;
  const end = res.end;
  res.end = function (chunk, ...rest) {
    const responseBytes = chunk ? Buffer.byteLength(chunk) : 0;
    const charge = Math.round(chargeOf(operation, res.statusCode, requestBytes, responseBytes) * 100) / 100;
    if (!res.headersSent) res.setHeader("x-ms-request-charge", String(charge));
    seen.push({ method: req.method, path: req.url, operation, status: res.statusCode, charge });
    return end.call(this, chunk, ...rest);
  };
  for (const handler of cosmosHandlers) handler.call(server, req, res);
});

server.keepAliveTimeout = 60000;
server.listen(0, "127.0.0.1", () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
