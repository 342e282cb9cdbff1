import { type KeyboardEvent, useEffect, useLayoutEffect, useRef, useState } from "react";
import type { AttachmentPart, ChatClient, Conversation, Message, View } from "./chat";
import { MembersDialog } from "./ProfileDialog";
import { TipButton, TipProgress } from "./TipDialog";
import { shortHash } from "./tips";

interface Props {
  client: ChatClient;
  conversation: Conversation;
  onBack: () => void;
  onProfile: (userId: string) => void;
}

export function ConversationView({ client, conversation, onBack, onProfile }: Props) {
  const state = client.state;
  const timeline = state.timelines.get(conversation.id);
  const outbox = state.outbox.get(conversation.id) ?? [];
  const items = [...(timeline?.items ?? []), ...outbox];
  const title = client.title(conversation);
  const partner = client.partner(conversation);
  const presence = partner ? state.presence.get(partner) : undefined;
  const typing = client.typingIn(conversation.id);
  const [lightbox, setLightbox] = useState<Extract<View, { type: "image" }> | null>(null);
  const [members, setMembers] = useState(false);

  const listRef = useRef<HTMLOListElement>(null);
  const atBottom = useRef(true);
  const anchor = useRef<{ height: number; top: number } | null>(null);
  const last = items.at(-1)?.id;

  // Keep the view pinned to the newest message, or steady while older ones load above.
  useLayoutEffect(() => {
    const list = listRef.current;
    if (!list) return;
    if (anchor.current) {
      list.scrollTop = anchor.current.top + (list.scrollHeight - anchor.current.height);
      anchor.current = null;
    } else if (atBottom.current) {
      list.scrollTop = list.scrollHeight;
    }
  });

  useEffect(() => {
    if (document.visibilityState === "visible" && conversation.unread > 0 && atBottom.current) {
      client.markRead(conversation.id);
    }
  }, [client, conversation.id, conversation.unread, last]);

  useEffect(() => {
    const onVisible = () => {
      if (document.visibilityState === "visible") client.markRead(conversation.id);
    };
    document.addEventListener("visibilitychange", onVisible);
    return () => document.removeEventListener("visibilitychange", onVisible);
  }, [client, conversation.id]);

  const onScroll = () => {
    const list = listRef.current!;
    atBottom.current = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    if (atBottom.current && conversation.unread > 0) client.markRead(conversation.id);
    if (list.scrollTop < 80 && timeline?.hasOlder && !timeline.loadingOlder) {
      anchor.current = { height: list.scrollHeight, top: list.scrollTop };
      client.loadOlder(conversation.id).catch((err) => client.fail(err));
    }
  };

  const status =
    typing.length > 0
      ? `${typing.join(", ")} ${typing.length > 1 ? "are" : "is"} typing…`
      : presence
        ? presence.online
          ? "online"
          : presence.last_seen
            ? `last seen ${new Date(presence.last_seen * 1000).toLocaleString()}`
            : "offline"
        : conversation.kind === "group"
          ? `${conversation.members.length} members`
          : "";

  return (
    <div className="conversation-view">
      <header className="chat-head">
        <button type="button" className="back" onClick={onBack} aria-label="Back to chats">
          ‹
        </button>
        <div>
          <h2>
            {/* The title opens the other person's profile card, or a group's members. */}
            <button
              type="button"
              className="title-button"
              aria-haspopup="dialog"
              title={partner ? "View profile" : "View members"}
              onClick={() => (partner ? onProfile(partner) : setMembers(true))}
            >
              {title}
            </button>
          </h2>
          <p className="chat-status" aria-live="polite">
            {status}
          </p>
        </div>
        <span className="lock" title={conversation.mode === "encrypted" ? "End-to-end encrypted" : "Not encrypted"}>
          {conversation.mode === "encrypted" ? "End-to-end encrypted" : "Not encrypted"}
        </span>
        <TipButton client={client} conversation={conversation} />
      </header>
      <ol className="messages" ref={listRef} onScroll={onScroll} role="log" aria-label={`Messages with ${title}`}>
        {timeline?.hasOlder && (
          <li className="older">
            <button type="button" onClick={() => client.loadOlder(conversation.id)} disabled={timeline.loadingOlder}>
              {timeline.loadingOlder ? "Loading…" : "Load older messages"}
            </button>
          </li>
        )}
        {items.map((m) => (
          <MessageItem
            key={m.id}
            client={client}
            conversation={conversation}
            message={m}
            onOpenImage={setLightbox}
          />
        ))}
      </ol>
      <TipProgress client={client} conversation={conversation} />
      <Composer client={client} conversation={conversation} />
      {lightbox && <Lightbox client={client} image={lightbox} onClose={() => setLightbox(null)} />}
      {members && (
        <MembersDialog
          client={client}
          conversation={conversation}
          onClose={() => setMembers(false)}
          onProfile={(userId) => {
            setMembers(false);
            onProfile(userId);
          }}
        />
      )}
    </div>
  );
}

function MessageItem({
  client,
  conversation,
  message,
  onOpenImage,
}: {
  client: ChatClient;
  conversation: Conversation;
  message: Message;
  onOpenImage: (view: Extract<View, { type: "image" }>) => void;
}) {
  const view = message.view;
  if (view.type === "tip") {
    const to = view.to === client.state.me?.id ? "you" : client.displayName(view.to);
    return (
      <li className="system tip" data-seq={message.seq}>
        {client.displayName(view.by)} tipped {to} {view.amountEth} ETH
        {view.txHash && <span title={view.txHash}> · tx {shortHash(view.txHash)}</span>}
      </li>
    );
  }
  if (view.type === "system") {
    return (
      <li className="system" data-seq={message.seq}>
        {view.text}
      </li>
    );
  }
  const mine = message.senderId === client.state.me?.id;
  const time = new Date(message.createdAt).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  const seq = message.status ? undefined : message.seq;
  return (
    <li className={`message ${mine ? "mine" : "theirs"}`} data-seq={seq} data-status={message.status}>
      {!mine && conversation.kind === "group" && <span className="sender">{client.displayName(message.senderId)}</span>}
      <div className="bubble">
        {view.type === "text" && <p className="text">{view.text}</p>}
        {view.type === "decrypting" && <p className="muted">Decrypting…</p>}
        {view.type === "deleted" && <p className="muted">Message deleted</p>}
        {view.type === "error" && (
          <p className="error" role="note">
            {view.text}
          </p>
        )}
        {view.type === "image" && <ImageThumb client={client} view={view} onOpen={() => onOpenImage(view)} />}
      </div>
      <span className="meta">
        <span className="visually-hidden">{mine ? "You" : client.displayName(message.senderId)}, </span>
        {time}
        {message.editedAt && " · edited"}
        {mine && !message.status && <span className="receipt"> · {client.receiptLabel(conversation, message.seq)}</span>}
        {message.status === "sending" && " · Sending…"}
        {message.status === "failed" && (
          <>
            <span className="error" role="alert">
              {" "}
              · Not sent: {message.error}
            </span>{" "}
            {view.type === "text" && (
              <button type="button" className="link" onClick={() => client.retry(conversation.id, message)}>
                Retry
              </button>
            )}
            <button type="button" className="link" onClick={() => client.discard(conversation.id, message)}>
              Discard
            </button>
          </>
        )}
      </span>
    </li>
  );
}

function useMediaUrl(
  client: ChatClient,
  part: AttachmentPart | { media_id: string; plain: true } | undefined,
  variant: "thumb" | "full",
  local?: string,
): { url?: string; error?: string } {
  const [state, setState] = useState<{ url?: string; error?: string }>({ url: local });
  useEffect(() => {
    if (local || !part || !part.media_id) return;
    let live = true;
    client.mediaUrl(part, variant).then(
      (url) => live && setState({ url }),
      (err) => live && setState({ error: String(err?.message ?? err) }),
    );
    return () => {
      live = false;
    };
  }, [client, part, variant, local]);
  return state;
}

function ImageThumb({
  client,
  view,
  onOpen,
}: {
  client: ChatClient;
  view: Extract<View, { type: "image" }>;
  onOpen: () => void;
}) {
  const { url, error } = useMediaUrl(client, view.thumb ?? view.full, view.thumb ? "thumb" : "full", view.localUrl);
  const label = view.caption || view.name || "image";
  return (
    <figure className="image">
      {error ? (
        <p className="error">Image unavailable: {error}</p>
      ) : url ? (
        <button type="button" className="image-button" onClick={onOpen} aria-label={`Open image ${label}`}>
          <img src={url} alt={label} width={view.thumb && "width" in view.thumb ? view.thumb.width : undefined} />
        </button>
      ) : (
        <div className="image-loading" role="img" aria-label="Loading image" />
      )}
      {view.caption && <figcaption>{view.caption}</figcaption>}
    </figure>
  );
}

function Lightbox({
  client,
  image,
  onClose,
}: {
  client: ChatClient;
  image: Extract<View, { type: "image" }>;
  onClose: () => void;
}) {
  const { url, error } = useMediaUrl(client, image.full, "full", image.localUrl);
  const closeRef = useRef<HTMLButtonElement>(null);
  useEffect(() => {
    const previous = document.activeElement as HTMLElement | null;
    closeRef.current?.focus();
    const onKey = (e: globalThis.KeyboardEvent) => {
      if (e.key === "Escape") onClose();
    };
    document.addEventListener("keydown", onKey);
    return () => {
      document.removeEventListener("keydown", onKey);
      previous?.focus();
    };
  }, [onClose]);
  const label = image.caption || image.name || "image";
  return (
    <div className="lightbox" role="dialog" aria-modal="true" aria-label={`Image: ${label}`} onClick={onClose}>
      <button type="button" ref={closeRef} className="close" onClick={onClose} aria-label="Close image">
        ×
      </button>
      {error && <p className="error">Image unavailable: {error}</p>}
      {!error && !url && <p role="status">Decrypting…</p>}
      {url && <img src={url} alt={label} onClick={(e) => e.stopPropagation()} />}
      {image.caption && <p className="caption">{image.caption}</p>}
    </div>
  );
}

function Composer({ client, conversation }: { client: ChatClient; conversation: Conversation }) {
  const [text, setText] = useState("");
  const fileRef = useRef<HTMLInputElement>(null);
  const inputRef = useRef<HTMLTextAreaElement>(null);

  useEffect(() => {
    inputRef.current?.focus();
  }, [conversation.id]);

  const send = () => {
    const value = text;
    if (!value.trim()) return;
    setText("");
    void client.sendText(conversation.id, value);
  };

  const onKeyDown = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    if (e.key === "Enter" && !e.shiftKey && !e.nativeEvent.isComposing) {
      e.preventDefault();
      send();
    }
  };

  return (
    <form
      className="composer"
      onSubmit={(e) => {
        e.preventDefault();
        send();
      }}
    >
      <label className="attach" title="Send an image">
        <span aria-hidden="true">+</span>
        <input
          ref={fileRef}
          type="file"
          aria-label="Attach image"
          accept="image/*"
          className="visually-hidden"
          onChange={(e) => {
            const file = e.target.files?.[0];
            if (file) {
              const caption = text;
              setText("");
              void client.sendImage(conversation.id, file, caption);
            }
            e.target.value = "";
          }}
        />
      </label>
      <label htmlFor="composer-text" className="visually-hidden">
        Message
      </label>
      <textarea
        id="composer-text"
        ref={inputRef}
        rows={1}
        maxLength={4000}
        placeholder="Message (Enter to send, Shift+Enter for a new line)"
        value={text}
        onChange={(e) => {
          setText(e.target.value);
          client.typing(conversation.id, e.target.value.length > 0);
        }}
        onBlur={() => client.typing(conversation.id, false)}
        onKeyDown={onKeyDown}
      />
      <button type="submit" disabled={!text.trim()}>
        Send
      </button>
    </form>
  );
}
