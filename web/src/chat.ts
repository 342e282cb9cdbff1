// The signed-in client: device keys, the socket, conversations, receipts, typing, presence.
// UI components read `state` and re-render on `subscribe`; every change goes through here.
// The rest lives in its own module, each given this client: receiving.ts (live messages
// and sync), decoding.ts, sending.ts, media.ts, people.ts (search and requests), tips.ts.

import { io, type Socket } from "socket.io-client";
import { Api, ApiError, describe } from "./api";
import { KeyDirectory } from "./keys";
import { type DeviceKeys, forgetDevice, loadDevice, makeKeys, registrationBody, saveDevice } from "./crypto/device";
import { Decoder } from "./decoding";
import { MediaCache } from "./media";
import {
  cardName,
  isVisible,
  type AttachmentPart,
  type Card,
  type ChatRequest,
  type Conversation,
  type Message,
  type Raw,
  type Receipt,
  type State,
  type Timeline,
  type UserInfo,
} from "./model";
import { People } from "./people";
import { Receiver } from "./receiving";
import { Sender } from "./sending";
import { Tips, type Tip } from "./tips";

export type {
  AttachmentPart,
  Card,
  ChatRequest,
  Conversation,
  Member,
  Message,
  Receipt,
  State,
  UserInfo,
  View,
} from "./model";
export { cardName } from "./model";

const PAGE = 30;
const TYPING_RESEND_MS = 3000;

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
  // For the modules below (not for the UI): this device's keys and the key directory.
  device: DeviceKeys | null = null;
  readonly directory: KeyDirectory;
  private typingSent = new Map<string, number>();
  private userFetches = new Map<string, Promise<UserInfo>>();
  private timer: number | undefined;
  closed = false;

  readonly receiver = new Receiver(this);
  readonly decoder = new Decoder(this);
  readonly sending = new Sender(this);
  readonly media = new MediaCache(this);
  readonly people = new People(this);
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

  changed(): void {
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
    await this.people.loadRequests();
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
    this.media.revokeAll();
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
      void this.receiver.sync(); // whatever arrived while the socket was away
      void this.tips.refresh().catch(() => undefined);
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
    socket.on("message:new", (m: Raw) => void this.receiver.onMessage(m));
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
    socket.on("chat_request:updated", (r: ChatRequest) => void this.people.onRequestUpdated(r));
    socket.on("tip:updated", (t: Tip) => this.tips.onUpdated(t));
  }

  async emit(event: string, payload: unknown): Promise<Raw> {
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
    if (!this.receiver.positions.has(raw.id)) this.receiver.positions.set(raw.id, raw.last_seq);
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

  async fetchConversation(id: string): Promise<Conversation> {
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
      for (const m of page.messages) this.receiver.place(m);
      this.changed();
    }
    this.markRead(id);
  }

  timeline(id: string): Timeline {
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
      for (const m of page.messages) this.receiver.place(m);
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

  // -- receipts -------------------------------------------------------------------

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

  // -- what the UI calls, done by the modules ----------------------------------------------

  /** Fetch everything after the positions held (reconnects, gaps): no gaps, no repeats. */
  sync(): Promise<void> {
    return this.receiver.sync();
  }

  sendText(id: string, text: string): Promise<void> {
    return this.sending.sendText(id, text);
  }

  sendImage(id: string, file: File, caption: string): Promise<void> {
    return this.sending.sendImage(id, file, caption);
  }

  retry(id: string, message: Message): void {
    this.sending.retry(id, message);
  }

  discard(id: string, message: Message): void {
    this.sending.discard(id, message);
  }

  mediaUrl(part: AttachmentPart | { media_id: string; plain: true }, variant: "thumb" | "full"): Promise<string> {
    return this.media.mediaUrl(part, variant);
  }

  search(q: string, interests: string[]): Promise<Card[]> {
    return this.people.search(q, interests);
  }

  requestChat(userId: string, text: string): Promise<void> {
    return this.people.requestChat(userId, text);
  }

  answerRequest(id: string, accept: boolean): Promise<string | null> {
    return this.people.answerRequest(id, accept);
  }

  cancelRequest(id: string): Promise<void> {
    return this.people.cancelRequest(id);
  }
}

export function isSignedOutError(err: unknown): boolean {
  return err instanceof ApiError && err.code === "signed_out";
}
