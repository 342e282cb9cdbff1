import { useEffect, useState, useSyncExternalStore } from "react";
import { describe } from "./api";
import type { ChatClient, Conversation } from "./chat";
import { ConversationView } from "./ConversationView";
import type { OidcReturn } from "./oidc";
import { NewGroupPanel, PeoplePanel, ProfilePanel, RequestsPanel } from "./Panels";
import { ProfileDialog } from "./ProfileDialog";
import { loadMyProfile, type MyProfile } from "./profiles";
import { Suggestions } from "./Suggestions";

type Panel = "people" | "requests" | "profile" | "group" | null;

interface Props {
  client: ChatClient;
  // Back from linking a provider: the profile panel, where linked sign-ins are, finishes it.
  oidcLink: OidcReturn | null;
  onOidcLinkDone: () => void;
  onSignOut: () => void;
}

export function Home({ client, oidcLink, onOidcLinkDone, onSignOut }: Props) {
  useSyncExternalStore(client.subscribe, client.getVersion);
  const [panel, setPanel] = useState<Panel>(oidcLink ? "profile" : null);
  // Whose profile card is open; and this person's own profile (interests for suggestions).
  const [profileOf, setProfileOf] = useState<string | null>(null);
  const [mine, setMine] = useState<MyProfile | null>(null);

  useEffect(() => {
    loadMyProfile(client.api).then(setMine, (err) => client.fail(err));
  }, [client]);
  const state = client.state;
  const active = state.active ? state.conversations.get(state.active) : undefined;
  const requests = state.incoming.length;

  const open = (id: string | null) => {
    setPanel(null);
    client.open(id).catch((err) => client.fail(err));
  };
  const showing = panel !== null || active !== undefined;

  return (
    <div className={`app ${showing ? "show-detail" : "show-list"}`}>
      <header className="topbar">
        <h1>Parley</h1>
        <p role="status" className={`connection ${state.connection}`} aria-live="polite">
          {state.connection === "online" ? "Connected" : state.connection === "offline" ? "Offline, reconnecting…" : "Connecting…"}
        </p>
        <nav aria-label="Main">
          <button type="button" onClick={() => setPanel("people")} aria-pressed={panel === "people"}>
            Find people
          </button>
          <button type="button" onClick={() => setPanel("requests")} aria-pressed={panel === "requests"}>
            Requests{requests ? ` (${requests})` : ""}
          </button>
          <button type="button" onClick={() => setPanel("profile")} aria-pressed={panel === "profile"}>
            Profile
          </button>
          <button type="button" onClick={onSignOut}>
            Sign out
          </button>
        </nav>
      </header>
      {(state.error || state.notice) && (
        <div className={state.error ? "banner error" : "banner notice"} role={state.error ? "alert" : "status"}>
          <span>{state.error ?? state.notice}</span>
          <button type="button" onClick={() => client.dismiss()} aria-label="Dismiss">
            ×
          </button>
        </div>
      )}
      <div className="columns">
        <aside className="sidebar">
          <div className="sidebar-head">
            <h2 id="conversations-heading">Chats</h2>
            <button type="button" onClick={() => setPanel("group")}>
              New group
            </button>
          </div>
          <ConversationList client={client} onOpen={open} />
          <Suggestions client={client} mine={mine} onProfile={setProfileOf} onEditProfile={() => setPanel("profile")} />
        </aside>
        <section className="detail">
          {panel === "people" && (
            <PeoplePanel client={client} onClose={() => setPanel(null)} onOpen={open} onProfile={setProfileOf} />
          )}
          {panel === "requests" && (
            <RequestsPanel client={client} onClose={() => setPanel(null)} onOpen={open} onProfile={setProfileOf} />
          )}
          {panel === "profile" && (
            <ProfilePanel
              client={client}
              oidcLink={oidcLink}
              onOidcLinkDone={onOidcLinkDone}
              onClose={() => setPanel(null)}
              onSaved={setMine}
            />
          )}
          {panel === "group" && <NewGroupPanel client={client} onClose={() => setPanel(null)} />}
          {panel === null && active && (
            <ConversationView
              key={active.id}
              client={client}
              conversation={active}
              onBack={() => open(null)}
              onProfile={setProfileOf}
            />
          )}
          {panel === null && !active && (
            <div className="empty">
              <p>Pick a chat, or find people who share your interests.</p>
            </div>
          )}
        </section>
      </div>
      {profileOf && (
        <ProfileDialog
          client={client}
          userId={profileOf}
          mine={mine?.interests ?? []}
          onClose={() => setProfileOf(null)}
          onOpen={open}
        />
      )}
    </div>
  );
}

function ConversationList({ client, onOpen }: { client: ChatClient; onOpen: (id: string) => void }) {
  const conversations = client.sortedConversations();
  if (conversations.length === 0) {
    return <p className="muted pad">No chats yet. Use “Find people” to start one.</p>;
  }
  return (
    <ul className="conversations" aria-labelledby="conversations-heading">
      {conversations.map((c) => (
        <li key={c.id}>
          <ConversationItem client={client} conversation={c} onOpen={onOpen} />
        </li>
      ))}
    </ul>
  );
}

function ConversationItem({
  client,
  conversation,
  onOpen,
}: {
  client: ChatClient;
  conversation: Conversation;
  onOpen: (id: string) => void;
}) {
  const title = client.title(conversation);
  const partner = client.partner(conversation);
  const online = partner ? client.state.presence.get(partner)?.online : undefined;
  const typing = client.typingIn(conversation.id);
  const selected = client.state.active === conversation.id;
  const unread = conversation.unread;
  return (
    <button
      type="button"
      className={`conversation ${selected ? "selected" : ""}`}
      aria-current={selected ? "true" : undefined}
      onClick={() => onOpen(conversation.id)}
    >
      <span className={`avatar ${online ? "online" : ""}`} aria-hidden="true">
        {title.slice(0, 1).toUpperCase()}
      </span>
      <span className="conversation-text">
        <span className="conversation-title">
          {title}
          {conversation.kind === "group" && <span className="tag">group</span>}
          {online !== undefined && <span className="visually-hidden">{online ? ", online" : ", offline"}</span>}
        </span>
        <span className="conversation-preview">{typing.length ? "typing…" : conversation.preview || "\u00a0"}</span>
      </span>
      {unread > 0 && (
        <span className="badge" aria-label={`${unread} unread`}>
          {unread}
        </span>
      )}
    </button>
  );
}

export function errorText(err: unknown): string {
  return describe(err);
}
