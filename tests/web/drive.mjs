// Drives Parley's web client in Debian's Chromium (playwright-core, no browser download):
// two browser users sign up (phone, and an Ethereum wallet), pick interests, find each
// other, chat encrypted, send an image, see typing, receipts, unread counts and presence; a
// third browser user registers with e-mail and password, confirms the mailed link, is asked
// for interests on first sign-in and opens a suggested person's profile card; a user in
// Python (the SDK, answered by tests/e2e/test_web.py over stdin/stdout) exchanges encrypted
// messages and an attachment with them. Alice links a wallet and tips Bob in ETH on a real
// local chain (ganache): her fake MetaMask signs and broadcasts the transaction. A fourth
// browser user signs up and in again with an OpenID Connect provider (a fake one the Python
// side runs), and Alice links it to her account. Also runs the envelope vectors through the
// client's code in Chromium.
//
//   node drive.mjs <node url> <screenshot dir> <png path> <chain JSON-RPC url> <chain id>
//
// stdout: one JSON object per line: {"ask": ..., "id": n, ...} questions for the Python
// side (answered on stdin as {"id": n, "answer": ...} or {"id": n, "error": ...}),
// {"step": ...} progress, and finally {"done": true, ...}.

import { mkdirSync } from "node:fs";
import path from "node:path";
import readline from "node:readline";
import { chromium } from "playwright-core";
import { bundleVectors, failures, loadVectors } from "./vectors.mjs";
import { TestWallet } from "./wallet.mjs";

const [url, shotDir, pngPath, chainUrl, chainId] = process.argv.slice(2);
if (!url || !shotDir || !pngPath || !chainUrl || !chainId) {
  console.error("usage: node drive.mjs <node url> <screenshot dir> <png path> <chain JSON-RPC url> <chain id>");
  process.exit(2);
}
mkdirSync(shotDir, { recursive: true });
const CHROMIUM = process.env.PARLEY_TEST_CHROMIUM ?? "/usr/bin/chromium";
const TIMEOUT = 20_000;

// -- the line protocol with pytest -----------------------------------------------------
const pending = new Map();
let nextId = 1;
readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const message = JSON.parse(line);
  const waiter = pending.get(message.id);
  if (!waiter) return;
  pending.delete(message.id);
  if (message.error) waiter.reject(new Error(`python side: ${message.error}`));
  else waiter.resolve(message.answer);
});
function send(object) {
  process.stdout.write(JSON.stringify(object) + "\n");
}
function ask(question, args = {}) {
  const id = nextId++;
  send({ ask: question, id, ...args });
  return new Promise((resolve, reject) => pending.set(id, { resolve, reject }));
}
const checks = [];
function step(name) {
  checks.push(name);
  send({ step: name });
}
function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

const run = Math.random().toString(36).slice(2, 8);
// Every text a person sends carries a unique tag, so the database can be searched for it.
const markers = [];
function newMarker(phrase) {
  const m = `${phrase} #${run}${Math.random().toString(36).slice(2, 7)}`;
  markers.push(m);
  return m;
}

const pages = [];

async function shot(page, name) {
  await page.screenshot({ path: path.join(shotDir, `${name}.png`), fullPage: false });
}

// Every form control and button on the page has an accessible name.
async function unlabelled(page) {
  return page.evaluate(() => {
    const missing = [];
    for (const el of document.querySelectorAll("input, textarea, select, button")) {
      const labelled =
        el.getAttribute("aria-label") ||
        (el.id && document.querySelector(`label[for="${el.id}"]`)) ||
        el.closest("label") ||
        (el.tagName === "BUTTON" && el.textContent.trim());
      if (!labelled) missing.push(el.outerHTML.slice(0, 120));
    }
    return missing;
  });
}

async function expectLabelled(page, where) {
  const missing = await unlabelled(page);
  check(missing.length === 0, `${where}: controls without a label: ${missing.join(" | ")}`);
}

async function noHorizontalScroll(page, where) {
  const widths = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
  check(widths[0] <= widths[1], `${where}: page is ${widths[0]} px wide in a ${widths[1]} px window`);
}

async function seqs(page) {
  return page.locator("ol.messages li[data-seq]").evaluateAll((els) => els.map((e) => Number(e.dataset.seq)));
}

function contiguous(list) {
  if (new Set(list).size !== list.length) return `duplicates in ${list}`;
  for (let i = 1; i < list.length; i++) if (list[i] !== list[i - 1] + 1) return `gap after ${list[i - 1]} in ${list}`;
  return null;
}

async function signInByPhone(page, name, phone, { keyboard = false } = {}) {
  await page.goto(url);
  await page.getByLabel("Phone number", { exact: true }).waitFor();
  if (keyboard) {
    // Focus order: phone, name, send; Enter submits.
    await page.keyboard.press("Tab");
    check((await page.evaluate(() => document.activeElement?.id)) === "phone", "first Tab reaches the phone field");
    await page.keyboard.type(phone);
    await page.keyboard.press("Tab");
    check((await page.evaluate(() => document.activeElement?.id)) === "nickname", "second Tab reaches the name field");
    await page.keyboard.type(name);
    await expectLabelled(page, "sign-in form");
    await shot(page, "01-sign-in");
    await page.keyboard.press("Enter");
  } else {
    await page.getByLabel("Phone number", { exact: true }).fill(phone);
    await page.getByLabel("Your name (optional)", { exact: true }).fill(name);
    await page.getByRole("button", { name: "Send code" }).click();
  }
  await page.getByLabel("Sign-in code", { exact: true }).waitFor();
  const code = await ask("sms_code", { phone });
  if (keyboard) {
    await shot(page, "02-code");
    check((await page.evaluate(() => document.activeElement?.id)) === "code", "the code field has focus");
    await page.keyboard.type(code);
    await page.keyboard.press("Enter");
  } else {
    await page.getByLabel("Sign-in code", { exact: true }).fill(code);
    await page.getByRole("button", { name: "Sign in", exact: true }).click();
  }
}

/**
 * The interests asked for after a first sign-in: tick the catalogue's entries at `indexes`
 * and continue (or, with none, skip); Home follows. The catalogue's labels.
 */
async function welcome(page, indexes, screenshot) {
  const group = page.getByRole("group", { name: "Your interests" });
  await group.getByRole("checkbox").first().waitFor();
  const labels = await group.locator("label").allTextContents();
  check(labels.length > Math.max(0, ...indexes), "the interest catalogue has enough entries");
  if (indexes.length === 0) {
    await page.getByRole("button", { name: "Skip for now" }).click();
  } else {
    for (const i of indexes) await group.getByRole("checkbox", { name: labels[i], exact: true }).check();
    await expectLabelled(page, "interests welcome");
    if (screenshot) await shot(page, screenshot);
    await page.getByRole("button", { name: "Continue" }).click();
  }
  await page.locator(".connection.online").waitFor();
  return labels;
}

async function userId(page) {
  return page.evaluate(() => JSON.parse(localStorage.getItem("parley.session")).user_id);
}

/** Tick the interests at `indexes` of the catalogue in the profile; their labels. */
async function setInterests(page, indexes) {
  await page.getByRole("button", { name: "Profile", exact: true }).click();
  const group = page.getByRole("group", { name: "Your interests" });
  await group.getByRole("checkbox").first().waitFor();
  const labels = await group.locator("label").allTextContents();
  check(labels.length > Math.max(...indexes), "the interest catalogue has enough entries");
  for (const i of indexes) await group.getByRole("checkbox", { name: labels[i], exact: true }).check();
  await page.getByRole("button", { name: "Save profile" }).click();
  await page.getByText("Saved", { exact: true }).waitFor();
  return labels;
}

/** Names, gender and age in the profile panel, saved. */
async function fillProfile(page, { first, last, gender, age }) {
  await page.getByRole("button", { name: "Profile", exact: true }).click();
  await page.getByLabel("First name", { exact: true }).fill(first);
  await page.getByLabel("Last name", { exact: true }).fill(last);
  await page.getByLabel("Gender", { exact: true }).selectOption({ label: gender });
  await page.getByLabel("Age", { exact: true }).fill(String(age));
  await page.getByRole("button", { name: "Save profile" }).click();
  await page.getByText("Saved", { exact: true }).waitFor();
}

function conversationButton(page, name) {
  return page.locator("ul.conversations").getByRole("button", { name: new RegExp(name) });
}

async function openConversation(page, name) {
  await conversationButton(page, name).click();
  await page.getByRole("log").waitFor();
}

async function sendByEnter(page, text) {
  const box = page.getByLabel("Message", { exact: true });
  await box.fill(text);
  await box.press("Enter");
  await page.getByRole("log").locator("li.mine[data-seq]").filter({ hasText: text }).waitFor();
}

async function main() {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  send({ step: `chromium ${browser.version()}` });
  try {
    await scenario(browser);
  } catch (err) {
    for (const [name, page] of pages) {
      await shot(page, `failure-${name}`).catch(() => undefined);
    }
    throw err;
  } finally {
    await browser.close();
  }
}

async function scenario(browser) {
  // -- the envelope vectors through the client's code, in Chromium's WebCrypto ---------------
  const bundle = await bundleVectors();
  try {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(url); // a secure context (127.0.0.1) of the app's origin
    await page.evaluate(`${bundle.iife}\n;globalThis.ParleyVectors = ParleyVectors;`);
    const results = await page.evaluate((v) => globalThis.ParleyVectors.runVectors(v), loadVectors());
    const failed = failures(results);
    check(Object.keys(results).length >= 10 && failed.length === 0, `vectors in Chromium: ${JSON.stringify(failed)}`);
    send({ vectors: results });
    step("envelope vectors reproduced byte for byte in Chromium");
    await context.close();
  } finally {
    bundle.cleanup();
  }

  // -- Alice: desktop, phone sign-in by keyboard ------------------------------------------------
  const aliceContext = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const alice = await aliceContext.newPage();
  pages.push(["alice", alice]);
  alice.setDefaultTimeout(TIMEOUT);
  const aliceName = `Alice ${run}`;
  const alicePhone = await ask("fresh_phone");
  await signInByPhone(alice, aliceName, alicePhone, { keyboard: true });
  const labels = await welcome(alice, [0, 1]);
  step("Alice signed in by phone with the keyboard alone, and picked interests when asked");
  const session = () => alice.evaluate(() => JSON.parse(localStorage.getItem("parley.session")));
  const firstSession = await session();

  // -- Bob: 375 px wide, Ethereum wallet sign-in -------------------------------------------------
  const bobContext = await browser.newContext({ viewport: { width: 375, height: 760 }, hasTouch: true });
  const wallet = new TestWallet();
  await wallet.install(bobContext);
  // The socket goes through here, so the test can cut it (reconnect and sync, below).
  const bobSockets = new Set();
  let bobOffline = false;
  await bobContext.routeWebSocket(/\/socket\.io\//, (ws) => {
    if (bobOffline) {
      // Never answered, like a connection into a dead network.
      return;
    }
    bobSockets.add({ page: ws, server: ws.connectToServer() });
  });
  const bob = await bobContext.newPage();
  pages.push(["bob", bob]);
  bob.on("console", (m) => console.error(`[bob console] ${m.type()}: ${m.text()}`));
  bob.setDefaultTimeout(TIMEOUT);
  const bobName = `Bob ${run}`;
  await bob.goto(url);
  await bob.getByLabel("Your name (optional)", { exact: true }).fill(bobName);
  await bob.getByRole("button", { name: "Sign in with Ethereum" }).click();
  await welcome(bob, []); // skipped: Bob picks them in his profile below
  check(wallet.signed.length === 1, "the wallet signed one message");
  const siwe = wallet.signed[0];
  check(
    siwe.includes("wants you to sign in with your Ethereum account:") && siwe.includes(wallet.address),
    `an EIP-4361 message for ${wallet.address}: ${siwe}`,
  );
  await noHorizontalScroll(bob, "Bob's chat list at 375 px");
  step("Bob signed in with an Ethereum wallet (EIP-4361, personal_sign) at 375 px");
  const aliceId = await userId(alice);
  const bobId = await userId(bob);

  // -- profiles with interests, then people search ---------------------------------------------------
  await fillProfile(alice, { first: "Alice", last: "Liddell", gender: "Female", age: 34 });
  await expectLabelled(alice, "profile panel");
  await setInterests(bob, [1, 2]);
  step("Alice saved her names, gender and age, Bob his interests (waited until search had them)");

  await emailScenario(browser, { labels, aliceName, bobName });

  await alice.getByRole("button", { name: "Find people" }).click();
  await alice.getByRole("group", { name: "Shared interests" }).getByRole("checkbox", { name: labels[1], exact: true }).check();
  await alice.getByRole("button", { name: "Search", exact: true }).click();
  const requestBob = alice.getByRole("button", { name: `Request chat with ${bobName}` });
  await requestBob.waitFor();
  await alice.getByLabel(`Note for ${bobName}`, { exact: true }).fill("Hi from the hiking group");
  await expectLabelled(alice, "people search");
  await shot(alice, "03-people-search");
  await requestBob.click();
  await alice.getByText(`Chat request sent to ${bobName}`).waitFor();
  step("Alice found Bob by a shared interest and sent a chat request");

  await bob.getByRole("button", { name: "Requests (1)" }).waitFor();
  await bob.getByRole("button", { name: "Requests (1)" }).click();
  await bob.getByText("Hi from the hiking group").waitFor();
  await bob.getByRole("button", { name: `Accept ${aliceName}` }).click();
  await bob.getByRole("log").waitFor();
  await alice.getByText(`${bobName} accepted your chat request`).waitFor();
  step("Bob accepted; both have the encrypted direct chat");

  await bob.locator(".chat-head").getByRole("button", { name: aliceName, exact: true }).click();
  const aliceCard = bob.getByRole("dialog", { name: aliceName });
  await aliceCard.locator("dd", { hasText: "34" }).waitFor();
  await noHorizontalScroll(bob, "a profile card at 375 px");
  await bob.keyboard.press("Escape");
  await aliceCard.waitFor({ state: "detached" });
  step("Bob opened Alice's profile card from their chat's header at 375 px");

  // -- chat: typing, Enter sends, live delivery, read receipts, presence ----------------------------------
  await openConversation(alice, bobName);
  await alice.getByText("online").first().waitFor(); // Bob's presence in the chat header
  const box = alice.getByLabel("Message", { exact: true });
  await box.fill("typing something");
  await bob.getByText(`${aliceName} is typing…`).waitFor();
  step("Bob saw Alice typing");
  const m1 = newMarker("Hi Bob! Hiking on Saturday?");
  await box.fill(m1);
  await box.press("Enter");
  await bob.getByRole("log").getByText(m1).waitFor();
  await alice.getByRole("log").locator("li.mine").filter({ hasText: m1 }).locator(".receipt", { hasText: "Read" }).waitFor();
  step("Enter sent an encrypted message; Bob read it and Alice saw the read receipt");

  const m2 = newMarker("Yes! Which trail?");
  await bob.getByLabel("Message", { exact: true }).fill(m2);
  await bob.getByRole("button", { name: "Send", exact: true }).click();
  await alice.getByRole("log").getByText(m2).waitFor();
  await noHorizontalScroll(bob, "Bob's chat at 375 px");
  await expectLabelled(bob, "chat view");
  await shot(bob, "05-chat-mobile");

  // -- an encrypted image with a caption, thumbnail and lightbox -----------------------------------------------
  const caption = newMarker("This one, the view is great");
  await box.fill(caption);
  await alice.getByLabel("Attach image", { exact: true }).setInputFiles(pngPath);
  const bobImage = bob.getByRole("button", { name: `Open image ${caption}` });
  await bobImage.waitFor();
  const thumbWidth = await bobImage.locator("img").evaluate(async (img) => {
    await img.decode();
    return img.naturalWidth;
  });
  check(thumbWidth > 0 && thumbWidth <= 320, `Bob decrypted a thumbnail (${thumbWidth} px wide)`);
  await alice.getByRole("log").locator("li.mine").filter({ hasText: caption }).locator(".receipt").waitFor();
  await shot(alice, "04-chat-desktop");
  await bobImage.click();
  const dialog = bob.getByRole("dialog");
  await dialog.waitFor();
  const fullWidth = await dialog.locator("img").evaluate(async (img) => {
    await img.decode();
    return img.naturalWidth;
  });
  check(fullWidth > 320, `the lightbox shows the full image (${fullWidth} px wide)`);
  check(
    (await bob.evaluate(() => document.activeElement?.getAttribute("aria-label"))) === "Close image",
    "the lightbox focuses its close button",
  );
  await shot(bob, "06-lightbox-mobile");
  await bob.keyboard.press("Escape");
  await dialog.waitFor({ state: "detached" });
  step("an encrypted image: Bob saw the thumbnail and the full image in the lightbox, Escape closed it");

  // -- unread counts in the list ----------------------------------------------------------------------
  await bob.getByRole("button", { name: "Back to chats" }).click();
  const u1 = newMarker("Meet at 9");
  const u2 = newMarker("Bring water");
  await sendByEnter(alice, u1);
  await sendByEnter(alice, u2);
  const badge = conversationButton(bob, aliceName).getByLabel("2 unread", { exact: true });
  await badge.waitFor();
  await alice.getByRole("log").locator("li.mine").filter({ hasText: u2 }).locator(".receipt", { hasText: "Delivered" }).waitFor();
  await shot(bob, "07-list-unread-mobile");
  await openConversation(bob, aliceName);
  await bob.getByRole("log").getByText(u2).waitFor();
  await badge.waitFor({ state: "detached" });
  step("Bob's list showed 2 unread (Alice saw Delivered); opening the chat read them");

  // -- a third person in Python: encrypted both ways, and an attachment ---------------------------------------
  const carol = await ask("carol_start", { nickname: `Carol ${run}` });
  const m3 = newMarker("Hello from the Python SDK");
  const carolChat = await ask("carol_open_direct", { user_id: bobId });
  await ask("carol_send", { conversation_id: carolChat, text: m3 });
  await bob.getByRole("button", { name: "Back to chats" }).click();
  await openConversation(bob, `Carol ${run}`);
  await bob.getByRole("log").getByText(m3).waitFor();
  const m4 = newMarker("Hello back from the browser");
  await sendByEnter(bob, m4);
  const got = await ask("carol_receive", { conversation_id: carolChat });
  check(got.text === m4 && got.sender_id === bobId, `Carol decrypted Bob's message: ${JSON.stringify(got)}`);
  await ask("carol_send_image", { conversation_id: carolChat, caption: "from python" });
  const fromPython = bob.getByRole("button", { name: "Open image from python" });
  await fromPython.waitFor();
  const pyThumb = await fromPython.locator("img").evaluate(async (img) => {
    await img.decode();
    return img.naturalWidth;
  });
  check(pyThumb > 0, "Bob decrypted the SDK's attachment thumbnail");
  step("the Python SDK and the browser exchanged envelopes both ways, and an SDK attachment opened in the browser");

  // -- a group made in Python, written to from the browser ---------------------------------------------------
  const groupTitle = `Trio ${run}`;
  const groupId = await ask("carol_group", { title: groupTitle, member_ids: [aliceId, bobId] });
  await conversationButton(alice, groupTitle).waitFor();
  await openConversation(alice, groupTitle);
  const m5 = newMarker("Hello all three of us");
  await sendByEnter(alice, m5);
  const inGroup = await ask("carol_receive", { conversation_id: groupId });
  check(inGroup.text === m5 && inGroup.sender_id === aliceId, `Carol read the group message: ${JSON.stringify(inGroup)}`);
  await bob.getByRole("button", { name: "Back to chats" }).click();
  await openConversation(bob, groupTitle);
  await bob.getByRole("log").getByText(m5).waitFor();
  step("an encrypted group: one envelope for three people's devices, read in Python and the other browser");

  await alice.locator(".chat-head").getByRole("button", { name: groupTitle, exact: true }).click();
  const members = alice.getByRole("dialog", { name: `Members of ${groupTitle}` });
  await members.waitFor();
  await expectLabelled(alice, "group members");
  await members.getByRole("button", { name: `View profile of Carol ${run}` }).click();
  const carolCard = alice.getByRole("dialog", { name: `Carol ${run}` });
  await carolCard.getByText("None listed yet.").waitFor();
  await alice.keyboard.press("Escape");
  await carolCard.waitFor({ state: "detached" });
  step("Alice opened the SDK user's profile card from the group's members");

  const hikers = `Hikers ${run}`;
  await alice.getByRole("button", { name: "New group" }).click();
  await alice.getByLabel("Group name", { exact: true }).fill(hikers);
  await alice.getByRole("group", { name: /Members/ }).getByRole("checkbox", { name: bobName }).check();
  await expectLabelled(alice, "new group form");
  await alice.getByRole("button", { name: "Create encrypted group" }).click();
  await alice.getByRole("heading", { name: hikers }).waitFor();
  const m6 = newMarker("A group made in the browser");
  await sendByEnter(alice, m6);
  await bob.getByRole("button", { name: "Back to chats" }).click();
  await openConversation(bob, hikers);
  await bob.getByRole("log").getByText(m6).waitFor();
  step("Alice made an encrypted group in the browser; Bob read its first message");

  // -- history: a reload keeps the session and the device keys; infinite scroll --------------------------------
  await ask("carol_send_many", { conversation_id: carolChat, prefix: `history-${run}`, count: 40 });
  await bob.reload();
  await bob.locator(".connection.online").waitFor();
  await openConversation(bob, `Carol ${run}`);
  await bob.getByRole("log").getByText(`history-${run} 40`, { exact: true }).waitFor();
  check(!(await bob.getByRole("log").getByText(m3).isVisible()), "the first message is not loaded before scrolling up");
  for (let i = 0; i < 10 && !(await bob.getByRole("log").getByText(m3).count()); i++) {
    await bob.getByRole("log").evaluate((el) => {
      el.scrollTop = 0;
    });
    await bob.waitForTimeout(300);
  }
  await bob.getByRole("log").getByText(m3).waitFor();
  const history = await seqs(bob);
  check(history[0] === 1 && contiguous(history) === null, `history pages join up: ${contiguous(history) ?? history}`);
  step("after a reload (same device keys from IndexedDB) scrolling up loaded older pages with no gap");

  // -- reconnect and sync: Bob's socket cut, messages sent meanwhile arrive once ---------------------------------------
  await bob.getByRole("log").evaluate((el) => {
    el.scrollTop = el.scrollHeight;
  });
  bobOffline = true;
  for (const ws of bobSockets) {
    await ws.server.close({ code: 4000, reason: "cut by the test" });
    await ws.page.close({ code: 4000, reason: "cut by the test" });
  }
  bobSockets.clear();
  await bob.locator(".connection.offline").waitFor();
  const missed = [newMarker("Sent while you were offline, 1"), newMarker("Sent while you were offline, 2"), newMarker("Sent while you were offline, 3")];
  for (const text of missed) await ask("carol_send", { conversation_id: carolChat, text });
  await bob.waitForTimeout(1000);
  check((await bob.getByRole("log").getByText(missed[0]).count()) === 0, "nothing arrives while offline");
  await shot(bob, "08-offline-mobile");
  bobOffline = false; // the attempt held above times out (8 s in the client), the next one connects
  await bob.locator(".connection.online").waitFor();
  for (const text of missed) await bob.getByRole("log").getByText(text).waitFor();
  const after = await seqs(bob);
  check(contiguous(after) === null && after[0] === 1, `after sync: ${contiguous(after) ?? "ok"}`);
  for (const text of missed) check((await bob.getByRole("log").getByText(text).count()) === 1, `${text} shown once`);
  step("after a reconnect Bob's client synced: the 3 missed messages, once each, no gap");

  await tipScenario({ alice, aliceContext, bob, aliceName, bobName, wallet, groupTitle, carolName: `Carol ${run}` });

  // The node issues 30-second access tokens here: more than that after signing in, a
  // search (people sharing Alice's interests) still works, on a refreshed token of the
  // same session.
  await alice.getByRole("button", { name: "Find people" }).click();
  await alice.getByRole("button", { name: "Search", exact: true }).click();
  await alice.getByRole("button", { name: `Request chat with ${bobName}` }).waitFor();
  const lastSession = await session();
  check(
    lastSession.session_id === firstSession.session_id && lastSession.refresh_token !== firstSession.refresh_token,
    "Alice's tokens were refreshed (and the refresh token rotated) within one session",
  );
  step("access tokens refreshed silently with refresh-token rotation");

  await oidcScenario(browser);
  await linkScenario(alice, aliceName);

  await aliceContext.close();
  await bobContext.close();
  return { aliceId, bobId, carol };
}

// -- Dana: e-mail and password, the mailed link, interests on first sign-in, a profile card --------
async function emailScenario(browser, { labels, aliceName, bobName }) {
  const context = await browser.newContext({ viewport: { width: 1024, height: 768 } });
  const dana = await context.newPage();
  pages.push(["dana", dana]);
  dana.setDefaultTimeout(TIMEOUT);
  const login = `dana_${run}`;
  const email = `dana.${run}@example.com`;
  const password = `correct horse ${run}`;

  await dana.goto(url);
  await dana.getByRole("button", { name: "Create an account", exact: true }).click();
  const register = dana.getByRole("form", { name: "Create an account" });
  await register.getByLabel("Login", { exact: true }).fill(login);
  await register.getByLabel("E-mail", { exact: true }).fill(email);
  await register.getByLabel("Password", { exact: true }).fill(login.toUpperCase());
  await register.getByLabel("First name (optional)", { exact: true }).fill("Dana");
  await register.getByLabel("Last name (optional)", { exact: true }).fill("Scully");
  await expectLabelled(dana, "registration form");
  await register.getByRole("button", { name: "Create account" }).click();
  await register.getByRole("alert").filter({ hasText: "password: must not be your login name or e-mail address" }).waitFor();
  await register.getByLabel("Password", { exact: true }).fill(password);
  await shot(dana, "11-register");
  await register.getByRole("button", { name: "Create account" }).click();
  await dana.getByRole("heading", { name: "Check your e-mail" }).waitFor();
  await dana.getByText(email, { exact: true }).waitFor();
  await shot(dana, "12-check-email");
  step("Dana registered with login, e-mail and password in the browser (after the server's weak_password message)");

  // Before the address is confirmed the right password is not enough: the server says why.
  await dana.getByRole("button", { name: "I confirmed it: sign in" }).click();
  const early = dana.getByRole("form", { name: "Sign in with your password" });
  const filled = await early.getByLabel("Login or e-mail", { exact: true }).inputValue();
  check(filled === login, `the sign-in form has Dana's login: ${filled}`);
  await early.getByLabel("Password", { exact: true }).fill(password);
  await early.getByRole("button", { name: "Sign in", exact: true }).click();
  await early.getByRole("alert").filter({ hasText: "confirm your e-mail address first" }).waitFor();
  await dana.getByRole("button", { name: "Send a new confirmation link" }).waitFor();
  await expectLabelled(dana, "unconfirmed sign-in");

  const link = await ask("email_link", { email });
  check(link.startsWith(`${url}/v1/auth/email/verify#token=`), `the mailed link opens this node, its token in the fragment: ${link}`);
  await dana.goto(link);
  await dana.getByRole("button", { name: "Confirm" }).click();
  await dana.getByRole("status").filter({ hasText: "Your address is confirmed" }).waitFor();
  step("Dana opened the mailed link and confirmed (after the server's email_not_verified message)");

  await dana.goto(url);
  await dana.getByRole("button", { name: "Sign in with a password" }).click();
  const signIn = dana.getByRole("form", { name: "Sign in with your password" });
  await signIn.getByLabel("Login or e-mail", { exact: true }).fill(email);
  await signIn.getByLabel("Password", { exact: true }).fill(`${password}!`);
  await signIn.getByRole("button", { name: "Sign in", exact: true }).click();
  await signIn.getByRole("alert").filter({ hasText: "login or password is wrong" }).waitFor();
  await expectLabelled(dana, "password sign-in form");
  await shot(dana, "13-wrong-password");
  step("a wrong password: the server's invalid_credentials message next to the form");

  await signIn.getByLabel("Password", { exact: true }).fill(password);
  await signIn.getByRole("button", { name: "Sign in", exact: true }).click();
  // labels[0] is Alice's too; labels[3] nobody else's.
  await welcome(dana, [0, 3], "14-interests-welcome");
  step("Dana signed in with e-mail and password and was asked for her interests first");

  const suggested = dana.getByRole("region", { name: "People like you" });
  const alice = suggested.getByRole("listitem").filter({ hasText: aliceName });
  await alice.waitFor();
  const line = await alice.textContent();
  check(line.includes(`1 shared interest: ${labels[0]}`), `Alice is suggested for ${labels[0]}: ${line}`);
  check((await suggested.getByText(bobName).count()) === 0, "Bob, who shares none of Dana's interests, is not suggested");
  await alice.getByRole("button", { name: `View profile of ${aliceName}` }).click();
  const card = dana.getByRole("dialog", { name: aliceName });
  await card.getByText("Alice Liddell", { exact: true }).waitFor();
  const facts = await card.locator("dd").allTextContents();
  check(facts[0] === "34" && facts[1] === "Female", `Alice's age and gender on her card: ${facts}`);
  const interests = await card.getByRole("list", { name: `Interests of ${aliceName}` }).getByRole("listitem").allTextContents();
  check(
    interests.includes(`${labels[0]} (you share this)`) && interests.includes(labels[1]),
    `Alice's interests, the shared one marked: ${interests}`,
  );
  await expectLabelled(dana, "profile card");
  await shot(dana, "15-profile-card");
  await dana.keyboard.press("Escape");
  await card.waitFor({ state: "detached" });
  step("Dana saw Alice suggested for a shared interest and opened her card: names, age, gender, interests");

  await dana.getByRole("button", { name: "Profile", exact: true }).click();
  const first = await dana.getByLabel("First name", { exact: true }).inputValue();
  const last = await dana.getByLabel("Last name", { exact: true }).inputValue();
  check(first === "Dana" && last === "Scully", `the names given at registration are in Dana's profile: ${first} ${last}`);
  await context.close();
}

// -- Erin: OpenID Connect sign-up, a reload, sign-in again, a refusal, a planted code --------------
const PROVIDER = "Test ID"; // OIDC_NAME in test_web.py

async function continueWithProvider(page) {
  await page.getByRole("button", { name: `Continue with ${PROVIDER}`, exact: true }).click();
}

async function oidcScenario(browser) {
  const context = await browser.newContext({ viewport: { width: 1024, height: 768 } });
  const erin = await context.newPage();
  pages.push(["erin", erin]);
  erin.setDefaultTimeout(TIMEOUT);
  const erinName = `Erin ${run}`;
  await ask("oidc_person", { name: erinName, username: `erin_${run}`, email: `erin.${run}@example.test` });

  await erin.goto(url);
  await erin.getByRole("button", { name: `Continue with ${PROVIDER}`, exact: true }).waitFor();
  await expectLabelled(erin, "sign-in page with a provider");
  await shot(erin, "16-oidc-sign-in");
  await continueWithProvider(erin);
  // To the node, the provider (which approves at once), the node's callback, and back here.
  await welcome(erin, []);
  check((await erin.evaluate(() => location.href)) === `${url}/`, `the code left the address bar: ${erin.url()}`);
  const erinId = await userId(erin);
  await erin.getByRole("button", { name: "Profile", exact: true }).click();
  const nickname = erin.getByLabel("Nickname", { exact: true });
  await nickname.waitFor();
  check((await nickname.inputValue()) === erinName, `the new account has the provider's name: ${await nickname.inputValue()}`);
  await erin.getByRole("list", { name: "Linked sign-ins" }).getByText(`${PROVIDER}: erin.${run}@example.test`).waitFor();
  step("Erin signed up with OpenID Connect: back from the provider signed in, nickname from the provider");

  await erin.reload();
  await erin.locator(".connection.online").waitFor();
  check((await userId(erin)) === erinId, "after a reload Erin is still signed in as herself");
  await erin.getByRole("button", { name: "Sign out", exact: true }).click();
  await continueWithProvider(erin);
  await erin.locator(".connection.online").waitFor();
  check((await userId(erin)) === erinId, "signing in again with the provider reaches the same account");
  step("after a reload and a sign-out, the provider signed Erin in to the same account again");

  await erin.getByRole("button", { name: "Sign out", exact: true }).click();
  await ask("oidc_deny", { deny: true });
  await continueWithProvider(erin);
  await erin.getByRole("alert").filter({ hasText: `Signing in with ${PROVIDER} was cancelled or declined` }).waitFor();
  check((await erin.evaluate(() => location.href)) === `${url}/`, `the error left the address bar: ${erin.url()}`);
  await shot(erin, "17-oidc-denied");
  await ask("oidc_deny", { deny: false });
  step("the provider declined (oidc_access_denied): the sign-in page said so");

  // A code from someone else's sign-in, in a link: this tab did not start it, so it is not spent.
  await erin.goto("about:blank");
  await erin.goto(`${url}/#parley_code=${"A".repeat(43)}`);
  await erin.getByRole("alert").filter({ hasText: "not started in this tab" }).waitFor();
  check(await erin.getByLabel("Phone number", { exact: true }).isVisible(), "still signed out");
  step("a code this tab did not ask for was not exchanged");
  await context.close();
}

// -- Alice links the provider in her profile: someone else's account first, then her own ------
async function linkScenario(alice, aliceName) {
  await alice.getByRole("button", { name: "Profile", exact: true }).click();
  const linked = alice.getByRole("list", { name: "Linked sign-ins" });
  await linked.getByText(/^Phone: /).waitFor();
  // The provider still signs in Erin, whose account it already is.
  await alice.getByRole("button", { name: `Link ${PROVIDER}`, exact: true }).click();
  await alice
    .getByRole("alert")
    .filter({ hasText: `That ${PROVIDER} account already signs in to another Parley account` })
    .waitFor();
  check((await alice.evaluate(() => location.href)) === `${url}/`, `the link code left the address bar: ${alice.url()}`);
  step("linking the provider account Erin signs in with: identity_taken, said in Alice's profile");

  const email = `alice.${run}@example.test`;
  await ask("oidc_person", { name: aliceName, username: `alice_${run}`, email });
  await alice.getByRole("button", { name: `Link ${PROVIDER}`, exact: true }).click();
  await alice.getByRole("status").filter({ hasText: `Linked ${PROVIDER}: ${email}` }).waitFor();
  await linked.getByText(`${PROVIDER}: ${email}`, { exact: true }).waitFor();
  await linked.getByText(/^Phone: /).waitFor();
  await expectLabelled(alice, "linked sign-ins");
  await alice.getByRole("button", { name: `Link ${PROVIDER}`, exact: true }).scrollIntoViewIfNeeded();
  await shot(alice, "18-linked-sign-ins");
  step("Alice linked her own provider account in her profile and sees it under Linked sign-ins");
}

// -- a tip in ETH: Alice links a wallet, her fake MetaMask signs, ganache mines, both see it ------
async function tipScenario({ alice, aliceContext, bob, aliceName, bobName, wallet, groupTitle, carolName }) {
  const aliceWallet = new TestWallet({ rpcUrl: chainUrl, chainId: Number(chainId) });
  await ask("fund", { address: aliceWallet.address, wei: String(10n ** 18n) }); // 1 ETH
  await aliceWallet.install(aliceContext);
  await alice.reload(); // window.ethereum is installed at page load, as MetaMask's is
  await alice.locator(".connection.online").waitFor();
  await openConversation(alice, bobName);
  await bob.getByRole("button", { name: "Back to chats" }).click();
  await openConversation(bob, aliceName);

  await alice.getByRole("button", { name: "Tip", exact: true }).click();
  const dialog = alice.getByRole("dialog", { name: `Tip ${bobName} in ETH` });
  await dialog.getByRole("button", { name: "Link wallet" }).click();
  const amount = dialog.getByLabel("Amount (ETH)", { exact: true });
  await amount.waitFor();
  check(
    aliceWallet.signed.length === 1 && aliceWallet.signed[0].includes(aliceWallet.address),
    `the wallet signed the link challenge for ${aliceWallet.address}: ${aliceWallet.signed}`,
  );
  await expectLabelled(alice, "tip dialog");

  // The server's own messages: a malformed amount, then more than the wallet holds.
  const alert = dialog.getByRole("alert");
  await amount.fill("1e-2");
  await dialog.getByRole("button", { name: "Send tip" }).click();
  await alert.filter({ hasText: "write the amount as a plain decimal number of ETH" }).waitFor();
  await amount.fill("2");
  await dialog.getByRole("button", { name: "Send tip" }).click();
  await alert.filter({ hasText: `insufficient funds: ${aliceWallet.address} holds 1 ETH` }).waitFor();
  check(aliceWallet.transactions.length === 0, "nothing was sent to the wallet for refused amounts");
  step("tip dialog: Alice linked her wallet; the server's invalid_amount and insufficient_funds messages shown");

  await amount.fill("0.0123");
  await shot(alice, "09-tip-dialog");
  await dialog.getByRole("button", { name: "Send tip" }).click();
  await dialog.waitFor({ state: "detached" });
  check(aliceWallet.transactions.length === 1, "the wallet was asked once to send a transaction");
  const sent = aliceWallet.transactions[0];
  check(
    sent.to.toLowerCase() === wallet.address.toLowerCase() && BigInt(sent.value) === 12_300_000_000_000_000n && sent.type === "0x2",
    `the prepared transaction pays Bob 0.0123 ETH: ${JSON.stringify(sent)}`,
  );
  // ganache mines the transaction at once: 1 of the 2 confirmations the node asks for.
  await alice.getByRole("status").filter({ hasText: "Your tip of 0.0123 ETH: mined, 1/2 confirmations" }).waitFor();
  await bob.getByRole("status").filter({ hasText: `${aliceName}'s tip of 0.0123 ETH: mined, 1/2 confirmations` }).waitFor();
  step("both saw the tip's progress (tip:updated): mined, 1/2 confirmations");

  await ask("mine", { blocks: 1 });
  const hash = aliceWallet.hashes[0];
  const short = `${hash.slice(0, 8)}…${hash.slice(-6)}`;
  await alice.getByRole("log").getByText(`You tipped ${bobName} 0.0123 ETH · tx ${short}`).waitFor();
  await bob.getByRole("log").getByText(`${aliceName} tipped you 0.0123 ETH · tx ${short}`).waitFor();
  check((await alice.getByRole("status").filter({ hasText: "tip of" }).count()) === 0, "the progress line went away");
  const received = await ask("balance", { address: wallet.address });
  check(BigInt(received) === 12_300_000_000_000_000n, `Bob's wallet holds the tip: ${received} wei`);
  await shot(bob, "10-tip-confirmed-mobile");
  step("confirmed after the second block: both chats show the tip notice with its transaction; Bob's wallet got 0.0123 ETH");

  // In a group the dialog asks whom to tip; Carol (the SDK) has no wallet: the server says so.
  await openConversation(alice, groupTitle);
  await alice.getByRole("button", { name: "Tip", exact: true }).click();
  const groupDialog = alice.getByRole("dialog", { name: "Tip a member in ETH" });
  await groupDialog.getByLabel("To", { exact: true }).selectOption({ label: carolName });
  await groupDialog.getByLabel("Amount (ETH)", { exact: true }).fill("0.01");
  await groupDialog.getByRole("button", { name: "Send tip" }).click();
  await groupDialog.getByRole("alert").filter({ hasText: "the recipient has not linked an Ethereum wallet" }).waitFor();
  await expectLabelled(alice, "group tip dialog");
  await alice.keyboard.press("Escape");
  await groupDialog.waitFor({ state: "detached" });
  check(aliceWallet.transactions.length === 1, "no transaction for a refused tip");
  step("a group member without a wallet: the server's recipient_no_wallet message in the dialog");
}

main().then(
  () => {
    send({ done: true, checks, markers, names: [`Alice ${run}`, `Bob ${run}`, `Erin ${run}`] });
    process.exit(0);
  },
  (err) => {
    send({ done: false, error: String(err?.stack ?? err), checks, markers });
    process.exit(1);
  },
);
