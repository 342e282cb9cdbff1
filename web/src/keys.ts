// The key directory: other devices' public keys (GET /v1/keys), each checked against
// its CA certificate before anything is encrypted to it or trusted from it.

import type { Api } from "./api";
import { type Certificate, verifyCertificate } from "./crypto/ca";
import { fromB64url } from "./crypto/bytes";

export interface DirectoryEntry {
  deviceId: string;
  userId: string;
  signingKey: CryptoKey;
  agreementKey: Uint8Array<ArrayBuffer>;
  revoked: boolean;
}

interface DeviceOut {
  id: string;
  signing_key: string;
  agreement_key: string;
  certificate: Certificate;
  revoked?: boolean;
}

export class KeyDirectory {
  private entries = new Map<string, DirectoryEntry[]>();
  private caKey: Promise<CryptoKey> | null = null;

  constructor(private api: Api) {}

  forget(userId?: string): void {
    if (userId === undefined) this.entries.clear();
    else this.entries.delete(userId);
  }

  private ca(): Promise<CryptoKey> {
    this.caKey ??= this.api.call("GET", "/v1/ca", { auth: false }).then((ca) =>
      crypto.subtle.importKey("raw", fromB64url(ca.public_key), { name: "Ed25519" }, false, ["verify"]),
    );
    return this.caKey;
  }

  /** Certified devices of each user (revoked ones too, flagged), cached until keys:changed. */
  async devices(userIds: string[]): Promise<Map<string, DirectoryEntry[]>> {
    const wanted = [...new Set(userIds)].filter((u) => !this.entries.has(u));
    for (let start = 0; start < wanted.length; start += 100) {
      const chunk = wanted.slice(start, start + 100);
      const answer = await this.api.call("GET", "/v1/keys", {
        query: { user_ids: chunk.join(","), include_revoked: "true" },
      });
      const ca = await this.ca();
      for (const user of answer.users as { user_id: string; code: string; devices: DeviceOut[] }[]) {
        const list: DirectoryEntry[] = [];
        for (const device of user.devices) {
          const signing = fromB64url(device.signing_key);
          try {
            await verifyCertificate(ca, device.certificate, user.code, signing);
          } catch (err) {
            console.warn(`device ${device.id} of ${user.user_id} is not trusted:`, err);
            continue; // never encrypt to, or believe, an uncertified key
          }
          list.push({
            deviceId: device.id,
            userId: user.user_id,
            signingKey: await crypto.subtle.importKey("raw", signing, { name: "Ed25519" }, false, ["verify"]),
            agreementKey: fromB64url(device.agreement_key),
            revoked: Boolean(device.revoked),
          });
        }
        this.entries.set(user.user_id, list);
      }
    }
    return new Map(userIds.map((u) => [u, this.entries.get(u) ?? []]));
  }

  /** A sending device of `userId`, refetching once if it is not known yet. */
  async device(userId: string, deviceId: string): Promise<DirectoryEntry | undefined> {
    let found = (await this.devices([userId])).get(userId)?.find((e) => e.deviceId === deviceId);
    if (found === undefined) {
      this.forget(userId);
      found = (await this.devices([userId])).get(userId)?.find((e) => e.deviceId === deviceId);
    }
    return found;
  }
}
