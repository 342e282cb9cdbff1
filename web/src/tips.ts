// Tips in ETH (seed 003): the server prepares the transaction, the wallet in the browser
// (MetaMask, EIP-1193) signs and broadcasts it, the server follows it to confirmation and
// tells both people with `tip:updated`; a confirmed tip is announced in the conversation.

import type { Api } from "./api";
import { linkWallet, sendTransaction, walletAvailable, walletChainId } from "./wallet";

export interface TipsConfig {
  enabled: boolean;
  chain_id: number | null;
  confirmations: number;
  max_tip_eth: string;
}

export interface Tip {
  id: string;
  state: string;
  sender_id: string;
  recipient_id: string;
  conversation_id: string | null;
  amount_eth: string;
  tx_hash: string | null;
  confirmations: number;
  confirmations_required: number;
  reason: string | null;
  created_at: string;
}

// The amount goes to the server as the person typed it (a decimal string, never a float):
// the server's rules, and its messages, decide what is valid.
const MAX_AMOUNT_CHARS = 40;

export class Tips {
  config: TipsConfig | null = null;
  wallets: string[] = []; // the signed-in person's linked Ethereum addresses
  readonly byId = new Map<string, Tip>();

  constructor(
    private readonly api: Api,
    private readonly changed: () => void,
  ) {}

  async load(): Promise<void> {
    const [config, identities] = await Promise.all([
      this.api.call("GET", "/v1/tips/config"),
      this.api.call("GET", "/v1/me/identities"),
    ]);
    this.config = config;
    this.wallets = (identities.identities as { kind: string; display: string }[])
      .filter((i) => i.kind === "ethereum")
      .map((i) => i.display);
    await this.refresh();
  }

  /** Tipping is offered when the server has it on and the browser has a wallet. */
  get available(): boolean {
    return Boolean(this.config?.enabled) && walletAvailable();
  }

  get hasWallet(): boolean {
    return this.wallets.length > 0;
  }

  async linkWallet(): Promise<void> {
    const identity = await linkWallet(this.api);
    this.wallets = [...this.wallets, identity.display];
    this.changed();
  }

  /** After a reconnect: the tips still under way, as they are now (tip:updated missed meanwhile). */
  async refresh(): Promise<void> {
    if (!this.config?.enabled) return;
    const boxes = await Promise.all(
      ["sent", "received"].map((box) => this.api.call("GET", "/v1/tips", { query: { box, limit: 20 } })),
    );
    for (const answer of boxes) for (const tip of answer.tips as Tip[]) this.byId.set(tip.id, tip);
    this.changed();
  }

  onUpdated(tip: Tip): void {
    this.byId.set(tip.id, tip);
    this.changed();
  }

  /** The latest tip known in a conversation, either way (for its progress line). */
  latestIn(conversationId: string): Tip | undefined {
    let latest: Tip | undefined;
    for (const tip of this.byId.values()) {
      if (tip.conversation_id === conversationId && (!latest || tip.created_at >= latest.created_at)) latest = tip;
    }
    return latest;
  }

  /** Prepare, have the wallet sign and broadcast, submit the hash. The submitted tip. */
  async send(toUserId: string, amountEth: string, conversationId: string): Promise<Tip> {
    const amount = amountEth.trim();
    if (!amount) throw new Error('Enter an amount of ETH, like "0.01".');
    if (amount.length > MAX_AMOUNT_CHARS) throw new Error(`An amount has at most ${MAX_AMOUNT_CHARS} characters.`);
    const config = this.config;
    const chainId = await walletChainId();
    if (config?.chain_id && chainId !== undefined && chainId !== config.chain_id) {
      throw new Error(`Switch your wallet to chain ${config.chain_id} (it is on chain ${chainId}).`);
    }
    const prepared = await this.api.call("POST", "/v1/tips/prepare", {
      json: { to_user_id: toUserId, amount_eth: amount, conversation_id: conversationId },
    });
    this.onUpdated(prepared.tip);
    let txHash: string;
    try {
      txHash = await sendTransaction(prepared.transaction);
    } catch (err) {
      // Nothing went to the network: let the prepared tip go.
      await this.api.call("POST", `/v1/tips/${prepared.tip.id}/cancel`).catch(() => undefined);
      this.byId.delete(prepared.tip.id);
      this.changed();
      throw err;
    }
    const submitted: Tip = await this.api.call("POST", `/v1/tips/${prepared.tip.id}/submit`, {
      json: { tx_hash: txHash },
    });
    // A tip:updated may already have moved it on.
    const known = this.byId.get(submitted.id);
    if (!known || rank(known.state) <= rank(submitted.state)) this.onUpdated(submitted);
    return submitted;
  }
}

function rank(state: string): number {
  return ["prepared", "submitted", "mined"].indexOf(state) + 1 || 9;
}

/** A tip's progress in words: submitted, mined n/N, confirmed, failed or dropped (why). */
export function tipProgress(tip: Tip, whose: string): string {
  const what = `${whose} tip of ${tip.amount_eth} ETH`;
  switch (tip.state) {
    case "prepared":
      return `${what}: waiting for the wallet…`;
    case "submitted":
      return `${what}: sent to the network, waiting to be mined…`;
    case "mined":
      return `${what}: mined, ${tip.confirmations}/${tip.confirmations_required} confirmations`;
    case "failed":
    case "dropped":
      return `${what} ${tip.state}${tip.reason ? `: ${tip.reason}` : ""}`;
    default:
      return `${what} ${tip.state}`;
  }
}

export function shortHash(hash: string): string {
  return hash.length > 14 ? `${hash.slice(0, 8)}…${hash.slice(-6)}` : hash;
}
