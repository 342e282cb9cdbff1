// A real Ethereum key behind a fake EIP-1193 provider (window.ethereum) for the browser:
// the page asks, this process signs with secp256k1 (personal_sign, EIP-191), and the
// server verifies the signature for real. Given a JSON-RPC node (ganache), it also signs
// EIP-1559 transactions (eth_sendTransaction) and broadcasts them there, as MetaMask does.

import { secp256k1 } from "@noble/curves/secp256k1.js";
import { keccak_256 } from "@noble/hashes/sha3.js";

const hex = (bytes) => Buffer.from(bytes).toString("hex");

// -- RLP (the Ethereum yellow paper, appendix B) ------------------------------------------
function rlpLength(length, offset) {
  if (length <= 55) return Buffer.from([offset + length]);
  const bytes = bigBytes(BigInt(length));
  return Buffer.concat([Buffer.from([offset + 55 + bytes.length]), bytes]);
}
function rlp(item) {
  if (Array.isArray(item)) {
    const body = Buffer.concat(item.map(rlp));
    return Buffer.concat([rlpLength(body.length, 0xc0), body]);
  }
  const bytes = Buffer.from(item);
  if (bytes.length === 1 && bytes[0] < 0x80) return bytes;
  return Buffer.concat([rlpLength(bytes.length, 0x80), bytes]);
}
/** A non-negative integer as minimal big-endian bytes (0 is empty). */
function bigBytes(value) {
  if (value < 0n) throw new Error("negative integer");
  if (value === 0n) return Buffer.alloc(0);
  let text = value.toString(16);
  if (text.length % 2) text = "0" + text;
  return Buffer.from(text, "hex");
}
const quantity = (field, text) => {
  if (typeof text !== "string" || !/^0x[0-9a-fA-F]+$/.test(text)) throw new Error(`${field}: not a hex quantity: ${text}`);
  return bigBytes(BigInt(text));
};
const data = (field, text) => {
  if (typeof text !== "string" || !/^0x([0-9a-fA-F]{2})*$/.test(text)) throw new Error(`${field}: not hex data: ${text}`);
  return Buffer.from(text.slice(2), "hex");
};

export class TestWallet {
  /** `rpcUrl`: the JSON-RPC node transactions go to; `chainId`: the chain the wallet is on. */
  constructor({ rpcUrl = null, chainId = 1 } = {}) {
    this.rpcUrl = rpcUrl;
    this.chainId = chainId;
    this.transactions = []; // what eth_sendTransaction was asked to send, as given
    this.hashes = []; // and the hashes of those the node took
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

  /** Sign a type-2 (EIP-1559) transaction as MetaMask takes it and broadcast it; its hash. */
  async sendTransaction(tx) {
    if (!this.rpcUrl) throw new Error("this wallet is not connected to a network");
    this.transactions.push(tx);
    if (String(tx.from).toLowerCase() !== this.address.toLowerCase()) throw new Error(`from ${tx.from} is not this wallet`);
    if (tx.type !== "0x2") throw new Error(`only type 2 transactions, not ${tx.type}`);
    if (BigInt(tx.chainId) !== BigInt(this.chainId)) throw new Error(`chain ${tx.chainId}, the wallet is on ${this.chainId}`);
    const fields = [
      quantity("chainId", tx.chainId),
      quantity("nonce", tx.nonce),
      quantity("maxPriorityFeePerGas", tx.maxPriorityFeePerGas),
      quantity("maxFeePerGas", tx.maxFeePerGas),
      quantity("gas", tx.gas),
      data("to", tx.to),
      quantity("value", tx.value),
      data("data", tx.data ?? "0x"),
      [], // access list
    ];
    const digest = keccak_256(Buffer.concat([Buffer.from([2]), rlp(fields)]));
    const signature = secp256k1.sign(digest, this.secretKey, { prehash: false, format: "recovered" });
    const r = bigBytes(BigInt("0x" + hex(signature.subarray(1, 33))));
    const s = bigBytes(BigInt("0x" + hex(signature.subarray(33, 65))));
    const raw = Buffer.concat([Buffer.from([2]), rlp([...fields, bigBytes(BigInt(signature[0])), r, s])]);
    const reply = await (
      await fetch(this.rpcUrl, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "eth_sendRawTransaction", params: ["0x" + hex(raw)] }),
      })
    ).json();
    if (reply.error) throw new Error(`the network refused the transaction: ${reply.error.message}`);
    const expected = "0x" + hex(keccak_256(raw));
    if (reply.result !== expected) throw new Error(`the node answered hash ${reply.result}, not ${expected}`);
    this.hashes.push(expected);
    return reply.result;
  }

  /** Install window.ethereum in every page of `context`. */
  async install(context) {
    await context.exposeBinding("__parleyWallet", (_source, method, params) => {
      switch (method) {
        case "eth_requestAccounts":
        case "eth_accounts":
          return [this.address];
        case "eth_chainId":
          return "0x" + this.chainId.toString(16);
        case "personal_sign":
          return this.personalSign(params[0]);
        case "eth_sendTransaction":
          return this.sendTransaction(params[0]);
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
