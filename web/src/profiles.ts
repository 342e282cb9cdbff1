// Profiles: the interests catalogue, your own profile (saved until search has it), and
// whether to ask a newly signed-in person for their interests.

import type { Api } from "./api";
import type { Card } from "./model";

export interface Interest {
  slug: string;
  label: string;
}

/** GET /v1/me/profile: your card plus who may find you. */
export interface MyProfile extends Card {
  visibility: string;
}

/** PATCH /v1/me/profile; an absent field stays as it is. */
export interface ProfileChange {
  nickname?: string;
  first_name?: string;
  last_name?: string;
  age?: number;
  clear_age?: boolean;
  gender?: string;
  interests?: string[];
  visibility?: string;
}

// The server's limits (server/users/schemas.py ProfileUpdate).
export const MAX_INTERESTS = 20;
export const MIN_AGE = 13;
export const MAX_AGE = 120;
export const GENDERS: [value: string, label: string][] = [
  ["", "Not shown"],
  ["female", "Female"],
  ["male", "Male"],
  ["nonbinary", "Non-binary"],
  ["other", "Other"],
];

const SKIPPED_KEY = "parley.interests-skipped.";

let catalogue: Promise<Interest[]> | null = null;

/** The interests a profile may list; fetched once per page load. */
export function interestCatalogue(api: Api): Promise<Interest[]> {
  if (catalogue === null) {
    const fetching: Promise<Interest[]> = api.call("GET", "/v1/interests").then((a) => a.interests);
    fetching.catch(() => {
      catalogue = null;
    });
    catalogue = fetching;
  }
  return catalogue;
}

export function interestLabel(interests: Interest[], slug: string): string {
  return interests.find((i) => i.slug === slug)?.label ?? slug;
}

export function genderLabel(gender: string): string {
  return GENDERS.find(([value]) => value === gender)?.[1] ?? gender;
}

export function fullName(card: Card): string {
  return [card.first_name, card.last_name].filter(Boolean).join(" ");
}

export function loadMyProfile(api: Api): Promise<MyProfile> {
  return api.call("GET", "/v1/me/profile");
}

/** Apply a change and wait until people search shows it (the indexer applies it in order). */
export async function saveProfile(api: Api, change: ProfileChange): Promise<MyProfile> {
  const saved = await api.call("PATCH", "/v1/me/profile", { json: change });
  for (let delay = 50; ; delay = Math.min(delay * 2, 500)) {
    const event = await api.call("GET", `/v1/events/${saved.event_id}`);
    if (event.indexed) break;
    await new Promise((r) => setTimeout(r, delay));
  }
  return saved;
}

/**
 * Whether to ask for interests before Home: none on the profile yet (a first sign-in),
 * and the person did not choose "skip" in this browser.
 */
export function wantsInterests(profile: MyProfile): boolean {
  if (profile.interests.length > 0) return false;
  try {
    return localStorage.getItem(SKIPPED_KEY + profile.user_id) === null;
  } catch {
    return true;
  }
}

export function skipInterests(userId: string): void {
  try {
    localStorage.setItem(SKIPPED_KEY + userId, "1");
  } catch {
    // private mode without storage: asked again next time, no harm
  }
}
