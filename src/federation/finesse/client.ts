// The Finesse REST client: GET /finesse/api/User/{id} (Basic or Bearer), /Users and /Teams
// (admin Basic), over HTTPS with the provider's CA bundle and timeouts. The base URLs are tried
// in order: a server that cannot be reached, times out, fails TLS or answers 5xx hands over to
// the next; an answer (200, 401, 404) ends the search. Everything a hostile or broken server can
// do is bounded: connect/read timeouts plus a deadline per attempt, a body size limit, no
// redirects, no DTDs. Credentials and tokens never reach a log or an error message.
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';

import type { Agent, Response } from 'undici';

import { readBoundedBody } from '../../http/bounded-response.ts';
import { createLogger, type Logger } from '../../observability/logger.ts';
import type { FinesseProviderConfig } from './config.ts';
import { FinesseResponseError, parseFinesseTeams, parseFinesseUser, parseFinesseUsers, type FinesseTeam, type FinesseUser } from './xml.ts';

export { FinesseResponseError, type FinesseTeam, type FinesseUser } from './xml.ts';

/** What a Finesse document may weigh (a /Users listing of a large center stays far below). */
export const MAX_RESPONSE_BYTES = 1024 * 1024;
/** Listings of every user may be larger: 16 MiB (about 10,000 users with their teams). */
export const MAX_LISTING_BYTES = 16 * 1024 * 1024;

export type FinesseAuth = { basic: { username: string; password: string } } | { bearer: string };

export type FinesseUserResult = { status: 'ok'; user: FinesseUser } | { status: 'unauthorized' } | { status: 'not_found' };

/** What the client needs of a provider (a FinesseProviderConfig has it all). */
export type FinesseClientSettings = Pick<FinesseProviderConfig,
  'alias' | 'urls' | 'caBundle' | 'tlsVerify' | 'connectTimeout' | 'readTimeout' | 'adminUsername' | 'adminPassword'>;

export type FinesseFailureKind =
  | 'bad-url' | 'refused' | 'unknown-host' | 'unreachable' | 'connect-timeout' | 'read-timeout' | 'tls' | 'closed' | 'server-error';

export type FinesseFailure = { url: string; kind: FinesseFailureKind; message: string };

const KIND_TEXT: Record<FinesseFailureKind, string> = {
  'bad-url': 'invalid URL',
  refused: 'connection refused',
  'unknown-host': 'unknown host',
  unreachable: 'host unreachable',
  'connect-timeout': 'connect timed out',
  'read-timeout': 'no answer within the read timeout',
  tls: 'TLS failure',
  closed: 'connection closed',
  'server-error': 'server error',
};

/** No configured Finesse server could be used (down, timing out, TLS refused, 5xx): the message says what each did. */
export class FinesseUnavailableError extends Error {
  readonly alias: string;
  readonly failures: FinesseFailure[];
  constructor(alias: string, failures: FinesseFailure[]) {
    const detail = failures.length === 0 ? 'no Finesse URL configured' : failures.map((f) => `${f.url}: ${f.message}`).join('; ');
    super(`Finesse of identity provider ${alias} is unavailable (${detail})`);
    this.name = 'FinesseUnavailableError';
    this.alias = alias;
    this.failures = failures;
  }

  /** True when every server failed TLS (a configuration problem rather than an outage). */
  get tls(): boolean {
    return this.failures.length > 0 && this.failures.every((f) => f.kind === 'tls');
  }
}

// ---------------------------------------------------------------------------------------------
// Logging (the login path has no logger at hand; the server hands its own over at start)

type WarnLogger = Pick<Logger, 'warn'>;
let logger: WarnLogger | undefined;

export function setFinesseLogger(next: WarnLogger): void {
  logger = next;
}

export function finesseLog(): WarnLogger {
  logger ??= createLogger(process.env.CLOAKROOM_LOG_LEVEL || process.env.KC_LOG_LEVEL || 'info');
  return logger;
}

// ---------------------------------------------------------------------------------------------
// Agents: one per provider settings, re-made when they change

// An unused agent holds no sockets once its keep-alive ends, so replaced settings simply fall out
// of this LRU; evicting the least recently used one never hits an agent with requests in flight
// unless MAX_AGENTS other settings were used in between.
const agents = new Map<string, Agent>();
// undici is loaded at the first Finesse request, not at server start (idle memory).
const requireModule = createRequire(import.meta.url);
const undici = (): typeof import('undici') => requireModule('undici') as typeof import('undici');
const MAX_AGENTS = 64;

function agentKey(settings: FinesseClientSettings): string {
  return createHash('sha256').update(JSON.stringify([
    settings.urls, settings.caBundle ?? null, settings.tlsVerify, settings.connectTimeout, settings.readTimeout,
  ])).digest('hex');
}

function agentFor(settings: FinesseClientSettings): Agent {
  const key = agentKey(settings);
  let agent = agents.get(key);
  if (agent) {
    agents.delete(key);
  } else {
    agent = new (undici().Agent)({
      connect: {
        // A CA bundle replaces Node's default CAs (the Finesse servers' own CA is what is trusted).
        ...(settings.caBundle ? { ca: settings.caBundle } : {}),
        rejectUnauthorized: settings.tlsVerify,
        timeout: settings.connectTimeout,
      },
      headersTimeout: settings.readTimeout,
      bodyTimeout: settings.readTimeout,
      keepAliveTimeout: 10_000,
      connections: 16,
    });
    if (agents.size >= MAX_AGENTS) {
      const [oldestKey, oldest] = agents.entries().next().value!;
      agents.delete(oldestKey);
      void oldest.close().catch(() => {});
    }
  }
  agents.set(key, agent);
  return agent;
}

/** Closes every agent and its connections (server shutdown, tests). */
export async function closeFinesseAgents(): Promise<void> {
  const all = [...agents.values()];
  agents.clear();
  await Promise.all(all.map((agent) => agent.destroy().catch(() => {})));
}

// ---------------------------------------------------------------------------------------------
// Error classification

function errorCode(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : '';
}

const TLS_CODES = /^(ERR_TLS_|ERR_SSL_|CERT_|UNABLE_TO_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|HOSTNAME_MISMATCH|ERR_OSSL)/;

/** The innermost useful error: fetch wraps socket errors as TypeError('fetch failed', { cause }). */
function rootCause(error: unknown): unknown {
  let current = error;
  for (let i = 0; i < 5; i += 1) {
    const cause = (current as { cause?: unknown } | null)?.cause;
    if (cause === undefined || cause === null || cause === current) break;
    current = cause;
  }
  return current;
}

export function failureKind(error: unknown): FinesseFailureKind {
  const cause = rootCause(error);
  const code = errorCode(cause) || errorCode(error);
  const name = (cause as { name?: unknown } | null)?.name;
  const message = cause instanceof Error ? cause.message : String(cause);
  if (code === 'ECONNREFUSED') return 'refused';
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EAI_NONAME') return 'unknown-host';
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'EADDRNOTAVAIL') return 'unreachable';
  if (code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'ETIMEDOUT') return 'connect-timeout';
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' || name === 'TimeoutError') return 'read-timeout';
  if (TLS_CODES.test(code) || (cause as { library?: unknown } | null)?.library === 'SSL routines' || /certificate|TLS|SSL/i.test(message)) return 'tls';
  return 'closed';
}

function failure(url: string, error: unknown): FinesseFailure {
  const kind = failureKind(error);
  const cause = rootCause(error);
  const detail = cause instanceof Error && cause.message ? `: ${cause.message.split('\n')[0]}` : '';
  return { url, kind, message: `${KIND_TEXT[kind]}${detail}` };
}

// ---------------------------------------------------------------------------------------------
// Requests

/**
 * Ids that cannot name a Finesse user and would bend the URL: path separators, dot segments,
 * control characters. Everything else is percent-encoded into one path segment.
 */
export function isValidFinesseId(id: string): boolean {
  return id.length > 0 && id.length <= 256 && !/[/\\\u0000-\u001f\u007f]/.test(id) && !id.includes('..') && id !== '.';
}

/** Bearer tokens are token68-like: visible ASCII only (anything else could split the header). */
function isValidBearer(token: string): boolean {
  return token.length > 0 && token.length <= 16_384 && /^[\x21-\x7e]+$/.test(token);
}

function basicHeader(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`, 'utf8').toString('base64')}`;
}

function authHeader(auth: FinesseAuth): string {
  return 'basic' in auth ? basicHeader(auth.basic.username, auth.basic.password) : `Bearer ${auth.bearer}`;
}

/** {base}/finesse/api/{path}; undefined for a base that is not an http(s) URL. */
function endpoint(base: string, path: string): URL | undefined {
  try {
    const url = new URL(base);
    if (url.protocol !== 'https:' && url.protocol !== 'http:') return undefined;
    url.pathname = `${url.pathname.replace(/\/+$/, '')}/finesse/api/${path}`;
    url.search = '';
    url.hash = '';
    return url;
  } catch {
    return undefined;
  }
}

/** Reads the body up to `limit` bytes; beyond it the request is aborted and refused. */
async function readBody(response: Response, limit: number): Promise<string> {
  const body = await readBoundedBody(response, limit);
  if (!body) throw new FinesseResponseError(`the response is larger than ${limit} bytes`);
  return body.toString('utf8');
}

type Answer = { url: string; status: number; body: string | undefined };

/**
 * GET `path` on each base URL in turn until one answers with a status other than 5xx. The body
 * is read only for 200. Throws FinesseUnavailableError when none answers.
 */
async function getWithFailover(settings: FinesseClientSettings, path: string, authorization: string, limit: number): Promise<Answer> {
  const failures: FinesseFailure[] = [];
  const agent = agentFor(settings);
  // Headers and body each have the read timeout; this deadline also bounds a trickling body.
  const deadline = settings.connectTimeout + 2 * settings.readTimeout;
  for (const base of settings.urls) {
    const url = endpoint(base, path);
    if (!url) {
      failures.push({ url: base, kind: 'bad-url', message: KIND_TEXT['bad-url'] });
      continue;
    }
    const shown = url.origin;
    try {
      const response = await undici().fetch(url, {
        method: 'GET',
        dispatcher: agent,
        redirect: 'manual',
        signal: AbortSignal.timeout(deadline),
        headers: { accept: 'application/xml', authorization },
      });
      if (response.status >= 500) {
        await response.body?.cancel().catch(() => {});
        failures.push({ url: shown, kind: 'server-error', message: `${KIND_TEXT['server-error']} (HTTP ${response.status})` });
        finesseLog().warn({ provider: settings.alias, url: shown, status: response.status }, 'Finesse answered with a server error, trying the next URL');
        continue;
      }
      if (response.status !== 200) {
        await response.body?.cancel().catch(() => {});
        return { url: shown, status: response.status, body: undefined };
      }
      return { url: shown, status: 200, body: await readBody(response, limit) };
    } catch (error) {
      if (error instanceof FinesseResponseError) {
        finesseLog().warn({ provider: settings.alias, url: shown, reason: error.reason }, 'Finesse answer refused');
        throw error;
      }
      const failed = failure(shown, error);
      failures.push(failed);
      finesseLog().warn({ provider: settings.alias, url: shown, kind: failed.kind, reason: failed.message }, 'Finesse request failed, trying the next URL');
    }
  }
  const error = new FinesseUnavailableError(settings.alias, failures);
  finesseLog().warn({ provider: settings.alias, failures }, 'Finesse unavailable');
  throw error;
}

/** Parses a 200 body, logging (then rethrowing) a refusal with its reason. */
function parsed<T>(settings: FinesseClientSettings, answer: Answer, parse: (xml: string) => T): T {
  try {
    return parse(answer.body ?? '');
  } catch (error) {
    if (error instanceof FinesseResponseError) {
      finesseLog().warn({ provider: settings.alias, url: answer.url, reason: error.reason }, 'Finesse answer refused');
    }
    throw error;
  }
}

function unexpected(settings: FinesseClientSettings, answer: Answer): FinesseResponseError {
  const error = new FinesseResponseError(`unexpected HTTP status ${answer.status}`);
  finesseLog().warn({ provider: settings.alias, url: answer.url, status: answer.status }, 'Finesse answer refused');
  return error;
}

/**
 * GET /finesse/api/User/{id} as the user (Basic: the agent's own credentials; Bearer: an IdS
 * access token). 200 → the user; 401 (or 403: not this user's to read) → unauthorized; 404 →
 * not found. An id that cannot name a user, or a malformed token, is answered without a request.
 */
export async function getFinesseUser(config: FinesseClientSettings, id: string, auth: FinesseAuth): Promise<FinesseUserResult> {
  if (!isValidFinesseId(id)) return { status: 'not_found' };
  if ('bearer' in auth && !isValidBearer(auth.bearer)) return { status: 'unauthorized' };
  const answer = await getWithFailover(config, `User/${encodeURIComponent(id)}`, authHeader(auth), MAX_RESPONSE_BYTES);
  if (answer.status === 401 || answer.status === 403) return { status: 'unauthorized' };
  if (answer.status === 404) return { status: 'not_found' };
  if (answer.status !== 200) throw unexpected(config, answer);
  return { status: 'ok', user: parsed(config, answer, parseFinesseUser) };
}

function adminAuthorization(config: FinesseClientSettings): string {
  if (!config.adminUsername || config.adminPassword === undefined) {
    throw new FinesseResponseError('no admin credentials configured (finesseAdminUsername, finesseAdminPassword)');
  }
  return basicHeader(config.adminUsername, config.adminPassword);
}

async function adminGet<T>(config: FinesseClientSettings, path: string, parse: (xml: string) => T): Promise<T> {
  const answer = await getWithFailover(config, path, adminAuthorization(config), MAX_LISTING_BYTES);
  if (answer.status === 401 || answer.status === 403) {
    finesseLog().warn({ provider: config.alias, url: answer.url, status: answer.status }, 'Finesse refused the admin credentials');
    throw new FinesseResponseError(`the admin credentials were refused (HTTP ${answer.status})`);
  }
  if (answer.status !== 200) throw unexpected(config, answer);
  return parsed(config, answer, parse);
}

/** GET /finesse/api/Users with the admin credentials (unusable entries are skipped and logged). */
export function listFinesseUsers(config: FinesseClientSettings): Promise<FinesseUser[]> {
  return adminGet(config, 'Users', (xml) => parseFinesseUsers(xml, (index, reason) => {
    finesseLog().warn({ provider: config.alias, index, reason }, 'Finesse user skipped');
  }));
}

/** GET /finesse/api/Teams with the admin credentials. */
export function listFinesseTeams(config: FinesseClientSettings): Promise<FinesseTeam[]> {
  return adminGet(config, 'Teams', parseFinesseTeams);
}
