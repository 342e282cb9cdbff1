import { type FormEvent, useEffect, useState } from "react";
import { Api, describe } from "./api";
import { EmailSignIn } from "./EmailSignIn";
import { exchangeOidcCode, type OidcProvider, type OidcReturn, oidcProviders, startOidcSignIn } from "./oidc";
import { signInWithEthereum, walletAvailable } from "./wallet";

interface Props {
  api: Api;
  notice: string | null;
  // The page came back from an OpenID Connect provider with this.
  oidc: OidcReturn | null;
  onSignedIn: () => void;
}

const DEVICE_NAME = "Parley web";

export function SignIn({ api, notice, oidc, onSignedIn }: Props) {
  const [phone, setPhone] = useState("");
  const [nickname, setNickname] = useState("");
  const [code, setCode] = useState("");
  const [started, setStarted] = useState<{ request_id: string; phone: string } | null>(null);
  const [email, setEmail] = useState<"password" | "register" | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [providers, setProviders] = useState<OidcProvider[]>([]);

  useEffect(() => {
    let cancelled = false;
    void oidcProviders(api).then((list) => cancelled || setProviders(list));
    return () => {
      cancelled = true;
    };
  }, [api]);

  useEffect(() => {
    if (oidc === null) return;
    if ("problem" in oidc) {
      setError(oidc.problem);
    } else if (oidc.purpose === "link") {
      // The session that started the link is gone: the code only works for that account.
      setError(`Sign in again, then link ${oidc.provider} from your profile.`);
    } else {
      void run(async () => {
        api.store(await exchangeOidcCode(api, oidc.code, oidc.verifier, DEVICE_NAME));
        onSignedIn();
      });
    }
    // Once per return from the provider (run and onSignedIn do not change what it does).
  }, [api, oidc]);

  async function run(action: () => Promise<void>) {
    setBusy(true);
    setError(null);
    try {
      await action();
    } catch (err) {
      setError(describe(err));
    } finally {
      setBusy(false);
    }
  }

  function showEmail(mode: "password" | "register" | null) {
    setError(null);
    setEmail(mode);
  }

  function sendCode(event: FormEvent) {
    event.preventDefault();
    void run(async () => {
      const answer = await api.call("POST", "/v1/auth/phone/start", { json: { phone: phone.trim() }, auth: false });
      setStarted({ request_id: answer.request_id, phone: answer.phone });
      setCode("");
    });
  }

  function verify(event: FormEvent) {
    event.preventDefault();
    void run(async () => {
      const body: Record<string, string> = {
        request_id: started!.request_id,
        code: code.trim(),
        device_name: DEVICE_NAME,
      };
      if (nickname.trim()) body.nickname = nickname.trim();
      api.store(await api.call("POST", "/v1/auth/phone/verify", { json: body, auth: false }));
      onSignedIn();
    });
  }

  function wallet() {
    void run(async () => {
      api.store(await signInWithEthereum(api, DEVICE_NAME));
      if (nickname.trim()) {
        await api.call("PATCH", "/v1/me/profile", { json: { nickname: nickname.trim() } });
      }
      onSignedIn();
    });
  }

  return (
    <main className="signin">
      <h1>Parley</h1>
      <p className="tagline">End-to-end encrypted chat. Your keys stay in this browser.</p>
      {notice && (
        <p role="status" className="notice">
          {notice}
        </p>
      )}
      {email !== null ? (
        <EmailSignIn
          api={api}
          start={email}
          deviceName={DEVICE_NAME}
          onBack={() => showEmail(null)}
          onSignedIn={onSignedIn}
        />
      ) : started === null ? (
        <form onSubmit={sendCode} aria-label="Sign in with your phone">
          <label htmlFor="phone">Phone number</label>
          <input
            id="phone"
            type="tel"
            autoComplete="tel"
            required
            maxLength={32}
            placeholder="+1 415 555 2671"
            value={phone}
            onChange={(e) => setPhone(e.target.value)}
          />
          <label htmlFor="nickname">Your name (optional)</label>
          <input
            id="nickname"
            autoComplete="nickname"
            maxLength={64}
            value={nickname}
            onChange={(e) => setNickname(e.target.value)}
          />
          <button type="submit" disabled={busy}>
            Send code
          </button>
        </form>
      ) : (
        <form onSubmit={verify} aria-label="Enter your sign-in code">
          <p>
            We sent a 6-digit code to <strong>{started.phone}</strong>.
          </p>
          <p className="hint">
            Running Parley yourself with the default console SMS provider? The code is in the
            server's log (the terminal running <code>make run</code>): look for the line with{" "}
            <code>sms_to</code> {started.phone}.
          </p>
          <label htmlFor="code">Sign-in code</label>
          <input
            id="code"
            inputMode="numeric"
            autoComplete="one-time-code"
            pattern="[0-9]{6}"
            maxLength={6}
            required
            autoFocus
            value={code}
            onChange={(e) => setCode(e.target.value)}
          />
          <button type="submit" disabled={busy}>
            Sign in
          </button>
          <button type="button" className="link" onClick={() => setStarted(null)}>
            Use another number
          </button>
        </form>
      )}
      {providers.length > 0 && started === null && email === null && (
        <section aria-labelledby="oidc-heading" className="wallet">
          <h2 id="oidc-heading">Or use an account you have elsewhere</h2>
          <div className="row">
            {providers.map((p) => (
              <button key={p.slug} type="button" onClick={() => void startOidcSignIn(p)} disabled={busy}>
                Continue with {p.display_name}
              </button>
            ))}
          </div>
        </section>
      )}
      {walletAvailable() && started === null && email === null && (
        <section aria-labelledby="wallet-heading" className="wallet">
          <h2 id="wallet-heading">Or use your wallet</h2>
          <button type="button" onClick={wallet} disabled={busy}>
            Sign in with Ethereum
          </button>
        </section>
      )}
      {started === null && email === null && (
        <section aria-labelledby="email-heading" className="wallet">
          <h2 id="email-heading">Or use e-mail and a password</h2>
          <div className="row">
            <button type="button" onClick={() => showEmail("password")}>
              Sign in with a password
            </button>
            <button type="button" onClick={() => showEmail("register")}>
              Create an account
            </button>
          </div>
        </section>
      )}
      {busy && <p role="status">Working…</p>}
      {error && (
        <p role="alert" className="error">
          {error}
        </p>
      )}
    </main>
  );
}
