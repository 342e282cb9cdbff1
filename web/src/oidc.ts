// OpenID Connect sign-in and linking (docs/API.md "Sign-in (OpenID Connect)"). The browser
// leaves for the provider and comes back to this page with #parley_code=... (one use, 60 s)
// or #parley_error=<code>. A code is spent only when this tab started that very flow: the
// return URL carries a random value also noted in sessionStorage. Otherwise a link with
// someone else's code (from their own sign-in) would sign this browser into their account
// (login CSRF, RFC 9700 section 4.7). The server checks its side too: each start sends the
// S256 challenge of a verifier this tab keeps, and a code is spent only with that verifier.

import type { Api } from "./api";

export interface OidcProvider {
  slug: string;
  display_name: string;
}

export type OidcPurpose = "sign-in" | "link";

/** What the page came back with: a code to spend, or a message for the person. */
export type OidcReturn = { purpose: OidcPurpose; provider: string } & (
  | { code: string; verifier: string }
  | { problem: string }
);

interface Pending {
  purpose: OidcPurpose;
  provider: string;
  flow: string; // also in the return URL's query
  verifier: string; // whose S256 challenge the start sent (app_challenge)
  at: number; // Date.now() when the browser left
}

const PENDING_KEY = "parley.oidc-pending";
const FLOW_PARAM = "oidc";
// The server forgets a started sign-in after 10 minutes (STATE_TTL in server/auth/oidc.py).
const PENDING_MS = 10 * 60 * 1000;
// secrets.token_urlsafe(32) on the server.
const CODE = /^[A-Za-z0-9_-]{43}$/;

/** The providers this node offers; none when it offers none (or predates OpenID Connect). */
export async function oidcProviders(api: Api): Promise<OidcProvider[]> {
  try {
    const answer = await api.call("GET", "/v1/auth/oidc/providers", { auth: false });
    return answer.providers;
  } catch {
    return [];
  }
}

function base64url(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes))
    .replace(/\+/g, "-")
    .replace(/\//g, "_")
    .replace(/=+$/, "");
}

/**
 * Note a flow this tab starts: the URL the provider's answer comes back to (this page) and
 * the app_challenge to send with the start.
 */
async function begin(purpose: OidcPurpose, provider: OidcProvider): Promise<{ returnTo: string; challenge: string }> {
  const flow = crypto.randomUUID();
  const verifier = base64url(crypto.getRandomValues(new Uint8Array(32)));
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  const pending: Pending = { purpose, provider: provider.display_name, flow, verifier, at: Date.now() };
  sessionStorage.setItem(PENDING_KEY, JSON.stringify(pending));
  return {
    returnTo: `${location.origin}${location.pathname}?${new URLSearchParams({ [FLOW_PARAM]: flow })}`,
    challenge: base64url(new Uint8Array(digest)),
  };
}

/** The flow this tab started, if the page came back from that one (and in time). */
function takeNote(flow: string | null): Pending | null {
  try {
    const raw = sessionStorage.getItem(PENDING_KEY);
    sessionStorage.removeItem(PENDING_KEY);
    const pending = raw ? (JSON.parse(raw) as Pending) : null;
    return pending && pending.flow === flow && Date.now() - pending.at < PENDING_MS ? pending : null;
  } catch {
    return null;
  }
}

/** Leave for the provider to sign in; the page comes back with a code. */
export async function startOidcSignIn(provider: OidcProvider): Promise<void> {
  const { returnTo, challenge } = await begin("sign-in", provider);
  const query = new URLSearchParams({ return_to: returnTo, app_challenge: challenge });
  location.assign(`/v1/auth/oidc/${encodeURIComponent(provider.slug)}/start?${query}`);
}

/** Leave for the provider to link it to the signed-in account. */
export async function startOidcLink(api: Api, provider: OidcProvider): Promise<void> {
  const { returnTo, challenge } = await begin("link", provider);
  const started = await api.call("POST", `/v1/me/identities/oidc/${encodeURIComponent(provider.slug)}/start`, {
    json: { return_to: returnTo, app_challenge: challenge },
  });
  location.assign(started.authorization_url);
}

let taken: OidcReturn | null | undefined;

/**
 * The sign-in or link this page came back from, read once per page load: the fragment and
 * query are cleared (history.replaceState) so a reload or a bookmark does not carry the code.
 */
export function takeOidcReturn(): OidcReturn | null {
  if (taken !== undefined) return taken;
  taken = null;
  const params = new URLSearchParams(location.hash.slice(1));
  const code = params.get("parley_code");
  const error = params.get("parley_error");
  if (code === null && error === null) return taken;
  const flow = new URLSearchParams(location.search).get(FLOW_PARAM);
  history.replaceState(history.state, "", location.pathname);
  const pending = takeNote(flow);
  const purpose = pending?.purpose ?? "sign-in";
  const provider = pending?.provider ?? "the provider";
  if (error !== null) {
    taken = { purpose, provider, problem: problemText(error, purpose, provider) };
  } else if (pending === null || !CODE.test(code!)) {
    taken = {
      purpose,
      provider,
      problem: "That sign-in link was not started in this tab (or took too long), so it was not used. Please start again.",
    };
  } else {
    taken = { purpose, provider, code: code!, verifier: pending.verifier };
  }
  return taken;
}

/** The message for a #parley_error code (docs/PROTOCOL.md error codes). */
function problemText(code: string, purpose: OidcPurpose, provider: string): string {
  const doing = purpose === "link" ? `Linking ${provider}` : `Signing in with ${provider}`;
  switch (code) {
    case "oidc_access_denied":
      return `${doing} was cancelled or declined at ${provider}. Nothing was changed.`;
    case "oidc_state_invalid":
      return `${doing} expired or was started in another browser. Please start again.`;
    case "oidc_id_token_invalid":
      return `${doing} failed: ${provider}'s answer could not be verified. Please try again.`;
    case "oidc_provider_error":
      return `${doing} failed: ${provider} reported a problem. Please try again later.`;
    case "oidc_provider_unavailable":
      return `${doing} failed: ${provider} could not be reached. Please try again later.`;
    default:
      // The fragment is anyone's to write: show a code, never arbitrary text.
      return `${doing} failed (${/^[a-z_]{1,64}$/.test(code) ? code : "unknown error"}).`;
  }
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const spent = new Map<string, Promise<any>>();

/**
 * Spend a code exactly once, even when React runs the effect asking for it twice
 * (StrictMode in development): a second request would only meet oidc_code_invalid.
 */
function spendOnce<T>(code: string, spend: () => Promise<T>): Promise<T> {
  if (!spent.has(code)) spent.set(code, spend());
  return spent.get(code)!;
}

/** POST /v1/auth/oidc/exchange: the token pair of the account, created on first sign-in. */
export function exchangeOidcCode(api: Api, code: string, verifier: string, deviceName: string) {
  return spendOnce(code, () =>
    api.call("POST", "/v1/auth/oidc/exchange", {
      json: { code, app_verifier: verifier, device_name: deviceName },
      auth: false,
    }),
  );
}

/** POST /v1/me/identities/oidc/finish: the identity, now linked to the signed-in account. */
export function finishOidcLink(api: Api, code: string, verifier: string): Promise<{ display: string }> {
  return spendOnce(code, () =>
    api.call("POST", "/v1/me/identities/oidc/finish", { json: { code, app_verifier: verifier } }),
  );
}
