// This browser's device keys: Ed25519 (signing) and X25519 (agreement), made with
// WebCrypto as non-extractable keys and kept in IndexedDB (CryptoKey objects are
// structured-clonable, so the private halves never exist as bytes in JavaScript).

import { b64url, concat, utf8 } from "./bytes";

const DB_NAME = "parley";
const STORE = "devices";
const PROOF_TAG = utf8("parley-device-proof-v1\x00");

export interface DeviceKeys {
  userId: string;
  deviceId: string;
  signingPrivate: CryptoKey;
  signingPublic: Uint8Array<ArrayBuffer>;
  agreementPrivate: CryptoKey;
  agreementPublic: Uint8Array<ArrayBuffer>;
}

function openDb(): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE, { keyPath: "userId" });
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function withStore<T>(
  mode: IDBTransactionMode,
  action: (store: IDBObjectStore) => IDBRequest<T>,
): Promise<T> {
  const db = await openDb();
  try {
    return await new Promise<T>((resolve, reject) => {
      const request = action(db.transaction(STORE, mode).objectStore(STORE));
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
  } finally {
    db.close();
  }
}

export function loadDevice(userId: string): Promise<DeviceKeys | undefined> {
  return withStore("readonly", (s) => s.get(userId) as IDBRequest<DeviceKeys | undefined>);
}

export async function saveDevice(keys: DeviceKeys): Promise<void> {
  await withStore("readwrite", (s) => s.put(keys));
}

export async function forgetDevice(userId: string): Promise<void> {
  await withStore("readwrite", (s) => s.delete(userId));
}

/** Fresh key pairs; only the public halves can be exported. */
export async function makeKeys(): Promise<Omit<DeviceKeys, "userId" | "deviceId">> {
  const signing = (await crypto.subtle.generateKey({ name: "Ed25519" }, false, [
    "sign",
    "verify",
  ])) as CryptoKeyPair;
  const agreement = (await crypto.subtle.generateKey({ name: "X25519" }, false, [
    "deriveBits",
  ])) as CryptoKeyPair;
  return {
    signingPrivate: signing.privateKey,
    signingPublic: new Uint8Array(await crypto.subtle.exportKey("raw", signing.publicKey)),
    agreementPrivate: agreement.privateKey,
    agreementPublic: new Uint8Array(await crypto.subtle.exportKey("raw", agreement.publicKey)),
  };
}

/** The POST /v1/devices body: public keys and the parley-device-proof-v1 signature. */
export async function registrationBody(
  userId: string,
  name: string,
  keys: Omit<DeviceKeys, "userId" | "deviceId">,
): Promise<Record<string, string>> {
  const payload = concat(PROOF_TAG, utf8(userId), new Uint8Array([0]), keys.signingPublic, keys.agreementPublic);
  const proof = new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, keys.signingPrivate, payload));
  return {
    name,
    signing_key: b64url(keys.signingPublic),
    agreement_key: b64url(keys.agreementPublic),
    proof: b64url(proof),
  };
}
