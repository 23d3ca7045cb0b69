// Package app is the lab's application upstream for the content group cgi of
// the `groups` preset (`shoal lab up --preset groups`): a small HTTP/1.1
// server that a lab node reverse-proxies to over a unix socket, run as its
// own process (`shoal lab app --listen unix:/run/shoal-lab/nK-app.sock --node
// nK`) in the node's namespace.
//
// Contract (the e2e tests of issue 12 rely on it):
//   - GET /app.cgi answers 200, text/plain, one line naming the node and a
//     per-process request counter: "app.cgi node=nK count=N\n" (N counts
//     every /app.cgi request this process answered, from 1). When the
//     request carries no cookie named Cookie ("shoal_session") the answer
//     sets one: "Set-Cookie: shoal_session=<32 hex digits>; Path=/;
//     HttpOnly" (random, 128 bits).
//   - POST /upload answers 200 "<hex SHA-256 of the body> <length>\n". The
//     body is hashed as it arrives, never held whole, so any size works; a
//     request with "Expect: 100-continue" gets its 100 Continue when the
//     handler starts reading (net/http's behaviour).
//   - Anything else is 404; a wrong method on either path is 405 with Allow.
//   - Every answer carries X-Shoal-App: <node>, so a test can tell the
//     upstream answered and not the node's static files.
package app
