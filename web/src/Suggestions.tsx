import { useEffect, useState } from "react";
import { describe } from "./api";
import { type Card, type ChatClient, cardName } from "./chat";
import { useInterests } from "./Interests";
import { Avatar, ProfileButton } from "./ProfileDialog";
import { interestLabel, type MyProfile } from "./profiles";

const SHOWN = 5;

/**
 * "People like you": the people search with no query, which the server answers with
 * people sharing the interests on your profile, most shared first.
 */
export function Suggestions({
  client,
  mine,
  onProfile,
  onEditProfile,
}: {
  client: ChatClient;
  mine: MyProfile | null;
  onProfile: (userId: string) => void;
  onEditProfile: () => void;
}) {
  const [people, setPeople] = useState<Card[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [round, setRound] = useState(0);
  const interests = useInterests(client.api, () => undefined); // labels only; slugs do without
  const wanted = mine?.interests.join(",") ?? "";

  useEffect(() => {
    if (!wanted) return;
    let live = true;
    setError(null);
    client.search("", []).then(
      (found) => live && setPeople(found.slice(0, SHOWN)),
      (err) => live && setError(describe(err)),
    );
    return () => {
      live = false;
    };
  }, [client, wanted, round]);

  if (mine === null) return null;
  return (
    <section className="suggestions" aria-labelledby="suggestions-heading">
      <div className="sidebar-head">
        <h2 id="suggestions-heading">People like you</h2>
        {wanted && (
          <button type="button" className="link" onClick={() => setRound(round + 1)}>
            Refresh<span className="visually-hidden"> suggestions</span>
          </button>
        )}
      </div>
      {!wanted ? (
        <p className="muted pad">
          Add interests to your profile to meet people who share them.{" "}
          <button type="button" className="link" onClick={onEditProfile}>
            Choose interests
          </button>
        </p>
      ) : error ? (
        <p role="alert" className="error pad">
          {error}
        </p>
      ) : people === null ? (
        <p className="muted pad">Looking for people who share your interests…</p>
      ) : people.length === 0 ? (
        <p className="muted pad">Nobody shares your interests yet. Try adding a few more.</p>
      ) : (
        <ul className="suggested">
          {people.map((p) => {
            const shared = p.interests.filter((slug) => mine.interests.includes(slug));
            const count = p.shared_interests ?? shared.length;
            return (
              <li key={p.user_id} className="suggestion">
                <Avatar client={client} card={p} />
                <span className="conversation-text">
                  <span className="conversation-title">{cardName(p)}</span>
                  <span className="conversation-preview">
                    {count} shared interest{count === 1 ? "" : "s"}: {shared.map((s) => interestLabel(interests, s)).join(", ")}
                  </span>
                </span>
                <ProfileButton name={cardName(p)} onClick={() => onProfile(p.user_id)} />
              </li>
            );
          })}
        </ul>
      )}
    </section>
  );
}
