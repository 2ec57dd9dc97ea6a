"""The CLI's HTTP client (login via GET /v1/key, token mint --remote, publish)
against a small stand-in for the broker's HTTP API on 127.0.0.1. The stand-in
replays canned SPEC section 5 responses and records each request, so the
tests check what the CLI sends (key only in the Authorization header, exact
JSON bodies) and how it reports what it gets back."""
import http.server
import json
import os
import threading
import time

import jwt

import clitest
from clitest import CliTest

CAP = '{"chat:*":["realtime:subscribe"]}'


class Handler(http.server.BaseHTTPRequestHandler):
    def _handle(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        self.server.requests.append({
            "method": self.command, "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body,
        })
        status, payload = self.server.reply
        if isinstance(payload, (dict, list)):
            payload = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if status in (301, 302):
            self.send_header("Location", "http://127.0.0.1:1/elsewhere")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _handle
    do_POST = _handle

    def log_message(self, *args):
        pass


class HttpTest(CliTest):
    def setUp(self):
        super().setUp()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.requests = []
        self.server.reply = (500, {"error": "no reply set", "code": "internal"})
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.key = self.create_key(workspace="ws_remote", name="backend")

    def tearDown(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
        super().tearDown()

    def key_reply(self, key_doc):
        return (200, {"kid": key_doc["kid"], "workspace": key_doc["workspace"],
                      "env": key_doc["env"], "name": key_doc["name"],
                      "scopes": key_doc["scopes"]})

    def assert_sent_key_only_in_header(self, req):
        self.assertEqual(req["headers"]["authorization"], "Bearer " + self.key["key"])
        self.assertNotIn(self.key["kid"], req["path"])
        for secret in self.secrets:
            self.assertNotIn(secret, req["path"])
            self.assertNotIn(secret.encode(), req["body"])

    def test_login_via_broker(self):
        self.server.reply = self.key_reply(self.key)
        doc = self.run_cli("--json", "login", "--key", self.key["key"], "--url",
                           self.url + "/").json()
        self.assertEqual(doc["checked_with"], "broker")
        self.assertEqual(doc["workspace"], "ws_remote")
        self.assertEqual(doc["url"], self.url)
        (req,) = self.server.requests
        self.assertEqual((req["method"], req["path"]), ("GET", "/v1/key"))
        self.assert_sent_key_only_in_header(req)
        path = os.path.join(self.home, ".config", "latchkey", "credentials.json")
        with open(path) as f:
            stored = json.load(f)["servers"][self.url]["credentials"]["ws_remote"]
        self.assertEqual(stored["api_key"], self.key["key"])
        self.assert_mode(path, 0o600)

    def test_login_refused_by_broker(self):
        self.server.reply = (401, {"error": "Invalid credentials",
                                   "code": "not_authenticated"})
        res = self.run_cli("login", "--key", self.key["key"], "--url", self.url, expect=1)
        self.assertIn("Invalid credentials", res.err)
        self.assertIn("401", res.err)
        # A reply describing another key is not trusted.
        other = dict(self.key, kid="0123456789abcdef")
        self.server.reply = self.key_reply(other)
        res = self.run_cli("login", "--key", self.key["key"], "--url", self.url, expect=1)
        self.assertIn("different key", res.err)
        self.server.reply = (200, b"not json")
        res = self.run_cli("login", "--key", self.key["key"], "--url", self.url, expect=1)
        self.assertIn("malformed", res.err)
        # Redirects are not followed (the key would travel on).
        self.server.reply = (302, b"")
        res = self.run_cli("login", "--key", self.key["key"], "--url", self.url, expect=1)
        self.assertIn("302", res.err)
        self.assertEqual(len(self.server.requests), 4)
        self.assertFalse(os.path.exists(os.path.join(self.home, ".config")))

    def test_mint_remote(self):
        now = int(time.time())
        token = jwt.encode({"iat": now, "exp": now + 300, "jti": "r" * 22,
                            "cap": json.loads(CAP)},
                           clitest.private_pem(self.key["key"]), algorithm="ES256",
                           headers={"kid": self.key["kid"]})
        self.server.reply = (200, {"access_token": token, "token_type": "Bearer",
                                   "expires_at": now + 300})
        doc = self.run_cli("--json", "--url", self.url, "token", "mint", "--remote",
                           "--capability", CAP, "--ttl", "300", "--client-id", "u1",
                           "--key", self.key["key"]).json()
        self.assertEqual(doc, {"token": token, "expires_at": now + 300,
                               "kid": self.key["kid"]})
        (req,) = self.server.requests
        self.assertEqual((req["method"], req["path"]), ("POST", "/v1/tokens"))
        self.assertEqual(req["headers"]["content-type"], "application/json")
        self.assertEqual(json.loads(req["body"]),
                         {"capability": json.loads(CAP), "ttl": 300, "client_id": "u1"})
        self.assert_sent_key_only_in_header(req)

        res = self.run_cli("--url", self.url, "token", "mint", "--remote",
                           "--capability", CAP, env={"LATCHKEY_API_KEY": self.key["key"]})
        self.assertEqual(res.out.strip(), token)
        self.assertEqual(json.loads(self.server.requests[1]["body"])["ttl"], 600)

        self.server.reply = (403, {"error": "capability needs realtime:publish",
                                   "code": "forbidden"})
        res = self.run_cli("--url", self.url, "token", "mint", "--remote", "--capability",
                           CAP, "--key", self.key["key"], expect=1)
        self.assertIn("realtime:publish", res.err)
        self.assertIn("403", res.err)
        self.assertEqual(res.out, "")
        self.server.reply = (200, {"token_type": "Bearer"})
        res = self.run_cli("--url", self.url, "token", "mint", "--remote", "--capability",
                           CAP, "--key", self.key["key"], expect=1)
        self.assertIn("malformed", res.err)
        res = self.run_cli("--url", self.url, "token", "mint", "--remote", "--capability",
                           CAP, "--audience", "x", "--key", self.key["key"], expect=1)
        self.assertIn("--audience", res.err)
        self.assertEqual(len(self.server.requests), 4)

    def test_publish(self):
        self.server.reply = (202, {"seq": 7})
        data = '{"n": 123456789012345678901234567890, "s": "h\\u00e9"}'
        res = self.run_cli("--url", self.url, "--key", self.key["key"], "publish",
                           "--channel", "chat:lobby", "--data", data)
        self.assertEqual(res.out, "7\n")
        (req,) = self.server.requests
        self.assertEqual(req["method"], "POST")
        self.assertEqual(req["path"], "/v1/channels/chat%3Alobby/messages")
        self.assertEqual(req["body"], ('{"data":' + data + "}").encode())
        self.assert_sent_key_only_in_header(req)

        self.server.reply = (202, {"seq": 8})
        doc = self.run_cli("--json", "--url", self.url, "--key", self.key["key"],
                           "publish", "--channel", "news", "--data", "-",
                           stdin="[1, 2, 3]\n").json()
        self.assertEqual(doc, {"channel": "news", "seq": 8})
        self.assertEqual(self.server.requests[1]["body"], b'{"data":[1, 2, 3]\n}')

        self.server.reply = (403, {"error": "key lacks realtime:publish",
                                   "code": "forbidden"})
        res = self.run_cli("--url", self.url, "--key", self.key["key"], "publish",
                           "--channel", "news", "--data", "1", expect=1)
        self.assertIn("key lacks realtime:publish", res.err)

        # Refused locally, before any request.
        sent = len(self.server.requests)
        for args in (["--channel", "bad channel", "--data", "1"],
                     ["--channel", "news", "--data", "{nope"],
                     ["--channel", "news", "--data", "1 2"],
                     ["--channel", "news", "--data", '"' + "x" * 70000 + '"']):
            self.run_cli("--url", self.url, "--key", self.key["key"], "publish", *args,
                         expect=1)
        self.run_cli("--url", self.url, "--key", self.key["key"], "publish",
                     "--channel", "news", expect=2)
        self.assertEqual(len(self.server.requests), sent)

    def test_hostile_responses(self):
        self.server.reply = (200, b"x" * (2 * 1024 * 1024))
        res = self.run_cli("login", "--key", self.key["key"], "--url", self.url, expect=1)
        self.assertIn("larger than", res.err)
        self.server.reply = (500, {"error": "bad\x1b[31m\nthing", "code": "internal"})
        res = self.run_cli("login", "--key", self.key["key"], "--url", self.url, expect=1)
        self.assertNotIn("\x1b", res.err)
        self.assertEqual(res.err.count("\n"), 1)


if __name__ == "__main__":
    clitest.main()
