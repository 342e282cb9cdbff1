// People: search, and chat requests sent, answered and cancelled.

import type { ChatClient } from "./chat";
import { cardName, type Card, type ChatRequest } from "./model";

/** People search and chat requests (both boxes kept in the client's state). */
export class People {
  constructor(private readonly client: ChatClient) {}

  async search(q: string, interests: string[]): Promise<Card[]> {
    const answer = await this.client.api.call("GET", "/v1/users/search", {
      query: { q: q.trim() || undefined, interests: interests.join(",") || undefined, limit: 20 },
    });
    return answer.people;
  }

  async loadRequests(): Promise<void> {
    const [incoming, outgoing] = await Promise.all([
      this.client.api.call("GET", "/v1/chat-requests", { query: { box: "incoming", state: "pending" } }),
      this.client.api.call("GET", "/v1/chat-requests", { query: { box: "outgoing", state: "pending" } }),
    ]);
    this.client.state.incoming = incoming.requests;
    this.client.state.outgoing = outgoing.requests;
  }

  async requestChat(userId: string, text: string): Promise<void> {
    const request = await this.client.api.call("POST", "/v1/chat-requests", { json: { user_id: userId, text, mode: "encrypted" } });
    this.client.state.outgoing = [request, ...this.client.state.outgoing];
    this.client.notify(`Chat request sent to ${cardName(request.recipient)}`);
  }

  /** Accept or decline; the conversation an acceptance opens. */
  async answerRequest(id: string, accept: boolean): Promise<string | null> {
    const request = await this.client.api.call("POST", `/v1/chat-requests/${id}/${accept ? "accept" : "decline"}`);
    this.client.state.incoming = this.client.state.incoming.filter((r) => r.id !== id);
    this.client.changed();
    if (accept && request.conversation_id) {
      await this.client.fetchConversation(request.conversation_id);
      return request.conversation_id;
    }
    return null;
  }

  async cancelRequest(id: string): Promise<void> {
    await this.client.api.call("DELETE", `/v1/chat-requests/${id}`);
    this.client.state.outgoing = this.client.state.outgoing.filter((r) => r.id !== id);
    this.client.changed();
  }

  async onRequestUpdated(r: ChatRequest): Promise<void> {
    this.client.state.incoming = this.client.state.incoming.filter((x) => x.id !== r.id);
    this.client.state.outgoing = this.client.state.outgoing.filter((x) => x.id !== r.id);
    if (r.sender.user_id === this.client.userId) {
      if (r.state === "accepted" && r.conversation_id) {
        await this.client.fetchConversation(r.conversation_id).catch(() => undefined);
        this.client.notify(`${cardName(r.recipient)} accepted your chat request`);
      } else if (r.state === "declined") {
        this.client.notify(`${cardName(r.recipient)} declined your chat request`);
      }
    }
    this.client.changed();
  }
}
