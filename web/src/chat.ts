// The signed-in client: device keys, the socket, conversations and their messages.
// UI components read `state` and re-render on `subscribe`; every change goes through here.

import { io, type Socket } from "socket.io-client";
import { Api, ApiError, describe } from "./api";
import { KeyDirectory } from "./keys";
import { fromUtf8, utf8 } from "./crypto/bytes";
import { decryptAttachment, encryptAttachment, type AttachmentSecret } from "./crypto/attachments";
import { type DeviceKeys, forgetDevice, loadDevice, makeKeys, registrationBody, saveDevice } from "./crypto/device";
import { EnvelopeError, decryptEnvelope, encryptEnvelope, type WireEnvelope } from "./crypto/envelope";
import { makeThumbnail } from "./thumbnail";
import { shortHash, Tips, type Tip } from "./tips";

const PAGE = 30;
const TYPING_RESEND_MS = 3000;
const MAX_TEXT_CHARS = 4000;
const MAX_UPLOAD_BYTES = 25 * 1024 * 1024;

export interface Member {
  user_id: string;
  role: string;
}

export interface Conversation {
  id: string;
  kind: "direct" | "group";
  mode: "encrypted" | "plaintext";
  title: string;
  members: Member[];
  lastSeq: number;
  readSeq: number;
  unread: number;
  preview: string;
}

export interface AttachmentPart extends AttachmentSecret {
  media_id: string;
  size: number;
  content_type: string;
  width?: number;
  height?: number;
}

export type View =
  | { type: "decrypting" }
  | { type: "text"; text: string }
  | {
      type: "image";
      caption: string;
      name: string;
      width?: number;
      height?: number;
      full: AttachmentPart | { media_id: string; plain: true };
      thumb?: AttachmentPart | { media_id: string; plain: true };
      localUrl?: string;
    }
  | { type: "system"; text: string }
  | { type: "deleted" }
  | { type: "error"; text: string };

export interface Message {
  id: string;
  seq: number;
  senderId: string | null;
  clientMsgId: string;
  kind: string;
  createdAt: string;
  editedAt: string | null;
  view: View;
  status?: "sending" | "failed";
  error?: string;
}

interface Timeline {
  items: Message[];
  hasOlder: boolean;
  loaded: boolean;
  loadingOlder: boolean;
}

export interface Receipt {
  delivered: number;
  read: number;
}

export interface UserInfo {
  id: string;
  code: string;
  nickname: string;
}

export interface ChatRequest {
  id: string;
  sender: Card;
  recipient: Card;
  text: string;
  mode: string;
  state: string;
  conversation_id: string | null;
}

export interface Card {
  user_id: string;
  code: string;
  nickname: string;
  first_name: string;
  last_name: string;
  interests: string[];
  shared_interests?: number | null;
}

export interface State {
  me: UserInfo | null;
  connection: "connecting" | "online" | "offline";
  conversations: Map<string, Conversation>;
  timelines: Map<string, Timeline>;
  outbox: Map<string, Message[]>;
  receipts: Map<string, Map<string, Receipt>>;
  typing: Map<string, Map<string, number>>; // conversation -> user -> expires (ms)
  presence: Map<string, { online: boolean; last_seen: number | null }>;
  users: Map<string, UserInfo>;
  incoming: ChatRequest[];
  outgoing: ChatRequest[];
  notice: string | null;
  error: string | null;
  active: string | null;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Raw = any;

function randomId(): string {
  return crypto.randomUUID().replace(/-/g, "");
}

export class ChatClient {
  readonly state: State = {
    me: null,
    connection: "connecting",
    conversations: new Map(),
    timelines: new Map(),
    outbox: new Map(),
    receipts: new Map(),
    typing: new Map(),
    presence: new Map(),
    users: new Map(),
    incoming: [],
    outgoing: [],
    notice: null,
    error: null,
    active: null,
  };
  version = 0;
  private listeners = new Set<() => void>();
  private socket: Socket | null = null;
  private device: DeviceKeys | null = null;
  private directory: KeyDirectory;
  // Newest seq held with nothing missing before it, per conversation (what sync starts from).
  private positions = new Map<string, number>();
  private seen = new Set<string>();
  private localViews = new Map<string, View>(); // by client_msg_id, for this device's own sends
  private syncing: Promise<void> | null = null;
  private syncAgain = false;
  private typingSent = new Map<string, number>();
  private userFetches = new Map<string, Promise<UserInfo>>();
  private mediaUrls = new Map<string, Promise<string>>();
  private timer: number | undefined;
  private closed = false;

  readonly tips: Tips;

  constructor(readonly api: Api) {
    this.directory = new KeyDirectory(api);
    this.tips = new Tips(api, () => this.changed());
  }

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  getVersion = (): number => this.version;

  private changed(): void {
    this.version++;
    for (const listener of this.listeners) listener();
  }

  get userId(): string {
    return this.api.session!.user_id;
  }

  // -- start and stop ---------------------------------------------------------

  async start(): Promise<void> {
    const me = await this.api.call("GET", "/v1/me");
    this.state.me = { id: me.id, code: me.code, nickname: me.nickname };
    this.state.users.set(me.id, this.state.me);
    await this.ensureDevice();
    await this.loadConversations();
    await this.loadRequests();
    // Tipping is optional: a node without it (or an older one) leaves the rest working.
    void this.tips.load().catch(() => undefined);
    this.connect();
    this.timer = window.setInterval(() => this.expireTyping(), 1000);
    this.changed();
  }

  close(): void {
    this.closed = true;
    window.clearInterval(this.timer);
    this.socket?.disconnect();
    this.socket = null;
    for (const url of this.mediaUrls.values()) void url.then((u) => URL.revokeObjectURL(u));
  }

  /** This browser's device keys: from IndexedDB when still registered, else new ones. */
  private async ensureDevice(): Promise<void> {
    const userId = this.userId;
    const stored = await loadDevice(userId);
    if (stored) {
      const active = await this.api.call("GET", "/v1/devices");
      if ((active.devices as { id: string }[]).some((d) => d.id === stored.deviceId)) {
        this.device = stored;
        return;
      }
      await forgetDevice(userId); // revoked elsewhere: make a new one
    }
    const keys = await makeKeys();
    const name = `Web (${navigator.userAgent.includes("Mobile") ? "mobile" : "desktop"} browser)`;
    const registered = await this.api.call("POST", "/v1/devices", {
      json: await registrationBody(userId, name, keys),
    });
    this.device = { userId, deviceId: registered.id, ...keys };
    await saveDevice(this.device);
  }

  private connect(): void {
    const socket = io(window.location.origin, {
      auth: (cb) => {
        this.api.accessToken().then(
          (token) => cb({ token }),
          () => cb({ token: "" }),
        );
      },
      transports: ["websocket"],
      reconnectionDelay: 500,
      reconnectionDelayMax: 3000,
      // A connection attempt that gets no answer (a dead network, a half-open route) is
      // abandoned after this long and tried again.
      timeout: 8000,
    });
    this.socket = socket;
    socket.on("connect", () => {
      this.state.connection = "online";
      this.state.error = null;
      this.changed();
      void this.sync(); // whatever arrived while the socket was away
    });
    socket.on("disconnect", (reason) => {
      this.state.connection = "offline";
      this.changed();
      if (reason === "io server disconnect") {
        // The server closes a socket itself only when the session was revoked.
        this.api.clear();
        this.api.onSignedOut("This session was signed out.");
      }
    });
    socket.on("connect_error", (err: Error & { data?: { code?: string } }) => {
      this.state.connection = "offline";
      this.changed();
      const code = err.data?.code;
      if (socket.active) return; // a network failure: socket.io retries by itself
      if (code === "token_expired") {
        this.api.accessToken(true).then(
          () => socket.connect(),
          () => undefined,
        );
      } else if (code === "session_revoked" || code === "invalid_token" || code === "unauthenticated") {
        this.api.clear();
        this.api.onSignedOut("Your session has ended. Please sign in again.");
      } else {
        window.setTimeout(() => socket.connect(), 2000);
      }
    });
    socket.on("message:new", (m: Raw) => void this.onMessage(m));
    socket.on("receipt:updated", (r: Raw) => this.onReceipt(r));
    socket.on("typing", (t: Raw) => this.onTyping(t));
    socket.on("presence:updated", (p: Raw) => {
      this.state.presence.set(p.user_id, { online: p.online, last_seen: p.last_seen });
      this.changed();
    });
    socket.on("keys:changed", (k: Raw) => this.directory.forget(k.user_id));
    socket.on("session:revoked", () => {
      this.api.clear();
      this.api.onSignedOut("This session was signed out.");
    });
    socket.on("chat_request:new", (r: ChatRequest) => {
      this.state.incoming = [r, ...this.state.incoming.filter((x) => x.id !== r.id)];
      this.notify(`${cardName(r.sender)} wants to chat with you`);
    });
    socket.on("chat_request:updated", (r: ChatRequest) => void this.onRequestUpdated(r));
    socket.on("tip:updated", (t: Tip) => this.tips.onUpdated(t));
  }

  private async emit(event: string, payload: unknown): Promise<Raw> {
    const socket = this.socket;
    if (socket === null || !socket.connected) {
      throw new ApiError(0, "offline", "Not connected to the server; trying again shortly.");
    }
    let ack: Raw;
    try {
      ack = await socket.timeout(10000).emitWithAck(event, payload);
    } catch {
      throw new ApiError(0, "timeout", "The server did not answer in time.");
    }
    if (ack && typeof ack === "object" && "error" in ack) {
      throw new ApiError(400, String(ack.error.code), String(ack.error.message));
    }
    return ack.data;
  }

  private noticeTimer: number | undefined;

  /** A passing notice (requests, acceptances): shown for a few seconds. */
  notify(text: string): void {
    this.state.notice = text;
    window.clearTimeout(this.noticeTimer);
    this.noticeTimer = window.setTimeout(() => {
      this.state.notice = null;
      this.changed();
    }, 8000);
    this.changed();
  }

  fail(err: unknown): void {
    this.state.error = describe(err);
    this.changed();
  }

  dismiss(): void {
    this.state.error = null;
    this.state.notice = null;
    this.changed();
  }

  // -- users and presence -------------------------------------------------------

  user(userId: string): UserInfo | undefined {
    const known = this.state.users.get(userId);
    if (known === undefined && !this.userFetches.has(userId)) {
      const fetch = this.api.call("GET", `/v1/users/${userId}`).then((u: Raw) => {
        const info = { id: u.id, code: u.code, nickname: u.nickname };
        this.state.users.set(userId, info);
        this.changed();
        return info;
      });
      fetch.catch(() => this.userFetches.delete(userId));
      this.userFetches.set(userId, fetch);
    }
    return known;
  }

  displayName(userId: string | null): string {
    if (userId === null) return "Parley";
    if (userId === this.state.me?.id) return "You";
    const info = this.user(userId);
    return info ? info.nickname || info.code : "…";
  }

  title(conversation: Conversation): string {
    if (conversation.kind === "group") return conversation.title || "Group";
    const other = this.partner(conversation);
    return other ? this.displayName(other) : "Only you";
  }

  partner(conversation: Conversation): string | undefined {
    if (conversation.kind !== "direct") return undefined;
    return conversation.members.find((m) => m.user_id !== this.userId)?.user_id;
  }

  private async loadPresence(userIds: string[]): Promise<void> {
    const ids = [...new Set(userIds)].filter((u) => u !== this.userId);
    for (let i = 0; i < ids.length; i += 100) {
      const answer = await this.api.call("GET", "/v1/presence", {
        query: { user_ids: ids.slice(i, i + 100).join(",") },
      });
      for (const p of answer.users) this.state.presence.set(p.user_id, { online: p.online, last_seen: p.last_seen });
    }
    this.changed();
  }

  // -- conversations ------------------------------------------------------------

  private adopt(raw: Raw): Conversation {
    const existing = this.state.conversations.get(raw.id);
    const conversation: Conversation = {
      id: raw.id,
      kind: raw.kind,
      mode: raw.mode,
      title: raw.title,
      members: raw.members,
      lastSeq: Math.max(raw.last_seq, existing?.lastSeq ?? 0),
      readSeq: Math.max(raw.read_seq, existing?.readSeq ?? 0),
      unread: existing ? existing.unread : raw.unread,
      preview: existing?.preview ?? "",
    };
    this.state.conversations.set(raw.id, conversation);
    if (!this.positions.has(raw.id)) this.positions.set(raw.id, raw.last_seq);
    for (const m of conversation.members) this.user(m.user_id);
    return conversation;
  }

  private async loadConversations(): Promise<void> {
    let cursor: string | undefined;
    do {
      const page = await this.api.call("GET", "/v1/conversations", { query: { limit: 100, cursor } });
      for (const raw of page.conversations) this.adopt(raw);
      cursor = page.next_cursor ?? undefined;
    } while (cursor);
    const partners = [...this.state.conversations.values()].map((c) => this.partner(c)).filter(Boolean) as string[];
    void this.loadPresence(partners).catch(() => undefined);
  }

  private async fetchConversation(id: string): Promise<Conversation> {
    const conversation = this.adopt(await this.api.call("GET", `/v1/conversations/${id}`));
    const partner = this.partner(conversation);
    if (partner) void this.loadPresence([partner]).catch(() => undefined);
    this.changed();
    return conversation;
  }

  sortedConversations(): Conversation[] {
    return [...this.state.conversations.values()].sort((a, b) => {
      const ta = this.state.timelines.get(a.id)?.items.at(-1)?.createdAt ?? "";
      const tb = this.state.timelines.get(b.id)?.items.at(-1)?.createdAt ?? "";
      return tb.localeCompare(ta) || b.lastSeq - a.lastSeq;
    });
  }

  /** Show a conversation: its newest page the first time, then mark it read. */
  async open(id: string | null): Promise<void> {
    this.state.active = id;
    this.changed();
    if (id === null) return;
    const timeline = this.timeline(id);
    if (!timeline.loaded) {
      const page = await this.api.call("GET", `/v1/conversations/${id}/messages`, { query: { limit: PAGE } });
      const first = page.messages[0]?.seq ?? Infinity;
      // Live messages held from before may not join up with this page: keep the page's run.
      timeline.items = timeline.items.filter((m) => m.seq >= first);
      timeline.hasOlder = page.has_more;
      timeline.loaded = true;
      for (const m of page.messages) this.place(m);
      this.changed();
    }
    this.markRead(id);
  }

  private timeline(id: string): Timeline {
    let timeline = this.state.timelines.get(id);
    if (timeline === undefined) {
      timeline = { items: [], hasOlder: true, loaded: false, loadingOlder: false };
      this.state.timelines.set(id, timeline);
    }
    return timeline;
  }

  /** The page before the oldest message held (infinite scroll). */
  async loadOlder(id: string): Promise<void> {
    const timeline = this.timeline(id);
    if (!timeline.loaded || !timeline.hasOlder || timeline.loadingOlder || timeline.items.length === 0) return;
    timeline.loadingOlder = true;
    this.changed();
    try {
      const page = await this.api.call("GET", `/v1/conversations/${id}/messages`, {
        query: { before_seq: timeline.items[0].seq, limit: PAGE },
      });
      timeline.hasOlder = page.has_more;
      for (const m of page.messages) this.place(m);
    } finally {
      timeline.loadingOlder = false;
      this.changed();
    }
  }

  async openDirect(userId: string): Promise<string> {
    const raw = await this.api.call("POST", "/v1/conversations/direct", { json: { user_id: userId, mode: "encrypted" } });
    const conversation = this.adopt(raw);
    void this.loadPresence([userId]).catch(() => undefined);
    await this.open(conversation.id);
    return conversation.id;
  }

  async createGroup(title: string, memberIds: string[]): Promise<string> {
    const raw = await this.api.call("POST", "/v1/conversations/groups", {
      json: { title, member_ids: memberIds, mode: "encrypted" },
    });
    const conversation = this.adopt(raw);
    await this.open(conversation.id);
    return conversation.id;
  }

  /** People this user shares a direct conversation with (for new groups). */
  knownPeople(): string[] {
    const people = new Set<string>();
    for (const c of this.state.conversations.values()) {
      const p = this.partner(c);
      if (p) people.add(p);
    }
    return [...people];
  }

  // -- receiving ------------------------------------------------------------------

  private async onMessage(raw: Raw): Promise<void> {
    const id = raw.conversation_id as string;
    if (!this.state.conversations.has(id)) {
      try {
        await this.fetchConversation(id);
      } catch {
        return;
      }
    }
    const gap = this.accept(raw);
    if (gap) void this.sync();
  }

  /** A message from the socket or a sync: placed once, positions moved. True on a gap. */
  private accept(raw: Raw): boolean {
    const id = raw.conversation_id as string;
    const conversation = this.state.conversations.get(id);
    if (conversation === undefined) return false;
    const position = this.positions.get(id) ?? 0;
    let gap = false;
    if (raw.seq === position + 1) this.positions.set(id, raw.seq);
    else if (raw.seq > position + 1) gap = true;
    if (this.seen.has(raw.id)) return gap;
    const fresh = raw.seq > conversation.lastSeq;
    conversation.lastSeq = Math.max(conversation.lastSeq, raw.seq);
    const mine = raw.sender_id === this.userId;
    if (fresh && !mine && raw.sender_id !== null && raw.seq > conversation.readSeq && isVisible(raw.kind)) {
      conversation.unread += 1;
    }
    if (mine) {
      // This device's send (or another device's): drop the pending copy.
      const outbox = this.state.outbox.get(id);
      if (outbox) this.state.outbox.set(id, outbox.filter((m) => m.clientMsgId !== raw.client_msg_id));
    }
    this.place(raw);
    if (!mine && raw.sender_id !== null) {
      const typing = this.state.typing.get(id);
      typing?.delete(raw.sender_id);
      if (this.state.active === id && document.visibilityState === "visible") this.markRead(id);
      else void this.emit("receipt", { conversation_id: id, seq: raw.seq, kind: "delivered" }).catch(() => undefined);
    }
    this.changed();
    return gap;
  }

  /** Insert in seq order (or apply an edit/delete to its target). */
  private place(raw: Raw): void {
    if (this.seen.has(raw.id)) return;
    this.seen.add(raw.id);
    const id = raw.conversation_id as string;
    const timeline = this.timeline(id);
    if (raw.kind === "edit" || raw.kind === "delete") {
      const target = timeline.items.find((m) => m.id === raw.body.target);
      if (target) {
        if (raw.kind === "delete") target.view = { type: "deleted" };
        else {
          target.editedAt = raw.created_at;
          void this.decode({ ...raw, kind: raw.body.kind, body: raw.body.body, sender_id: raw.sender_id }).then((view) => {
            target.view = view;
            this.changed();
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
    const local = raw.sender_id === this.userId ? this.localViews.get(raw.client_msg_id) : undefined;
    if (raw.deleted_at) message.view = { type: "deleted" };
    else if (local) message.view = local;
    else {
      void this.decode(raw).then((view) => {
        message.view = view;
        const conversation = this.state.conversations.get(id);
        if (conversation && timeline.items.at(-1) === message) conversation.preview = preview(view);
        this.changed();
      });
    }
    const items = timeline.items;
    let at = items.length;
    while (at > 0 && items[at - 1].seq > message.seq) at--;
    items.splice(at, 0, message);
    const conversation = this.state.conversations.get(id);
    if (conversation && at === items.length - 1) conversation.preview = preview(message.view);
  }

  /** What a stored message shows: decrypted and verified for envelopes. */
  private async decode(raw: Raw): Promise<View> {
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

  private async openEnvelope(raw: Raw): Promise<View> {
    const envelope = raw.body as WireEnvelope;
    const header = envelope?.header;
    // The signature covers these, but only a client that compares them notices a moved envelope.
    if (header?.conversation_id !== raw.conversation_id || header?.sender_user_id !== raw.sender_id) {
      throw new Error("the envelope does not belong to this conversation and sender");
    }
    const sender = await this.directory.device(raw.sender_id, header.sender_device_id);
    if (sender === undefined) throw new Error("the sending device is not certified");
    const device = this.device!;
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

  private systemText(raw: Raw): string {
    const by = this.displayName(raw.body.by ?? null);
    switch (raw.body.event) {
      case "created":
        return `${by} created this conversation`;
      case "members_added":
        return `${by} added ${(raw.body.user_ids ?? raw.body.members ?? []).map((u: string) => this.displayName(u)).join(", ") || "members"}`;
      case "member_removed":
        return `${by} removed a member`;
      case "member_left":
        return `${by} left`;
      case "updated":
        return `${by} changed the conversation`;
      case "role_changed":
        return `${by} changed a role`;
      case "tip": {
        const hash = typeof raw.body.tx_hash === "string" ? ` · tx ${shortHash(raw.body.tx_hash)}` : "";
        const to = raw.body.to_user_id === this.userId ? "you" : this.displayName(raw.body.to_user_id ?? null);
        return `${by} tipped ${to} ${raw.body.amount_eth} ETH${hash}`;
      }
      default:
        return String(raw.body.event ?? "update");
    }
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
        if (!this.closed) this.fail(err);
      } finally {
        this.syncing = null;
      }
    })();
    return this.syncing;
  }

  private async syncOnce(): Promise<void> {
    let more = true;
    while (more) {
      more = false;
      let cursor: string | null = null;
      do {
        const positions = Object.fromEntries(this.positions);
        const page: Raw = await this.api.call("POST", "/v1/sync", { json: { positions, cursor, limit: 100 } });
        for (const entry of page.conversations) {
          const id = entry.conversation_id as string;
          const known = this.positions.has(id);
          if (!this.state.conversations.has(id)) await this.fetchConversation(id);
          if (!known && entry.messages.length) {
            // A conversation new to this client: its newest page, positioned at its end.
            this.positions.set(id, entry.messages[0].seq - 1);
          }
          for (const m of entry.messages) this.accept(m);
          if (known && entry.has_more) more = true;
        }
        for (const id of page.removed) {
          this.state.conversations.delete(id);
          this.positions.delete(id);
          if (this.state.active === id) this.state.active = null;
        }
        cursor = page.next_cursor;
      } while (cursor);
    }
    this.changed();
  }

  private onReceipt(r: Raw): void {
    let map = this.state.receipts.get(r.conversation_id);
    if (map === undefined) {
      map = new Map();
      this.state.receipts.set(r.conversation_id, map);
    }
    map.set(r.user_id, { delivered: r.delivered_seq, read: r.read_seq });
    if (r.user_id === this.userId) {
      const conversation = this.state.conversations.get(r.conversation_id);
      if (conversation && r.read_seq > conversation.readSeq) {
        conversation.readSeq = r.read_seq; // read on another device
        const timeline = this.state.timelines.get(conversation.id);
        conversation.unread = timeline?.loaded
          ? timeline.items.filter((m) => m.seq > r.read_seq && m.senderId !== this.userId && m.senderId !== null && isVisible(m.kind)).length
          : Math.max(0, conversation.lastSeq - r.read_seq);
      }
    }
    this.changed();
  }

  /** "Read", "Delivered", "Sent" (or "Read by n" in groups) for one of my messages. */
  receiptLabel(conversation: Conversation, seq: number): string {
    const others = [...(this.state.receipts.get(conversation.id) ?? new Map<string, Receipt>()).entries()].filter(
      ([user]) => user !== this.userId,
    );
    const read = others.filter(([, r]) => r.read >= seq).length;
    const delivered = others.filter(([, r]) => r.delivered >= seq || r.read >= seq).length;
    if (conversation.kind === "group") {
      if (read) return `Read by ${read}`;
      if (delivered) return `Delivered to ${delivered}`;
      return "Sent";
    }
    if (read) return "Read";
    if (delivered) return "Delivered";
    return "Sent";
  }

  markRead(id: string): void {
    const conversation = this.state.conversations.get(id);
    if (!conversation) return;
    const last = conversation.lastSeq;
    conversation.unread = 0;
    this.changed();
    if (last > conversation.readSeq) {
      conversation.readSeq = last;
      void this.emit("receipt", { conversation_id: id, seq: last, kind: "read" }).catch(() => {
        conversation.readSeq = 0; // try again on the next chance
      });
    }
  }

  // -- typing -------------------------------------------------------------------------

  private onTyping(t: Raw): void {
    if (t.user_id === this.userId) return;
    let map = this.state.typing.get(t.conversation_id);
    if (map === undefined) {
      map = new Map();
      this.state.typing.set(t.conversation_id, map);
    }
    if (t.state === "start") map.set(t.user_id, Date.now() + (t.expires_in ?? 5) * 1000);
    else map.delete(t.user_id);
    this.changed();
  }

  private expireTyping(): void {
    const now = Date.now();
    let touched = false;
    for (const map of this.state.typing.values()) {
      for (const [user, expires] of map) {
        if (expires < now) {
          map.delete(user);
          touched = true;
        }
      }
    }
    if (touched) this.changed();
  }

  typingIn(id: string): string[] {
    return [...(this.state.typing.get(id)?.keys() ?? [])].map((u) => this.displayName(u));
  }

  /** Tell the others this person is typing (at most every few seconds) or stopped. */
  typing(id: string, active: boolean): void {
    const last = this.typingSent.get(id) ?? 0;
    if (active && Date.now() - last < TYPING_RESEND_MS) return;
    if (!active && last === 0) return;
    this.typingSent.set(id, active ? Date.now() : 0);
    void this.emit("typing:update", { conversation_id: id, state: active ? "start" : "stop" }).catch(() => undefined);
  }

  // -- sending ---------------------------------------------------------------------------

  private pending(id: string, clientMsgId: string, view: View): Message {
    const message: Message = {
      id: `local:${clientMsgId}`,
      seq: Number.MAX_SAFE_INTEGER,
      senderId: this.userId,
      clientMsgId,
      kind: "pending",
      createdAt: new Date().toISOString(),
      editedAt: null,
      view,
      status: "sending",
    };
    this.localViews.set(clientMsgId, view);
    this.state.outbox.set(id, [...(this.state.outbox.get(id) ?? []), message]);
    this.changed();
    return message;
  }

  async sendText(id: string, text: string): Promise<void> {
    const trimmed = text.trim();
    if (!trimmed) return;
    if ([...trimmed].length > MAX_TEXT_CHARS) {
      this.fail(new Error(`A message can hold at most ${MAX_TEXT_CHARS} characters.`));
      return;
    }
    this.typing(id, false);
    const clientMsgId = randomId();
    const message = this.pending(id, clientMsgId, { type: "text", text: trimmed });
    await this.deliver(id, message, async () => {
      const conversation = this.state.conversations.get(id)!;
      if (conversation.mode === "plaintext") return { kind: "text", body: { text: trimmed } };
      return { kind: "envelope", body: await this.seal(id, clientMsgId, { text: trimmed }) };
    });
  }

  async sendImage(id: string, file: File, caption: string): Promise<void> {
    if (!file.type.startsWith("image/")) {
      this.fail(new Error(`${file.name} is not an image.`));
      return;
    }
    if (file.size > MAX_UPLOAD_BYTES) {
      this.fail(new Error(`${file.name} is larger than 25 MB.`));
      return;
    }
    const clientMsgId = randomId();
    const localUrl = URL.createObjectURL(file);
    const conversation = this.state.conversations.get(id)!;
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
        const media = await this.api.call("POST", "/v1/media", { body: file });
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

  private async uploadBlob(id: string, bytes: Uint8Array<ArrayBuffer>): Promise<{ media_id: string } & AttachmentSecret> {
    const { blob, secret } = await encryptAttachment(bytes);
    const media = await this.api.call("POST", "/v1/media/blobs", {
      query: { conversation_id: id },
      body: blob,
    });
    return { media_id: media.id, ...secret };
  }

  /** Encrypt a JSON payload to every active device of every member (this one included). */
  private async seal(id: string, clientMsgId: string, payload: unknown): Promise<WireEnvelope> {
    const conversation = this.state.conversations.get(id)!;
    const keys = await this.directory.devices(conversation.members.map((m) => m.user_id));
    const recipients = [...keys.values()]
      .flat()
      .filter((e) => !e.revoked)
      .map((e) => ({ deviceId: e.deviceId, agreementKey: e.agreementKey }));
    const device = this.device!;
    return encryptEnvelope({
      payload: utf8(JSON.stringify(payload)),
      conversationId: id,
      senderUserId: this.userId,
      senderDeviceId: device.deviceId,
      clientMsgId,
      createdAt: Date.now(),
      contentType: "application/json",
      signingKey: device.signingPrivate,
      recipients,
    });
  }

  private async deliver(
    id: string,
    message: Message,
    build: () => Promise<{ kind: string; body: unknown }>,
  ): Promise<void> {
    message.status = "sending";
    message.error = undefined;
    this.changed();
    try {
      let ack: Raw;
      for (let attempt = 0; ; attempt++) {
        const { kind, body } = await build();
        try {
          ack = await this.emit("message:send", {
            conversation_id: id,
            client_msg_id: message.clientMsgId,
            kind,
            body,
          });
          break;
        } catch (err) {
          if (attempt > 0 || !(err instanceof ApiError) || err.code !== "recipient_mismatch") throw err;
          // Someone's devices changed since the keys were fetched: fetch again and re-encrypt.
          this.directory.forget();
          await this.fetchConversation(id);
        }
      }
      this.accept(ack);
      this.markRead(id);
    } catch (err) {
      message.status = "failed";
      message.error = describe(err);
      this.changed();
    }
  }

  /** Send a failed message again with the same client_msg_id (the server de-duplicates). */
  retry(id: string, message: Message): void {
    const view = message.view;
    if (view.type === "text") {
      const outbox = this.state.outbox.get(id) ?? [];
      this.state.outbox.set(id, outbox.filter((m) => m !== message));
      const again = this.pending(id, message.clientMsgId, view);
      void this.deliver(id, again, async () => {
        const conversation = this.state.conversations.get(id)!;
        if (conversation.mode === "plaintext") return { kind: "text", body: { text: view.text } };
        return { kind: "envelope", body: await this.seal(id, message.clientMsgId, { text: view.text }) };
      });
    }
  }

  discard(id: string, message: Message): void {
    this.state.outbox.set(id, (this.state.outbox.get(id) ?? []).filter((m) => m !== message));
    this.changed();
  }

  // -- media ---------------------------------------------------------------------------------

  /** An object URL of an image part (decrypted and hash-checked when encrypted). */
  mediaUrl(part: AttachmentPart | { media_id: string; plain: true }, variant: "thumb" | "full"): Promise<string> {
    const key = `${part.media_id}:${variant}`;
    let url = this.mediaUrls.get(key);
    if (url === undefined) {
      url = (async () => {
        if ("plain" in part) {
          const bytes = await this.api.bytes(`/v1/media/${part.media_id}/${variant === "thumb" ? "320" : "full"}`);
          return URL.createObjectURL(new Blob([bytes], { type: "image/webp" }));
        }
        const blob = await this.api.bytes(`/v1/media/${part.media_id}/blob`);
        const plain = await decryptAttachment(blob, part);
        return URL.createObjectURL(new Blob([plain], { type: part.content_type }));
      })();
      url.catch(() => this.mediaUrls.delete(key));
      this.mediaUrls.set(key, url);
    }
    return url;
  }

  // -- people and requests ------------------------------------------------------------------------

  async search(q: string, interests: string[]): Promise<Card[]> {
    const answer = await this.api.call("GET", "/v1/users/search", {
      query: { q: q.trim() || undefined, interests: interests.join(",") || undefined, limit: 20 },
    });
    return answer.people;
  }

  private async loadRequests(): Promise<void> {
    const [incoming, outgoing] = await Promise.all([
      this.api.call("GET", "/v1/chat-requests", { query: { box: "incoming", state: "pending" } }),
      this.api.call("GET", "/v1/chat-requests", { query: { box: "outgoing", state: "pending" } }),
    ]);
    this.state.incoming = incoming.requests;
    this.state.outgoing = outgoing.requests;
  }

  async requestChat(userId: string, text: string): Promise<void> {
    const request = await this.api.call("POST", "/v1/chat-requests", { json: { user_id: userId, text, mode: "encrypted" } });
    this.state.outgoing = [request, ...this.state.outgoing];
    this.notify(`Chat request sent to ${cardName(request.recipient)}`);
  }

  /** Accept or decline; the conversation an acceptance opens. */
  async answerRequest(id: string, accept: boolean): Promise<string | null> {
    const request = await this.api.call("POST", `/v1/chat-requests/${id}/${accept ? "accept" : "decline"}`);
    this.state.incoming = this.state.incoming.filter((r) => r.id !== id);
    this.changed();
    if (accept && request.conversation_id) {
      await this.fetchConversation(request.conversation_id);
      return request.conversation_id;
    }
    return null;
  }

  async cancelRequest(id: string): Promise<void> {
    await this.api.call("DELETE", `/v1/chat-requests/${id}`);
    this.state.outgoing = this.state.outgoing.filter((r) => r.id !== id);
    this.changed();
  }

  private async onRequestUpdated(r: ChatRequest): Promise<void> {
    this.state.incoming = this.state.incoming.filter((x) => x.id !== r.id);
    this.state.outgoing = this.state.outgoing.filter((x) => x.id !== r.id);
    if (r.sender.user_id === this.userId) {
      if (r.state === "accepted" && r.conversation_id) {
        await this.fetchConversation(r.conversation_id).catch(() => undefined);
        this.notify(`${cardName(r.recipient)} accepted your chat request`);
      } else if (r.state === "declined") {
        this.notify(`${cardName(r.recipient)} declined your chat request`);
      }
    }
    this.changed();
  }
}

function isVisible(kind: string): boolean {
  return kind !== "system" && kind !== "edit" && kind !== "delete";
}

export function cardName(card: Card): string {
  const full = [card.first_name, card.last_name].filter(Boolean).join(" ");
  return card.nickname || full || card.code;
}

function preview(view: View): string {
  switch (view.type) {
    case "text":
      return view.text.slice(0, 80);
    case "image":
      return view.caption ? `Photo: ${view.caption.slice(0, 60)}` : "Photo";
    case "system":
      return view.text;
    case "deleted":
      return "Message deleted";
    case "error":
      return "Message could not be opened";
    default:
      return "…";
  }
}

export function isSignedOutError(err: unknown): boolean {
  return err instanceof ApiError && err.code === "signed_out";
}
