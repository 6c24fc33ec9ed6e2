// Access tokens for SMTP XOAUTH2 (Keycloak 26.1's smtpServer authType "token", e.g. Microsoft 365,
// which no longer takes passwords): a client-credentials grant at `authTokenUrl` with
// `authTokenClientId` / `authTokenClientSecret` / `authTokenScope`, kept until 30 s before it
// expires (60 s when the answer has no expires_in), as Keycloak's TokenAuthEmailAuthenticator does.
import crypto from 'node:crypto';

import { readBoundedBody } from '../http/bounded-response.ts';
import { isLoopbackHost } from '../http/loopback.ts';

export type SmtpTokenSource = { url: string; clientId: string; clientSecret: string; scope: string };

const FETCH_TIMEOUT_MS = 10_000;
const FALLBACK_LIFETIME_S = 60;
const EARLY_RENEWAL_S = 30;
const MAX_RESPONSE_BYTES = 64 * 1024;

export class SmtpTokenError extends Error {}

export class SmtpTokens {
  readonly #cache = new Map<string, { token: string; renewAt: number }>();
  readonly #pending = new Map<string, Promise<string>>();

  /** A valid access token for the source: cached, or fetched now (one request for concurrent callers). */
  async token(source: SmtpTokenSource): Promise<string> {
    const key = keyOf(source);
    const cached = this.#cache.get(key);
    if (cached && cached.renewAt > Date.now()) return cached.token;
    let pending = this.#pending.get(key);
    if (!pending) {
      pending = this.#fetch(source, key).finally(() => this.#pending.delete(key));
      this.#pending.set(key, pending);
    }
    return pending;
  }

  /** Drops the cached token (the SMTP server refused it). */
  forget(source: SmtpTokenSource): void {
    this.#cache.delete(keyOf(source));
  }

  async #fetch(source: SmtpTokenSource, key: string): Promise<string> {
    let url: URL;
    try {
      url = new URL(source.url);
    } catch {
      throw new SmtpTokenError('authTokenUrl is not a URL');
    }
    // The client secret travels in the request: https, or plain http to this machine only.
    if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopbackHost(url.hostname))) {
      throw new SmtpTokenError('authTokenUrl must be an https URL');
    }
    let response: Response;
    try {
      response = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
        body: new URLSearchParams({ client_id: source.clientId, client_secret: source.clientSecret, scope: source.scope, grant_type: 'client_credentials' }),
        signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
        redirect: 'error',
      });
    } catch (error) {
      throw new SmtpTokenError(`the SMTP token endpoint cannot be reached: ${(error as Error).message}`, { cause: error });
    }
    const body = await readBoundedBody(response, MAX_RESPONSE_BYTES).catch(() => undefined);
    if (body === undefined) throw new SmtpTokenError('the SMTP token endpoint answered too much, or broke off');
    let parsed: { access_token?: unknown; expires_in?: unknown; error?: unknown };
    try {
      parsed = JSON.parse(body.toString('utf8')) as typeof parsed;
    } catch {
      throw new SmtpTokenError(`the SMTP token endpoint answered ${response.status} without JSON`);
    }
    if (!response.ok || typeof parsed.access_token !== 'string' || parsed.access_token === '') {
      // The endpoint's error code only: its description may echo what was sent.
      throw new SmtpTokenError(`the SMTP token endpoint gave no access token (${response.status}${typeof parsed.error === 'string' ? ` ${parsed.error}` : ''})`);
    }
    const lifetime = Number(parsed.expires_in);
    const seconds = Number.isFinite(lifetime) && lifetime > 0 ? lifetime : FALLBACK_LIFETIME_S;
    this.#cache.set(key, { token: parsed.access_token, renewAt: Date.now() + (seconds - EARLY_RENEWAL_S) * 1000 });
    return parsed.access_token;
  }
}

/** One cache entry per endpoint, client, secret and scope (a changed secret fetches anew). */
function keyOf(source: SmtpTokenSource): string {
  return crypto.createHash('sha256').update(JSON.stringify([source.url, source.clientId, source.clientSecret, source.scope])).digest('base64url');
}
