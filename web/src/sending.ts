// Sending: a pending copy shown at once, encrypted to every member device, sent with its
// client_msg_id (the server de-duplicates a retry), re-encrypted once if devices changed.

import { ApiError, describe } from "./api";
import type { ChatClient } from "./chat";
import { utf8 } from "./crypto/bytes";
import { encryptAttachment, type AttachmentSecret } from "./crypto/attachments";
import { encryptEnvelope, type WireEnvelope } from "./crypto/envelope";
import { randomId, type Message, type Raw, type View } from "./model";
import { makeThumbnail } from "./thumbnail";

const MAX_TEXT_CHARS = 4000;
const MAX_UPLOAD_BYTES = 25 * 1024 * 1024;

/** Texts and images out, with their pending copies in the outbox until the server has them. */
export class Sender {
  readonly localViews = new Map<string, View>(); // by client_msg_id, for this device's own sends

  constructor(private readonly client: ChatClient) {}

  pending(id: string, clientMsgId: string, view: View): Message {
    const message: Message = {
      id: `local:${clientMsgId}`,
      seq: Number.MAX_SAFE_INTEGER,
      senderId: this.client.userId,
      clientMsgId,
      kind: "pending",
      createdAt: new Date().toISOString(),
      editedAt: null,
      view,
      status: "sending",
    };
    this.localViews.set(clientMsgId, view);
    this.client.state.outbox.set(id, [...(this.client.state.outbox.get(id) ?? []), message]);
    this.client.changed();
    return message;
  }

  async sendText(id: string, text: string): Promise<void> {
    const trimmed = text.trim();
    if (!trimmed) return;
    if ([...trimmed].length > MAX_TEXT_CHARS) {
      this.client.fail(new Error(`A message can hold at most ${MAX_TEXT_CHARS} characters.`));
      return;
    }
    this.client.typing(id, false);
    const clientMsgId = randomId();
    const message = this.pending(id, clientMsgId, { type: "text", text: trimmed });
    await this.deliver(id, message, async () => {
      const conversation = this.client.state.conversations.get(id)!;
      if (conversation.mode === "plaintext") return { kind: "text", body: { text: trimmed } };
      return { kind: "envelope", body: await this.seal(id, clientMsgId, { text: trimmed }) };
    });
  }

  async sendImage(id: string, file: File, caption: string): Promise<void> {
    if (!file.type.startsWith("image/")) {
      this.client.fail(new Error(`${file.name} is not an image.`));
      return;
    }
    if (file.size > MAX_UPLOAD_BYTES) {
      this.client.fail(new Error(`${file.name} is larger than 25 MB.`));
      return;
    }
    const clientMsgId = randomId();
    const localUrl = URL.createObjectURL(file);
    const conversation = this.client.state.conversations.get(id)!;
    const view: View = {
      type: "image",
      caption: caption.trim(),
      name: file.name,
      full: { media_id: "", plain: true },
      localUrl,
    };
    const message = this.pending(id, clientMsgId, view);
    await this.deliver(id, message, async () => {
      if (conversation.mode === "plaintext") {
        const media = await this.client.api.call("POST", "/v1/media", { body: file });
        return { kind: "image", body: { media_id: media.id, caption: caption.trim() } };
      }
      const bytes = new Uint8Array(await file.arrayBuffer());
      const thumb = await makeThumbnail(file);
      const full = await this.uploadBlob(id, bytes);
      const descriptor: Raw = {
        v: 1,
        media_id: full.media_id,
        key: full.key,
        sha256: full.sha256,
        size: bytes.length,
        content_type: file.type,
        name: file.name,
        width: thumb.sourceWidth,
        height: thumb.sourceHeight,
      };
      const t = await this.uploadBlob(id, thumb.bytes);
      descriptor.thumbnail = {
        media_id: t.media_id,
        key: t.key,
        sha256: t.sha256,
        size: thumb.bytes.length,
        content_type: "image/webp",
        width: thumb.width,
        height: thumb.height,
      };
      const payload = { type: "attachment", text: caption.trim(), attachment: descriptor };
      return { kind: "envelope", body: await this.seal(id, clientMsgId, payload) };
    });
  }

  async uploadBlob(id: string, bytes: Uint8Array<ArrayBuffer>): Promise<{ media_id: string } & AttachmentSecret> {
    const { blob, secret } = await encryptAttachment(bytes);
    const media = await this.client.api.call("POST", "/v1/media/blobs", {
      query: { conversation_id: id },
      body: blob,
    });
    return { media_id: media.id, ...secret };
  }

  /** Encrypt a JSON payload to every active device of every member (this one included). */
  async seal(id: string, clientMsgId: string, payload: unknown): Promise<WireEnvelope> {
    const conversation = this.client.state.conversations.get(id)!;
    const keys = await this.client.directory.devices(conversation.members.map((m) => m.user_id));
    const recipients = [...keys.values()]
      .flat()
      .filter((e) => !e.revoked)
      .map((e) => ({ deviceId: e.deviceId, agreementKey: e.agreementKey }));
    const device = this.client.device!;
    return encryptEnvelope({
      payload: utf8(JSON.stringify(payload)),
      conversationId: id,
      senderUserId: this.client.userId,
      senderDeviceId: device.deviceId,
      clientMsgId,
      createdAt: Date.now(),
      contentType: "application/json",
      signingKey: device.signingPrivate,
      recipients,
    });
  }

  async deliver(
    id: string,
    message: Message,
    build: () => Promise<{ kind: string; body: unknown }>,
  ): Promise<void> {
    message.status = "sending";
    message.error = undefined;
    this.client.changed();
    try {
      let ack: Raw;
      for (let attempt = 0; ; attempt++) {
        const { kind, body } = await build();
        try {
          ack = await this.client.emit("message:send", {
            conversation_id: id,
            client_msg_id: message.clientMsgId,
            kind,
            body,
          });
          break;
        } catch (err) {
          if (attempt > 0 || !(err instanceof ApiError) || err.code !== "recipient_mismatch") throw err;
          // Someone's devices changed since the keys were fetched: fetch again and re-encrypt.
          this.client.directory.forget();
          await this.client.fetchConversation(id);
        }
      }
      this.client.receiver.accept(ack);
      this.client.markRead(id);
    } catch (err) {
      message.status = "failed";
      message.error = describe(err);
      this.client.changed();
    }
  }

  /** Send a failed message again with the same client_msg_id (the server de-duplicates). */
  retry(id: string, message: Message): void {
    const view = message.view;
    if (view.type === "text") {
      const outbox = this.client.state.outbox.get(id) ?? [];
      this.client.state.outbox.set(id, outbox.filter((m) => m !== message));
      const again = this.pending(id, message.clientMsgId, view);
      void this.deliver(id, again, async () => {
        const conversation = this.client.state.conversations.get(id)!;
        if (conversation.mode === "plaintext") return { kind: "text", body: { text: view.text } };
        return { kind: "envelope", body: await this.seal(id, message.clientMsgId, { text: view.text }) };
      });
    }
  }

  discard(id: string, message: Message): void {
    this.client.state.outbox.set(id, (this.client.state.outbox.get(id) ?? []).filter((m) => m !== message));
    this.client.changed();
  }
}
