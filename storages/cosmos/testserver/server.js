// A Cosmos DB compatible HTTPS server for the turnstate-cosmos tests.
//
// Usage: node server.js <certificate.pem> <key.pem>
// Listens on a free loopback port with keep-alive and prints "listening <port>" once ready.
// GET /__turnstate/requests answers the requests seen so far ({"count": n, "requests": [...]}) and
// POST /__turnstate/requests/reset clears them; every other request goes to @vercel/cosmosdb-server.
"use strict";

const fs = require("fs");
const { createHttpsServer } = require("@vercel/cosmosdb-server");

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
  const kind = req.headers["x-ms-documentdb-isquery"] ? " query" : "";
  seen.push(`${req.method} ${req.url}${kind}`);
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
