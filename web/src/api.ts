// HTTP calls to the Parley node that served this page, with the access token kept fresh:
// a refresh (which rotates the refresh token) happens silently before expiry, and once
// more if a call still meets token_expired.

const STORAGE_KEY = "parley.session";
// Refresh when less than this many seconds remain.
const REFRESH_MARGIN = 60;

export interface Session {
  access_token: string;
  refresh_token: string;
  expires_at: number; // Unix seconds
  lifetime: number; // seconds the access token was issued for
  user_id: string;
  session_id: string;
}

/** An error answer (HTTP body or socket ack): status, stable code, readable message. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

// Codes after which the session is over and the person must sign in again.
const SESSION_OVER = new Set(["invalid_refresh_token", "refresh_token_reused", "session_revoked"]);

export interface RequestOptions {
  json?: unknown;
  query?: Record<string, string | number | undefined>;
  body?: BodyInit;
  auth?: boolean;
}

export class Api {
  session: Session | null;
  private refreshing: Promise<void> | null = null;
  onSignedOut: (reason: string) => void = () => {};

  constructor() {
    this.session = Api.stored();
  }

  private static stored(): Session | null {
    try {
      const raw = localStorage.getItem(STORAGE_KEY);
      return raw ? (JSON.parse(raw) as Session) : null;
    } catch {
      return null;
    }
  }

  /** Keep a token pair from a sign-in or refresh. */
  store(tokens: {
    access_token: string;
    refresh_token: string;
    expires_in: number;
    user_id: string;
    session_id: string;
  }): void {
    this.session = {
      access_token: tokens.access_token,
      refresh_token: tokens.refresh_token,
      expires_at: Date.now() / 1000 + tokens.expires_in,
      lifetime: tokens.expires_in,
      user_id: tokens.user_id,
      session_id: tokens.session_id,
    };
    localStorage.setItem(STORAGE_KEY, JSON.stringify(this.session));
  }

  clear(): void {
    this.session = null;
    localStorage.removeItem(STORAGE_KEY);
  }

  private endSession(reason: string): never {
    this.clear();
    this.onSignedOut(reason);
    throw new ApiError(401, "signed_out", reason);
  }

  /** A valid access token, refreshed (and the refresh token rotated) when close to expiry. */
  async accessToken(force = false): Promise<string> {
    if (this.session === null) throw new ApiError(401, "unauthenticated", "not signed in");
    if (force || this.expiring(this.session)) {
      // One refresh at a time: a spent refresh token presented twice revokes the session.
      this.refreshing ??= this.refresh().finally(() => {
        this.refreshing = null;
      });
      await this.refreshing;
    }
    if (this.session === null) throw new ApiError(401, "unauthenticated", "not signed in");
    return this.session.access_token;
  }

  private expiring(session: Session): boolean {
    const margin = Math.min(REFRESH_MARGIN, (session.lifetime ?? 900) / 2);
    return session.expires_at - Date.now() / 1000 < margin;
  }

  private async refresh(): Promise<void> {
    // Tabs of this browser share the pair in localStorage; a refresh token spent twice
    // revokes the session, so only one tab refreshes at a time (Web Locks), and a tab
    // first adopts a pair another tab got meanwhile.
    if (navigator.locks) await navigator.locks.request("parley-refresh", () => this.refreshOnce());
    else await this.refreshOnce();
  }

  private async refreshOnce(): Promise<void> {
    const current = this.session;
    if (current === null) return;
    const latest = Api.stored();
    if (latest && latest.refresh_token !== current.refresh_token && latest.user_id === current.user_id) {
      this.session = latest;
      if (!this.expiring(latest)) return;
    }
    try {
      const tokens = await this.call("POST", "/v1/auth/refresh", {
        json: { refresh_token: this.session!.refresh_token },
        auth: false,
      });
      this.store(tokens);
    } catch (err) {
      if (err instanceof ApiError && (SESSION_OVER.has(err.code) || err.status === 401)) {
        this.endSession("Your session has ended. Please sign in again.");
      }
      throw err;
    }
  }

  private async raw(method: string, path: string, opts: RequestOptions, token?: string): Promise<Response> {
    const headers: Record<string, string> = {};
    let body: BodyInit | undefined = opts.body;
    if (opts.json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(opts.json);
    } else if (body !== undefined) {
      headers["Content-Type"] = "application/octet-stream";
    }
    if (token) headers.Authorization = `Bearer ${token}`;
    let url = path;
    if (opts.query) {
      const params = new URLSearchParams();
      for (const [k, v] of Object.entries(opts.query)) if (v !== undefined && v !== "") params.set(k, String(v));
      const text = params.toString();
      if (text) url += `?${text}`;
    }
    try {
      return await fetch(url, { method, headers, body });
    } catch {
      throw new ApiError(0, "network_error", "Cannot reach the server. Check your connection.");
    }
  }

  private async response(method: string, path: string, opts: RequestOptions): Promise<Response> {
    const auth = opts.auth ?? true;
    let response = await this.raw(method, path, opts, auth ? await this.accessToken() : undefined);
    if (auth && response.status === 401) {
      const error = await errorOf(response);
      if (error.code === "token_expired") {
        response = await this.raw(method, path, opts, await this.accessToken(true));
      } else if (SESSION_OVER.has(error.code) || error.code === "invalid_token") {
        this.endSession("Your session has ended. Please sign in again.");
      } else {
        throw error;
      }
    }
    if (!response.ok) throw await errorOf(response);
    return response;
  }

  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  async call(method: string, path: string, opts: RequestOptions = {}): Promise<any> {
    const response = await this.response(method, path, opts);
    if (response.status === 204) return null;
    return response.json();
  }

  async bytes(path: string): Promise<Uint8Array<ArrayBuffer>> {
    const response = await this.response("GET", path, {});
    return new Uint8Array(await response.arrayBuffer());
  }
}

async function errorOf(response: Response): Promise<ApiError> {
  try {
    const body = await response.clone().json();
    const error = body?.error;
    if (error && typeof error.code === "string") {
      return new ApiError(response.status, error.code, String(error.message ?? error.code));
    }
  } catch {
    // not JSON: fall through
  }
  return new ApiError(response.status, "http_error", `${response.status} ${response.statusText}`);
}

/** A message fit for a person: what failed, in plain words. */
export function describe(err: unknown): string {
  if (err instanceof ApiError) {
    if (err.code === "rate_limited") return `Slow down: ${err.message}`;
    return err.message;
  }
  if (err instanceof Error) return err.message;
  return String(err);
}
