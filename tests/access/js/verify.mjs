// What a Node pipeline does with a ledger token: verify it with `jose` from the JWKS alone.
//
// Reads {"jwks", "token", "typ", "audience"} as JSON on stdin and writes one JSON line:
// {"ok": true, "header", "claims"} or {"ok": false, "code", "message"}. A refusal is an
// answer, not a failure, so the exit status is 0 either way; anything else exits non-zero.
import { createLocalJWKSet, jwtVerify } from "jose";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const { jwks, token, typ, audience } = JSON.parse(Buffer.concat(chunks).toString("utf8"));

// Accept the algorithm(s) the JWKS names, as a recipient configured from it would.
const algorithms = [...new Set(jwks.keys.map((k) => k.alg))];
try {
  const { payload, protectedHeader } = await jwtVerify(token, createLocalJWKSet(jwks), {
    audience,
    typ,
    algorithms,
    requiredClaims: ["iss", "sub", "aud", "iat", "nbf", "exp", "jti"],
  });
  console.log(JSON.stringify({ ok: true, header: protectedHeader, claims: payload }));
} catch (error) {
  if (!error.code?.startsWith("ERR_J")) throw error;
  const { code, claim, message } = error;
  console.log(JSON.stringify({ ok: false, code, claim, message }));
}
