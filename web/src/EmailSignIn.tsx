// E-mail and password (seed 001): register, confirm the address by the mailed link, sign in
// with login or e-mail, and ask for a password-reset link. The links in the mails open the
// server's own pages (server/auth/pages.py); this part only starts each step and shows the
// server's answers, its error messages included, next to the form.

import { type FormEvent, type ReactNode, useState } from "react";
import { type Api, ApiError, describe } from "./api";

type Step =
  | { name: "password"; identifier: string }
  | { name: "register" }
  | { name: "check"; email: string; login: string }
  | { name: "forgot"; email: string }
  | { name: "reset-sent"; email: string };

// The server's rules (server/auth/schemas.py, crypto/passwords.py), checked here only so a
// typo is caught before the round trip; the server's own message is shown when it refuses.
const LOGIN_PATTERN = "[A-Za-z0-9][A-Za-z0-9_.\\-]{2,31}";
const MIN_PASSWORD = 10;
const MAX_PASSWORD = 128;
const MAX_EMAIL = 254;
const MAX_NAME = 100;

interface Props {
  api: Api;
  start: "password" | "register";
  deviceName: string;
  onBack: () => void;
  onSignedIn: () => void;
}

export function EmailSignIn({ api, start, deviceName, onBack, onSignedIn }: Props) {
  const [step, setStep] = useState<Step>(start === "password" ? { name: "password", identifier: "" } : { name: "register" });
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError | Error | null>(null);
  const [status, setStatus] = useState<string | null>(null);

  const go = (next: Step) => {
    setError(null);
    setStatus(null);
    setStep(next);
  };

  async function run(action: () => Promise<void>) {
    setBusy(true);
    setError(null);
    setStatus(null);
    try {
      await action();
    } catch (err) {
      setError(err instanceof Error ? err : new Error(String(err)));
    } finally {
      setBusy(false);
    }
  }

  const resend = (email: string) =>
    run(async () => {
      await api.call("POST", "/v1/auth/email/verify/resend", { json: { email }, auth: false });
      setStatus(`If an account is waiting on ${email}, a new confirmation link is on its way.`);
    });

  const problem = error && (
    <p role="alert" className="error">
      {describe(error)}
    </p>
  );
  const feedback = (
    <>
      {busy && <p role="status">Working…</p>}
      {status && (
        <p role="status" className="notice">
          {status}
        </p>
      )}
      {problem}
    </>
  );

  switch (step.name) {
    case "password":
      return (
        <PasswordForm
          initial={step.identifier}
          busy={busy}
          feedback={feedback}
          notVerified={error instanceof ApiError && error.code === "email_not_verified"}
          onSubmit={(identifier, password) =>
            run(async () => {
              const tokens = await api.call("POST", "/v1/auth/email/login", {
                json: { identifier, password, device_name: deviceName },
                auth: false,
              });
              api.store(tokens);
              onSignedIn();
            })
          }
          onResend={resend}
          onForgot={(identifier) => go({ name: "forgot", email: identifier.includes("@") ? identifier : "" })}
          onRegister={() => go({ name: "register" })}
          onBack={onBack}
        />
      );
    case "register":
      return (
        <RegisterForm
          busy={busy}
          feedback={feedback}
          onSubmit={(body) =>
            run(async () => {
              const sent = await api.call("POST", "/v1/auth/email/register", { json: body, auth: false });
              go({ name: "check", email: sent.email, login: body.login });
            })
          }
          onSignIn={() => go({ name: "password", identifier: "" })}
          onBack={onBack}
        />
      );
    case "check":
      return (
        <section className="stack" aria-labelledby="check-heading">
          <h2 id="check-heading">Check your e-mail</h2>
          <p>
            We sent a confirmation link to <strong>{step.email}</strong>. Open it and press Confirm, then sign in
            with your login <strong>{step.login}</strong> and your password.
          </p>
          <p className="hint">
            Running Parley yourself with the default console e-mail provider? The mail is in the server's log
            (the terminal running <code>make run</code>): look for the line <code>email to {step.email}</code>.
          </p>
          <button type="button" onClick={() => go({ name: "password", identifier: step.login })}>
            I confirmed it: sign in
          </button>
          <button type="button" className="link" onClick={() => void resend(step.email)} disabled={busy}>
            Send the link again
          </button>
          <button type="button" className="link" onClick={() => go({ name: "register" })}>
            Use another address
          </button>
          {feedback}
        </section>
      );
    case "forgot":
      return (
        <ForgotForm
          initial={step.email}
          busy={busy}
          feedback={feedback}
          onSubmit={(email) =>
            run(async () => {
              await api.call("POST", "/v1/auth/email/password-reset", { json: { email }, auth: false });
              go({ name: "reset-sent", email });
            })
          }
          onSignIn={() => go({ name: "password", identifier: step.email })}
        />
      );
    case "reset-sent":
      return (
        <section className="stack" aria-labelledby="reset-heading">
          <h2 id="reset-heading">Check your e-mail</h2>
          <p>
            If a Parley account has confirmed <strong>{step.email}</strong>, a link to choose a new password is on
            its way. Open it, set the new password (every device you were signed in on is signed out), then
            come back here.
          </p>
          <button type="button" onClick={() => go({ name: "password", identifier: step.email })}>
            Back to sign in
          </button>
        </section>
      );
  }
}

function PasswordForm({
  initial,
  busy,
  feedback,
  notVerified,
  onSubmit,
  onResend,
  onForgot,
  onRegister,
  onBack,
}: {
  initial: string;
  busy: boolean;
  feedback: ReactNode;
  notVerified: boolean;
  onSubmit: (identifier: string, password: string) => void;
  onResend: (email: string) => void;
  onForgot: (identifier: string) => void;
  onRegister: () => void;
  onBack: () => void;
}) {
  const [identifier, setIdentifier] = useState(initial);
  const [password, setPassword] = useState("");
  const [email, setEmail] = useState("");
  const submit = (event: FormEvent) => {
    event.preventDefault();
    onSubmit(identifier.trim(), password);
  };
  return (
    <>
      <form onSubmit={submit} aria-label="Sign in with your password">
        <h2>Sign in with your password</h2>
        <label htmlFor="identifier">Login or e-mail</label>
        <input
          id="identifier"
          autoComplete="username"
          required
          minLength={3}
          maxLength={MAX_EMAIL}
          autoFocus={!initial}
          value={identifier}
          onChange={(e) => setIdentifier(e.target.value)}
        />
        <label htmlFor="password">Password</label>
        <input
          id="password"
          type="password"
          autoComplete="current-password"
          required
          maxLength={MAX_PASSWORD}
          autoFocus={!!initial}
          value={password}
          onChange={(e) => setPassword(e.target.value)}
        />
        <button type="submit" disabled={busy}>
          Sign in
        </button>
        {feedback}
      </form>
      {notVerified && (
        <form
          className="stack resend"
          aria-label="Ask for a new confirmation link"
          onSubmit={(e) => {
            e.preventDefault();
            onResend((email || identifier).trim());
          }}
        >
          {identifier.includes("@") ? (
            <p>Lost the mail? We can send a new link to {identifier.trim()}.</p>
          ) : (
            <>
              <label htmlFor="resend-email">The e-mail address you registered with</label>
              <input
                id="resend-email"
                type="email"
                autoComplete="email"
                required
                maxLength={MAX_EMAIL}
                value={email}
                onChange={(e) => setEmail(e.target.value)}
              />
            </>
          )}
          <button type="submit" disabled={busy}>
            Send a new confirmation link
          </button>
        </form>
      )}
      <p className="switch">
        <button type="button" className="link" onClick={() => onForgot(identifier.trim())}>
          Forgot your password?
        </button>
        <button type="button" className="link" onClick={onRegister}>
          Create an account
        </button>
        <button type="button" className="link" onClick={onBack}>
          Use a phone number instead
        </button>
      </p>
    </>
  );
}

interface Registration {
  login: string;
  email: string;
  password: string;
  first_name: string;
  last_name: string;
}

function RegisterForm({
  busy,
  feedback,
  onSubmit,
  onSignIn,
  onBack,
}: {
  busy: boolean;
  feedback: ReactNode;
  onSubmit: (body: Registration) => void;
  onSignIn: () => void;
  onBack: () => void;
}) {
  const [form, setForm] = useState<Registration>({ login: "", email: "", password: "", first_name: "", last_name: "" });
  const field = (name: keyof Registration) => ({
    value: form[name],
    onChange: (e: { target: { value: string } }) => setForm({ ...form, [name]: e.target.value }),
  });
  const submit = (event: FormEvent) => {
    event.preventDefault();
    onSubmit({
      login: form.login.trim(),
      email: form.email.trim(),
      password: form.password,
      first_name: form.first_name.trim(),
      last_name: form.last_name.trim(),
    });
  };
  return (
    <>
      <form onSubmit={submit} aria-label="Create an account">
        <h2>Create an account</h2>
        <label htmlFor="reg-login">Login</label>
        <input
          id="reg-login"
          autoComplete="username"
          required
          autoFocus
          minLength={3}
          maxLength={32}
          pattern={LOGIN_PATTERN}
          aria-describedby="reg-login-hint"
          {...field("login")}
        />
        <p id="reg-login-hint" className="small muted">
          3 to 32 letters, digits, “_”, “.” or “-”. You can sign in with it or with your e-mail.
        </p>
        <label htmlFor="reg-email">E-mail</label>
        <input id="reg-email" type="email" autoComplete="email" required maxLength={MAX_EMAIL} {...field("email")} />
        <label htmlFor="reg-password">Password</label>
        <input
          id="reg-password"
          type="password"
          autoComplete="new-password"
          required
          minLength={MIN_PASSWORD}
          maxLength={MAX_PASSWORD}
          aria-describedby="reg-password-hint"
          {...field("password")}
        />
        <p id="reg-password-hint" className="small muted">
          {MIN_PASSWORD} to {MAX_PASSWORD} characters; not your login or e-mail address. A passphrase of a few
          words is good.
        </p>
        <label htmlFor="reg-first">First name (optional)</label>
        <input id="reg-first" autoComplete="given-name" maxLength={MAX_NAME} {...field("first_name")} />
        <label htmlFor="reg-last">Last name (optional)</label>
        <input id="reg-last" autoComplete="family-name" maxLength={MAX_NAME} {...field("last_name")} />
        <button type="submit" disabled={busy}>
          Create account
        </button>
        {feedback}
      </form>
      <p className="switch">
        <button type="button" className="link" onClick={onSignIn}>
          I already have an account
        </button>
        <button type="button" className="link" onClick={onBack}>
          Use a phone number instead
        </button>
      </p>
    </>
  );
}

function ForgotForm({
  initial,
  busy,
  feedback,
  onSubmit,
  onSignIn,
}: {
  initial: string;
  busy: boolean;
  feedback: ReactNode;
  onSubmit: (email: string) => void;
  onSignIn: () => void;
}) {
  const [email, setEmail] = useState(initial);
  return (
    <>
      <form
        aria-label="Reset your password"
        onSubmit={(e) => {
          e.preventDefault();
          onSubmit(email.trim());
        }}
      >
        <h2>Forgot your password?</h2>
        <p>We will e-mail a link to choose a new one. It works only for an address you have confirmed.</p>
        <label htmlFor="forgot-email">Your e-mail address</label>
        <input
          id="forgot-email"
          type="email"
          autoComplete="email"
          required
          autoFocus
          maxLength={MAX_EMAIL}
          value={email}
          onChange={(e) => setEmail(e.target.value)}
        />
        <button type="submit" disabled={busy}>
          Send reset link
        </button>
        {feedback}
      </form>
      <p className="switch">
        <button type="button" className="link" onClick={onSignIn}>
          Back to sign in
        </button>
      </p>
    </>
  );
}
