import { useEffect, useMemo, useState } from "react";
import { Api, describe } from "./api";
import { ChatClient } from "./chat";
import { Home } from "./Home";
import { InterestsWelcome } from "./Interests";
import { takeOidcReturn } from "./oidc";
import { loadMyProfile, wantsInterests } from "./profiles";
import { SignIn } from "./SignIn";

function webCryptoProblem(): string | null {
  if (!window.isSecureContext || !crypto?.subtle) {
    return "Parley needs a secure context (https://, or http://127.0.0.1 / localhost) for WebCrypto.";
  }
  return null;
}

export function App() {
  const api = useMemo(() => new Api(), []);
  // Back from an OpenID Connect provider: a sign-in for SignIn, a link for the profile panel.
  const [oidc, setOidc] = useState(takeOidcReturn);
  const [signedIn, setSignedIn] = useState(
    api.session !== null && !(oidc?.purpose === "sign-in" && "code" in oidc),
  );
  const [client, setClient] = useState<ChatClient | null>(null);
  // A first sign-in (no interests on the profile yet) is asked for interests before Home.
  const [welcome, setWelcome] = useState(false);
  const [error, setError] = useState<string | null>(webCryptoProblem());
  const [reason, setReason] = useState<string | null>(null);

  useEffect(() => {
    api.onSignedOut = (why) => {
      setReason(why);
      setSignedIn(false);
    };
  }, [api]);

  useEffect(() => {
    if (!signedIn) return;
    const next = new ChatClient(api);
    let cancelled = false;
    setError(null);
    next
      .start()
      .then(async () => {
        // Not being able to read the profile only means not asking: Home works without it.
        const ask = await loadMyProfile(api).then(wantsInterests, () => false);
        if (cancelled) return;
        setWelcome(ask);
        setClient(next);
      })
      .catch((err) => {
        if (!cancelled) setError(`Could not start: ${describe(err)}`);
      });
    return () => {
      cancelled = true;
      next.close();
      setClient(null);
    };
  }, [api, signedIn]);

  if (!signedIn) {
    return (
      <SignIn
        api={api}
        notice={reason}
        oidc={oidc}
        onSignedIn={() => {
          setReason(null);
          setOidc(null);
          setSignedIn(true);
        }}
      />
    );
  }
  if (client === null) {
    return (
      <main className="splash">
        <h1>Parley</h1>
        {error ? (
          <>
            <p role="alert" className="error">
              {error}
            </p>
            <button
              type="button"
              onClick={() => {
                api.clear();
                setSignedIn(false);
              }}
            >
              Sign in again
            </button>
          </>
        ) : (
          <p role="status">Preparing your encryption keys…</p>
        )}
      </main>
    );
  }
  if (welcome) {
    return <InterestsWelcome api={api} userId={client.userId} onDone={() => setWelcome(false)} />;
  }
  return (
    <Home
      client={client}
      oidcLink={oidc?.purpose === "link" ? oidc : null}
      onOidcLinkDone={() => setOidc(null)}
      onSignOut={async () => {
        await api.call("POST", "/v1/auth/logout").catch(() => undefined);
        api.clear();
        setOidc(null);
        setSignedIn(false);
      }}
    />
  );
}
