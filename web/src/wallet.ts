// Sign-In with Ethereum (EIP-4361) through an injected wallet (EIP-1193 window.ethereum):
// the server writes the message; the wallet signs it exactly with personal_sign (EIP-191).
// The same wallet is linked to an account, and signs and broadcasts tips (eth_sendTransaction).

import { Api } from "./api";
import { hex, utf8 } from "./crypto/bytes";

interface Eip1193 {
  request(args: { method: string; params?: unknown[] }): Promise<unknown>;
}

function provider(): Eip1193 | undefined {
  return (window as unknown as { ethereum?: Eip1193 }).ethereum;
}

export function walletAvailable(): boolean {
  return provider() !== undefined;
}

/** The wallet's first account (asking the person to share one if needed). */
export async function walletAccount(): Promise<string> {
  const ethereum = provider();
  if (ethereum === undefined) throw new Error("No Ethereum wallet found in this browser.");
  let accounts: string[];
  try {
    accounts = (await ethereum.request({ method: "eth_requestAccounts" })) as string[];
  } catch (err) {
    throw new Error(`The wallet did not share an account: ${(err as Error).message ?? err}`);
  }
  const address = accounts?.[0];
  if (!address) throw new Error("The wallet has no account.");
  return address;
}

/** The chain the wallet is on (EIP-155 id), or undefined when it does not say. */
export async function walletChainId(): Promise<number | undefined> {
  const chainHex = (await provider()?.request({ method: "eth_chainId" })) as string | undefined;
  const chainId = chainHex ? Number.parseInt(chainHex, 16) : Number.NaN;
  return Number.isFinite(chainId) ? chainId : undefined;
}

async function personalSign(message: string, address: string): Promise<string> {
  try {
    return (await provider()!.request({
      method: "personal_sign",
      params: [`0x${hex(utf8(message))}`, address],
    })) as string;
  } catch (err) {
    throw new Error(`The wallet did not sign: ${(err as Error).message ?? err}`);
  }
}

/** Link the wallet's account to the signed-in person (it then sends and receives tips). */
export async function linkWallet(api: Api): Promise<{ display: string }> {
  const address = await walletAccount();
  const chainId = await walletChainId();
  const challenge = await api.call("POST", "/v1/me/identities/wallet/challenge", {
    json: { chain: "ethereum", address, chain_id: chainId },
  });
  const signature = await personalSign(challenge.message, address);
  return api.call("POST", "/v1/me/identities/wallet", { json: { message: challenge.message, signature } });
}

/** Have the wallet sign and broadcast a transaction exactly as given (EIP-1193); its hash. */
export async function sendTransaction(transaction: Record<string, string>): Promise<string> {
  const ethereum = provider();
  if (ethereum === undefined) throw new Error("No Ethereum wallet found in this browser.");
  let hash: unknown;
  try {
    hash = await ethereum.request({ method: "eth_sendTransaction", params: [transaction] });
  } catch (err) {
    throw new Error(`The wallet did not send the transaction: ${(err as Error).message ?? err}`);
  }
  if (typeof hash !== "string" || !/^0x[0-9a-fA-F]{64}$/.test(hash)) {
    throw new Error(`The wallet answered without a transaction hash (${String(hash).slice(0, 80)}).`);
  }
  return hash;
}

export async function signInWithEthereum(api: Api, deviceName: string) {
  const address = await walletAccount();
  const chainId = await walletChainId();
  const challenge = await api.call("POST", "/v1/auth/wallet/challenge", {
    json: { chain: "ethereum", address, chain_id: chainId },
    auth: false,
  });
  const signature = await personalSign(challenge.message, address);
  return api.call("POST", "/v1/auth/wallet/verify", {
    json: { message: challenge.message, signature, device_name: deviceName },
    auth: false,
  });
}
