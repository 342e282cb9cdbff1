// The ways into this account (GET /v1/me/identities), and "Link <provider>" for each
// OpenID Connect provider the node offers. Linking leaves for the provider and comes back
// to this page; the profile panel then opens and this section spends the code.

import { useEffect, useRef, useState } from "react";
import { type Api, ApiError, describe } from "./api";
import { finishOidcLink, type OidcProvider, type OidcReturn, oidcProviders, startOidcLink } from "./oidc";

interface Identity {
  id: string;
  kind: string;
  display: string;
  verified: boolean;
}

const KINDS: Record<string, string> = {
  phone: "Phone",
  email: "E-mail",
  ethereum: "Ethereum wallet",
  substrate: "Substrate wallet",
};

function identityLabel(identity: Identity): string {
  // An OpenID Connect identity's display already names its provider ("Google: ann@…").
  const kind = KINDS[identity.kind];
  return kind ? `${kind}: ${identity.display}` : identity.display;
}

export function LinkedSignIns({
  api,
  oidcLink,
  onOidcLinkDone,
}: {
  api: Api;
  oidcLink: OidcReturn | null;
  onOidcLinkDone: () => void;
}) {
  const [identities, setIdentities] = useState<Identity[] | null>(null);
  const [providers, setProviders] = useState<OidcProvider[]>([]);
  const [status, setStatus] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const section = useRef<HTMLElement>(null);

  // Bumped to read the list again once a link is finished.
  const [version, setVersion] = useState(0);

  useEffect(() => {
    let cancelled = false;
    void oidcProviders(api).then((list) => cancelled || setProviders(list));
    api.call("GET", "/v1/me/identities").then(
      (answer) => cancelled || setIdentities(answer.identities),
      (err) => cancelled || setError(describe(err)),
    );
    return () => {
      cancelled = true;
    };
  }, [api, version]);

  useEffect(() => {
    if (oidcLink === null) return;
    let cancelled = false;
    // Back from the provider: the outcome is shown here, below the profile form.
    section.current?.scrollIntoView({ block: "nearest" });
    if ("problem" in oidcLink) {
      setError(oidcLink.problem);
      onOidcLinkDone();
      return;
    }
    setStatus(`Linking ${oidcLink.provider}…`);
    finishOidcLink(api, oidcLink.code, oidcLink.verifier)
      .then(
        (linked) => cancelled || setStatus(`Linked ${linked.display}`),
        (err) => {
          if (cancelled) return;
          setStatus("");
          setError(
            err instanceof ApiError && err.code === "identity_taken"
              ? `That ${oidcLink.provider} account already signs in to another Parley account, so it was not linked to this one.`
              : describe(err),
          );
        },
      )
      .finally(() => {
        if (cancelled) return;
        setVersion((v) => v + 1);
        onOidcLinkDone();
      });
    return () => {
      cancelled = true;
    };
    // Once per return from a provider (onOidcLinkDone only clears it in App).
  }, [api, oidcLink]);

  const link = (provider: OidcProvider) => {
    setBusy(true);
    setError(null);
    setStatus("");
    // On success the page leaves for the provider; it stays busy until then.
    startOidcLink(api, provider).catch((err) => {
      setError(describe(err));
      setBusy(false);
    });
  };

  return (
    <section ref={section} aria-labelledby="linked-heading" className="stack linked">
      <h3 id="linked-heading">Linked sign-ins</h3>
      {identities === null ? (
        !error && <p role="status">Loading…</p>
      ) : (
        <ul aria-labelledby="linked-heading" className="people">
          {identities.map((identity) => (
            <li key={identity.id} className="person">
              {identityLabel(identity)}
              {!identity.verified && <span className="muted"> (not confirmed)</span>}
            </li>
          ))}
        </ul>
      )}
      {providers.length > 0 && (
        <div className="row">
          {providers.map((p) => (
            <button key={p.slug} type="button" onClick={() => link(p)} disabled={busy}>
              Link {p.display_name}
            </button>
          ))}
        </div>
      )}
      <p role="status" aria-live="polite">
        {status}
      </p>
      {error && (
        <p role="alert" className="error">
          {error}
        </p>
      )}
    </section>
  );
}
