// One browser-less authorization-code login, as a confidential web app and its user's browser do
// it: authorization request with PKCE, the hosted username and password pages, the resume redirect
// back to the client, and the code exchange. The page and cookie handling is the tests' own
// (test/support/browserless.ts), so the bench drives the pages exactly as the tests do.
import { createHash, randomBytes } from 'node:crypto';

import { browserlessLogin, CookieJar } from '../test/support/browserless.ts';

export type LoginFlowOptions = {
  /** Server root, e.g. http://127.0.0.1:8080 */
  baseUrl: string;
  realm: string;
  clientId: string;
  clientSecret: string;
  /** Registered redirect URI; never called, the flow stops at the redirect to it. */
  redirectUri: string;
  username: string;
  password: string;
};

/** Runs one complete login; throws with the step and the server's answer when any step fails. */
export async function login(options: LoginFlowOptions): Promise<{ accessToken: string; idToken: string; refreshToken: string }> {
  const protocol = `${options.baseUrl}/realms/${encodeURIComponent(options.realm)}/protocol/openid-connect`;
  const verifier = randomBytes(32).toString('base64url');
  const state = randomBytes(16).toString('base64url');
  const nonce = randomBytes(16).toString('base64url');
  const authUrl = `${protocol}/auth?${new URLSearchParams({
    client_id: options.clientId,
    redirect_uri: options.redirectUri,
    response_type: 'code',
    scope: 'openid',
    state,
    nonce,
    code_challenge: createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
  })}`;

  // A fresh jar per login: with the previous login's SSO cookie the server would skip the pages.
  const { redirect } = await browserlessLogin(authUrl, options.username, options.password, options.redirectUri, new CookieJar());
  const answer = new URL(redirect).searchParams;
  const code = answer.get('code');
  if (answer.get('state') !== state) throw new Error(`redirect with wrong state: ${redirect}`);
  if (!code) throw new Error(`redirect without code: ${redirect}`);

  const response = await fetch(`${protocol}/token`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`${encodeURIComponent(options.clientId)}:${encodeURIComponent(options.clientSecret)}`).toString('base64')}`,
    },
    body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: options.redirectUri, code_verifier: verifier }),
  });
  const text = await response.text();
  let body: Record<string, unknown> = {};
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // reported below
  }
  const { access_token: accessToken, id_token: idToken, refresh_token: refreshToken } = body;
  if (response.status !== 200 || typeof accessToken !== 'string' || typeof idToken !== 'string' || typeof refreshToken !== 'string') {
    throw new Error(`code exchange answered ${response.status}: ${text.slice(0, 300)}`);
  }
  return { accessToken, idToken, refreshToken };
}

export type LoginLoadResult = {
  logins: number;
  failures: number;
  loginsPerSec: number;
  p50Ms: number | null;
  p99Ms: number | null;
  maxMs: number | null;
  seconds: number;
  concurrency: number;
  /** The first few failure messages, for diagnosis. */
  failureSamples: string[];
};

/**
 * `concurrency` loops each doing logins back to back until `seconds` have passed; a login that
 * started in time is waited for and counted. Latency is that of a whole login (six requests).
 */
export async function loginLoad(options: LoginFlowOptions, concurrency: number, seconds: number): Promise<LoginLoadResult> {
  const durations: number[] = [];
  const failureSamples: string[] = [];
  let failures = 0;
  const start = performance.now();
  const deadline = start + seconds * 1000;

  async function loop(): Promise<void> {
    while (performance.now() < deadline) {
      const begun = performance.now();
      try {
        await login(options);
        durations.push(performance.now() - begun);
      } catch (error) {
        failures++;
        if (failureSamples.length < 5) failureSamples.push((error as Error).message.slice(0, 500));
      }
    }
  }

  await Promise.all(Array.from({ length: concurrency }, loop));
  const elapsed = (performance.now() - start) / 1000;
  durations.sort((a, b) => a - b);
  const percentile = (p: number): number | null => {
    if (durations.length === 0) return null;
    const index = Math.min(durations.length - 1, Math.ceil((p / 100) * durations.length) - 1);
    return Math.round(durations[Math.max(0, index)]!);
  };
  return {
    logins: durations.length,
    failures,
    loginsPerSec: Math.round((durations.length / elapsed) * 10) / 10,
    p50Ms: percentile(50),
    p99Ms: percentile(99),
    maxMs: percentile(100),
    seconds: Math.round(elapsed * 100) / 100,
    concurrency,
    failureSamples,
  };
}
