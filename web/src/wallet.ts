// Sign-In with Ethereum (EIP-4361) through an injected wallet (EIP-1193 window.ethereum):
// the server writes the message; the wallet signs it exactly with personal_sign (EIP-191).

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

export async function signInWithEthereum(api: Api, deviceName: string) {
  const ethereum = provider();
  if (ethereum === undefined) throw new Error("No Ethereum wallet found in this browser.");
  let accounts: string[];
  try {
    accounts = (await ethereum.request({ method: "eth_requestAccounts" })) as string[];
  } catch (err) {
    throw new Error(`The wallet did not share an account: ${(err as Error).message ?? err}`);
  }
  const address = accounts?.[0];
  if (!address) throw new Error("The wallet has no account to sign in with.");
  const chainHex = (await ethereum.request({ method: "eth_chainId" })) as string;
  const chainId = Number.parseInt(chainHex, 16);
  const challenge = await api.call("POST", "/v1/auth/wallet/challenge", {
    json: { chain: "ethereum", address, chain_id: Number.isFinite(chainId) ? chainId : undefined },
    auth: false,
  });
  let signature: string;
  try {
    signature = (await ethereum.request({
      method: "personal_sign",
      params: [`0x${hex(utf8(challenge.message))}`, address],
    })) as string;
  } catch (err) {
    throw new Error(`The wallet did not sign: ${(err as Error).message ?? err}`);
  }
  return api.call("POST", "/v1/auth/wallet/verify", {
    json: { message: challenge.message, signature, device_name: deviceName },
    auth: false,
  });
}
