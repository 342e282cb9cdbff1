// parley-attachment-v1 (docs/PROTOCOL.md, "Encrypted attachments"):
// blob = nonce || AES-256-GCM(K, nonce, file, aad = "parley-attachment-v1").

import { b64, concat, constantTimeEqual, fromB64, randomBytes, utf8 } from "./bytes";

const AAD = utf8("parley-attachment-v1");
const NONCE_BYTES = 12;
const TAG_BYTES = 16;

export interface AttachmentSecret {
  key: string; // standard base64, as the Python SDK writes it
  sha256: string;
}

export async function encryptAttachment(
  plaintext: Uint8Array<ArrayBuffer>,
): Promise<{ blob: Uint8Array<ArrayBuffer>; secret: AttachmentSecret }> {
  const key = randomBytes(32);
  const nonce = randomBytes(NONCE_BYTES);
  const cryptoKey = await crypto.subtle.importKey("raw", key, "AES-GCM", false, ["encrypt"]);
  const sealed = await crypto.subtle.encrypt(
    { name: "AES-GCM", iv: nonce, additionalData: AAD },
    cryptoKey,
    plaintext,
  );
  const blob = concat(nonce, new Uint8Array(sealed));
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", blob));
  return { blob, secret: { key: b64(key), sha256: b64(digest) } };
}

/** Check the blob's SHA-256 against the signed descriptor (constant time), then decrypt. */
export async function decryptAttachment(
  blob: Uint8Array<ArrayBuffer>,
  secret: AttachmentSecret,
): Promise<Uint8Array<ArrayBuffer>> {
  const key = fromB64(secret.key);
  if (key.length !== 32) throw new Error("attachment key must be 32 bytes");
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", blob));
  if (!constantTimeEqual(digest, fromB64(secret.sha256))) {
    throw new Error("the blob does not match the SHA-256 in the envelope");
  }
  if (blob.length < NONCE_BYTES + TAG_BYTES) throw new Error("the blob is too short");
  const cryptoKey = await crypto.subtle.importKey("raw", key, "AES-GCM", false, ["decrypt"]);
  try {
    const plain = await crypto.subtle.decrypt(
      { name: "AES-GCM", iv: blob.subarray(0, NONCE_BYTES), additionalData: AAD },
      cryptoKey,
      blob.subarray(NONCE_BYTES),
    );
    return new Uint8Array(plain);
  } catch {
    throw new Error("the attachment does not decrypt with its key");
  }
}
