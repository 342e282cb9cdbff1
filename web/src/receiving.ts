// Receiving: messages from the socket and from sync placed once each, in seq order, with no gap.

import type { ChatClient } from "./chat";
import { isVisible, preview, type Message, type Raw } from "./model";

/** Where each conversation stands, and what arrives placed into its timeline. */
export class Receiver {
  // Newest seq held with nothing missing before it, per conversation (what sync starts from).
  readonly positions = new Map<string, number>();
  readonly seen = new Set<string>();
  private syncing: Promise<void> | null = null;
  private syncAgain = false;

  constructor(private readonly client: ChatClient) {}

  async onMessage(raw: Raw): Promise<void> {
    const id = raw.conversation_id as string;
    if (!this.client.state.conversations.has(id)) {
      try {
        await this.client.fetchConversation(id);
      } catch {
        return;
      }
    }
    const gap = this.accept(raw);
    if (gap) void this.sync();
  }

  /** A message from the socket or a sync: placed once, positions moved. True on a gap. */
  accept(raw: Raw): boolean {
    const id = raw.conversation_id as string;
    const conversation = this.client.state.conversations.get(id);
    if (conversation === undefined) return false;
    const position = this.positions.get(id) ?? 0;
    let gap = false;
    if (raw.seq === position + 1) this.positions.set(id, raw.seq);
    else if (raw.seq > position + 1) gap = true;
    if (this.seen.has(raw.id)) return gap;
    const fresh = raw.seq > conversation.lastSeq;
    conversation.lastSeq = Math.max(conversation.lastSeq, raw.seq);
    const mine = raw.sender_id === this.client.userId;
    if (fresh && !mine && raw.sender_id !== null && raw.seq > conversation.readSeq && isVisible(raw.kind)) {
      conversation.unread += 1;
    }
    if (mine) {
      // This device's send (or another device's): drop the pending copy.
      const outbox = this.client.state.outbox.get(id);
      if (outbox) this.client.state.outbox.set(id, outbox.filter((m) => m.clientMsgId !== raw.client_msg_id));
    }
    this.place(raw);
    if (!mine && raw.sender_id !== null) {
      const typing = this.client.state.typing.get(id);
      typing?.delete(raw.sender_id);
      if (this.client.state.active === id && document.visibilityState === "visible") this.client.markRead(id);
      else void this.client.emit("receipt", { conversation_id: id, seq: raw.seq, kind: "delivered" }).catch(() => undefined);
    }
    this.client.changed();
    return gap;
  }

  /** Insert in seq order (or apply an edit/delete to its target). */
  place(raw: Raw): void {
    if (this.seen.has(raw.id)) return;
    this.seen.add(raw.id);
    const id = raw.conversation_id as string;
    const timeline = this.client.timeline(id);
    if (raw.kind === "edit" || raw.kind === "delete") {
      const target = timeline.items.find((m) => m.id === raw.body.target);
      if (target) {
        if (raw.kind === "delete") target.view = { type: "deleted" };
        else {
          target.editedAt = raw.created_at;
          void this.client.decoder.decode({ ...raw, kind: raw.body.kind, body: raw.body.body, sender_id: raw.sender_id }).then((view) => {
            target.view = view;
            this.client.changed();
          });
        }
      }
      return;
    }
    const message: Message = {
      id: raw.id,
      seq: raw.seq,
      senderId: raw.sender_id,
      clientMsgId: raw.client_msg_id,
      kind: raw.kind,
      createdAt: raw.created_at,
      editedAt: raw.edited_at,
      view: { type: "decrypting" },
    };
    const local = raw.sender_id === this.client.userId ? this.client.sending.localViews.get(raw.client_msg_id) : undefined;
    if (raw.deleted_at) message.view = { type: "deleted" };
    else if (local) message.view = local;
    else {
      void this.client.decoder.decode(raw).then((view) => {
        message.view = view;
        const conversation = this.client.state.conversations.get(id);
        if (conversation && timeline.items.at(-1) === message) conversation.preview = preview(view);
        this.client.changed();
      });
    }
    const items = timeline.items;
    let at = items.length;
    while (at > 0 && items[at - 1].seq > message.seq) at--;
    items.splice(at, 0, message);
    const conversation = this.client.state.conversations.get(id);
    if (conversation && at === items.length - 1) conversation.preview = preview(message.view);
  }

  /** Fetch everything after the positions held (reconnects, gaps): no gaps, no repeats. */
  sync(): Promise<void> {
    if (this.syncing) {
      this.syncAgain = true;
      return this.syncing;
    }
    this.syncing = (async () => {
      try {
        do {
          this.syncAgain = false;
          await this.syncOnce();
        } while (this.syncAgain);
      } catch (err) {
        if (!this.client.closed) this.client.fail(err);
      } finally {
        this.syncing = null;
      }
    })();
    return this.syncing;
  }

  async syncOnce(): Promise<void> {
    let more = true;
    while (more) {
      more = false;
      let cursor: string | null = null;
      do {
        const positions = Object.fromEntries(this.positions);
        const page: Raw = await this.client.api.call("POST", "/v1/sync", { json: { positions, cursor, limit: 100 } });
        for (const entry of page.conversations) {
          const id = entry.conversation_id as string;
          const known = this.positions.has(id);
          if (!this.client.state.conversations.has(id)) await this.client.fetchConversation(id);
          if (!known && entry.messages.length) {
            // A conversation new to this client: its newest page, positioned at its end.
            this.positions.set(id, entry.messages[0].seq - 1);
          }
          for (const m of entry.messages) this.accept(m);
          if (known && entry.has_more) more = true;
        }
        for (const id of page.removed) {
          this.client.state.conversations.delete(id);
          this.positions.delete(id);
          if (this.client.state.active === id) this.client.state.active = null;
        }
        cursor = page.next_cursor;
      } while (cursor);
    }
    this.client.changed();
  }
}
