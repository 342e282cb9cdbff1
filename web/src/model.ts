// What the chat client holds: conversations, messages and how they show, people, requests.

import type { AttachmentSecret } from "./crypto/attachments";

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
  // A confirmed tip (a system message); names are looked up when shown.
  | { type: "tip"; by: string | null; to: string | null; amountEth: string; txHash: string | null }
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

export interface Timeline {
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

/** A profile card (GET /v1/users/{id}/profile, search results, chat requests). */
export interface Card {
  user_id: string;
  code: string;
  nickname: string;
  first_name: string;
  last_name: string;
  age: number | null;
  gender: string;
  interests: string[];
  avatar_media_id: string | null;
  shared_interests?: number | null;
  /** Only code, nickname and avatar: the owner shares the rest with fewer people. */
  limited?: boolean;
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
export type Raw = any;

export function randomId(): string {
  return crypto.randomUUID().replace(/-/g, "");
}

export function isVisible(kind: string): boolean {
  return kind !== "system" && kind !== "edit" && kind !== "delete";
}

export function cardName(card: Card): string {
  const full = [card.first_name, card.last_name].filter(Boolean).join(" ");
  return card.nickname || full || card.code;
}

export function preview(view: View): string {
  switch (view.type) {
    case "text":
      return view.text.slice(0, 80);
    case "image":
      return view.caption ? `Photo: ${view.caption.slice(0, 60)}` : "Photo";
    case "system":
      return view.text;
    case "tip":
      return `Tip: ${view.amountEth} ETH`;
    case "deleted":
      return "Message deleted";
    case "error":
      return "Message could not be opened";
    default:
      return "…";
  }
}
