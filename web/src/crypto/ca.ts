// Device certificates (parley-ca-v1, docs/PROTOCOL.md): the server's CA vouches that a
// signing key belongs to a user's public code. Nothing is encrypted to, or trusted from,
// a device whose certificate does not verify.

import { concat, fromB64url, prefixed, u64, utf8 } from "./bytes";

const PAYLOAD_TAG = utf8("parley-ca-v1\x00");
const MAX_CLOCK_SKEW = 300;

export interface Certificate {
  v: number;
  alg: string;
  code: string;
  reg_timestamp: number;
  device_public_key: string;
  reg_sign: string;
}

export function certificatePayload(code: string, regTimestamp: number, deviceKey: Uint8Array): Uint8Array<ArrayBuffer> {
  return concat(PAYLOAD_TAG, prefixed(utf8(code)), u64(regTimestamp), deviceKey);
}

/** Throws unless `cert` is the CA's valid statement that `signingKey` is `code`'s. */
export async function verifyCertificate(
  caKey: CryptoKey,
  cert: Certificate,
  code: string,
  signingKey: Uint8Array,
): Promise<void> {
  if (cert.v !== 1 || cert.alg !== "Ed25519") throw new Error("certificate: unsupported version");
  const deviceKey = fromB64url(cert.device_public_key);
  if (cert.code !== code) throw new Error("certificate: for another user");
  if (deviceKey.length !== 32 || deviceKey.some((b, i) => b !== signingKey[i])) {
    throw new Error("certificate: for another key");
  }
  const ok = await crypto.subtle.verify(
    { name: "Ed25519" },
    caKey,
    fromB64url(cert.reg_sign),
    certificatePayload(cert.code, cert.reg_timestamp, deviceKey),
  );
  if (!ok) throw new Error("certificate: not signed by this server's CA");
  if (cert.reg_timestamp > Date.now() / 1000 + MAX_CLOCK_SKEW) {
    throw new Error("certificate: issued in the future");
  }
}
