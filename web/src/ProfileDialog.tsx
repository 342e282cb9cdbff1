import { type ReactNode, type RefObject, useEffect, useId, useRef, useState } from "react";
import { describe } from "./api";
import { type Card, type ChatClient, type Conversation, cardName } from "./chat";
import { useInterests } from "./Interests";
import { fullName, genderLabel, interestLabel } from "./profiles";

/** A modal dialog: focus moves in, Escape closes, focus goes back where it was. */
function Dialog({
  className,
  title,
  onClose,
  children,
}: {
  className: string;
  title: ReactNode;
  onClose: () => void;
  children: (closeRef: RefObject<HTMLButtonElement | null>) => ReactNode;
}) {
  const headingId = useId();
  const closeRef = useRef<HTMLButtonElement>(null);
  // The latest onClose, so focus moves in once, not on every re-render of the opener.
  const latestClose = useRef(onClose);
  useEffect(() => {
    latestClose.current = onClose;
  });
  useEffect(() => {
    const previous = document.activeElement as HTMLElement | null;
    closeRef.current?.focus();
    const onKey = (e: globalThis.KeyboardEvent) => {
      if (e.key === "Escape") latestClose.current();
    };
    document.addEventListener("keydown", onKey);
    return () => {
      document.removeEventListener("keydown", onKey);
      previous?.focus();
    };
  }, []);
  return (
    <div className="dialog-backdrop">
      <section className={`dialog ${className}`} role="dialog" aria-modal="true" aria-labelledby={headingId}>
        <h2 id={headingId}>{title}</h2>
        {children(closeRef)}
      </section>
    </div>
  );
}

/** An object URL of a user's avatar (the 160 px variant), revoked when no longer shown. */
function useAvatar(client: ChatClient, mediaId: string | null | undefined): string | null {
  const [url, setUrl] = useState<string | null>(null);
  useEffect(() => {
    if (!mediaId) return;
    let live = true;
    let made: string | null = null;
    client.api.bytes(`/v1/media/${mediaId}/160`).then(
      (bytes) => {
        made = URL.createObjectURL(new Blob([bytes], { type: "image/webp" }));
        if (live) setUrl(made);
        else URL.revokeObjectURL(made);
      },
      () => undefined, // no picture: the initial stands in
    );
    return () => {
      live = false;
      if (made) URL.revokeObjectURL(made);
      setUrl(null);
    };
  }, [client, mediaId]);
  return url;
}

export function Avatar({ client, card, large = false }: { client: ChatClient; card: Card; large?: boolean }) {
  const url = useAvatar(client, card.avatar_media_id);
  return (
    <span className={`avatar${large ? " large" : ""}`} aria-hidden="true">
      {url ? <img src={url} alt="" /> : cardName(card).slice(0, 1).toUpperCase()}
    </span>
  );
}

/** Another person's profile card: names, age, gender, interests (the shared ones marked). */
export function ProfileDialog({
  client,
  userId,
  mine,
  onClose,
  onOpen,
}: {
  client: ChatClient;
  userId: string;
  mine: string[];
  onClose: () => void;
  onOpen: (conversationId: string) => void;
}) {
  const [card, setCard] = useState<Card | null>(null);
  const [error, setError] = useState<string | null>(null);
  const interests = useInterests(client.api, (err) => setError(describe(err)));
  const me = userId === client.userId;

  useEffect(() => {
    let live = true;
    client.api.call("GET", `/v1/users/${userId}/profile`).then(
      (c: Card) => live && setCard(c),
      (err) => live && setError(describe(err)),
    );
    return () => {
      live = false;
    };
  }, [client, userId]);

  const name = card ? cardName(card) : client.displayName(userId);
  const full = card ? fullName(card) : "";
  return (
    <Dialog className="profile-card" title={me ? "Your profile" : name} onClose={onClose}>
      {(closeRef) => (
        <>
          {card === null ? (
            !error && <p role="status">Loading profile…</p>
          ) : (
            <>
              <div className="profile-head">
                <Avatar client={client} card={card} large />
                <div>
                  {full && full !== name && <p className="profile-name">{full}</p>}
                  <p className="muted small">Public code {card.code}</p>
                </div>
              </div>
              {card.limited && (
                <p className="muted" role="note">
                  {name} shares their profile only with people they know or chat with.
                </p>
              )}
              <dl className="facts">
                <dt>Age</dt>
                <dd>{card.age ?? "Not shown"}</dd>
                <dt>Gender</dt>
                <dd>{card.gender ? genderLabel(card.gender) : "Not shown"}</dd>
              </dl>
              <h3 className="facts-heading">Interests</h3>
              {card.interests.length === 0 ? (
                <p className="muted">None listed yet.</p>
              ) : (
                <ul className="chips" aria-label={`Interests of ${name}`}>
                  {card.interests.map((slug) => {
                    const shared = !me && mine.includes(slug);
                    return (
                      <li key={slug} className={`chip${shared ? " shared" : ""}`}>
                        {interestLabel(interests, slug)}
                        {shared && <span className="visually-hidden"> (you share this)</span>}
                      </li>
                    );
                  })}
                </ul>
              )}
            </>
          )}
          {error && (
            <p role="alert" className="error">
              {error}
            </p>
          )}
          <div className="actions">
            {card && !me && (
              <button
                type="button"
                onClick={() =>
                  client.openDirect(userId).then(
                    (id) => {
                      onClose();
                      onOpen(id);
                    },
                    (err) => setError(describe(err)),
                  )
                }
              >
                Message {name}
              </button>
            )}
            <button type="button" className="link" ref={closeRef} onClick={onClose}>
              Close
            </button>
          </div>
        </>
      )}
    </Dialog>
  );
}

/** A group's members, each a way to their profile card. */
export function MembersDialog({
  client,
  conversation,
  onClose,
  onProfile,
}: {
  client: ChatClient;
  conversation: Conversation;
  onClose: () => void;
  onProfile: (userId: string) => void;
}) {
  return (
    <Dialog className="members" title={`Members of ${client.title(conversation)}`} onClose={onClose}>
      {(closeRef) => (
        <>
          <ul className="people">
            {conversation.members.map((m) => {
              const name = client.displayName(m.user_id);
              return (
                <li key={m.user_id} className="person member">
                  <span>
                    {name}
                    {m.role !== "member" && <span className="tag">{m.role}</span>}
                  </span>
                  {m.user_id !== client.userId && (
                    <ProfileButton name={name} onClick={() => onProfile(m.user_id)} />
                  )}
                </li>
              );
            })}
          </ul>
          <div className="actions">
            <button type="button" className="link" ref={closeRef} onClick={onClose}>
              Close
            </button>
          </div>
        </>
      )}
    </Dialog>
  );
}

/** "View profile" (of whom, for screen readers and tests alike). */
export function ProfileButton({ name, onClick }: { name: string; onClick: () => void }) {
  return (
    <button type="button" className="profile-button" onClick={onClick}>
      View profile<span className="visually-hidden"> of {name}</span>
    </button>
  );
}
