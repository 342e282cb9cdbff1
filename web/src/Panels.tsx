import { type FormEvent, type ReactNode, useEffect, useState, useSyncExternalStore } from "react";
import { describe } from "./api";
import { type Card, type ChatClient, cardName } from "./chat";
import { InterestPicker, useInterests } from "./Interests";
import { LinkedSignIns } from "./LinkedSignIns";
import type { OidcReturn } from "./oidc";
import { ProfileButton } from "./ProfileDialog";
import {
  GENDERS,
  interestLabel,
  loadMyProfile,
  MAX_AGE,
  MAX_INTERESTS,
  MIN_AGE,
  type MyProfile,
  type ProfileChange,
  saveProfile,
} from "./profiles";

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

export function PeoplePanel({
  client,
  onClose,
  onOpen,
  onProfile,
}: {
  client: ChatClient;
  onClose: () => void;
  onOpen: (id: string) => void;
  onProfile: (userId: string) => void;
}) {
  const interests = useInterests(client.api, (err) => client.fail(err));
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
                    <p className="muted small">{p.interests.map((slug) => interestLabel(interests, slug)).join(", ")}</p>
                  </div>
                  <div className="actions">
                    <ProfileButton name={cardName(p)} onClick={() => onProfile(p.user_id)} />
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
  onProfile,
}: {
  client: ChatClient;
  onClose: () => void;
  onOpen: (id: string) => void;
  onProfile: (userId: string) => void;
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
              <ProfileButton name={cardName(r.sender)} onClick={() => onProfile(r.sender.user_id)} />
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

/** The own-profile form: what it holds of a profile (age as typed, "" for not shown). */
interface ProfileForm {
  nickname: string;
  first_name: string;
  last_name: string;
  gender: string;
  age: string;
  interests: string[];
  visibility: string;
}

function formOf(p: MyProfile): ProfileForm {
  return {
    nickname: p.nickname,
    first_name: p.first_name,
    last_name: p.last_name,
    gender: p.gender,
    age: p.age === null ? "" : String(p.age),
    interests: p.interests,
    visibility: p.visibility,
  };
}

function changeOf(form: ProfileForm): ProfileChange {
  const { age, ...rest } = form;
  const trimmed = {
    ...rest,
    nickname: form.nickname.trim(),
    first_name: form.first_name.trim(),
    last_name: form.last_name.trim(),
  };
  return age.trim() ? { ...trimmed, age: Number(age) } : { ...trimmed, clear_age: true };
}

export function ProfilePanel({
  client,
  oidcLink,
  onOidcLinkDone,
  onClose,
  onSaved,
}: {
  client: ChatClient;
  oidcLink: OidcReturn | null;
  onOidcLinkDone: () => void;
  onClose: () => void;
  onSaved: (profile: MyProfile) => void;
}) {
  const interests = useInterests(client.api, (err) => client.fail(err));
  const [profile, setProfile] = useState<ProfileForm | null>(null);
  const [status, setStatus] = useState<string>("");
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    loadMyProfile(client.api).then(
      (p) => setProfile(formOf(p)),
      (err) => setError(describe(err)),
    );
  }, [client]);

  const save = async (event: FormEvent) => {
    event.preventDefault();
    if (!profile) return;
    setError(null);
    setStatus("Saving…");
    try {
      // Resolves once search shows the change.
      const saved = await saveProfile(client.api, changeOf(profile));
      if (client.state.me) client.state.me.nickname = saved.nickname;
      onSaved(saved);
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
  const text = (name: "nickname" | "first_name" | "last_name") => ({
    value: profile[name],
    onChange: (e: { target: { value: string } }) => setProfile({ ...profile, [name]: e.target.value }),
  });
  return (
    <Panel title="Profile" onClose={onClose}>
      <form onSubmit={save} className="stack">
        <p className="muted small">Your public code: {client.state.me?.code}</p>
        <label htmlFor="profile-nickname">Nickname</label>
        <input id="profile-nickname" autoComplete="nickname" maxLength={64} {...text("nickname")} />
        <div className="pair">
          <div className="stack">
            <label htmlFor="profile-first">First name</label>
            <input id="profile-first" autoComplete="given-name" maxLength={100} {...text("first_name")} />
          </div>
          <div className="stack">
            <label htmlFor="profile-last">Last name</label>
            <input id="profile-last" autoComplete="family-name" maxLength={100} {...text("last_name")} />
          </div>
        </div>
        <div className="pair">
          <div className="stack">
            <label htmlFor="profile-gender">Gender</label>
            <select
              id="profile-gender"
              value={profile.gender}
              onChange={(e) => setProfile({ ...profile, gender: e.target.value })}
            >
              {GENDERS.map(([value, label]) => (
                <option key={value} value={value}>
                  {label}
                </option>
              ))}
            </select>
          </div>
          <div className="stack">
            <label htmlFor="profile-age">Age</label>
            <input
              id="profile-age"
              type="number"
              inputMode="numeric"
              min={MIN_AGE}
              max={MAX_AGE}
              step={1}
              placeholder="Not shown"
              aria-describedby="profile-age-hint"
              value={profile.age}
              onChange={(e) => setProfile({ ...profile, age: e.target.value })}
            />
          </div>
        </div>
        <p id="profile-age-hint" className="muted small">
          Names, age, gender and interests are on your profile card for everyone signed in. Leave age empty
          to not show it.
        </p>
        <InterestPicker
          legend="Your interests"
          interests={interests}
          chosen={profile.interests}
          onChange={(next) => setProfile({ ...profile, interests: next.slice(0, MAX_INTERESTS) })}
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
      <LinkedSignIns api={client.api} oidcLink={oidcLink} onOidcLinkDone={onOidcLinkDone} />
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
