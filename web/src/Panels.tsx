import { type FormEvent, type ReactNode, useEffect, useState, useSyncExternalStore } from "react";
import { describe } from "./api";
import { type Card, type ChatClient, cardName } from "./chat";

function Panel({ title, onClose, children }: { title: string; onClose: () => void; children: ReactNode }) {
  return (
    <section className="panel" aria-labelledby="panel-title">
      <header className="chat-head">
        <button type="button" className="back" onClick={onClose} aria-label="Back to chats">
          ‹
        </button>
        <h2 id="panel-title">{title}</h2>
      </header>
      <div className="panel-body">{children}</div>
    </section>
  );
}

function useInterests(client: ChatClient): { slug: string; label: string }[] {
  const [interests, setInterests] = useState<{ slug: string; label: string }[]>([]);
  useEffect(() => {
    client.api.call("GET", "/v1/interests").then(
      (a) => setInterests(a.interests),
      (err) => client.fail(err),
    );
  }, [client]);
  return interests;
}

function InterestPicker({
  legend,
  interests,
  chosen,
  onChange,
}: {
  legend: string;
  interests: { slug: string; label: string }[];
  chosen: string[];
  onChange: (next: string[]) => void;
}) {
  return (
    <fieldset className="interests">
      <legend>{legend}</legend>
      {interests.map((i) => (
        <label key={i.slug} className="chip">
          <input
            type="checkbox"
            checked={chosen.includes(i.slug)}
            onChange={(e) => onChange(e.target.checked ? [...chosen, i.slug] : chosen.filter((s) => s !== i.slug))}
          />
          {i.label}
        </label>
      ))}
    </fieldset>
  );
}

export function PeoplePanel({
  client,
  onClose,
  onOpen,
}: {
  client: ChatClient;
  onClose: () => void;
  onOpen: (id: string) => void;
}) {
  const interests = useInterests(client);
  const [q, setQ] = useState("");
  const [chosen, setChosen] = useState<string[]>([]);
  const [people, setPeople] = useState<Card[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [note, setNote] = useState<Record<string, string>>({});

  const search = (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    client
      .search(q, chosen)
      .then(setPeople, (err) => setError(describe(err)))
      .finally(() => setBusy(false));
  };

  return (
    <Panel title="Find people" onClose={onClose}>
      <form onSubmit={search} className="stack">
        <label htmlFor="people-q">Name or nickname (3+ letters, optional)</label>
        <input id="people-q" type="search" maxLength={200} value={q} onChange={(e) => setQ(e.target.value)} />
        <InterestPicker legend="Shared interests" interests={interests} chosen={chosen} onChange={setChosen} />
        <button type="submit" disabled={busy}>
          Search
        </button>
      </form>
      {error && (
        <p role="alert" className="error">
          {error}
        </p>
      )}
      {people !== null && (
        <section aria-label="Search results" aria-live="polite">
          {people.length === 0 ? (
            <p className="muted">Nobody found. Try other interests.</p>
          ) : (
            <ul className="people">
              {people.map((p) => (
                <li key={p.user_id} className="person">
                  <div>
                    <strong>{cardName(p)}</strong>
                    <span className="muted">
                      {" "}
                      {p.shared_interests ? `${p.shared_interests} shared interest${p.shared_interests > 1 ? "s" : ""}` : ""}
                    </span>
                    <p className="muted small">{p.interests.join(", ")}</p>
                  </div>
                  <div className="actions">
                    <button
                      type="button"
                      onClick={() => client.openDirect(p.user_id).then(onOpen, (err) => client.fail(err))}
                    >
                      Message {cardName(p)}
                    </button>
                    <button
                      type="button"
                      onClick={() =>
                        client.requestChat(p.user_id, note[p.user_id] ?? "").catch((err) => client.fail(err))
                      }
                    >
                      Request chat with {cardName(p)}
                    </button>
                    <label className="visually-hidden" htmlFor={`note-${p.user_id}`}>
                      Note for {cardName(p)}
                    </label>
                    <input
                      id={`note-${p.user_id}`}
                      placeholder="Say hello (optional)"
                      maxLength={500}
                      value={note[p.user_id] ?? ""}
                      onChange={(e) => setNote({ ...note, [p.user_id]: e.target.value })}
                    />
                  </div>
                </li>
              ))}
            </ul>
          )}
        </section>
      )}
    </Panel>
  );
}

export function RequestsPanel({
  client,
  onClose,
  onOpen,
}: {
  client: ChatClient;
  onClose: () => void;
  onOpen: (id: string) => void;
}) {
  useSyncExternalStore(client.subscribe, client.getVersion);
  const { incoming, outgoing } = client.state;
  return (
    <Panel title="Chat requests" onClose={onClose}>
      <h3>Incoming</h3>
      {incoming.length === 0 && <p className="muted">No requests waiting.</p>}
      <ul className="people">
        {incoming.map((r) => (
          <li key={r.id} className="person">
            <div>
              <strong>{cardName(r.sender)}</strong>
              {r.text && <p>“{r.text}”</p>}
            </div>
            <div className="actions">
              <button type="button" onClick={() =>
                  client.answerRequest(r.id, true).then((id) => id && onOpen(id), (err) => client.fail(err))
                }>
                Accept {cardName(r.sender)}
              </button>
              <button type="button" onClick={() => client.answerRequest(r.id, false).catch((err) => client.fail(err))}>
                Decline
              </button>
            </div>
          </li>
        ))}
      </ul>
      <h3>Sent</h3>
      {outgoing.length === 0 && <p className="muted">No requests pending.</p>}
      <ul className="people">
        {outgoing.map((r) => (
          <li key={r.id} className="person">
            <div>
              <strong>{cardName(r.recipient)}</strong> <span className="muted">waiting</span>
            </div>
            <button type="button" onClick={() => client.cancelRequest(r.id).catch((err) => client.fail(err))}>
              Cancel
            </button>
          </li>
        ))}
      </ul>
    </Panel>
  );
}

export function ProfilePanel({ client, onClose }: { client: ChatClient; onClose: () => void }) {
  const interests = useInterests(client);
  const [profile, setProfile] = useState<{ nickname: string; interests: string[]; visibility: string } | null>(null);
  const [status, setStatus] = useState<string>("");
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    client.api.call("GET", "/v1/me/profile").then(
      (p) => setProfile({ nickname: p.nickname, interests: p.interests, visibility: p.visibility }),
      (err) => setError(describe(err)),
    );
  }, [client]);

  const save = async (event: FormEvent) => {
    event.preventDefault();
    if (!profile) return;
    setError(null);
    setStatus("Saving…");
    try {
      const saved = await client.api.call("PATCH", "/v1/me/profile", { json: profile });
      if (client.state.me) client.state.me.nickname = saved.nickname;
      // Search shows the change once the indexer has applied it.
      for (let delay = 50; ; delay = Math.min(delay * 2, 500)) {
        const event = await client.api.call("GET", `/v1/events/${saved.event_id}`);
        if (event.indexed) break;
        await new Promise((r) => setTimeout(r, delay));
      }
      setStatus("Saved");
    } catch (err) {
      setStatus("");
      setError(describe(err));
    }
  };

  if (profile === null) {
    return (
      <Panel title="Profile" onClose={onClose}>
        {error ? <p role="alert" className="error">{error}</p> : <p role="status">Loading…</p>}
      </Panel>
    );
  }
  return (
    <Panel title="Profile" onClose={onClose}>
      <form onSubmit={save} className="stack">
        <p className="muted small">Your public code: {client.state.me?.code}</p>
        <label htmlFor="profile-nickname">Nickname</label>
        <input
          id="profile-nickname"
          maxLength={100}
          value={profile.nickname}
          onChange={(e) => setProfile({ ...profile, nickname: e.target.value })}
        />
        <InterestPicker
          legend="Your interests"
          interests={interests}
          chosen={profile.interests}
          onChange={(next) => setProfile({ ...profile, interests: next.slice(0, 20) })}
        />
        <label htmlFor="profile-visibility">Who can find you</label>
        <select
          id="profile-visibility"
          value={profile.visibility}
          onChange={(e) => setProfile({ ...profile, visibility: e.target.value })}
        >
          <option value="everyone">Everyone</option>
          <option value="contacts">People with my number</option>
          <option value="nobody">Nobody</option>
        </select>
        <button type="submit">Save profile</button>
        <p role="status" aria-live="polite">
          {status}
        </p>
        {error && (
          <p role="alert" className="error">
            {error}
          </p>
        )}
      </form>
    </Panel>
  );
}

export function NewGroupPanel({ client, onClose }: { client: ChatClient; onClose: () => void }) {
  const people = client.knownPeople();
  const [title, setTitle] = useState("");
  const [chosen, setChosen] = useState<string[]>([]);
  const [error, setError] = useState<string | null>(null);

  const create = (event: FormEvent) => {
    event.preventDefault();
    setError(null);
    client.createGroup(title.trim(), chosen).then(onClose, (err) => setError(describe(err)));
  };

  return (
    <Panel title="New group" onClose={onClose}>
      <form onSubmit={create} className="stack">
        <label htmlFor="group-title">Group name</label>
        <input id="group-title" required maxLength={100} value={title} onChange={(e) => setTitle(e.target.value)} />
        <fieldset>
          <legend>Members (people you chat with)</legend>
          {people.length === 0 && <p className="muted">Start a chat with someone first.</p>}
          {people.map((id) => (
            <label key={id} className="chip">
              <input
                type="checkbox"
                checked={chosen.includes(id)}
                onChange={(e) => setChosen(e.target.checked ? [...chosen, id] : chosen.filter((x) => x !== id))}
              />
              {client.displayName(id)}
            </label>
          ))}
        </fieldset>
        <button type="submit" disabled={!title.trim() || chosen.length === 0}>
          Create encrypted group
        </button>
        {error && (
          <p role="alert" className="error">
            {error}
          </p>
        )}
      </form>
    </Panel>
  );
}
