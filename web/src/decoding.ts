// Decoding: what a stored message shows, decrypted and verified for envelopes.

import { describe } from "./api";
import type { ChatClient } from "./chat";
import { fromUtf8 } from "./crypto/bytes";
import { EnvelopeError, decryptEnvelope, type WireEnvelope } from "./crypto/envelope";
import type { Raw, View } from "./model";

/** Stored messages into views: plaintext kinds, envelopes (verified and opened), system events. */
export class Decoder {
  constructor(private readonly client: ChatClient) {}

  /** What a stored message shows: decrypted and verified for envelopes. */
  async decode(raw: Raw): Promise<View> {
    try {
      switch (raw.kind) {
        case "text":
          return { type: "text", text: String(raw.body.text) };
        case "image":
          return {
            type: "image",
            caption: raw.body.caption ?? "",
            name: "image",
            full: { media_id: raw.body.media_id, plain: true },
            thumb: { media_id: raw.body.media_id, plain: true },
          };
        case "system":
          if (raw.body.event === "tip") {
            return {
              type: "tip",
              by: raw.body.by ?? null,
              to: raw.body.to_user_id ?? null,
              amountEth: String(raw.body.amount_eth),
              txHash: typeof raw.body.tx_hash === "string" ? raw.body.tx_hash : null,
            };
          }
          return { type: "system", text: this.systemText(raw) };
        case "envelope":
          return await this.openEnvelope(raw);
        default:
          return { type: "error", text: `Unsupported message (${raw.kind})` };
      }
    } catch (err) {
      const reason = err instanceof EnvelopeError ? `${err.code}: ${err.message}` : describe(err);
      return { type: "error", text: `Could not open this message (${reason})` };
    }
  }

  async openEnvelope(raw: Raw): Promise<View> {
    const envelope = raw.body as WireEnvelope;
    const header = envelope?.header;
    // The signature covers these, but only a client that compares them notices a moved envelope.
    if (header?.conversation_id !== raw.conversation_id || header?.sender_user_id !== raw.sender_id) {
      throw new Error("the envelope does not belong to this conversation and sender");
    }
    const sender = await this.client.directory.device(raw.sender_id, header.sender_device_id);
    if (sender === undefined) throw new Error("the sending device is not certified");
    const device = this.client.device!;
    const { payload } = await decryptEnvelope(envelope, {
      deviceId: device.deviceId,
      agreementPrivate: device.agreementPrivate,
      agreementPublic: device.agreementPublic,
      senderSigningKey: sender.signingKey,
    });
    const data = JSON.parse(fromUtf8(payload));
    if (data?.type === "attachment" && data.attachment) {
      const a = data.attachment;
      return {
        type: "image",
        caption: typeof data.text === "string" ? data.text : "",
        name: String(a.name ?? ""),
        width: a.width,
        height: a.height,
        full: a,
        thumb: a.thumbnail,
      };
    }
    if (typeof data?.text === "string") return { type: "text", text: data.text };
    return { type: "error", text: "Unsupported encrypted message" };
  }

  systemText(raw: Raw): string {
    const by = this.client.displayName(raw.body.by ?? null);
    switch (raw.body.event) {
      case "created":
        return `${by} created this conversation`;
      case "members_added":
        return `${by} added ${(raw.body.user_ids ?? raw.body.members ?? []).map((u: string) => this.client.displayName(u)).join(", ") || "members"}`;
      case "member_removed":
        return `${by} removed a member`;
      case "member_left":
        return `${by} left`;
      case "updated":
        return `${by} changed the conversation`;
      case "role_changed":
        return `${by} changed a role`;
      default:
        return String(raw.body.event ?? "update");
    }
  }
}
