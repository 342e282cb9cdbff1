import { useEffect, useId, useRef, useState } from "react";
import { describe } from "./api";
import type { ChatClient, Conversation } from "./chat";
import { tipProgress } from "./tips";

/** The "Tip" button of a conversation's header: shown when the node and the browser can tip. */
export function TipButton({ client, conversation }: { client: ChatClient; conversation: Conversation }) {
  const [open, setOpen] = useState(false);
  const others = conversation.members.map((m) => m.user_id).filter((u) => u !== client.userId);
  if (!client.tips.available || others.length === 0) return null;
  return (
    <>
      <button type="button" className="tip-button" onClick={() => setOpen(true)}>
        Tip
      </button>
      {open && <TipDialog client={client} conversation={conversation} people={others} onClose={() => setOpen(false)} />}
    </>
  );
}

/** The progress of the latest tip in this conversation, sent or received. */
export function TipProgress({ client, conversation }: { client: ChatClient; conversation: Conversation }) {
  const tip = client.tips.latestIn(conversation.id);
  if (!tip || tip.state === "confirmed" || tip.state === "cancelled") return null;
  const whose = tip.sender_id === client.userId ? "Your" : `${client.displayName(tip.sender_id)}'s`;
  const bad = tip.state === "failed" || tip.state === "dropped" || tip.state === "expired";
  return (
    <p className={`tip-progress${bad ? " error" : ""}`} role="status">
      {tipProgress(tip, whose)}
    </p>
  );
}

function TipDialog({
  client,
  conversation,
  people,
  onClose,
}: {
  client: ChatClient;
  conversation: Conversation;
  people: string[];
  onClose: () => void;
}) {
  const [to, setTo] = useState(people[0]);
  const [amount, setAmount] = useState("");
  const [busy, setBusy] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const inputRef = useRef<HTMLInputElement>(null);
  const headingId = useId();
  const tips = client.tips;
  const max = tips.config?.max_tip_eth;

  useEffect(() => {
    const previous = document.activeElement as HTMLElement | null;
    inputRef.current?.focus();
    const onKey = (e: globalThis.KeyboardEvent) => {
      if (e.key === "Escape") onClose();
    };
    document.addEventListener("keydown", onKey);
    return () => {
      document.removeEventListener("keydown", onKey);
      previous?.focus();
    };
  }, [onClose]);

  const run = async (label: string, action: () => Promise<void>) => {
    setBusy(label);
    setError(null);
    try {
      await action();
    } catch (err) {
      setError(describe(err));
    } finally {
      setBusy(null);
    }
  };

  const name = client.displayName(to);
  return (
    <div className="dialog-backdrop">
      <form
        className="dialog tip-dialog"
        role="dialog"
        aria-modal="true"
        aria-labelledby={headingId}
        onSubmit={(e) => {
          e.preventDefault();
          void run("Waiting for your wallet…", async () => {
            await tips.send(to, amount, conversation.id);
            onClose();
          });
        }}
      >
        <h2 id={headingId}>Tip {people.length === 1 ? name : "a member"} in ETH</h2>
        {!tips.hasWallet ? (
          <>
            <p>To send tips, link the wallet in this browser to your account. Your wallet will ask you to sign a message.</p>
            <div className="actions">
              <button type="button" onClick={() => void run("Linking…", () => tips.linkWallet())} disabled={busy !== null}>
                Link wallet
              </button>
              <button type="button" className="link" onClick={onClose}>
                Cancel
              </button>
            </div>
          </>
        ) : (
          <>
            {people.length > 1 && (
              <>
                <label htmlFor={`${headingId}-to`}>To</label>
                <select id={`${headingId}-to`} value={to} onChange={(e) => setTo(e.target.value)}>
                  {people.map((u) => (
                    <option key={u} value={u}>
                      {client.displayName(u)}
                    </option>
                  ))}
                </select>
              </>
            )}
            <label htmlFor={`${headingId}-amount`}>Amount (ETH)</label>
            <input
              id={`${headingId}-amount`}
              ref={inputRef}
              type="text"
              inputMode="decimal"
              autoComplete="off"
              maxLength={40}
              placeholder="0.01"
              value={amount}
              onChange={(e) => {
                setAmount(e.target.value);
                setError(null);
              }}
            />
            <p className="muted">
              Your wallet signs and sends the transaction; {name} receives it in the wallet they linked.
              {max ? ` At most ${max} ETH.` : ""}
            </p>
            <div className="actions">
              <button type="submit" disabled={busy !== null || !amount.trim()}>
                Send tip
              </button>
              <button type="button" className="link" onClick={onClose}>
                Cancel
              </button>
            </div>
          </>
        )}
        {busy && <p role="status">{busy}</p>}
        {error && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
      </form>
    </div>
  );
}
