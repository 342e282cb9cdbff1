// parley-envelope-v1 (docs/PROTOCOL.md, "Envelope"): made and opened with WebCrypto only.
// crypto/envelope.py is the reference; tests/unit/envelope_vectors.json must come out
// byte for byte (tests/web/vectors.mjs checks it in Node and in Chromium).

import {
  b64url,
  concat,
  constantTimeEqual,
  fromB64url,
  prefixed,
  randomBytes,
  u32,
  u64,
  utf8,
} from "./bytes";

const SIGNATURE_TAG = utf8("parley-envelope-v1\x00");
const HEADER_TAG = utf8("parley-envelope-v1 header\x00");
const WRAP_INFO_PREFIX = utf8("parley-envelope-v1 wrap");
const KEY_COMMITMENT_TAG = utf8("parley-envelope-v1 key commitment\x00");

export const KEY_BYTES = 32;
export const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const WRAPPED_KEY_BYTES = KEY_BYTES + TAG_BYTES;
const SIGNATURE_BYTES = 64;
export const MAX_RECIPIENTS = 1000;
export const MAX_PAYLOAD_BYTES = 64 * 1024;
const MAX_CIPHERTEXT_BYTES = MAX_PAYLOAD_BYTES + TAG_BYTES;
const MAX_TIMESTAMP = 2 ** 53 - 1;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const CLIENT_MSG_ID = /^[A-Za-z0-9_.:-]{1,64}$/;
const CONTENT_TYPE = /^[a-z0-9][a-z0-9!#$&^_.+-]{0,62}\/[a-z0-9][a-z0-9!#$&^_.+-]{0,62}$/;
const X25519_P = 2n ** 255n - 19n;
// Canonical u-coordinates of Curve25519's small-order points (libsodium's blocklist).
const SMALL_ORDER_U = new Set<bigint>([
  0n,
  1n,
  X25519_P - 1n,
  325606250916557431795983626356110631294008115727848805560023387167927233504n,
  39382357235489614581723060781553021112529911719440698176882885853963445705823n,
]);

const ENVELOPE_KEYS = ["v", "header", "recipients", "nonce", "ciphertext", "signature"];
const HEADER_KEYS = [
  "v",
  "conversation_id",
  "sender_user_id",
  "sender_device_id",
  "client_msg_id",
  "created_at",
  "content_type",
  "ephemeral_key",
  "key_commitment",
];
const RECIPIENT_KEYS = ["device_id", "nonce", "wrapped_key"];

export interface WireHeader {
  v: 1;
  conversation_id: string;
  sender_user_id: string;
  sender_device_id: string;
  client_msg_id: string;
  created_at: number;
  content_type: string;
  ephemeral_key: string;
  key_commitment: string;
}

export interface WireRecipient {
  device_id: string;
  nonce: string;
  wrapped_key: string;
}

export interface WireEnvelope {
  v: 1;
  header: WireHeader;
  recipients: WireRecipient[];
  nonce: string;
  ciphertext: string;
  signature: string;
}

/** The same codes as the server and the Python SDK: invalid_envelope, invalid_signature, ... */
export class EnvelopeError extends Error {
  constructor(
    readonly code:
      | "invalid_envelope"
      | "invalid_signature"
      | "not_a_recipient"
      | "undecryptable_envelope",
    message: string,
  ) {
    super(message);
    this.name = "EnvelopeError";
  }
}

function invalid(message: string): EnvelopeError {
  return new EnvelopeError("invalid_envelope", message);
}

export interface ParsedHeader {
  conversationId: string;
  senderUserId: string;
  senderDeviceId: string;
  clientMsgId: string;
  createdAt: number;
  contentType: string;
  ephemeralKey: Uint8Array<ArrayBuffer>;
  keyCommitment: Uint8Array<ArrayBuffer>;
}

export interface ParsedRecipient {
  deviceId: string;
  nonce: Uint8Array<ArrayBuffer>;
  wrappedKey: Uint8Array<ArrayBuffer>;
}

export interface ParsedEnvelope {
  header: ParsedHeader;
  recipients: ParsedRecipient[];
  nonce: Uint8Array<ArrayBuffer>;
  ciphertext: Uint8Array<ArrayBuffer>;
  signature: Uint8Array<ArrayBuffer>;
}

/** Injected randomness, for the test vectors only: never reuse a key or nonce. */
export interface EnvelopeRandomness {
  contentKey: Uint8Array<ArrayBuffer>;
  payloadNonce: Uint8Array<ArrayBuffer>;
  ephemeralPrivate: CryptoKey;
  ephemeralPublic: Uint8Array<ArrayBuffer>;
  wrapNonces: Record<string, Uint8Array<ArrayBuffer>>;
}

export interface RecipientDevice {
  deviceId: string;
  /** The raw 32-byte X25519 agreement key registered for the device. */
  agreementKey: Uint8Array<ArrayBuffer>;
}

function littleEndian(bytes: Uint8Array): bigint {
  let value = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) value = (value << 8n) | BigInt(bytes[i]);
  return value;
}

/** Why a raw X25519 public key is refused (non-canonical or small order), or null. */
export function agreementKeyProblem(raw: Uint8Array): string | null {
  if (raw.length !== KEY_BYTES) return "not 32 bytes";
  const u = littleEndian(raw);
  if (u >= X25519_P) return "not a canonical X25519 public key";
  if (SMALL_ORDER_U.has(u)) return "a small-order X25519 key";
  return null;
}

function checkHeader(h: ParsedHeader): void {
  for (const [name, value] of [
    ["conversation_id", h.conversationId],
    ["sender_user_id", h.senderUserId],
    ["sender_device_id", h.senderDeviceId],
  ] as const) {
    if (typeof value !== "string" || !UUID.test(value)) {
      throw invalid(`${name}: not a canonical lowercase UUID`);
    }
  }
  if (typeof h.clientMsgId !== "string" || !CLIENT_MSG_ID.test(h.clientMsgId)) {
    throw invalid("client_msg_id: not 1..64 characters of A-Z a-z 0-9 _ . : -");
  }
  if (!Number.isSafeInteger(h.createdAt) || h.createdAt < 0 || h.createdAt > MAX_TIMESTAMP) {
    throw invalid("created_at: not an integer of Unix milliseconds in 0..2**53-1");
  }
  if (typeof h.contentType !== "string" || !CONTENT_TYPE.test(h.contentType)) {
    throw invalid('content_type: not a lowercase "type/subtype" (RFC 6838)');
  }
  const problem = agreementKeyProblem(h.ephemeralKey);
  if (problem !== null) throw invalid(`ephemeral_key: ${problem}`);
  if (h.keyCommitment.length !== KEY_BYTES) throw invalid("key_commitment: not 32 bytes");
}

/** The canonical header bytes H: the AAD of both layers, and signed. */
export function headerBytes(h: ParsedHeader): Uint8Array<ArrayBuffer> {
  return concat(
    HEADER_TAG,
    prefixed(utf8(h.conversationId)),
    prefixed(utf8(h.senderUserId)),
    prefixed(utf8(h.senderDeviceId)),
    prefixed(utf8(h.clientMsgId)),
    u64(h.createdAt),
    prefixed(utf8(h.contentType)),
    h.ephemeralKey,
    h.keyCommitment,
  );
}

/** The bytes the sending device signs with Ed25519. */
export function signaturePayload(e: Omit<ParsedEnvelope, "signature">): Uint8Array<ArrayBuffer> {
  const parts: Uint8Array[] = [SIGNATURE_TAG, headerBytes(e.header), u32(e.recipients.length)];
  for (const r of e.recipients) {
    parts.push(prefixed(utf8(r.deviceId)), prefixed(r.nonce), prefixed(r.wrappedKey));
  }
  parts.push(e.nonce, e.ciphertext);
  return concat(...parts);
}

export async function keyCommitment(contentKey: Uint8Array<ArrayBuffer>): Promise<Uint8Array<ArrayBuffer>> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", concat(KEY_COMMITMENT_TAG, contentKey)));
}

/** HKDF-SHA256 of the X25519 secret, salted with E || R, info naming the device. */
export async function deriveWrapKey(
  shared: Uint8Array<ArrayBuffer>,
  ephemeralKey: Uint8Array,
  recipientKey: Uint8Array,
  deviceId: string,
): Promise<Uint8Array<ArrayBuffer>> {
  const ikm = await crypto.subtle.importKey("raw", shared, "HKDF", false, ["deriveBits"]);
  const bits = await crypto.subtle.deriveBits(
    {
      name: "HKDF",
      hash: "SHA-256",
      salt: concat(ephemeralKey, recipientKey),
      info: concat(WRAP_INFO_PREFIX, utf8(deviceId)),
    },
    ikm,
    KEY_BYTES * 8,
  );
  return new Uint8Array(bits);
}

async function x25519(privateKey: CryptoKey, publicRaw: Uint8Array<ArrayBuffer>): Promise<Uint8Array<ArrayBuffer>> {
  const publicKey = await crypto.subtle.importKey("raw", publicRaw, { name: "X25519" }, true, []);
  const bits = await crypto.subtle.deriveBits({ name: "X25519", public: publicKey }, privateKey, 256);
  return new Uint8Array(bits);
}

async function aesGcm(
  mode: "encrypt" | "decrypt",
  key: Uint8Array<ArrayBuffer>,
  iv: Uint8Array<ArrayBuffer>,
  data: Uint8Array<ArrayBuffer>,
  aad: Uint8Array<ArrayBuffer>,
): Promise<Uint8Array<ArrayBuffer>> {
  const cryptoKey = await crypto.subtle.importKey("raw", key, "AES-GCM", false, [mode]);
  const params = { name: "AES-GCM", iv, additionalData: aad, tagLength: 128 };
  const out =
    mode === "encrypt"
      ? await crypto.subtle.encrypt(params, cryptoKey, data)
      : await crypto.subtle.decrypt(params, cryptoKey, data);
  return new Uint8Array(out);
}

async function freshRandomness(deviceIds: string[]): Promise<EnvelopeRandomness> {
  const pair = (await crypto.subtle.generateKey({ name: "X25519" }, false, [
    "deriveBits",
  ])) as CryptoKeyPair;
  const wrapNonces: Record<string, Uint8Array<ArrayBuffer>> = {};
  for (const id of deviceIds) wrapNonces[id] = randomBytes(NONCE_BYTES);
  return {
    contentKey: randomBytes(KEY_BYTES),
    payloadNonce: randomBytes(NONCE_BYTES),
    ephemeralPrivate: pair.privateKey,
    ephemeralPublic: new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey)),
    wrapNonces,
  };
}

export interface EncryptOptions {
  payload: Uint8Array<ArrayBuffer>;
  conversationId: string;
  senderUserId: string;
  senderDeviceId: string;
  clientMsgId: string;
  createdAt: number;
  contentType: string;
  /** The sending device's Ed25519 private key. */
  signingKey: CryptoKey;
  recipients: RecipientDevice[];
  randomness?: EnvelopeRandomness;
}

/** Encrypt a payload to every listed device and sign it; the wire form. */
export async function encryptEnvelope(o: EncryptOptions): Promise<WireEnvelope> {
  if (o.payload.length > MAX_PAYLOAD_BYTES) {
    throw new RangeError(`payload: more than ${MAX_PAYLOAD_BYTES} bytes`);
  }
  if (o.recipients.length < 1 || o.recipients.length > MAX_RECIPIENTS) {
    throw new RangeError(`recipients: not 1..${MAX_RECIPIENTS} devices`);
  }
  // Bytewise order of the ASCII ids, which is JavaScript's default string order.
  const recipients = [...o.recipients].sort((a, b) => (a.deviceId < b.deviceId ? -1 : 1));
  for (let i = 0; i < recipients.length; i++) {
    const { deviceId, agreementKey } = recipients[i];
    if (!UUID.test(deviceId)) throw new RangeError(`recipients: ${deviceId} is not a UUID`);
    if (i > 0 && recipients[i - 1].deviceId === deviceId) {
      throw new RangeError(`recipients: ${deviceId} twice`);
    }
    const problem = agreementKeyProblem(agreementKey);
    if (problem !== null) throw new RangeError(`recipients[${deviceId}]: ${problem}`);
  }
  const ids = recipients.map((r) => r.deviceId);
  const rand = o.randomness ?? (await freshRandomness(ids));
  const header: ParsedHeader = {
    conversationId: o.conversationId,
    senderUserId: o.senderUserId,
    senderDeviceId: o.senderDeviceId,
    clientMsgId: o.clientMsgId,
    createdAt: o.createdAt,
    contentType: o.contentType,
    ephemeralKey: rand.ephemeralPublic,
    keyCommitment: await keyCommitment(rand.contentKey),
  };
  try {
    checkHeader(header);
  } catch (err) {
    throw new RangeError((err as Error).message);
  }
  const aad = headerBytes(header);
  const ciphertext = await aesGcm("encrypt", rand.contentKey, rand.payloadNonce, o.payload, aad);
  const wrapped: ParsedRecipient[] = [];
  for (const r of recipients) {
    const shared = await x25519(rand.ephemeralPrivate, r.agreementKey);
    const wrapKey = await deriveWrapKey(shared, rand.ephemeralPublic, r.agreementKey, r.deviceId);
    const nonce = rand.wrapNonces[r.deviceId];
    if (nonce === undefined || nonce.length !== NONCE_BYTES) {
      throw new RangeError(`randomness: no 12-byte wrap nonce for ${r.deviceId}`);
    }
    const wrappedKey = await aesGcm(
      "encrypt",
      wrapKey,
      nonce,
      rand.contentKey,
      concat(aad, utf8(r.deviceId)),
    );
    wrapped.push({ deviceId: r.deviceId, nonce, wrappedKey });
  }
  const unsigned = { header, recipients: wrapped, nonce: rand.payloadNonce, ciphertext };
  const signature = new Uint8Array(
    await crypto.subtle.sign({ name: "Ed25519" }, o.signingKey, signaturePayload(unsigned)),
  );
  return toWire({ ...unsigned, signature });
}

export function toWire(e: ParsedEnvelope): WireEnvelope {
  const h = e.header;
  return {
    v: 1,
    header: {
      v: 1,
      conversation_id: h.conversationId,
      sender_user_id: h.senderUserId,
      sender_device_id: h.senderDeviceId,
      client_msg_id: h.clientMsgId,
      created_at: h.createdAt,
      content_type: h.contentType,
      ephemeral_key: b64url(h.ephemeralKey),
      key_commitment: b64url(h.keyCommitment),
    },
    recipients: e.recipients.map((r) => ({
      device_id: r.deviceId,
      nonce: b64url(r.nonce),
      wrapped_key: b64url(r.wrappedKey),
    })),
    nonce: b64url(e.nonce),
    ciphertext: b64url(e.ciphertext),
    signature: b64url(e.signature),
  };
}

function object(name: string, value: unknown, keys: string[]): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw invalid(`${name}: not a JSON object`);
  }
  const present = Object.keys(value);
  const missing = keys.filter((k) => !present.includes(k));
  const extra = present.filter((k) => !keys.includes(k));
  if (missing.length || extra.length) {
    throw invalid(`${name}: missing keys [${missing.join(", ")}], unknown keys [${extra.join(", ")}]`);
  }
  return value as Record<string, unknown>;
}

function decode(name: string, value: unknown, low: number, high: number): Uint8Array<ArrayBuffer> {
  if (typeof value !== "string" || value.length > Math.floor((high * 4 + 2) / 3)) {
    throw invalid(`${name}: not unpadded base64url of at most ${high} bytes`);
  }
  let bytes: Uint8Array<ArrayBuffer>;
  try {
    bytes = fromB64url(value);
  } catch (err) {
    throw invalid(`${name}: ${(err as Error).message}`);
  }
  if (bytes.length < low || bytes.length > high) {
    throw invalid(`${name}: not ${low === high ? low : `${low}..${high}`} bytes`);
  }
  return bytes;
}

function version(name: string, value: unknown): void {
  if (value !== 1) throw invalid(`${name}: unsupported version (expected 1)`);
}

/** Parse the wire form exactly (structure, types, sizes, order); no signature check. */
export function parseEnvelope(value: unknown): ParsedEnvelope {
  const data = object("envelope", value, ENVELOPE_KEYS);
  version("v", data.v);
  const raw = object("header", data.header, HEADER_KEYS);
  version("header.v", raw.v);
  let header: ParsedHeader;
  try {
    header = {
      conversationId: raw.conversation_id as string,
      senderUserId: raw.sender_user_id as string,
      senderDeviceId: raw.sender_device_id as string,
      clientMsgId: raw.client_msg_id as string,
      createdAt: raw.created_at as number,
      contentType: raw.content_type as string,
      ephemeralKey: decode("ephemeral_key", raw.ephemeral_key, 32, 32),
      keyCommitment: decode("key_commitment", raw.key_commitment, 32, 32),
    };
    checkHeader(header);
  } catch (err) {
    throw invalid(`header.${(err as Error).message}`);
  }
  const list = data.recipients;
  if (!Array.isArray(list) || list.length < 1 || list.length > MAX_RECIPIENTS) {
    throw invalid(`recipients: not a list of 1..${MAX_RECIPIENTS} entries`);
  }
  const recipients: ParsedRecipient[] = [];
  let previous = "";
  list.forEach((item, index) => {
    const name = `recipients[${index}]`;
    const entry = object(name, item, RECIPIENT_KEYS);
    if (typeof entry.device_id !== "string" || !UUID.test(entry.device_id)) {
      throw invalid(`${name}.device_id: not a canonical lowercase UUID`);
    }
    const parsed = {
      deviceId: entry.device_id,
      nonce: decode(`${name}.nonce`, entry.nonce, NONCE_BYTES, NONCE_BYTES),
      wrappedKey: decode(`${name}.wrapped_key`, entry.wrapped_key, WRAPPED_KEY_BYTES, WRAPPED_KEY_BYTES),
    };
    if (parsed.deviceId === previous) throw invalid(`${name}.device_id: duplicate`);
    if (parsed.deviceId < previous) throw invalid(`${name}: not in ascending device_id order`);
    previous = parsed.deviceId;
    recipients.push(parsed);
  });
  return {
    header,
    recipients,
    nonce: decode("nonce", data.nonce, NONCE_BYTES, NONCE_BYTES),
    ciphertext: decode("ciphertext", data.ciphertext, TAG_BYTES, MAX_CIPHERTEXT_BYTES),
    signature: decode("signature", data.signature, SIGNATURE_BYTES, SIGNATURE_BYTES),
  };
}

/** Structure and the sending device's signature (its Ed25519 public key). */
export async function verifyEnvelope(value: unknown, senderSigningKey: CryptoKey): Promise<ParsedEnvelope> {
  const parsed = parseEnvelope(value);
  const ok = await crypto.subtle.verify(
    { name: "Ed25519" },
    senderSigningKey,
    parsed.signature,
    signaturePayload(parsed),
  );
  if (!ok) {
    throw new EnvelopeError(
      "invalid_signature",
      "signature: not the sender device's signature of this envelope",
    );
  }
  return parsed;
}

export interface DecryptOptions {
  deviceId: string;
  /** This device's X25519 private key and the raw public key registered for it. */
  agreementPrivate: CryptoKey;
  agreementPublic: Uint8Array<ArrayBuffer>;
  /** The sending device's Ed25519 public key, from the key directory. */
  senderSigningKey: CryptoKey;
}

/**
 * Verify, unwrap the content key for this device, check it against the header's
 * commitment (always, before the payload), then open the payload.
 * The caller compares the header with the message it arrived in.
 */
export async function decryptEnvelope(
  value: unknown,
  o: DecryptOptions,
): Promise<{ header: ParsedHeader; payload: Uint8Array<ArrayBuffer> }> {
  const parsed = await verifyEnvelope(value, o.senderSigningKey);
  const entry = parsed.recipients.find((r) => r.deviceId === o.deviceId);
  if (entry === undefined) {
    throw new EnvelopeError("not_a_recipient", "recipients: no wrapped key for this device");
  }
  const aad = headerBytes(parsed.header);
  let contentKey: Uint8Array<ArrayBuffer>;
  try {
    const shared = await x25519(o.agreementPrivate, parsed.header.ephemeralKey);
    const wrapKey = await deriveWrapKey(
      shared,
      parsed.header.ephemeralKey,
      o.agreementPublic,
      o.deviceId,
    );
    contentKey = await aesGcm(
      "decrypt",
      wrapKey,
      entry.nonce,
      entry.wrappedKey,
      concat(aad, utf8(o.deviceId)),
    );
  } catch {
    throw new EnvelopeError(
      "undecryptable_envelope",
      "wrapped_key: does not open with this device's agreement key",
    );
  }
  if (!constantTimeEqual(await keyCommitment(contentKey), parsed.header.keyCommitment)) {
    throw new EnvelopeError(
      "undecryptable_envelope",
      "header.key_commitment: not the commitment to the key wrapped for this device",
    );
  }
  try {
    const payload = await aesGcm("decrypt", contentKey, parsed.nonce, parsed.ciphertext, aad);
    return { header: parsed.header, payload };
  } catch {
    throw new EnvelopeError("undecryptable_envelope", "ciphertext: does not open with the content key");
  }
}
