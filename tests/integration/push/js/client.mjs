// A browser-style push client: @stomp/stompjs over the `ws` WebSocket, driven by the tests.
//
//   node client.mjs <ws-url> <token> <destination>...
//
// Connects, subscribes to each destination (with a receipt), and prints one JSON line per
// event on stdout: connected, receipt, message, error, closed. Reading stdin lines, it
// SUBSCRIBEs to further destinations, so a test can act between steps. It exits when the
// connection closes, and after 60 s at the latest.
import { createInterface } from "node:readline";
import { Client } from "@stomp/stompjs";
import WebSocket from "ws";

const [url, token, ...destinations] = process.argv.slice(2);
const print = (event) => process.stdout.write(JSON.stringify(event) + "\n");
let receipts = 0;

function subscribe(client, destination) {
  const receipt = `r${++receipts}`;
  client.watchForReceipt(receipt, () => print({ event: "receipt", receipt, destination }));
  client.subscribe(
    destination,
    (message) =>
      print({
        event: "message",
        destination: message.headers.destination,
        messageId: message.headers["message-id"],
        body: JSON.parse(message.body),
      }),
    { receipt },
  );
}

const client = new Client({
  webSocketFactory: () => new WebSocket(url, ["v12.stomp", "v11.stomp", "v10.stomp"]),
  connectHeaders: { login: "browser", passcode: token },
  reconnectDelay: 0, // a test wants to see the close, not a reconnect
  heartbeatIncoming: 10000,
  heartbeatOutgoing: 10000,
  onConnect: (frame) => {
    print({ event: "connected", version: frame.headers.version });
    destinations.forEach((destination) => subscribe(client, destination));
  },
  onStompError: (frame) => print({ event: "error", message: frame.headers.message }),
  onWebSocketClose: () => {
    print({ event: "closed" });
    process.exit(0);
  },
});

createInterface({ input: process.stdin }).on("line", (line) => {
  if (line.trim()) subscribe(client, line.trim());
});
setTimeout(() => process.exit(2), 60000).unref();
client.activate();
