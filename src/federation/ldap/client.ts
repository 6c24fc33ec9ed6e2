// Connections to an LDAP provider's directory: a small pool of connections bound as the service
// account per provider (re-created when the provider's connection settings change), one-off
// connections for user binds, and the connection test of the Admin API. Every step is bounded by
// the provider's connect / read timeouts, and every failure to reach the directory (refused,
// timed out, TLS, closed, service account refused) is one LdapUnavailableError saying which.
import { createHash } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';

import { Client, InvalidCredentialsError, ResultCodeError, SASL_MECHANISMS } from 'ldapts';

import { LdapUnavailableError, type LdapProviderConfig } from './types.ts';

/** What opening a connection needs (an LdapProviderConfig has it all). */
export type LdapConnectionSettings = Pick<LdapProviderConfig,
  'id' | 'connectionUrls' | 'authType' | 'bindDn' | 'bindCredential' | 'startTls' | 'connectionTimeout' | 'readTimeout' | 'tlsCaBundle'>;

export type LdapFailureKind =
  | 'bad-url' | 'refused' | 'unknown-host' | 'unreachable' | 'connect-timeout' | 'read-timeout' | 'tls' | 'closed'
  | 'service-bind' | 'busy' | 'closing';

/** LdapUnavailableError with the reason as data (the connection test maps it to Keycloak's error codes). */
export class LdapConnectionError extends LdapUnavailableError {
  readonly kind: LdapFailureKind;
  constructor(providerId: string, kind: LdapFailureKind, message: string, options?: { cause?: unknown }) {
    super(providerId, message, options);
    this.kind = kind;
  }
}

/** Connections per provider: enough for logins next to a running sync, few enough for any directory. */
const POOL_SIZE = 4;
/** Idle pooled connections are closed after this long (directories drop idle clients anyway). */
const IDLE_MS = 60_000;

// ---------------------------------------------------------------------------------------------
// Error classification

function errorCode(error: unknown): string {
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' ? code : '';
}

const TLS_CODES = /^(ERR_TLS_|ERR_SSL_|CERT_|UNABLE_TO_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|HOSTNAME_MISMATCH|ERR_OSSL)/;

/** What went wrong with a connection, from the error ldapts or Node's sockets gave. */
export function failureKind(error: unknown): LdapFailureKind {
  if (error instanceof LdapConnectionError) return error.kind;
  const code = errorCode(error);
  const message = error instanceof Error ? error.message : String(error);
  if (code === 'ECONNREFUSED') return 'refused';
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EAI_NONAME') return 'unknown-host';
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'EADDRNOTAVAIL') return 'unreachable';
  if (code === 'ETIMEDOUT' || message === 'Connection timeout') return 'connect-timeout';
  if (TLS_CODES.test(code) || (error as { library?: unknown }).library === 'SSL routines' || /certificate|TLS|SSL/i.test(message)) return 'tls';
  if (/timed out/i.test(message)) return 'read-timeout';
  return 'closed';
}

const KIND_TEXT: Record<LdapFailureKind, string> = {
  'bad-url': 'invalid connection URL',
  refused: 'connection refused',
  'unknown-host': 'unknown host',
  unreachable: 'host unreachable',
  'connect-timeout': 'connect timed out',
  'read-timeout': 'no answer within the read timeout',
  tls: 'TLS failure',
  closed: 'connection closed',
  'service-bind': 'the service account bind was refused',
  busy: 'all connections busy',
  closing: 'shutting down',
};

function unavailable(providerId: string, url: string, error: unknown): LdapConnectionError {
  if (error instanceof LdapConnectionError) return error;
  const kind = failureKind(error);
  const detail = error instanceof Error && error.message ? `: ${error.message.split('\n')[0]}` : '';
  return new LdapConnectionError(providerId, kind, `cannot reach the LDAP directory at ${url} (${KIND_TEXT[kind]}${detail})`, { cause: error });
}

// ---------------------------------------------------------------------------------------------
// One connection

function ldapUrl(raw: string): URL | undefined {
  try {
    const url = new URL(raw);
    return url.protocol === 'ldap:' || url.protocol === 'ldaps:' ? url : undefined;
  } catch {
    return undefined;
  }
}

/** Host checks as Node does for the URL's host; the CA bundle instead of Node's CAs when set. */
function tlsOptions(settings: LdapConnectionSettings, url: URL): tls.ConnectionOptions {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  return {
    host,
    ...(net.isIP(host) === 0 ? { servername: host } : {}),
    ...(settings.tlsCaBundle ? { ca: [settings.tlsCaBundle] } : {}),
  };
}

/** Rejects when `ms` pass first, after calling `onExpire` (which must make `promise` settle). */
async function within<T>(promise: Promise<T>, ms: number, onExpire: () => void, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onExpire();
      reject(new Error(message));
    }, ms);
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * An ldapts Client whose sockets we hold, so that a deadline can destroy them, and that never
 * reconnects by itself: ldapts would silently open a fresh, unbound (and, after StartTLS,
 * unencrypted) connection when the old one dropped. A dropped connection fails instead.
 */
class Connection {
  readonly client: Client;
  readonly url: URL;
  readonly #sockets = new Set<net.Socket>();
  #plainOpened = false;
  #secureOpened = false;
  idleTimer: NodeJS.Timeout | undefined;

  constructor(settings: LdapConnectionSettings, url: URL) {
    this.url = url;
    const secure = url.protocol === 'ldaps:';
    const track = <S extends net.Socket>(socket: S): S => {
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
      return socket;
    };
    const refused = (): net.Socket => {
      const socket = new net.Socket();
      process.nextTick(() => socket.destroy(new Error('connection lost')));
      return socket;
    };
    this.client = new Client({
      url: `${url.protocol}//${url.host}`,
      connectTimeout: settings.connectionTimeout,
      timeout: settings.readTimeout,
      // ldapts treats any tlsOptions as "connect with TLS": only ldaps:// gets them here.
      ...(secure ? { tlsOptions: tlsOptions(settings, url) } : {}),
      createConnection: ((port: number, host: string) => {
        if (this.#plainOpened) return refused();
        this.#plainOpened = true;
        return track(net.connect(port, host));
      }) as typeof net.connect,
      createSecureConnection: ((...args: unknown[]) => {
        if (this.#secureOpened) return refused();
        this.#secureOpened = true;
        return track((tls.connect as (...a: unknown[]) => tls.TLSSocket)(...args));
      }) as typeof tls.connect,
    });
  }

  get usable(): boolean {
    return this.client.isConnected && this.client.isBound;
  }

  destroy(): void {
    clearTimeout(this.idleTimer);
    for (const socket of this.#sockets) socket.destroy();
    this.#sockets.clear();
  }

  /** Unbind politely, but never wait for a directory that does not answer. */
  async close(): Promise<void> {
    clearTimeout(this.idleTimer);
    if (this.client.isConnected) {
      await within(this.client.unbind(), 500, () => this.destroy(), 'unbind timed out').catch(() => {});
    }
    this.destroy();
  }
}

type Bind = { dn: string; password: string };

const isSaslName = (dn: string): boolean => (SASL_MECHANISMS as readonly string[]).includes(dn);

/**
 * Opens a connection to one URL: TCP (or TLS for ldaps://), StartTLS when configured, then the
 * bind (anonymous when `bind` is undefined). The whole sequence has one deadline as well, since
 * ldapts bounds the TLS handshake of StartTLS by nothing.
 */
async function connectOnce(settings: LdapConnectionSettings, url: URL, bind: Bind | undefined): Promise<Connection> {
  // ldapts would take a DN spelled like a SASL mechanism ("EXTERNAL", "PLAIN") for a SASL bind.
  if (bind && isSaslName(bind.dn)) throw new InvalidCredentialsError(`not a bind DN: ${bind.dn}`);
  const conn = new Connection(settings, url);
  const steps = async (): Promise<void> => {
    if (settings.startTls && url.protocol === 'ldap:') {
      try {
        await conn.client.startTLS(tlsOptions(settings, url));
      } catch (error) {
        // A refused StartTLS is an LDAP result, but for us a TLS failure like any other.
        if (!(error instanceof ResultCodeError)) throw error;
        throw new LdapConnectionError(settings.id, 'tls', `the LDAP directory at ${url.href} refused StartTLS (${error.message})`, { cause: error });
      }
    }
    await conn.client.bind(bind?.dn ?? '', bind?.password ?? '');
  };
  try {
    await within(steps(), settings.connectionTimeout + 2 * settings.readTimeout, () => conn.destroy(), 'Operation timed out');
    return conn;
  } catch (error) {
    conn.destroy();
    throw error;
  }
}

/**
 * Tries the provider's URLs in order until one connects and answers the bind. An LDAP result
 * (wrong credentials...) ends the search: the directory answered. Connection failures move on to
 * the next URL and, when all fail, become an LdapConnectionError naming the last reason.
 */
async function connect(settings: LdapConnectionSettings, bind: Bind | undefined): Promise<Connection> {
  if (settings.connectionUrls.length === 0) throw new LdapConnectionError(settings.id, 'bad-url', 'no LDAP connection URL configured');
  let last: LdapConnectionError | undefined;
  for (const raw of settings.connectionUrls) {
    const url = ldapUrl(raw);
    if (!url) {
      last = new LdapConnectionError(settings.id, 'bad-url', `invalid LDAP connection URL: ${raw}`);
      continue;
    }
    try {
      return await connectOnce(settings, url, bind);
    } catch (error) {
      if (error instanceof ResultCodeError) throw error;
      last = unavailable(settings.id, raw, error);
    }
  }
  throw last!;
}

/** A connection bound as the service account (anonymous with authType none). */
async function openServiceConnection(settings: LdapConnectionSettings): Promise<Connection> {
  const bind = settings.authType === 'simple' ? { dn: settings.bindDn ?? '', password: settings.bindCredential ?? '' } : undefined;
  if (bind && (bind.dn === '' || bind.password === '')) {
    // A simple bind without a password is an anonymous bind on most servers: not what was configured.
    throw new LdapConnectionError(settings.id, 'service-bind', 'the LDAP service account has no bind DN or credential configured');
  }
  try {
    return await connect(settings, bind);
  } catch (error) {
    if (error instanceof ResultCodeError) {
      const reason = error instanceof InvalidCredentialsError ? 'invalid credentials' : error.message;
      throw new LdapConnectionError(settings.id, 'service-bind', `the LDAP directory refused the service account bind (${reason})`, { cause: error });
    }
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------
// Pools

type Waiter = { resolve: (conn: Connection) => void; reject: (error: unknown) => void; timer: NodeJS.Timeout };

class Pool {
  readonly key: string;
  readonly settings: LdapConnectionSettings;
  readonly #idle: Connection[] = [];
  readonly #waiters: Waiter[] = [];
  /** Open connections, idle or in use. */
  #size = 0;
  #closed = false;

  constructor(key: string, settings: LdapConnectionSettings) {
    this.key = key;
    this.settings = settings;
  }

  /** An idle bound connection, a new one, or the next one released (waiting at most the read timeout). */
  async acquire(): Promise<{ conn: Connection; reused: boolean }> {
    if (this.#closed) throw new LdapConnectionError(this.settings.id, 'closing', 'LDAP connections are shutting down');
    while (this.#idle.length > 0) {
      const conn = this.#idle.pop()!;
      clearTimeout(conn.idleTimer);
      if (conn.usable) return { conn, reused: true };
      this.#drop(conn);
    }
    if (this.#size < POOL_SIZE) return { conn: await this.#open(), reused: false };
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        resolve: (conn) => resolve({ conn, reused: true }),
        reject,
        timer: setTimeout(() => {
          const at = this.#waiters.indexOf(waiter);
          if (at >= 0) this.#waiters.splice(at, 1);
          reject(new LdapConnectionError(this.settings.id, 'busy', 'all LDAP connections stayed busy for the read timeout'));
        }, this.settings.readTimeout),
      };
      this.#waiters.push(waiter);
    });
  }

  release(conn: Connection, healthy: boolean): void {
    if (!healthy || this.#closed || !conn.usable) {
      this.#drop(conn);
      this.#serveWaiter();
      return;
    }
    const waiter = this.#waiters.shift();
    if (waiter) {
      clearTimeout(waiter.timer);
      waiter.resolve(conn);
      return;
    }
    conn.idleTimer = setTimeout(() => {
      const at = this.#idle.indexOf(conn);
      if (at >= 0) this.#idle.splice(at, 1);
      this.#size--;
      void conn.close();
    }, IDLE_MS);
    conn.idleTimer.unref();
    this.#idle.push(conn);
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const waiter of this.#waiters.splice(0)) {
      clearTimeout(waiter.timer);
      waiter.reject(new LdapConnectionError(this.settings.id, 'closing', 'LDAP connections are shutting down'));
    }
    const idle = this.#idle.splice(0);
    this.#size -= idle.length;
    await Promise.all(idle.map((conn) => conn.close()));
  }

  async #open(): Promise<Connection> {
    this.#size++;
    try {
      return await openServiceConnection(this.settings);
    } catch (error) {
      this.#size--;
      throw error;
    }
  }

  #drop(conn: Connection): void {
    this.#size--;
    conn.destroy();
  }

  /** A slot freed up: the first waiter gets a new connection (or its error). */
  #serveWaiter(): void {
    const waiter = this.#waiters.shift();
    if (!waiter) return;
    clearTimeout(waiter.timer);
    this.#open().then(waiter.resolve, waiter.reject);
  }
}

const pools = new Map<string, Pool>();

function settingsKey(settings: LdapConnectionSettings): string {
  return createHash('sha256').update(JSON.stringify([
    settings.connectionUrls, settings.authType, settings.bindDn ?? null, settings.bindCredential ?? null, settings.startTls,
    settings.connectionTimeout, settings.readTimeout, settings.tlsCaBundle ?? null,
  ])).digest('base64url');
}

/** The provider's pool; a pool made for other connection settings is closed and replaced. */
function poolFor(settings: LdapConnectionSettings): Pool {
  const key = settingsKey(settings);
  const current = pools.get(settings.id);
  if (current?.key === key) return current;
  if (current) void current.close();
  const pool = new Pool(key, settings);
  pools.set(settings.id, pool);
  return pool;
}

// ---------------------------------------------------------------------------------------------
// Public API

/**
 * Runs `fn` with a pooled connection bound as the provider's service account. LDAP result errors
 * from `fn` pass through unchanged (the connection goes back to the pool); a connection that
 * dropped or timed out is discarded and the failure becomes an LdapUnavailableError. A reused
 * connection found dead on its first operation is replaced once (the directory may have restarted).
 */
export async function withLdap<T>(config: LdapConnectionSettings, fn: (client: Client) => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    const pool = poolFor(config);
    const { conn, reused } = await pool.acquire();
    try {
      const result = await fn(conn.client);
      pool.release(conn, true);
      return result;
    } catch (error) {
      if (conn.usable) {
        pool.release(conn, true);
        throw error;
      }
      pool.release(conn, false);
      const failure = unavailable(config.id, conn.url.href, error);
      if (reused && attempt === 0 && failure.kind === 'closed') continue;
      throw failure;
    }
  }
}

export type LdapBindResult =
  | { ok: true }
  /** The directory refused: LDAP result code and its diagnostic message (AD puts "data 52e" etc. there). */
  | { ok: false; code: number; diagnostic: string };

/**
 * Binds as a user on a connection of its own (never a pooled one), then unbinds. An empty password
 * is refused without asking the directory: a simple bind without one is an anonymous bind that
 * most servers accept. Connection failures throw LdapUnavailableError.
 */
export async function ldapBindResult(config: LdapConnectionSettings, dn: string, password: string): Promise<LdapBindResult> {
  if (password === '' || dn.trim() === '' || isSaslName(dn)) {
    return { ok: false, code: 49, diagnostic: 'empty password or DN' };
  }
  let conn: Connection;
  try {
    conn = await connect(config, { dn, password });
  } catch (error) {
    if (error instanceof ResultCodeError) return { ok: false, code: error.code, diagnostic: error.message };
    throw error;
  }
  await conn.close();
  return { ok: true };
}

/** True when `password` is the user's: the directory accepted a bind as `dn`. */
export async function ldapBind(config: LdapConnectionSettings, dn: string, password: string): Promise<boolean> {
  return (await ldapBindResult(config, dn, password)).ok;
}

/** Closes every pooled connection (server shutdown). */
export async function closeLdapPools(): Promise<void> {
  const all = [...pools.values()];
  pools.clear();
  await Promise.all(all.map((pool) => pool.close()));
}

// ---------------------------------------------------------------------------------------------
// Connection test (Admin API testLDAPConnection)

export type LdapTestSettings = {
  action: string;
  connectionUrl: string;
  authType: 'simple' | 'none';
  bindDn: string | undefined;
  bindCredential: string | undefined;
  startTls: boolean;
  /** Milliseconds, used as connect and read timeout alike (LDAPServerCapabilitiesManager). */
  timeout: number;
  tlsCaBundle: string | undefined;
};

/** A failed connection test, with Keycloak's error code (LDAPServerCapabilitiesManager.getErrorCode). */
export class LdapTestError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** Keycloak's codes for the Java exceptions behind each failure. */
const TEST_ERROR_CODES: Record<LdapFailureKind, string> = {
  'bad-url': 'NamingError',
  refused: 'ConnectionFailed',
  'unknown-host': 'UnknownHost',
  unreachable: 'NoRouteToHost',
  'connect-timeout': 'CommunicationError',
  'read-timeout': 'NamingError',
  tls: 'SSLHandshakeFailed',
  closed: 'SocketReset',
  'service-bind': 'AuthenticationFailure',
  busy: 'ServiceUnavailable',
  closing: 'ServiceUnavailable',
};

/**
 * Keycloak's LDAPServerCapabilitiesManager.testLDAP: testConnection connects (StartTLS when asked)
 * and binds anonymously; testAuthentication binds with the given DN and credential (anonymously
 * with authType none). Resolves when it worked, else throws LdapTestError.
 */
export async function testLdapConnection(settings: LdapTestSettings): Promise<void> {
  if (settings.action !== 'testConnection' && settings.action !== 'testAuthentication') {
    throw new LdapTestError('NamingError', `unknown action: ${settings.action}`);
  }
  const authenticate = settings.action === 'testAuthentication' && settings.authType === 'simple';
  if (authenticate && !settings.bindDn) throw new LdapTestError('InvalidBindDN', 'Unknown bind DN');
  // Without a credential a simple bind is an unauthenticated (anonymous) one: nothing was tested.
  if (authenticate && !settings.bindCredential) throw new LdapTestError('AuthenticationFailure', 'Error when authenticating to LDAP: no bind credential');
  const connection: LdapConnectionSettings = {
    id: 'connection-test',
    connectionUrls: settings.connectionUrl.trim().split(/\s+/).filter((u) => u !== ''),
    authType: authenticate ? 'simple' : 'none',
    bindDn: settings.bindDn,
    bindCredential: settings.bindCredential,
    startTls: settings.startTls,
    connectionTimeout: settings.timeout,
    readTimeout: settings.timeout,
    tlsCaBundle: settings.tlsCaBundle,
  };
  let conn: Connection;
  try {
    conn = await connect(connection, authenticate ? { dn: settings.bindDn!, password: settings.bindCredential ?? '' } : undefined);
  } catch (error) {
    if (error instanceof ResultCodeError) {
      // The directory answered. For a connection test that is enough (some refuse anonymous binds).
      if (!authenticate) return;
      throw new LdapTestError('AuthenticationFailure', `Error when authenticating to LDAP: ${error.message}`, { cause: error });
    }
    const kind = failureKind(error);
    const what = authenticate ? 'authenticating to' : 'connecting to';
    throw new LdapTestError(TEST_ERROR_CODES[kind], `Error when ${what} LDAP: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
  await conn.close();
}
