// A real Ethereum key behind a fake EIP-1193 provider (window.ethereum) for the browser:
// the page asks, this process signs with secp256k1 (personal_sign, EIP-191), and the
// server verifies the signature for real.

import { secp256k1 } from "@noble/curves/secp256k1.js";
import { keccak_256 } from "@noble/hashes/sha3.js";

const hex = (bytes) => Buffer.from(bytes).toString("hex");

export class TestWallet {
  constructor() {
    this.secretKey = secp256k1.utils.randomSecretKey();
    const publicKey = secp256k1.getPublicKey(this.secretKey, false); // 65 bytes, 0x04 || x || y
    const lower = hex(keccak_256(publicKey.subarray(1))).slice(-40);
    const hash = hex(keccak_256(new TextEncoder().encode(lower)));
    // EIP-55 mixed-case checksum.
    this.address = "0x" + [...lower].map((c, i) => (parseInt(hash[i], 16) >= 8 ? c.toUpperCase() : c)).join("");
    this.signed = [];
  }

  personalSign(messageHex) {
    const message = Buffer.from(messageHex.replace(/^0x/, ""), "hex");
    this.signed.push(message.toString("utf8"));
    const prefix = Buffer.from(`\x19Ethereum Signed Message:\n${message.length}`, "utf8");
    const digest = keccak_256(Buffer.concat([prefix, message]));
    const recovered = secp256k1.sign(digest, this.secretKey, { prehash: false, format: "recovered" });
    // noble: recovery byte first; Ethereum: r || s || v with v = 27 + recovery.
    return "0x" + hex(recovered.subarray(1)) + (27 + recovered[0]).toString(16);
  }

  /** Install window.ethereum in every page of `context`. */
  async install(context) {
    await context.exposeBinding("__parleyWallet", (_source, method, params) => {
      switch (method) {
        case "eth_requestAccounts":
        case "eth_accounts":
          return [this.address];
        case "eth_chainId":
          return "0x1";
        case "personal_sign":
          return this.personalSign(params[0]);
        default:
          throw new Error(`unsupported wallet method ${method}`);
      }
    });
    await context.addInitScript(() => {
      window.ethereum = {
        isParleyTestWallet: true,
        request: ({ method, params }) => window.__parleyWallet(method, params ?? []),
      };
    });
  }
}
