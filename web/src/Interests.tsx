import { type FormEvent, useEffect, useState } from "react";
import { type Api, describe } from "./api";
import { type Interest, interestCatalogue, MAX_INTERESTS, saveProfile, skipInterests } from "./profiles";

/** The interests catalogue; failures go to `onError`. */
export function useInterests(api: Api, onError: (err: unknown) => void): Interest[] {
  const [interests, setInterests] = useState<Interest[]>([]);
  useEffect(() => {
    let live = true;
    interestCatalogue(api).then(
      (list) => live && setInterests(list),
      (err) => live && onError(err),
    );
    return () => {
      live = false;
    };
    // onError is a fresh closure each render; the catalogue is fetched once per api.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [api]);
  return interests;
}

export function InterestPicker({
  legend,
  interests,
  chosen,
  onChange,
}: {
  legend: string;
  interests: Interest[];
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

/** Asked once, after a first sign-in: what the person is into, so Parley can suggest people. */
export function InterestsWelcome({ api, userId, onDone }: { api: Api; userId: string; onDone: () => void }) {
  const [error, setError] = useState<string | null>(null);
  const interests = useInterests(api, (err) => setError(describe(err)));
  const [chosen, setChosen] = useState<string[]>([]);
  const [busy, setBusy] = useState(false);

  const save = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await saveProfile(api, { interests: chosen });
      onDone();
    } catch (err) {
      setError(describe(err));
      setBusy(false);
    }
  };

  return (
    <main className="signin welcome">
      <h1>Welcome to Parley</h1>
      <p className="tagline">
        What are you into? Pick a few interests and we will show you people who share them. You can change
        them any time under Profile.
      </p>
      <form onSubmit={save} aria-label="Choose your interests">
        {interests.length === 0 && !error && <p role="status">Loading interests…</p>}
        <InterestPicker
          legend={`Your interests (up to ${MAX_INTERESTS})`}
          interests={interests}
          chosen={chosen}
          onChange={(next) => setChosen(next.slice(0, MAX_INTERESTS))}
        />
        <button type="submit" disabled={busy || chosen.length === 0}>
          {busy ? "Saving…" : "Continue"}
        </button>
        <button
          type="button"
          className="link"
          onClick={() => {
            skipInterests(userId);
            onDone();
          }}
        >
          Skip for now
        </button>
        {error && (
          <p role="alert" className="error">
            {error}
          </p>
        )}
      </form>
    </main>
  );
}
