// The envelope test vectors (tests/unit/envelope_vectors.json) through the web client's
// envelope code. Bundled by vectors.mjs and run in Node's WebCrypto and in Chromium.

import { b64url, fromHex, hex } from "../../web/src/crypto/bytes";
import {
  EnvelopeError,
  decryptEnvelope,
  encryptEnvelope,
  headerBytes,
  keyCommitment,
  parseEnvelope,
  signaturePayload,
} from "../../web/src/crypto/envelope";

interface VectorRecipient {
  device_id: string;
  agreement_private_key: string;
  wrap_nonce: string;
}

interface Vector {
  name: string;
  inputs: Record<string, unknown> & { recipients: VectorRecipient[] };
  intermediate: Record<string, unknown> & {
    recipients: { device_id: string; agreement_public_key: string }[];
  };
  envelope: Record<string, unknown>;
}

function privateJwk(curve: "Ed25519" | "X25519", d: string, x: string): JsonWebKey {
  return { kty: "OKP", crv: curve, d: b64url(fromHex(d)), x: b64url(fromHex(x)) };
}

function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.keys(value as object)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`);
    return `{${entries.join(",")}}`;
  }
  return JSON.stringify(value);
}

async function expectError(code: string, action: () => Promise<unknown>): Promise<string | null> {
  try {
    await action();
  } catch (err) {
    if (err instanceof EnvelopeError && err.code === code) return null;
    return `expected ${code}, got ${String(err)}`;
  }
  return `expected ${code}, got success`;
}

/** One line per check: "vector-one: wire envelope" -> null (pass) or the problem. */
export async function runVectors(vectors: Vector[]): Promise<Record<string, string | null>> {
  const results: Record<string, string | null> = {};
  for (const v of vectors) {
    const i = v.inputs;
    const m = v.intermediate;
    const check = (what: string, ok: boolean, detail = "") => {
      results[`${v.name}: ${what}`] = ok ? null : `mismatch ${detail}`;
    };
    const subtle = crypto.subtle;
    const signingKey = await subtle.importKey(
      "jwk",
      privateJwk("Ed25519", i.sender_signing_private_key as string, m.sender_signing_public_key as string),
      { name: "Ed25519" },
      false,
      ["sign"],
    );
    const ephemeralPrivate = await subtle.importKey(
      "jwk",
      privateJwk("X25519", i.ephemeral_private_key as string, m.ephemeral_public_key as string),
      { name: "X25519" },
      false,
      ["deriveBits"],
    );
    const publics = new Map(m.recipients.map((r) => [r.device_id, fromHex(r.agreement_public_key)]));
    const wrapNonces: Record<string, Uint8Array<ArrayBuffer>> = {};
    for (const r of i.recipients) wrapNonces[r.device_id] = fromHex(r.wrap_nonce);
    const wire = await encryptEnvelope({
      payload: fromHex(i.payload as string),
      conversationId: i.conversation_id as string,
      senderUserId: i.sender_user_id as string,
      senderDeviceId: i.sender_device_id as string,
      clientMsgId: i.client_msg_id as string,
      createdAt: i.created_at as number,
      contentType: i.content_type as string,
      signingKey,
      // Reversed, so the code's own sorting is exercised.
      recipients: [...i.recipients].reverse().map((r) => ({
        deviceId: r.device_id,
        agreementKey: publics.get(r.device_id)!,
      })),
      randomness: {
        contentKey: fromHex(i.content_key as string),
        payloadNonce: fromHex(i.payload_nonce as string),
        ephemeralPrivate,
        ephemeralPublic: fromHex(m.ephemeral_public_key as string),
        wrapNonces,
      },
    });
    check("wire envelope", canonical(wire) === canonical(v.envelope), canonical(wire));
    const parsed = parseEnvelope(v.envelope);
    check("header bytes", hex(headerBytes(parsed.header)) === m.header_bytes);
    check("signature payload", hex(signaturePayload(parsed)) === m.signature_payload);
    check(
      "key commitment",
      hex(await keyCommitment(fromHex(i.content_key as string))) === m.key_commitment,
    );
    const senderPublic = await subtle.importKey(
      "raw",
      fromHex(m.sender_signing_public_key as string),
      { name: "Ed25519" },
      false,
      ["verify"],
    );
    for (const r of i.recipients) {
      const agreementPrivate = await subtle.importKey(
        "jwk",
        privateJwk("X25519", r.agreement_private_key, hex(publics.get(r.device_id)!)),
        { name: "X25519" },
        false,
        ["deriveBits"],
      );
      const opts = {
        deviceId: r.device_id,
        agreementPrivate,
        agreementPublic: publics.get(r.device_id)!,
        senderSigningKey: senderPublic,
      };
      const opened = await decryptEnvelope(v.envelope, opts);
      check(`decrypt for ${r.device_id}`, hex(opened.payload) === i.payload);
      const tampered = structuredClone(v.envelope) as { ciphertext: string; signature: string };
      const flipped = fromHex(hex(parsed.signature));
      flipped[0] ^= 1;
      tampered.signature = b64url(flipped);
      results[`${v.name}: tampered signature refused for ${r.device_id}`] = await expectError(
        "invalid_signature",
        () => decryptEnvelope(tampered, opts),
      );
      const otherDevice = "00000000-0000-4000-8000-000000000000";
      results[`${v.name}: not a recipient`] = await expectError("not_a_recipient", () =>
        decryptEnvelope(v.envelope, { ...opts, deviceId: otherDevice }),
      );
    }
    const unsorted = structuredClone(v.envelope) as { recipients: unknown[] };
    if (unsorted.recipients.length > 1) {
      unsorted.recipients.reverse();
      results[`${v.name}: unsorted recipients refused`] = await expectError("invalid_envelope", async () =>
        parseEnvelope(unsorted),
      );
    }
  }
  return results;
}
